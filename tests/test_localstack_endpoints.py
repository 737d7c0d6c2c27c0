"""Under CLOUDLAB_BACKEND=localstack: where each service's requests go, in the kernel and in Lambda.

No LocalStack is needed: its health check is stubbed, and every call here goes to the services
the embedded emulator serves under localstack (Lambda, IAM, DynamoDB). tests/test_localstack_live.py
runs the same path against a real LocalStack (make test-localstack).
"""

from __future__ import annotations

import json
import os

import boto3
import pytest

import cloudlab
from cloudlab import backend as backend_module
from cloudlab.lambda_service import zip_code

HANDLER = """
import os

def handler(event, context):
    return {name: value for name, value in os.environ.items() if name.startswith("AWS_ENDPOINT_URL")}
"""


@pytest.fixture
def fake_localstack(monkeypatch):
    monkeypatch.setenv("LOCALSTACK_HOST", "127.0.0.1:4510")
    monkeypatch.setattr(backend_module, "localstack_health", lambda endpoint: {"services": {"s3": "running"}})
    yield "http://127.0.0.1:4510"
    cloudlab.use_backend("embedded")


def test_localstack_endpoint_comes_from_localstack_host_through_localstack_client(monkeypatch):
    monkeypatch.setenv("LOCALSTACK_HOST", "127.0.0.1:4599")
    assert backend_module.localstack_endpoint() == "http://127.0.0.1:4599"
    monkeypatch.setenv("LOCALSTACK_HOST", "localhost")
    assert backend_module.localstack_endpoint() == "http://localhost:4566"
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:4600")  # AWS_ENDPOINT_URL wins, as in localstack_client
    assert backend_module.localstack_endpoint() == "http://127.0.0.1:4600"


def test_a_malformed_localstack_host_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("LOCALSTACK_HOST", "127.0.0.1:port")
    with pytest.raises(backend_module.BackendError, match="LOCALSTACK_HOST='127.0.0.1:port'"):
        backend_module.localstack_endpoint()


def test_dynamodb_goes_to_the_embedded_emulator_in_the_kernel_and_in_lambda(fake_localstack):
    backend = cloudlab.use_backend("localstack")
    assert os.environ["AWS_ENDPOINT_URL"] == fake_localstack
    for service in ("LAMBDA", "IAM", "DYNAMODB", "LOGS"):
        assert os.environ[f"AWS_ENDPOINT_URL_{service}"] == backend.lambda_endpoint != fake_localstack
    # the kernel's DynamoDB is the embedded one (no LocalStack answers at the fake address)
    boto3.client("dynamodb").list_tables()

    trust = json.dumps({"Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]})
    role = boto3.client("iam").create_role(RoleName="ls-endpoints-role", AssumeRolePolicyDocument=trust)["Role"]["Arn"]
    lam = boto3.client("lambda")
    lam.create_function(FunctionName="ls-endpoints", Runtime="python3.12", Handler="app.handler", Role=role,
                        Code={"ZipFile": zip_code(HANDLER)})
    try:
        seen = json.loads(lam.invoke(FunctionName="ls-endpoints", Payload=b"{}")["Payload"].read())
    finally:
        lam.delete_function(FunctionName="ls-endpoints")
    assert seen["AWS_ENDPOINT_URL"] == fake_localstack                # S3, SQS, SNS: LocalStack
    assert seen["AWS_ENDPOINT_URL_DYNAMODB"] == backend.lambda_endpoint  # before: missing, so LocalStack


def test_the_embedded_backend_sets_no_per_service_endpoints():
    cloudlab.use_backend("embedded")
    assert not [name for name in os.environ if name.startswith("AWS_ENDPOINT_URL_")]
