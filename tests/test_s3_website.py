"""S3 static website hosting on the embedded backend (``cloudlab.backend.s3_website``).

The lecture's recipe, with plain boto3: website configuration, Block Public Access off, a public
read policy, objects uploaded with their Content-Type; then anonymous HTTP requests to the
website endpoint, in both address forms.
"""

from __future__ import annotations

import http.client
import json
import uuid

import boto3
import pytest

from cloudlab.backend.embedded import EmbeddedServer
from cloudlab.backend.s3_website import website_host_url, website_url


@pytest.fixture(scope="module")
def server():
    server = EmbeddedServer().start()
    yield server
    server.stop()


@pytest.fixture
def s3(server):
    return boto3.client("s3", endpoint_url=server.url, region_name="us-east-1",
                        aws_access_key_id="test", aws_secret_access_key="test")


def get(server, path: str, method: str = "GET", host: str | None = None):
    """(status, {lower-case header: value}, body) of an unsigned request to the emulator."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        connection.request(method, path, headers={"Host": host} if host else {})
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def make_site(s3, bucket: str, public: bool = True, error_document: str | None = None) -> None:
    s3.create_bucket(Bucket=bucket)
    website = {"IndexDocument": {"Suffix": "index.html"}}
    if error_document:
        website["ErrorDocument"] = {"Key": error_document}
    s3.put_bucket_website(Bucket=bucket, WebsiteConfiguration=website)
    if public:
        s3.delete_public_access_block(Bucket=bucket)  # new buckets block public policies, as on AWS
        s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps({"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{bucket}/*"}]}))
    s3.put_object(Bucket=bucket, Key="index.html", Body=b"<h1>home</h1>", ContentType="text/html")
    s3.put_object(Bucket=bucket, Key="app.js", Body=b"console.log(1)", ContentType="text/javascript")
    s3.put_object(Bucket=bucket, Key="docs/index.html", Body=b"<h1>docs</h1>", ContentType="text/html")
    s3.put_object(Bucket=bucket, Key="blob", Body=b"\x00\x01")


def test_index_document_and_stored_content_types(server, s3):
    bucket = f"site-{uuid.uuid4().hex[:8]}"
    make_site(s3, bucket)
    root = website_url(server.url, bucket).removeprefix(server.url)
    status, headers, body = get(server, root)
    assert (status, headers["content-type"], body) == (200, "text/html", b"<h1>home</h1>")
    status, headers, body = get(server, root + "app.js")
    assert (status, headers["content-type"]) == (200, "text/javascript")
    assert get(server, root + "docs/")[2] == b"<h1>docs</h1>"
    # S3 does not guess a type from the name: an object stored without one is binary/octet-stream.
    assert get(server, root + "blob")[1]["content-type"] == "binary/octet-stream"
    status, headers, body = get(server, root, method="HEAD")
    assert status == 200 and body == b""


def test_host_form_is_its_own_origin(server, s3):
    bucket = f"site-{uuid.uuid4().hex[:8]}"
    make_site(s3, bucket)
    url = website_host_url(server.url, bucket)
    assert url == f"http://{bucket}.s3-website.localhost:{server.port}/"
    host = url.split("//")[1].rstrip("/")
    assert get(server, "/", host=host)[2] == b"<h1>home</h1>"
    assert get(server, "/app.js", host=f"{bucket}.s3-website-us-east-1.localhost")[0] == 200
    status, headers, _ = get(server, "/docs", host=host)
    assert status == 302 and headers["location"] == "/docs/"


def test_folder_without_slash_redirects_and_missing_keys_are_html_404s(server, s3):
    bucket = f"site-{uuid.uuid4().hex[:8]}"
    make_site(s3, bucket)
    root = website_url(server.url, bucket).removeprefix(server.url)
    status, headers, _ = get(server, root + "docs")
    assert status == 302 and headers["location"] == root + "docs/"
    status, headers, body = get(server, root + "nothing.html")
    assert status == 404 and headers["content-type"].startswith("text/html")
    assert b"<h1>404 Not Found</h1>" in body and b"Code: NoSuchKey" in body and b"Key: nothing.html" in body


def test_error_document_is_served_with_the_error_status(server, s3):
    bucket = f"site-{uuid.uuid4().hex[:8]}"
    make_site(s3, bucket, error_document="app.js")
    root = website_url(server.url, bucket).removeprefix(server.url)
    status, headers, body = get(server, root + "nothing.html")
    assert (status, body) == (404, b"console.log(1)")


def test_a_bucket_without_a_public_policy_is_forbidden(server, s3):
    bucket = f"site-{uuid.uuid4().hex[:8]}"
    make_site(s3, bucket, public=False)
    status, headers, body = get(server, website_url(server.url, bucket).removeprefix(server.url))
    assert status == 403 and b"Code: AccessDenied" in body and headers["content-type"].startswith("text/html")


def test_no_website_configuration_no_bucket_and_wrong_methods(server, s3):
    bucket = f"plain-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    root = website_url(server.url, bucket).removeprefix(server.url)
    status, _, body = get(server, root)
    assert status == 404 and b"Code: NoSuchWebsiteConfiguration" in body
    status, _, body = get(server, website_url(server.url, "no-such-bucket-here").removeprefix(server.url))
    assert status == 404 and b"Code: NoSuchBucket" in body
    status, headers, body = get(server, root, method="POST")
    assert status == 405 and b"Code: MethodNotAllowed" in body
    # The REST API is untouched: the same bucket path-style is still S3's XML API.
    status, headers, _ = get(server, f"/{bucket}/index.html")
    assert status == 403 and headers["content-type"] == "application/xml"
