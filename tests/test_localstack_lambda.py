"""With CLOUDLAB_BACKEND=localstack, Lambda functions still run, in cloudlab's local service.

LocalStack (like moto) needs Docker to run Lambda code. Here a stock moto server stands in
for LocalStack (same position: S3 and SQS, no way to run handlers); the test proves the
function is served locally while its handler writes to the "LocalStack" S3.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request

import boto3
import pytest

import cloudlab
from cloudlab import backend as backend_module
from cloudlab.lambda_service import zip_code

STAND_IN = """
import logging, signal, sys
from moto.server import ThreadedMotoServer
logging.getLogger("werkzeug").setLevel(logging.ERROR)
server = ThreadedMotoServer(ip_address="127.0.0.1", port=int(sys.argv[1]), verbose=False)
server.start()
signal.pause()
"""

HANDLER = """
import boto3

def handler(event, context):
    boto3.client("s3").put_object(Bucket=event["bucket"], Key="from-lambda.txt", Body=b"written by a handler")
    return {"ok": True}
"""


@pytest.fixture
def localstack_stand_in(monkeypatch):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen([sys.executable, "-c", STAND_IN, str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            urllib.request.urlopen(url + "/moto-api/", timeout=0.5)
            break
        except Exception:
            time.sleep(0.05)
    monkeypatch.setenv("LOCALSTACK_HOST", f"127.0.0.1:{port}")
    monkeypatch.setattr(backend_module, "localstack_health", lambda endpoint: {"services": {"s3": "running"}})
    yield url
    process.terminate()
    process.wait(timeout=10)


def test_functions_run_locally_against_localstack_services(localstack_stand_in):
    backend = cloudlab.use_backend("localstack")
    assert os.environ["AWS_ENDPOINT_URL"] == localstack_stand_in
    assert os.environ["AWS_ENDPOINT_URL_LAMBDA"] != localstack_stand_in
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="ls-lambda-target")
    trust = '{"Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}'
    role = boto3.client("iam").create_role(RoleName="ls-writer-role", AssumeRolePolicyDocument=trust)["Role"]["Arn"]
    lam = boto3.client("lambda")
    lam.create_function(FunctionName="ls-writer", Runtime="python3.11", Handler="app.handler",
                        Role=role, Code={"ZipFile": zip_code({"app.py": HANDLER})})
    result = lam.invoke(FunctionName="ls-writer", Payload=b'{"bucket": "ls-lambda-target"}')
    assert "FunctionError" not in result, result["Payload"].read()
    body = s3.get_object(Bucket="ls-lambda-target", Key="from-lambda.txt")["Body"].read()
    assert body == b"written by a handler"
    lam.delete_function(FunctionName="ls-writer")
    cloudlab.use_backend("embedded")
    assert "AWS_ENDPOINT_URL_LAMBDA" not in os.environ and "AWS_ENDPOINT_URL_IAM" not in os.environ
    assert backend.name == "localstack"
