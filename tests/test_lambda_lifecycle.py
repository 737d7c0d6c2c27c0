"""State and lifecycle of the local Lambda service (issue 14): endpoints after a backend switch,
environments and folders that must not leak, failures that must not look like success.

No timing assertions: waits poll for an outcome with a generous limit.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import boto3
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

import cloudlab
from cloudlab import tempdirs
from cloudlab.backend.embedded import EmbeddedServer
from cloudlab.lambda_service import environment, get_service, zip_code
from cloudlab.storage import SharedFolder

NO_RETRIES = Config(retries={"mode": "standard", "total_max_attempts": 1}, read_timeout=30)
TRUST = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                             "Principal": {"Service": "lambda.amazonaws.com"}}]})
HANDLER = """
import os
def handler(event, context):
    if event.get("fail"):
        raise RuntimeError("asked to fail")
    return os.environ["AWS_ENDPOINT_URL"]
"""


def _client(service: str, url: str):
    return boto3.client(service, endpoint_url=url, region_name="us-east-1", aws_access_key_id="test",
                        aws_secret_access_key="test", config=NO_RETRIES)


def _role(url: str) -> str:
    iam = _client("iam", url)
    try:
        return iam.get_role(RoleName="lifecycle-role")["Role"]["Arn"]
    except iam.exceptions.NoSuchEntityException:
        return iam.create_role(RoleName="lifecycle-role", AssumeRolePolicyDocument=TRUST)["Role"]["Arn"]


def _eventually(check, limit=30.0, what="condition"):
    deadline = time.monotonic() + limit
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {limit} s")
        time.sleep(0.05)


def _function(url: str, source: str = HANDLER) -> str:
    name = f"life-{uuid.uuid4().hex[:10]}"
    _client("lambda", url).create_function(FunctionName=name, Runtime="python3.12", Role=_role(url),
                                           Handler="app.handler", Code={"ZipFile": zip_code(textwrap.dedent(source))})
    return name


# -- endpoints follow a backend switch ----------------------------------------------------------------
def test_after_a_switch_warm_environments_and_dlq_deliveries_use_the_new_endpoint():
    first = EmbeddedServer().start()
    second = None
    try:
        lam = _client("lambda", first.url)
        sqs = _client("sqs", first.url)
        name = _function(first.url)
        dlq = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        lam.update_function_configuration(FunctionName=name, DeadLetterConfig={"TargetArn": dlq_arn})
        lam.put_function_event_invoke_config(FunctionName=name, MaximumRetryAttempts=0)
        answer = lam.invoke(FunctionName=name, Payload=b"{}")
        assert json.loads(answer["Payload"].read()) == first.url  # a warm environment now waits, on the first
        lam.invoke(FunctionName=name, InvocationType="Event", Payload=json.dumps({"fail": 1}).encode())
        _eventually(lambda: sqs.receive_message(QueueUrl=dlq, WaitTimeSeconds=1).get("Messages"), what="first DLQ message")

        second = EmbeddedServer().start()
        first.stop()  # the switch: the service now serves the second server
        lam, sqs = _client("lambda", second.url), _client("sqs", second.url)
        answer = lam.invoke(FunctionName=name, Payload=b"{}")
        assert json.loads(answer["Payload"].read()) == second.url, "a warm environment kept the old endpoint"
        assert get_service().client("sqs").meta.endpoint_url == second.url, "the service's SQS client kept the old endpoint"
        lam.invoke(FunctionName=name, InvocationType="Event", Payload=json.dumps({"fail": 2}).encode())
        message = _eventually(lambda: sqs.receive_message(QueueUrl=dlq, WaitTimeSeconds=1).get("Messages"),
                              what="DLQ delivery after the switch")
        assert json.loads(message[0]["Body"]) == {"fail": 2}
        lam.delete_function(FunctionName=name)
    finally:
        if second is not None:
            second.stop()
        first.stop()


# -- environments that must not leak --------------------------------------------------------------------
@pytest.fixture
def lam():
    backend = cloudlab.use_backend()
    return _client("lambda", backend.endpoint), backend.endpoint


def _environment_folders() -> set[str]:
    folder = get_service().root / "environments"
    return {p.name for p in folder.iterdir()} if folder.is_dir() else set()


def test_an_environment_whose_start_fails_leaves_no_folder_behind(lam, monkeypatch):
    client, url = lam
    name = _function(url)
    before = _environment_folders()

    def no_process(*args, **kwargs):
        raise OSError("cannot start the runtime")

    monkeypatch.setattr(environment.subprocess, "Popen", no_process)
    with pytest.raises(OSError):
        get_service().invoke(name, b"{}")
    assert _environment_folders() == before
    assert get_service().in_flight(name) == 0
    client.delete_function(FunctionName=name)


def test_prewarm_that_fails_part_way_stops_the_environments_it_had_started(lam, monkeypatch):
    client, url = lam
    name = _function(url)
    before = _environment_folders()
    started = []
    real_start = environment.ExecutionEnvironment.start

    def second_fails(self):
        if started:
            raise OSError("cannot start the runtime")
        real_start(self)
        started.append(self)

    monkeypatch.setattr(environment.ExecutionEnvironment, "start", second_fails)
    with pytest.raises(OSError):
        get_service().prewarm(name, 3)
    assert started and started[0].process.poll() is not None, "the environment started first is still running"
    assert _environment_folders() == before
    client.delete_function(FunctionName=name)


# -- failures are reported as failures --------------------------------------------------------------------
def test_an_invoke_whose_attempts_all_hit_dead_environments_is_a_service_error(lam, monkeypatch):
    client, url = lam
    name = _function(url)

    def died_before_the_event(self, payload, request_id=None, client_context=None, invoked_arn=None):
        return self._gone(request_id, retry=True)

    monkeypatch.setattr(environment.ExecutionEnvironment, "invoke", died_before_the_event)
    with pytest.raises(ClientError) as failure:
        client.invoke(FunctionName=name, Payload=b"{}")
    assert failure.value.response["Error"]["Code"] == "ServiceException"
    assert failure.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    monkeypatch.undo()
    client.delete_function(FunctionName=name)


def _signed(url: str, method: str, path: str, body: bytes):
    request = AWSRequest(method=method, url=url + path, data=body, headers={"Content-Type": "application/json"})
    SigV4Auth(Credentials("test", "test"), "lambda", "us-east-1").add_auth(request)
    try:
        with urllib.request.urlopen(urllib.request.Request(request.url, data=request.body, method=method,
                                                           headers=dict(request.headers.items())), timeout=30) as answer:
            return answer.status, dict(answer.headers), answer.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


@pytest.mark.parametrize("method, path", [
    ("POST", "/2015-03-31/event-source-mappings/"),          # answered by the local service
    ("PUT", "/2017-10-31/functions/anything/concurrency"),   # handed on to moto
    ("POST", "/2015-03-31/functions"),                       # looked at, then moto's
])
def test_a_body_that_is_not_json_is_a_400_invalid_request_content(lam, method, path):
    _, url = lam
    status, headers, body = _signed(url, method, path, b"{not json")
    assert status == 400, body
    assert headers.get("X-Amzn-ErrorType") == "InvalidRequestContentException"
    assert "Could not parse request body into json" in json.loads(body)["message"]


# -- temporary folders: removed at exit, and after a killed process at the next start ------------------------
def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_stale_folders_of_dead_owners_are_removed_and_live_ones_kept(tmp_path):
    dead, alive = tmp_path / f"cloudlab-lambda-{_dead_pid()}-abc", tmp_path / f"cloudlab-efs-{os.getpid()}-abc"
    other = tmp_path / "cloudlab-lambda-notapid"
    for folder in (dead, alive, other):
        (folder / "sub").mkdir(parents=True)
    assert tempdirs.remove_stale(tmp_path) == [dead]
    assert not dead.exists() and alive.exists() and other.exists()


def test_a_shared_folder_is_removed_with_its_object():
    folder = SharedFolder()
    folder.save("a.txt", b"x")
    root = folder.root
    del folder
    gc.collect()
    assert not root.exists()


KILLED = """
import os, signal
from cloudlab.storage import SharedFolder, Instance
from cloudlab.lambda_service import LocalLambdaService
folders = SharedFolder(), LocalLambdaService(), Instance("web")
os.kill(os.getpid(), signal.SIGKILL)
"""
EXITS = """
from cloudlab.storage import SharedFolder
from cloudlab.lambda_service import LocalLambdaService
kept = SharedFolder(), LocalLambdaService()
"""


def test_a_killed_process_leaves_folders_that_the_next_start_removes_and_exit_removes_its_own(tmp_path):
    environ = dict(os.environ, TMPDIR=str(tmp_path))
    killed = subprocess.run([sys.executable, "-c", KILLED], env=environ, timeout=120)
    assert killed.returncode == -9
    left = sorted(p.name.split("-")[1] for p in tmp_path.iterdir())
    assert left == ["efs", "instance", "lambda"], left
    subprocess.run([sys.executable, "-c", EXITS], env=environ, timeout=120, check=True)
    assert list(tmp_path.iterdir()) == [], "folders left after a clean exit following a killed process"
