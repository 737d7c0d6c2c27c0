"""Roles, temporary credentials, the s3:prefix condition and anonymous access (issue 12, notebook 02).

Plain boto3 against the embedded backend. Credential expiry is tested by moving the
expiration moto issued into the past (AssumeRole's minimum duration is 900 s), which is
the clock the emulator's checks read.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

import cloudlab
from cloudlab.iam import assume_role_credentials, fresh_role
from aws_calls import code, error_code, fetch

BUCKET = "test-temp-credentials"
V4 = Config(signature_version="s3v4")


@pytest.fixture(autouse=True)
def attached():
    cloudlab.use_backend()


@pytest.fixture(scope="module")
def admin():
    cloudlab.use_backend()
    s3 = boto3.client("s3", config=V4)
    if BUCKET not in {b["Name"] for b in s3.list_buckets()["Buckets"]}:
        s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key="private/report.txt", Body=b"secret")
    s3.put_object(Bucket=BUCKET, Key="uploads/u0042/photo.jpg", Body=b"jpeg")
    return s3


UPLOADER_POLICY = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"], "Resource": f"arn:aws:s3:::{BUCKET}/uploads/*"},
    {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": f"arn:aws:s3:::{BUCKET}",
     "Condition": {"StringLike": {"s3:prefix": "uploads/*"}}},
    {"Effect": "Allow", "Action": "sqs:ListQueues", "Resource": "*"}]}


def new_session(policy=UPLOADER_POLICY, session_policy=None):
    role = fresh_role(boto3.client("iam"), f"uploader-{uuid.uuid4().hex[:6]}", policy)
    kwargs, expiration = assume_role_credentials(boto3.client("sts"), role, "test-session",
                                                 session_policy=session_policy)
    return kwargs, expiration


def expire(access_key_id: str) -> None:
    """Move the credentials' expiration, as moto issued it, one second into the past."""
    from moto.sts.models import sts_backends

    for session in sts_backends["123456789012"]["aws"].assumed_roles:
        if session.access_key_id == access_key_id:
            past = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=1)
            session.expiration = past if session.expiration.tzinfo else past.replace(tzinfo=None)


def test_role_credentials_get_the_roles_permissions_only(admin):
    kwargs, expiration = new_session()
    assert kwargs["aws_access_key_id"].startswith("ASIA") and kwargs["aws_session_token"]
    assert expiration - dt.datetime.now(dt.timezone.utc) > dt.timedelta(minutes=14)
    s3 = boto3.client("s3", config=V4, **kwargs)
    assert code(lambda: s3.put_object(Bucket=BUCKET, Key="uploads/u0042/new.jpg", Body=b"x")) == "OK"
    assert s3.get_object(Bucket=BUCKET, Key="uploads/u0042/photo.jpg")["Body"].read() == b"jpeg"
    assert code(lambda: s3.get_object(Bucket=BUCKET, Key="private/report.txt")) == "AccessDenied"
    assert code(lambda: s3.delete_object(Bucket=BUCKET, Key="private/report.txt")) == "AccessDenied"
    assert code(lambda: s3.delete_object(Bucket=BUCKET, Key="uploads/u0042/new.jpg")) == "AccessDenied"
    assert admin.get_object(Bucket=BUCKET, Key="private/report.txt")["Body"].read() == b"secret"
    # other services too: the role allows sqs:ListQueues and nothing on DynamoDB
    assert code(lambda: boto3.client("sqs", **kwargs).list_queues()) == "OK"
    assert code(lambda: boto3.client("dynamodb", **kwargs).list_tables()) == "AccessDeniedException"
    assert boto3.client("sts", **kwargs).get_caller_identity()["Arn"].endswith("/test-session")


def test_a_session_policy_narrows_the_role():
    only_photos = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{BUCKET}/uploads/*.jpg"}]}
    kwargs, _ = new_session(session_policy=only_photos)
    s3 = boto3.client("s3", config=V4, **kwargs)
    assert code(lambda: s3.get_object(Bucket=BUCKET, Key="uploads/u0042/photo.jpg")) == "OK"
    assert code(lambda: s3.put_object(Bucket=BUCKET, Key="uploads/u0042/x.jpg", Body=b"x")) == "AccessDenied"


def test_wrong_token_and_expired_credentials_get_the_services_errors(admin):
    kwargs, _ = new_session()
    forged = dict(kwargs, aws_session_token=kwargs["aws_session_token"][:-4] + "AAAA")
    assert code(lambda: boto3.client("s3", config=V4, **forged).get_object(
        Bucket=BUCKET, Key="uploads/u0042/photo.jpg")) == "InvalidToken"
    expire(kwargs["aws_access_key_id"])
    s3 = boto3.client("s3", config=V4, **kwargs)
    with pytest.raises(ClientError) as expired:
        s3.get_object(Bucket=BUCKET, Key="uploads/u0042/photo.jpg")
    assert expired.value.response["Error"]["Code"] == "ExpiredToken"
    assert expired.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert code(lambda: boto3.client("sqs", **kwargs).list_queues()) == "ExpiredToken"
    assert code(lambda: boto3.client("dynamodb", **kwargs).list_tables()) == "ExpiredToken"


def test_presigned_url_with_a_session_token_works_until_the_credentials_expire(admin):
    kwargs, _ = new_session()
    s3 = boto3.client("s3", config=V4, **kwargs)
    url = s3.generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": "uploads/u0042/photo.jpg"},
                                    ExpiresIn=3600)  # longer than the credentials live
    assert "X-Amz-Security-Token=" in url
    assert fetch(url) == (200, b"jpeg")
    outside = s3.generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": "private/report.txt"})
    status, body = fetch(outside)
    assert (status, error_code(body)) == (403, "AccessDenied")
    put = s3.generate_presigned_url("put_object", Params={"Bucket": BUCKET, "Key": "uploads/u0042/browser.jpg"})
    assert fetch(put, "PUT", b"from a browser")[0] == 200
    expire(kwargs["aws_access_key_id"])
    status, body = fetch(url)
    assert (status, error_code(body)) == (400, "ExpiredToken")


def test_presigned_url_with_a_wrong_token_is_refused(admin):
    kwargs, _ = new_session()
    other, _ = new_session()
    mixed = dict(kwargs, aws_session_token=other["aws_session_token"])
    url = boto3.client("s3", config=V4, **mixed).generate_presigned_url(
        "get_object", Params={"Bucket": BUCKET, "Key": "uploads/u0042/photo.jpg"})
    status, body = fetch(url)
    assert (status, error_code(body)) == (400, "InvalidToken")


def test_prefix_condition_on_list_bucket(admin):
    kwargs, _ = new_session()
    s3 = boto3.client("s3", config=V4, **kwargs)
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix="uploads/u0042/")
    assert "uploads/u0042/photo.jpg" in [o["Key"] for o in listed["Contents"]]
    assert code(lambda: s3.list_objects_v2(Bucket=BUCKET, Prefix="private/")) == "AccessDenied"
    assert code(lambda: s3.list_objects_v2(Bucket=BUCKET)) == "AccessDenied"  # no prefix: the key is absent
    assert code(lambda: s3.list_objects(Bucket=BUCKET, Prefix="uploads/")) == "OK"


def test_string_equals_and_a_negated_deny_on_the_prefix(admin):
    policy = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": f"arn:aws:s3:::{BUCKET}",
         "Condition": {"StringEquals": {"s3:prefix": ["", "uploads/"]}}},
        {"Effect": "Deny", "Action": "s3:ListBucket", "Resource": f"arn:aws:s3:::{BUCKET}",
         "Condition": {"StringNotLike": {"s3:prefix": ["", "uploads/*"]}}}]}
    kwargs, _ = new_session(policy)
    s3 = boto3.client("s3", config=V4, **kwargs)
    assert code(lambda: s3.list_objects_v2(Bucket=BUCKET, Prefix="uploads/")) == "OK"
    assert code(lambda: s3.list_objects_v2(Bucket=BUCKET, Prefix="")) == "OK"
    assert code(lambda: s3.list_objects_v2(Bucket=BUCKET, Prefix="uploads/u0042/")) == "AccessDenied"
    assert code(lambda: s3.list_objects_v2(Bucket=BUCKET, Prefix="private/")) == "AccessDenied"


def test_iam_users_keys_obey_the_prefix_condition_too(admin):
    from cloudlab.iam import fresh_iam_user

    key = fresh_iam_user(boto3.client("iam"), f"lister-{uuid.uuid4().hex[:6]}", UPLOADER_POLICY)
    s3 = boto3.client("s3", config=V4, **key)
    assert code(lambda: s3.list_objects_v2(Bucket=BUCKET, Prefix="uploads/")) == "OK"
    assert code(lambda: s3.list_objects_v2(Bucket=BUCKET, Prefix="private/")) == "AccessDenied"


def test_anonymous_get_needs_a_public_bucket_policy():
    backend = cloudlab.use_backend()
    s3 = boto3.client("s3")
    site = f"test-site-{uuid.uuid4().hex[:6]}"
    s3.create_bucket(Bucket=site)
    s3.put_object(Bucket=site, Key="index.html", Body=b"<h1>hello</h1>", ContentType="text/html")
    page = f"{backend.endpoint}/{site}/index.html"
    status, body = fetch(page)
    assert (status, error_code(body)) == (403, "AccessDenied")
    public_read = json.dumps({"Version": "2012-10-17", "Statement": [{
        "Sid": "PublicRead", "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
        "Resource": f"arn:aws:s3:::{site}/*"}]})
    # a new bucket blocks public access, as on AWS since 2023: the policy is refused until it is turned off
    assert s3.get_public_access_block(Bucket=site)["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True, "RestrictPublicBuckets": True}
    with pytest.raises(ClientError) as blocked:
        s3.put_bucket_policy(Bucket=site, Policy=public_read)
    assert blocked.value.response["Error"]["Code"] == "AccessDenied"
    assert "BlockPublicPolicy" in blocked.value.response["Error"]["Message"]
    s3.put_public_access_block(Bucket=site, PublicAccessBlockConfiguration={
        "BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": False, "RestrictPublicBuckets": False})
    s3.put_bucket_policy(Bucket=site, Policy=public_read)
    assert fetch(page) == (200, b"<h1>hello</h1>")
    # the policy grants reading objects, nothing else
    status, body = fetch(f"{backend.endpoint}/{site}")
    assert (status, error_code(body)) == (403, "AccessDenied")
    status, body = fetch(f"{backend.endpoint}/{site}/defaced.html", "PUT", b"x")
    assert (status, error_code(body)) == (403, "AccessDenied")
    status, body = fetch(f"{backend.endpoint}/{site}/index.html", "DELETE")
    assert (status, error_code(body)) == (403, "AccessDenied")
    # signed requests are unaffected: boto3 (course key) and a presigned URL
    assert s3.get_object(Bucket=site, Key="index.html")["Body"].read() == b"<h1>hello</h1>"
    s3.put_public_access_block(Bucket=site, PublicAccessBlockConfiguration={
        "BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True, "RestrictPublicBuckets": True})
    status, body = fetch(page)  # RestrictPublicBuckets: the public policy no longer grants anyone outside
    assert (status, error_code(body)) == (403, "AccessDenied")
    s3.delete_public_access_block(Bucket=site)
    assert fetch(page) == (200, b"<h1>hello</h1>")
    assert fetch(s3.generate_presigned_url("get_object", Params={"Bucket": site, "Key": "index.html"}))[0] == 200


def test_course_credentials_stay_unrestricted(admin):
    assert code(lambda: admin.list_objects_v2(Bucket=BUCKET)) == "OK"
    assert code(lambda: admin.get_object(Bucket=BUCKET, Key="private/report.txt")) == "OK"


def test_assume_role_obeys_the_trust_policy_and_the_maximum_duration():
    iam, sts = boto3.client("iam"), boto3.client("sts")
    only_lambda = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                           "Principal": {"Service": "lambda.amazonaws.com"}}]}
    lambda_role = fresh_role(iam, f"fn-role-{uuid.uuid4().hex[:6]}", UPLOADER_POLICY, trust_policy=only_lambda)
    code_, message = "", ""
    try:
        sts.assume_role(RoleArn=lambda_role, RoleSessionName="not-lambda")
    except ClientError as error:
        code_, message = error.response["Error"]["Code"], error.response["Error"]["Message"]
    assert code_ == "AccessDenied" and "sts:AssumeRole" in message and lambda_role in message
    account_role = fresh_role(iam, f"acct-role-{uuid.uuid4().hex[:6]}", UPLOADER_POLICY)  # trusts the account
    assert code(lambda: sts.assume_role(RoleArn=account_role, RoleSessionName="ok", DurationSeconds=3600)) == "OK"
    assert code(lambda: sts.assume_role(RoleArn=account_role, RoleSessionName="long",
                                        DurationSeconds=7200)) == "ValidationError"  # MaxSessionDuration 3,600
    with pytest.raises(ValueError):
        assume_role_credentials(sts, account_role, "short", duration_seconds=60)


def test_a_user_needs_its_own_permission_and_the_trust_policy_to_assume_a_role():
    from cloudlab.iam import fresh_iam_user

    iam = boto3.client("iam")
    role = fresh_role(iam, f"acct-role-{uuid.uuid4().hex[:6]}", UPLOADER_POLICY)
    may_assume = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                          "Resource": role}]}
    allowed_user = fresh_iam_user(iam, f"assumer-{uuid.uuid4().hex[:6]}", may_assume)
    other_user = fresh_iam_user(iam, f"bystander-{uuid.uuid4().hex[:6]}", UPLOADER_POLICY)
    assert code(lambda: boto3.client("sts", **allowed_user).assume_role(RoleArn=role, RoleSessionName="ok")) == "OK"
    assert code(lambda: boto3.client("sts", **other_user).assume_role(RoleArn=role,
                                                                      RoleSessionName="no")) == "AccessDenied"


def test_course_key_with_the_dummy_token_of_lambda_environments_still_works(admin):
    """Lambda environments get test/test plus AWS_SESSION_TOKEN=test; their calls and URLs must work."""
    like_lambda = boto3.client("s3", config=V4, aws_access_key_id="test", aws_secret_access_key="test",
                               aws_session_token="test")
    assert like_lambda.get_object(Bucket=BUCKET, Key="private/report.txt")["Body"].read() == b"secret"
    url = like_lambda.generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": "private/report.txt"})
    assert fetch(url) == (200, b"secret")
