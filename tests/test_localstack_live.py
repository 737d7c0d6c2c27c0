"""Against a real LocalStack (make test-localstack starts one and sets CLOUDLAB_BACKEND=localstack
and LOCALSTACK_HOST); skipped otherwise. The conformance suite runs there too, from the make target.
"""

from __future__ import annotations

import json
import os

import boto3
import pytest

import cloudlab
from cloudlab.lambda_service import zip_code

pytestmark = [pytest.mark.localstack,
              pytest.mark.skipif(os.environ.get("CLOUDLAB_BACKEND") != "localstack" or not os.environ.get("LOCALSTACK_HOST"),
                                 reason="needs a real LocalStack: make test-localstack")]
LOCALSTACK_HOST = os.environ.get("LOCALSTACK_HOST", "")

HANDLER = """
import boto3

def handler(event, context):
    boto3.client("s3").put_object(Bucket=event["bucket"], Key="from-lambda.txt", Body=b"written by a handler")
    boto3.client("dynamodb").put_item(TableName=event["table"], Item={"pk": {"S": "from-lambda"}})
    return {"ok": True}
"""


@pytest.fixture
def localstack(monkeypatch):
    monkeypatch.setenv("LOCALSTACK_HOST", LOCALSTACK_HOST)
    backend = cloudlab.use_backend("localstack")
    yield backend
    cloudlab.use_backend("embedded")


def test_localstack_answers_and_is_the_pinned_release(localstack):
    health = cloudlab.backend.localstack_health(localstack.endpoint)
    assert health["version"] == "4.14.0"
    assert health["services"]["s3"] in ("available", "running")


def test_a_handler_writes_s3_to_localstack_and_dynamodb_to_the_embedded_emulator(localstack):
    s3, dynamodb = boto3.client("s3"), boto3.client("dynamodb")
    s3.create_bucket(Bucket="ls-live-target")
    dynamodb.create_table(TableName="ls-live-table", BillingMode="PAY_PER_REQUEST",
                          AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                          KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}])
    trust = json.dumps({"Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]})
    role = boto3.client("iam").create_role(RoleName="ls-live-role", AssumeRolePolicyDocument=trust)["Role"]["Arn"]
    lam = boto3.client("lambda")
    lam.create_function(FunctionName="ls-live-writer", Runtime="python3.12", Handler="app.handler", Role=role,
                        Code={"ZipFile": zip_code(HANDLER)})
    try:
        answer = lam.invoke(FunctionName="ls-live-writer", Payload=json.dumps({"bucket": "ls-live-target", "table": "ls-live-table"}))
        assert "FunctionError" not in answer, answer["Payload"].read()
        # S3 is LocalStack's: read it with a client that can only reach LocalStack
        only_localstack = boto3.client("s3", endpoint_url=localstack.endpoint)
        assert only_localstack.get_object(Bucket="ls-live-target", Key="from-lambda.txt")["Body"].read() == b"written by a handler"
        assert dynamodb.get_item(TableName="ls-live-table", Key={"pk": {"S": "from-lambda"}}).get("Item")
    finally:
        lam.delete_function(FunctionName="ls-live-writer")
        localstack.clean("ls-live-")


def test_localstack_client_session_reaches_the_same_localstack(localstack):
    from localstack_client.session import Session

    boto3.client("s3").create_bucket(Bucket="ls-live-session")
    try:
        names = [b["Name"] for b in Session().client("s3").list_buckets()["Buckets"]]
        assert "ls-live-session" in names
    finally:
        localstack.clean("ls-live-")
