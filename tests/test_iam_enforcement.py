"""IAM policies are enforced for IAM users' keys only, per request (notebook 02, least privilege).

moto's own switch is global; the embedded backend checks the policies of requests signed with
an IAM user's key and leaves the course's ``test`` credentials alone, so one notebook's
experiment cannot break another's calls on a shared server.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
import uuid

import boto3
import pytest
from botocore.config import Config

import cloudlab
from aws_calls import code, fetch

BUCKET = "test-iam-prefix"


@pytest.fixture(autouse=True)
def attached():
    cloudlab.use_backend()  # conftest restores the environment after every test


@pytest.fixture(scope="module")
def setup():
    cloudlab.use_backend()
    admin = boto3.client("s3")
    iam = boto3.client("iam")
    if BUCKET not in {b["Name"] for b in admin.list_buckets()["Buckets"]}:
        admin.create_bucket(Bucket=BUCKET)
    admin.put_object(Bucket=BUCKET, Key="private/report.txt", Body=b"secret")
    user = f"uploader-{uuid.uuid4().hex[:6]}"
    iam.create_user(UserName=user)
    policy = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"], "Resource": f"arn:aws:s3:::{BUCKET}/uploads/u0042/*"}]}
    iam.put_user_policy(UserName=user, PolicyName="one-prefix", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName=user)["AccessKey"]
    restricted = boto3.client("s3", aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"],
                              config=Config(signature_version="s3v4"))
    return admin, restricted


def test_allowed_inside_the_prefix_denied_outside(setup):
    admin, restricted = setup
    assert code(lambda: restricted.put_object(Bucket=BUCKET, Key="uploads/u0042/a.txt", Body=b"mine")) == "OK"
    assert restricted.get_object(Bucket=BUCKET, Key="uploads/u0042/a.txt")["Body"].read() == b"mine"
    assert code(lambda: restricted.put_object(Bucket=BUCKET, Key="uploads/u0007/a.txt", Body=b"x")) == "AccessDenied"
    assert code(lambda: restricted.get_object(Bucket=BUCKET, Key="private/report.txt")) == "AccessDenied"
    assert code(lambda: restricted.delete_object(Bucket=BUCKET, Key="uploads/u0042/a.txt")) == "AccessDenied"


def test_course_credentials_are_not_restricted_meanwhile(setup):
    admin, restricted = setup
    results = []

    def admin_calls():
        for i in range(30):
            admin.put_object(Bucket=BUCKET, Key=f"private/{i}", Body=b"x")
            results.append(code(lambda: admin.get_object(Bucket=BUCKET, Key="private/report.txt")))

    worker = threading.Thread(target=admin_calls)
    worker.start()
    for _ in range(30):
        assert code(lambda: restricted.get_object(Bucket=BUCKET, Key="private/report.txt")) == "AccessDenied"
    worker.join()
    assert results == ["OK"] * 30
    assert code(lambda: boto3.client("sqs").list_queues()) == "OK"


def test_unknown_or_wrong_secret_is_refused(setup):
    admin, restricted = setup
    creds = restricted._request_signer._credentials
    wrong = boto3.client("s3", aws_access_key_id=creds.access_key, aws_secret_access_key="not-the-secret")
    assert code(lambda: wrong.put_object(Bucket=BUCKET, Key="uploads/u0042/b.txt", Body=b"x")) == "SignatureDoesNotMatch"


def test_presigned_urls_carry_the_signers_permissions(setup):
    admin, restricted = setup
    inside = restricted.generate_presigned_url("put_object", Params={"Bucket": BUCKET, "Key": "uploads/u0042/p.txt",
                                                                     "ContentType": "text/plain"}, ExpiresIn=60)
    assert fetch(inside, "PUT", b"via url")[0] == 200
    assert admin.get_object(Bucket=BUCKET, Key="uploads/u0042/p.txt")["Body"].read() == b"via url"
    outside = restricted.generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": "private/report.txt"})
    status, body = fetch(outside)
    assert status == 403 and b"<Code>AccessDenied</Code>" in body
    by_admin = boto3.client("s3", config=Config(signature_version="s3v4")).generate_presigned_url(
        "get_object", Params={"Bucket": BUCKET, "Key": "private/report.txt"})
    assert fetch(by_admin) == (200, b"secret")


def test_the_global_switch_is_refused():
    """moto's /moto-api/reset-auth would turn IAM checks on for every client of a shared server."""
    backend = cloudlab.use_backend()
    request = urllib.request.Request(backend.endpoint + "/moto-api/reset-auth", data=b"0", method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 400 and b"IAM user" in refused.value.read()
    assert code(lambda: boto3.client("s3").list_buckets()) == "OK"
