"""The backend switch, the safety guard and the embedded server (issue: course foundation)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, HTTPServer

import boto3
import botocore.httpsession
import pytest

import cloudlab
from cloudlab.backend import BackendError, guard
from cloudlab.backend.embedded import EmbeddedServer
from cloudlab.backend.serve import wait_until_served
from cloudlab.serverless import lambda_role


@pytest.fixture
def no_network(monkeypatch):
    """Record every HTTP send botocore attempts instead of sending it."""
    attempts = []

    def refuse(self, request):
        attempts.append(request.url)
        raise AssertionError(f"a request was sent to {request.url}")

    monkeypatch.setattr(botocore.httpsession.URLLib3Session, "send", refuse)
    return attempts


def test_embedded_backend_points_plain_boto3_at_the_emulator():
    backend = cloudlab.use_backend()
    assert backend.name == "embedded"
    assert os.environ["AWS_ENDPOINT_URL"] == backend.endpoint
    assert guard.is_loopback(backend.endpoint)
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="test-backend-plain")
    s3.put_object(Bucket="test-backend-plain", Key="a/b c.txt", Body=b"hello")
    assert s3.get_object(Bucket="test-backend-plain", Key="a/b c.txt")["Body"].read() == b"hello"
    assert "port" not in repr(backend) and backend.endpoint not in repr(backend)


def test_use_backend_twice_returns_the_same_backend():
    assert cloudlab.use_backend().endpoint == cloudlab.use_backend().endpoint


def test_subprocesses_reach_the_same_emulator():
    cloudlab.use_backend()
    boto3.client("s3").create_bucket(Bucket="test-backend-subprocess")
    code = "import boto3; print(sorted(b['Name'] for b in boto3.client('s3').list_buckets()['Buckets']))"
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "test-backend-subprocess" in output


def test_dummy_credentials_replace_real_ones(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAREALKEY")
    monkeypatch.setenv("AWS_PROFILE", "production")
    cloudlab.use_backend()
    assert os.environ["AWS_ACCESS_KEY_ID"] == "test"
    assert "AWS_PROFILE" not in os.environ


def test_guard_refuses_non_loopback_endpoints_and_sends_nothing(no_network):
    cloudlab.use_backend()
    client = boto3.client("s3", endpoint_url="https://s3.amazonaws.com")
    with pytest.raises(cloudlab.RealAWSBlocked, match="CLOUDLAB_ALLOW_REAL_AWS"):
        client.list_buckets()
    assert no_network == []


def test_guard_covers_sessions_made_independently(no_network):
    session = boto3.session.Session(region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y")
    with pytest.raises(cloudlab.RealAWSBlocked):
        session.client("sqs", endpoint_url="https://sqs.us-east-1.amazonaws.com").list_queues()
    assert no_network == []


def test_aws_backend_needs_the_explicit_opt_in(no_network, monkeypatch):
    monkeypatch.setenv("CLOUDLAB_BACKEND", "aws")
    with pytest.raises(BackendError, match="CLOUDLAB_ALLOW_REAL_AWS=yes"):
        cloudlab.use_backend()
    assert no_network == []


def test_aws_backend_with_opt_in_unsets_the_emulator_endpoint(monkeypatch):
    cloudlab.use_backend()
    monkeypatch.setenv("CLOUDLAB_ALLOW_REAL_AWS", "yes")
    backend = cloudlab.use_backend("aws")
    assert backend.name == "aws" and backend.endpoint is None
    assert "AWS_ENDPOINT_URL" not in os.environ
    guard.check_request(type("Request", (), {"url": "https://s3.amazonaws.com/"})())  # allowed now


def test_unknown_backend_name_is_a_clear_error():
    with pytest.raises(BackendError, match="not one of embedded, localstack, aws"):
        cloudlab.use_backend("minio")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_localstack_missing_says_how_to_start_it(monkeypatch):
    monkeypatch.setenv("LOCALSTACK_HOST", f"127.0.0.1:{_free_port()}")
    with pytest.raises(BackendError, match="docker run"):
        cloudlab.use_backend("localstack")


def test_localstack_on_another_host_is_refused(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://example.com:4566")
    with pytest.raises(BackendError, match="not on this machine"):
        cloudlab.use_backend("localstack")


def test_localstack_is_found_through_its_health_endpoint(monkeypatch):
    class Health(BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps({"services": {"s3": "running"}}).encode()
            self.send_response(200 if self.path == "/_localstack/health" else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("LOCALSTACK_HOST", f"127.0.0.1:{server.server_address[1]}")
        backend = cloudlab.use_backend("localstack")
        assert backend.name == "localstack"
        assert os.environ["AWS_ENDPOINT_URL"] == f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def test_clean_removes_only_the_notebooks_own_prefix():
    backend = cloudlab.use_backend()
    s3, sqs = boto3.client("s3"), boto3.client("sqs")
    for bucket in ("nbaa-one", "nbbb-two"):
        s3.create_bucket(Bucket=bucket)
        s3.put_object(Bucket=bucket, Key="k", Body=b"1")
    sqs.create_queue(QueueName="nbaa-queue")
    assert backend.clean("nbaa-") == {"buckets": 1, "queues": 1, "topics": 0, "tables": 0, "functions": 0,
                                        "instances": 0, "volumes": 0, "snapshots": 0, "file_systems": 0}
    names = {b["Name"] for b in s3.list_buckets()["Buckets"]}
    assert "nbbb-two" in names and "nbaa-one" not in names


def test_reset_forgets_everything():
    backend = cloudlab.use_backend()
    boto3.client("s3").create_bucket(Bucket="test-reset-me")
    backend.reset()
    assert boto3.client("s3").list_buckets()["Buckets"] == []


def test_served_emulator_is_shared_by_every_kernel(tmp_path):
    env = dict(os.environ, CLOUDLAB_STATE_DIR=str(tmp_path))
    env.pop("CLOUDLAB_ENDPOINT", None)
    env.pop("AWS_ENDPOINT_URL", None)
    server = subprocess.Popen([sys.executable, "-m", "cloudlab", "backend", "serve"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = wait_until_served(60, tmp_path / "serve.json", still_starting=lambda: server.poll() is None)
        attach = ("import boto3, cloudlab, sys; b = cloudlab.use_backend(); "
                  "boto3.client('s3').create_bucket(Bucket=sys.argv[1]); print(b.endpoint)")
        first = subprocess.run([sys.executable, "-c", attach, "kernel-one"], env=env, capture_output=True, text=True, check=True)
        second = subprocess.run([sys.executable, "-c", attach, "kernel-two"], env=env, capture_output=True, text=True, check=True)
        assert first.stdout.strip() == second.stdout.strip() == url
        names = {b["Name"] for b in boto3.client("s3", endpoint_url=url, region_name="us-east-1",
                                                 aws_access_key_id="t", aws_secret_access_key="t").list_buckets()["Buckets"]}
        assert {"kernel-one", "kernel-two"} <= names
        again = subprocess.run([sys.executable, "-m", "cloudlab", "backend", "serve"], env=env, capture_output=True, text=True)
        assert again.returncode == 1 and "already" in again.stderr
    finally:
        server.terminate()
        server.wait(timeout=10)
    assert not (tmp_path / "serve.json").exists()


def test_embedded_server_keeps_connections_alive():
    # Malformed requests, each checked for its error and for nothing stored: test_http_hardening.py.
    server = EmbeddedServer().start()
    try:
        s3 = boto3.client("s3", endpoint_url=server.url, region_name="us-east-1",
                          aws_access_key_id="t", aws_secret_access_key="t")
        s3.create_bucket(Bucket="test-keep-alive")
        assert s3.head_bucket(Bucket="test-keep-alive")["ResponseMetadata"]["HTTPStatusCode"] == 200
        # Two requests on one connection: the server must answer both (HTTP/1.1 keep-alive).
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            request = b"GET /_cloudlab/health HTTP/1.1\r\nHost: x\r\n\r\n"
            sock.sendall(request * 2)
            received = b""
            while received.count(b"HTTP/1.1 200") < 2:
                chunk = sock.recv(4096)
                assert chunk, "connection closed before the second answer"
                received += chunk
    finally:
        server.stop()


def test_embedded_server_serves_chunked_uploads_and_head_lengths():
    cloudlab.use_backend()
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="test-chunked")
    url = os.environ["AWS_ENDPOINT_URL"]
    # boto3 sends S3 uploads from file objects with checksums; both paths must store the bytes.
    payload = os.urandom(9 * 1024 * 1024)
    path = os.path.join(os.environ["CLOUDLAB_STATE_DIR"], "payload.bin")
    with open(path, "wb") as handle:
        handle.write(payload)
    s3.upload_file(path, "test-chunked", "big.bin")  # multipart above 8 MiB
    assert s3.head_object(Bucket="test-chunked", Key="big.bin")["ContentLength"] == len(payload)
    assert s3.get_object(Bucket="test-chunked", Key="big.bin")["Body"].read() == payload
    assert urllib.request.urlopen(url + "/_cloudlab/health").status == 200


@pytest.mark.parametrize("key", ["plain.txt", "a/b c.txt", "spaces and+plus", "unicodé/ключ.bin",
                                 "percent%2Fslash", "dir//double", "q?mark=1&x", "tilde~star*"])
def test_embedded_server_keeps_s3_keys_exactly(key):
    cloudlab.use_backend()
    s3 = boto3.client("s3")
    bucket = "test-odd-keys"
    if bucket not in {b["Name"] for b in s3.list_buckets()["Buckets"]}:
        s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key=key, Body=key.encode(), Metadata={"my_meta": "kept"})
    got = s3.get_object(Bucket=bucket, Key=key)
    assert got["Body"].read() == key.encode()
    assert got["Metadata"] == {"my_meta": "kept"}
    assert key in [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=key[:3])["Contents"]]
    s3.copy_object(Bucket=bucket, Key=key + ".copy", CopySource={"Bucket": bucket, "Key": key})
    assert s3.get_object(Bucket=bucket, Key=key + ".copy")["Body"].read() == key.encode()


def test_clean_empties_buckets_of_more_than_one_page():
    backend = cloudlab.use_backend()
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="nbcc-many")
    for number in range(1005):  # more than one page of list_object_versions
        s3.put_object(Bucket="nbcc-many", Key=f"k/{number:05d}", Body=b"")
    assert backend.clean("nbcc-")["buckets"] == 1
    assert "nbcc-many" not in {b["Name"] for b in s3.list_buckets()["Buckets"]}


def test_clean_deletes_the_prefixs_lambda_functions_and_their_event_source_mappings():
    from cloudlab.lambda_service import zip_code

    backend = cloudlab.use_backend()
    lam, sqs, iam = boto3.client("lambda"), boto3.client("sqs"), boto3.client("iam")
    role = lambda_role(iam, "clean-test-role")
    code = {"ZipFile": zip_code("def handler(event, context):\n    return 1\n")}
    for name in ("nbdd-fn", "nbee-fn"):
        lam.create_function(FunctionName=name, Runtime="python3.12", Role=role, Handler="app.handler", Code=code)
    assert lam.invoke(FunctionName="nbdd-fn", Payload=b"{}")["Payload"].read() == b"1"
    url = sqs.create_queue(QueueName="nbdd-q")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    lam.create_event_source_mapping(EventSourceArn=arn, FunctionName="nbdd-fn", BatchSize=1)
    assert backend.clean("nbdd-") == {"buckets": 0, "queues": 1, "topics": 0, "tables": 0, "functions": 1,
                                      "instances": 0, "volumes": 0, "snapshots": 0, "file_systems": 0}
    names = {fn["FunctionName"] for fn in lam.list_functions()["Functions"]}
    assert "nbdd-fn" not in names and "nbee-fn" in names
    assert lam.list_event_source_mappings(EventSourceArn=arn)["EventSourceMappings"] == []
    backend.clean("nbee-")
