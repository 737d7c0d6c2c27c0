"""``cloudlab.pipeline.web.publish_site``: the upload page as an S3 website, checked over plain
HTTP (the browser's view is ``tests/test_browser_client.py``)."""

from __future__ import annotations

import json
import urllib.request
import uuid

import boto3
import pytest

import cloudlab
from cloudlab.pipeline.web import SITE_DIR, SITE_FILES, publish_site


def fetch(url: str) -> tuple[int, str, bytes]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, response.headers["Content-Type"], response.read()


def test_publish_site_serves_the_page_with_its_types_and_config():
    cloudlab.use_backend()
    bucket = f"web-{uuid.uuid4().hex[:8]}"
    url = publish_site("http://127.0.0.1:9/prod/", bucket=bucket)
    assert url.endswith(f"/_cloudlab/s3-website/{bucket}/")
    status, content_type, body = fetch(url)
    assert (status, content_type) == (200, "text/html; charset=utf-8")
    assert body == (SITE_DIR / "index.html").read_bytes()
    assert fetch(url + "app.js")[1] == "text/javascript; charset=utf-8"
    assert fetch(url + "style.css")[1] == "text/css; charset=utf-8"
    config = fetch(url + "config.js")[2].decode()
    assert config == 'window.MODERATION_CONFIG = {"apiUrl": "http://127.0.0.1:9/prod"};\n'
    # Publishing again (a new API URL) updates in place, as `aws s3 sync` would.
    assert publish_site("http://127.0.0.1:10/prod", bucket=bucket) == url
    assert "127.0.0.1:10" in fetch(url + "config.js")[2].decode()
    # What the lecture's recipe leaves behind, read back with plain boto3.
    s3 = boto3.client("s3")
    assert s3.get_bucket_website(Bucket=bucket)["IndexDocument"] == {"Suffix": "index.html"}
    policy = json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])
    assert policy["Statement"][0]["Principal"] == "*" and policy["Statement"][0]["Action"] == "s3:GetObject"
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"])
    assert keys == sorted([*SITE_FILES, "config.js"])


class _DeployedStack:
    api_url = "http://127.0.0.1:11/prod"


def test_publish_site_takes_a_stack():
    cloudlab.use_backend()
    url = publish_site(_DeployedStack(), bucket=f"web-{uuid.uuid4().hex[:8]}")
    assert "127.0.0.1:11/prod" in fetch(url + "config.js")[2].decode()


@pytest.mark.parametrize("target", ["", "127.0.0.1:9/prod", None, object()])
def test_publish_site_refuses_what_is_not_an_api(target):
    cloudlab.use_backend()
    with pytest.raises(ValueError, match="deployed stack"):
        publish_site(target, bucket="never-made")
    assert "never-made" not in [b["Name"] for b in boto3.client("s3").list_buckets()["Buckets"]]


def test_publish_site_says_so_when_s3_is_not_the_embedded_backend():
    s3 = boto3.client("s3", endpoint_url="http://127.0.0.1:9", region_name="us-east-1",
                      aws_access_key_id="test", aws_secret_access_key="test")
    with pytest.raises(RuntimeError, match="not the embedded backend"):
        publish_site("http://127.0.0.1:9/prod", s3=s3)
