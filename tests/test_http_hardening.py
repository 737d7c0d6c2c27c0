"""The HTTP layer under bad clients: every malformed request gets an error, nothing is stored.

Each case runs against all three servers built on ``cloudlab.backend.http11``: the embedded
emulator (an S3 PUT), the API Gateway front (a POST to a Lambda proxy route) and one Lambda
Runtime API endpoint (a function's ``/response``). Raw sockets, because boto3 never sends
these requests.
"""

from __future__ import annotations

import io
import json
import re
import socket
import subprocess
import threading
import time
import uuid

import boto3
import pytest

from cloudlab.backend.embedded import EmbeddedServer
from cloudlab.backend.http11 import HttpLimits
from cloudlab.lambda_service.api_gateway import ApiGatewayFront
from cloudlab.lambda_service.runtime_api import RuntimeApiEndpoint, RuntimeGone

BODY_CAP = 64 * 1024  # small body limit for these tests, so "too large" is cheap to send


def eventually(check, limit=15.0, every=0.02, message="condition not met in time"):
    deadline = time.monotonic() + limit
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(message)
        time.sleep(every)


class EmbeddedTarget:
    """The embedded emulator; a request 'stores' an S3 object."""

    name = "embedded"

    def __init__(self, limits: HttpLimits) -> None:
        self.server = EmbeddedServer(limits=limits).start()
        self.port = self.server.port
        self.bucket = f"hardening-{uuid.uuid4().hex[:8]}"
        self.s3 = boto3.client("s3", endpoint_url=self.server.url, region_name="us-east-1",
                               aws_access_key_id="t", aws_secret_access_key="t")
        self.s3.create_bucket(Bucket=self.bucket)
        self.method = "PUT"

    def path_for(self, body: str) -> str:
        return f"/{self.bucket}/{body}"

    def stored(self) -> list:
        """Keys of the objects stored (a request's key is its body's text)."""
        return [o["Key"] for o in self.s3.list_objects_v2(Bucket=self.bucket).get("Contents", [])]

    def check_error(self, status: int, headers: dict, body: bytes, code: str) -> None:
        assert status == 400, (status, body)
        assert headers.get("content-type") == "application/xml"
        assert re.search(rb"<Error><Code>" + code.encode() + rb"</Code><Message>[^<]+</Message>", body), body

    def stop(self) -> None:
        self.server.stop()


class _RecordingLambda:
    """Stands in for the Lambda client behind the API Gateway front: records every invoke."""

    def __init__(self) -> None:
        self.events = []

    def invoke(self, FunctionName, Payload):
        self.events.append(json.loads(Payload))
        return {"Payload": io.BytesIO(json.dumps({"statusCode": 201, "body": "stored"}).encode())}


class ApiGatewayTarget:
    """The API Gateway front; a request 'stores' a Lambda invoke."""

    name = "api-gateway"

    def __init__(self, limits: HttpLimits) -> None:
        self.lam = _RecordingLambda()
        self.front = ApiGatewayFront({"ANY /items": "items-fn"}, lambda_client=self.lam, limits=limits).start()
        self.port = self.front.port
        self.method = "POST"

    def path_for(self, body: str) -> str:
        return "/prod/items"

    def stored(self) -> list:
        """Bodies of the requests that reached the function."""
        return [event["body"] for event in self.lam.events]

    def check_error(self, status: int, headers: dict, body: bytes, code: str) -> None:
        assert status == (413 if code == "EntityTooLarge" else 400), (status, body)
        assert headers.get("x-amzn-errortype")
        assert set(json.loads(body)) == {"message"}

    def stop(self) -> None:
        self.front.stop()


class _LivingProcess:
    """A runtime process that never exits, for driving a Runtime API endpoint without one."""

    def poll(self):
        return None

    def wait(self, timeout=None):
        threading.Event().wait(timeout)
        raise subprocess.TimeoutExpired("runtime", timeout)


class RuntimeApiTarget:
    """One Lambda Runtime API endpoint, read by a thread as an invoke would; a request 'stores'
    the function's response."""

    name = "runtime-api"

    def __init__(self, limits: HttpLimits) -> None:
        self.endpoint = RuntimeApiEndpoint(limits=limits)
        self.port = int(self.endpoint.address.rpartition(":")[2])
        self.method = "POST"
        self.delivered = []
        self._stopping = False
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        process = _LivingProcess()
        while not self._stopping:
            try:
                request = self.endpoint.read_request(time.monotonic() + 0.2, process)
            except (TimeoutError, RuntimeGone, OSError):
                continue
            self.delivered.append(request.body)
            self.endpoint.respond(202, b'{"status":"OK"}')

    def path_for(self, body: str) -> str:
        return "/2018-06-01/runtime/invocation/req-1/response"

    def stored(self) -> list:
        """Bodies of the requests the invoke received."""
        return [body.decode() for body in self.delivered]

    def check_error(self, status: int, headers: dict, body: bytes, code: str) -> None:
        expected = {"EntityTooLarge": (413, "RequestEntityTooLarge")}.get(code, (400, code))
        assert (status, json.loads(body)["errorType"]) == expected, (status, body)
        assert json.loads(body)["errorMessage"]

    def stop(self) -> None:
        self._stopping = True
        self._reader.join(timeout=5)
        self.endpoint.close()


TARGETS = {"embedded": EmbeddedTarget, "api-gateway": ApiGatewayTarget, "runtime-api": RuntimeApiTarget}


@pytest.fixture(params=list(TARGETS))
def target(request):
    made = TARGETS[request.param](HttpLimits(max_body_bytes=BODY_CAP))
    yield made
    made.stop()


def exchange(port: int, data: bytes, half_close: bool = True, timeout: float = 10.0) -> bytes:
    """Send raw bytes, optionally half-close, and read until the server closes its side."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(data)
            if half_close:
                sock.shutdown(socket.SHUT_WR)
        except OSError:  # the server may answer and close before everything is sent
            pass
        reply = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            except socket.timeout:
                raise AssertionError(f"no complete answer within {timeout} s; got {reply[:200]!r}")
            if not chunk:
                break
            reply += chunk
    return reply


def parse(reply: bytes) -> tuple[int, dict, bytes]:
    assert reply.startswith(b"HTTP/1.1 "), f"no HTTP answer: {reply[:200]!r}"
    head, _, body = reply.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body[:int(headers.get("content-length", len(body)))]


# Signed with the course's own key (its signatures are not checked): unsigned S3 requests are
# anonymous, which only a bucket policy may allow.
SIGNED = "Authorization: AWS4-HMAC-SHA256 Credential=test/20261130/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0"


def head(target, *lines: str, body: str = "bad") -> bytes:
    """A request head for ``target``; ``body`` names what it would store (the S3 key)."""
    return "\r\n".join([f"{target.method} {target.path_for(body)} HTTP/1.1", "Host: 127.0.0.1", SIGNED, *lines,
                         "", ""]).encode("latin-1")


# Each case: (id, raw request for a target, error code expected).
MALFORMED = [
    ("content-length-abc", lambda t: head(t, "Content-Length: abc") + b"0123456789", "BadRequest"),
    ("content-length-1e14", lambda t: head(t, "Content-Length: 1e14") + b"0123456789", "BadRequest"),
    ("content-length-10-to-the-14", lambda t: head(t, "Content-Length: 100000000000000") + b"0123456789",
     "EntityTooLarge"),
    ("content-length-negative", lambda t: head(t, "Content-Length: -1") + b"0123456789", "BadRequest"),
    ("chunk-size-zz", lambda t: head(t, "Transfer-Encoding: chunked") + b"zz\r\n0123456789\r\n0\r\n\r\n", "BadRequest"),
    ("header-line-over-64-KiB", lambda t: head(t, "X-Big: " + "a" * 70_000, "Content-Length: 2") + b"ok",
     "RequestHeaderSectionTooLarge"),
    ("line-without-colon", lambda t: head(t, "this line has no colon", "Content-Length: 2") + b"ok", "BadRequest"),
    ("20000-headers", lambda t: head(t, *[f"X-H{n}: v" for n in range(20_000)], "Content-Length: 2") + b"ok",
     "RequestHeaderSectionTooLarge"),
    ("101-small-headers", lambda t: head(t, *[f"X-{n}: v" for n in range(101)], "Content-Length: 2") + b"ok",
     "RequestHeaderSectionTooLarge"),
    ("truncated-content-length", lambda t: head(t, "Content-Length: 100") + b"0123456789", "IncompleteBody"),
    ("chunked-without-terminator", lambda t: head(t, "Transfer-Encoding: chunked") + b"a\r\n0123456789\r\n",
     "IncompleteBody"),
    ("body-over-the-limit", lambda t: head(t, f"Content-Length: {BODY_CAP + 1}") + b"x" * (BODY_CAP + 1),
     "EntityTooLarge"),
    ("chunked-body-over-the-limit", lambda t: head(t, "Transfer-Encoding: chunked")
     + (b"%x\r\n" % 4096 + b"x" * 4096 + b"\r\n") * (BODY_CAP // 4096 + 1) + b"0\r\n\r\n", "EntityTooLarge"),
    ("not-http-at-all", lambda t: b"NOT HTTP AT ALL\r\n\r\n", "BadRequest"),
]


@pytest.mark.parametrize("case", [case[1:] for case in MALFORMED], ids=[case[0] for case in MALFORMED])
def test_malformed_requests_get_an_error_and_nothing_is_stored(target, case, capfd):
    build, code = case
    status, headers, body = parse(exchange(target.port, build(target)))
    target.check_error(status, headers, body, code)
    assert headers.get("connection") == "close"
    # The server still serves, and only the good request was stored.
    good = head(target, "Content-Length: 4", "Connection: close", body="good") + b"good"
    assert parse(exchange(target.port, good))[0] in (200, 201, 202)
    eventually(lambda: target.stored() == ["good"], message=f"stored: {target.stored()}")
    assert "Traceback" not in capfd.readouterr().err


def test_a_too_large_body_is_refused_before_100_continue(target):
    request = head(target, f"Content-Length: {BODY_CAP + 1}", "Expect: 100-continue")
    reply = exchange(target.port, request)  # the body is never sent: the client waits for 100
    assert not reply.startswith(b"HTTP/1.1 100"), reply[:100]
    target.check_error(*parse(reply), "EntityTooLarge")
    assert target.stored() == []


def test_good_requests_keep_alive_with_100_continue_and_chunked_bodies(target):
    """What clients rely on: pipelined keep-alive requests, 100-continue, chunked bodies."""
    with socket.create_connection(("127.0.0.1", target.port), timeout=10) as sock:
        sock.sendall(head(target, "Content-Length: 5", "Expect: 100-continue", body="first"))
        assert sock.recv(100).startswith(b"HTTP/1.1 100 Continue\r\n")
        sock.sendall(b"first")
        sock.sendall(head(target, "Transfer-Encoding: chunked", body="second") + b"3\r\nsec\r\n3\r\nond\r\n0\r\n\r\n")
        received = b""
        while received.count(b"HTTP/1.1 2") < 2:
            chunk = sock.recv(4096)
            assert chunk, f"connection closed before the second answer: {received!r}"
            received += chunk
    assert target.stored() == ["first", "second"]
    if target.name == "embedded":
        assert target.s3.get_object(Bucket=target.bucket, Key="second")["Body"].read() == b"second"


# -- timeouts, the connection cap, stop() ---------------------------------------------------------
SERVERS = {"embedded": EmbeddedTarget, "api-gateway": ApiGatewayTarget}


@pytest.mark.parametrize("kind", list(SERVERS))
def test_half_sent_and_idle_connections_are_reclaimed(kind):
    threads_before = threading.active_count()
    made = SERVERS[kind](HttpLimits(read_timeout=0.5, idle_timeout=0.5))
    sockets = []
    try:
        for number in range(80):
            sock = socket.create_connection(("127.0.0.1", made.port), timeout=15)
            if number < 60:  # half-sent: a request line and one header, then silence
                sock.sendall(f"PUT {made.path_for('half')} HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode())
            sockets.append(sock)
        server = made.server._server if kind == "embedded" else made.front._server
        eventually(lambda: server.open_connections == 0, message="connections still open after their timeouts")
        eventually(lambda: threading.active_count() <= threads_before + 2,
                   message=f"{threading.active_count()} threads, {threads_before} before")
        status, headers, body = parse(_read_to_end(sockets[0]))
        made.check_error(status, headers, body, "RequestTimeout")
        assert _read_to_end(sockets[-1]) == b""  # an idle connection is simply closed
        assert made.stored() == []
    finally:
        for sock in sockets:
            sock.close()
        made.stop()


def _read_to_end(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


@pytest.mark.parametrize("kind", list(SERVERS))
def test_connections_over_the_cap_are_refused_with_503(kind):
    made = SERVERS[kind](HttpLimits(max_connections=4))
    held = []
    try:
        server = made.server._server if kind == "embedded" else made.front._server
        if kind == "embedded":
            made.s3.close()  # its kept-alive connection would count against the cap
        eventually(lambda: server.open_connections == 0)
        for _ in range(4):
            held.append(socket.create_connection(("127.0.0.1", made.port), timeout=10))
        eventually(lambda: server.open_connections == 4)
        status, headers, body = parse(exchange(made.port, head(made, "Content-Length: 2") + b"no"))
        assert status == 503, body
        assert (b"<Code>SlowDown</Code>" in body) if kind == "embedded" else json.loads(body)["message"]
        held.pop().close()
        good = head(made, "Content-Length: 4", "Connection: close", body="good") + b"good"
        eventually(lambda: parse(exchange(made.port, good))[0] in (200, 201))
        assert made.stored() == ["good"]
    finally:
        for sock in held:
            sock.close()
        made.stop()


@pytest.mark.parametrize("kind", list(SERVERS))
def test_stop_closes_kept_alive_connections(kind):
    made = SERVERS[kind](HttpLimits())
    with socket.create_connection(("127.0.0.1", made.port), timeout=10) as sock:
        sock.sendall(head(made, "Content-Length: 5", body="first") + b"first")
        assert sock.recv(4096).startswith(b"HTTP/1.1 20")
        made.stop()
        try:
            sock.sendall(head(made, "Content-Length: 5", body="after") + b"after")
            reply = sock.recv(4096)
        except (BrokenPipeError, ConnectionResetError):
            reply = b""
        assert reply == b"", f"served after stop(): {reply[:100]!r}"
    if kind == "embedded":  # moto's state outlives the server: look with a fresh one
        check = EmbeddedServer().start()
        try:
            s3 = boto3.client("s3", endpoint_url=check.url, region_name="us-east-1",
                              aws_access_key_id="t", aws_secret_access_key="t")
            assert [o["Key"] for o in s3.list_objects_v2(Bucket=made.bucket)["Contents"]] == ["first"]
        finally:
            check.stop()
    else:
        assert made.stored() == ["first"]


def test_lambda_payloads_near_the_limits_cross_the_runtime_api():
    """Big events and answers through awslambdaric's own HTTP client (curl sends 100-continue)."""
    import cloudlab
    from cloudlab.lambda_service import zip_code
    from cloudlab.serverless import lambda_role

    cloudlab.use_backend()
    iam, lam = boto3.client("iam"), boto3.client("lambda")
    role = lambda_role(iam, "http-hardening-role")
    name = f"t-http-{uuid.uuid4().hex[:8]}"
    source = "def handler(event, context):\n    return 'x' * event['size'] + event.get('pad', '')[:0]\n"
    lam.create_function(FunctionName=name, Runtime="python3.12", Role=role, Handler="app.handler",
                        Code={"ZipFile": zip_code(source)}, MemorySize=512)
    try:
        big_event = {"size": 3_000_000, "pad": "p" * 5_000_000}  # a 5 MB event in, a 3 MB answer out
        answer = lam.invoke(FunctionName=name, Payload=json.dumps(big_event).encode())
        assert "FunctionError" not in answer
        assert json.loads(answer["Payload"].read()) == "x" * 3_000_000
        answer = lam.invoke(FunctionName=name, Payload=json.dumps({"size": 7_000_000}).encode())
        assert answer["FunctionError"] == "Unhandled"
        assert json.loads(answer["Payload"].read())["errorType"] == "Function.ResponseSizeTooLarge"
    finally:
        lam.delete_function(FunctionName=name)
