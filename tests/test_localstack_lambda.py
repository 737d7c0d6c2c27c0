"""With CLOUDLAB_BACKEND=localstack, Lambda functions still run, in cloudlab's local service.

LocalStack (like moto) needs Docker to run Lambda code. Here a stock moto server stands in
for LocalStack (same position: S3 and SQS, no way to run handlers); the test proves the
function is served locally while its handler writes to the "LocalStack" S3.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
import uuid

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


STAND_IN_START_SECONDS = 60  # importing moto takes a second or two; far longer on a busy machine


@pytest.fixture
def localstack_stand_in(monkeypatch, tmp_path):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = tmp_path / "stand-in.log"
    with open(log, "wb") as output:
        process = subprocess.Popen([sys.executable, "-c", STAND_IN, str(port)], stdout=output, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STAND_IN_START_SECONDS
        while True:
            if process.poll() is not None:
                pytest.fail(f"the LocalStack stand-in exited with code {process.returncode} before serving:\n"
                            + log.read_text(errors="replace")[-2000:])
            try:
                urllib.request.urlopen(url + "/moto-api/", timeout=1).close()
                break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the LocalStack stand-in did not answer at {url} within {STAND_IN_START_SECONDS} s:\n"
                            + log.read_text(errors="replace")[-2000:])
            time.sleep(0.05)
        monkeypatch.setenv("LOCALSTACK_HOST", f"127.0.0.1:{port}")
        monkeypatch.setattr(backend_module, "localstack_health", lambda endpoint: {"services": {"s3": "running"}})
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_functions_run_locally_against_localstack_services(localstack_stand_in):
    backend = cloudlab.use_backend("localstack")
    bucket, function = f"ls-lambda-{uuid.uuid4().hex[:8]}", f"ls-writer-{uuid.uuid4().hex[:8]}"
    assert os.environ["AWS_ENDPOINT_URL"] == localstack_stand_in
    assert os.environ["AWS_ENDPOINT_URL_LAMBDA"] != localstack_stand_in
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=bucket)
    trust = '{"Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}'
    role = boto3.client("iam").create_role(RoleName=function, AssumeRolePolicyDocument=trust)["Role"]["Arn"]
    lam = boto3.client("lambda")
    lam.create_function(FunctionName=function, Runtime="python3.11", Handler="app.handler",
                        Role=role, Code={"ZipFile": zip_code({"app.py": HANDLER})})
    result = lam.invoke(FunctionName=function, Payload=json.dumps({"bucket": bucket}).encode())
    assert "FunctionError" not in result, result["Payload"].read()

    # Asked directly, each server shows what it holds: the handler's write is in the
    # "LocalStack" S3, and the function is not in its Lambda but in the local service's.
    def at(url: str, service: str):
        return boto3.client(service, endpoint_url=url)

    body = at(localstack_stand_in, "s3").get_object(Bucket=bucket, Key="from-lambda.txt")["Body"].read()
    assert body == b"written by a handler"
    assert at(localstack_stand_in, "lambda").list_functions()["Functions"] == []
    assert function in [f["FunctionName"] for f in at(backend.lambda_endpoint, "lambda").list_functions()["Functions"]]
    assert bucket not in [b["Name"] for b in at(backend.lambda_endpoint, "s3").list_buckets()["Buckets"]]
    lam.delete_function(FunctionName=function)

    # Back on the embedded backend, plain boto3 reaches the emulator, no longer the stand-in.
    cloudlab.use_backend("embedded")
    assert "AWS_ENDPOINT_URL_LAMBDA" not in os.environ and "AWS_ENDPOINT_URL_IAM" not in os.environ
    assert bucket not in [b["Name"] for b in boto3.client("s3").list_buckets()["Buckets"]]
    assert bucket in [b["Name"] for b in at(localstack_stand_in, "s3").list_buckets()["Buckets"]]
