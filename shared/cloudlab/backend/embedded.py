"""The embedded AWS emulator: moto's service backends behind a lean HTTP front.

Introduced in notebook 01 (every notebook starts it through ``cloudlab.use_backend()``).

Why not moto's own ``ThreadedMotoServer``: it closes every connection and spends most of
each request in Werkzeug/Flask dispatch and a per-request directory scan to find the
service (measured: ``docs/emulators.md``). This front keeps HTTP/1.1 connections
alive, works out the service once from the SigV4 credential scope, and hands the request
straight to moto's response classes, the same routing ``mock_aws`` uses in-process. HTTP
itself (parsing, limits, timeouts, errors for malformed requests) is ``http11.py``'s, shared
with the Lambda Runtime API and the API Gateway front. ``bench/backend_rate.py`` prints the
ratio against the stock server.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import sys
import threading
import time
import uuid
from urllib.parse import parse_qs, urlsplit
from xml.sax.saxutils import escape as xml_escape

from . import chaos, iam_auth, local_services, moto_compat, presign, request_log, s3_website, sqs_rules
from .aws_protocol import CREDENTIAL_SCOPE as _CREDENTIAL_SCOPE, DEFAULT_REGION
from .http11 import HttpLimits, HttpServer, Request, RequestHeaders
from .local_services import SERVICE_OVERRIDES
from .moto_compat import moto_request as _moto_request, reset_all_state

HEALTH_PATH = "/_cloudlab/health"

# Signing names whose moto backend has another name.
_SIGNING_ALIASES = {"eventbridge": "events", "email": "ses"}
_FORM_ACTIONS_UNSIGNED = {"AssumeRoleWithWebIdentity": "sts", "AssumeRoleWithSAML": "sts"}


def service_and_region(headers, path: str, query: str) -> tuple[str, str]:
    """Which AWS service and region a request is for, from its SigV4 credential scope.

    Signed requests carry the scope in ``Authorization``; presigned URLs carry it in the
    ``X-Amz-Credential`` query parameter. Anything unsigned is taken to be S3, as moto does.
    """
    auth = headers.get("Authorization", "")
    match = _CREDENTIAL_SCOPE.search(auth)
    if match:
        region, service = match.group("region"), match.group("service").lower()
        return _SIGNING_ALIASES.get(service, service), region
    if "X-Amz-Credential" in query:
        credential = parse_qs(query).get("X-Amz-Credential", [""])[0]
        parts = credential.split("/")
        if len(parts) == 5:
            return _SIGNING_ALIASES.get(parts[3], parts[3]), parts[2]
    return "s3", DEFAULT_REGION


def aws_url(service: str, region: str, headers, path: str, query: str) -> str:
    """The URL the request would have had on AWS, which moto's URL patterns expect."""
    if service == "s3":
        host = "s3.amazonaws.com"  # path-style: the bucket is the first path segment
    elif service == "dynamodb" and headers.get("X-Amz-Target", "").startswith("DynamoDBStreams"):
        host = f"streams.dynamodb.{region}.amazonaws.com"
    elif service in ("iam", "route53", "cloudfront", "budgets"):
        host = f"{service}.amazonaws.com"
    else:
        host = f"{service}.{region}.amazonaws.com"
    return f"http://{host}{path}" + (f"?{query}" if query else "")


_DYNAMODB_WRITES = frozenset({"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem",
                               "TransactWriteItems", "ExecuteStatement", "BatchExecuteStatement",
                               "ExecuteTransaction"})
# Reads that walk moto's dicts with no lock: next to a concurrent write they can fail with
# "dictionary changed size during iteration" (seen: the capstone's sweeper scanning while
# analyzers write). They are not held up by writes; they are simply run again (_read_again).
_DYNAMODB_READS = frozenset({"GetItem", "BatchGetItem", "Query", "Scan", "TransactGetItems"})
_READ_ATTEMPTS = 5
_NO_LOCK = contextlib.nullcontext()


class MotoDispatcher:
    """Routes one HTTP request to moto's response handler for its service.

    The URL patterns of each backend are compiled once and cached, the part moto's own
    stubber marks "TODO: cache this".
    """

    def __init__(self) -> None:
        moto_compat.install()  # every patch of moto, once per process
        self._service_patterns = moto_compat.backend_url_patterns
        self._backend_for_host: dict[str, str | None] = {}
        self._routes: dict[str, list[tuple[re.Pattern, object]]] = {}
        self._lock = threading.Lock()
        self._dynamodb_write_lock = threading.Lock()
        self._s3_conditional_lock = threading.Lock()

    def _routes_for(self, host: str):
        if host not in self._backend_for_host:
            probe = f"http://{host}/"
            self._backend_for_host[host] = next(
                (name for name, pattern in self._service_patterns if pattern.match(probe)), None)
        backend_name = self._backend_for_host[host]
        if backend_name is None:
            return None
        routes = self._routes.get(backend_name)
        if routes is None:
            with self._lock:
                backend = moto_compat.service_backend(backend_name, DEFAULT_REGION)
                routes = [(re.compile(url), handler) for url, handler in backend.urls.items()]
                self._routes[backend_name] = routes
        return routes

    def _write_lock_for(self, host: str, headers):
        """DynamoDB writes run one at a time, so a condition check and its write are atomic.

        moto evaluates a ConditionExpression and applies the write in two steps with no lock:
        two concurrent conditional updates can both pass the check (measured: 1-2 double
        winners in 1,000 races against moto's server). DynamoDB guarantees exactly one.
        Other DynamoDB calls, and every other service (SQS long polls included), are not held up.
        """
        if host.startswith("dynamodb.") and headers.get("X-Amz-Target", "").rpartition(".")[2] in _DYNAMODB_WRITES:
            return self._dynamodb_write_lock
        # S3 conditional writes (If-None-Match: *, If-Match: ETag; notebook 02): moto checks the
        # condition, then stores, with no lock between; S3 lets exactly one racing writer win.
        if host == "s3.amazonaws.com" and ("If-None-Match" in headers or "If-Match" in headers):
            return self._s3_conditional_lock
        return _NO_LOCK

    def dispatch(self, method: str, url: str, headers, body: bytes) -> tuple[int, dict, bytes]:
        HTTPException = moto_compat.HTTPException

        parts = urlsplit(url)
        clean_url = f"{parts.scheme}://{parts.netloc}{parts.path}"
        routes = self._routes_for(parts.netloc)
        if routes is None:
            return 400, {}, _error_xml("UnknownService", f"no emulated service for {parts.netloc}")
        for pattern, handler in routes:
            if pattern.match(clean_url):
                lock = self._write_lock_for(parts.netloc, headers)
                attempts = _READ_ATTEMPTS if (parts.netloc.startswith("dynamodb.") and headers.get(
                    "X-Amz-Target", "").rpartition(".")[2] in _DYNAMODB_READS) else 1
                try:
                    for attempt in range(attempts):
                        request = _moto_request(method, parts, headers, body)
                        try:
                            with lock:
                                status, response_headers, response_body = handler(request, request.raw_url, request.headers)
                            break
                        except RuntimeError as error:  # a read met a concurrent write mid-iteration: read again
                            if attempt + 1 == attempts or "changed size during iteration" not in str(error):
                                raise
                except HTTPException as error:
                    status, response_headers, response_body = error.code, dict(error.get_headers()), error.get_body()
                return status, dict(response_headers or {}), response_body
        return 404, {}, _error_xml("NotImplemented", f"{method} {parts.path} is not emulated")


def _error_xml(code: str, message: str) -> bytes:
    return f"<ErrorResponse><Error><Code>{code}</Code><Message>{message}</Message></Error></ErrorResponse>".encode()


# S3 takes a single PUT of up to 5 GB. The emulator holds each request body in memory, and moto
# copies it again, so one request is capped at 256 MiB: far above every other limit the course
# meets (multipart parts of 8 MiB from boto3, SQS messages of 1 MiB, Lambda payloads of 6 MB),
# and low enough that a runaway upload cannot exhaust a student's laptop. Bigger objects go up
# in parts, as on AWS (notebook 02). The other limits are ``HttpLimits``' defaults.
EMBEDDED_LIMITS = HttpLimits(max_body_bytes=256 * 1024 * 1024)


def s3_error_document(status: int, code: str, message: str) -> tuple[int, list, bytes]:
    """An error in S3's XML shape, for requests the HTTP layer rejects before any service sees them."""
    body = ('<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{code}</Code><Message>{xml_escape(message)}</Message>"
            f"<RequestId>{uuid.uuid4().hex[:16].upper()}</RequestId></Error>")
    return status, [("Content-Type", "application/xml")], body.encode()


class EmbeddedFront:
    """Answers one complete request: health and reset paths, presigned URLs, overrides, moto."""

    def __init__(self, dispatcher: MotoDispatcher) -> None:
        self.dispatcher = dispatcher

    def __call__(self, request: Request):
        return self.respond(request.method, request.target, request.headers, request.body)

    def respond(self, method: str, target: str, headers: RequestHeaders, body: bytes):
        started = time.thread_time()  # CPU time of this thread: a long poll's wait does not count
        answer = self._respond(method, target, headers, body)
        if request_log.LOG.active and not target.startswith("/_cloudlab/"):
            path, _, query = target.partition("?")
            service, _ = service_and_region(headers, path, query)
            status, _, response_body = answer
            request_log.LOG.record(iam_auth.access_key_of(headers, query) or "anonymous", service,
                                   chaos.operation_of(service, method, path, headers, body), status, body,
                                   response_body if isinstance(response_body, bytes) else str(response_body).encode(),
                                   time.thread_time() - started)
        return answer

    def _respond(self, method: str, target: str, headers: RequestHeaders, body: bytes):
        path, _, query = target.partition("?")
        if path == HEALTH_PATH:
            return 200, {"Content-Type": "application/json"}, json.dumps({"status": "running", "backend": "embedded"})
        if path == "/moto-api/reset" and method == "POST":
            reset_all_state()
            return 200, {"Content-Type": "application/json"}, b'{"status": "ok"}'
        if path == chaos.PATH:  # fault rules, empty unless someone adds them (pipeline run --chaos)
            return chaos.http_answer(method, body)
        if path == request_log.PATH:  # server-side call counts (pipeline run), off unless started
            return request_log.http_answer(method)
        if path == "/moto-api/reset-auth":
            # moto's global IAM switch would refuse every other notebook's calls on a shared
            # server; this backend checks IAM users' keys per request instead (iam_auth).
            return 400, {"Content-Type": "application/json"}, json.dumps({"Error": (
                "the embedded backend does not switch IAM checks on globally: requests signed with an "
                "IAM user's access key (iam.create_access_key) are always checked against its policies")})
        site = s3_website.match(headers.get("Host", ""), path)
        if site is not None:  # S3 static website hosting, which moto does not serve (notebook 06)
            bucket, key_path, root = site
            return s3_website.respond(self._anonymous_get, method, bucket, key_path, root, headers)
        service, region = service_and_region(headers, path, query)
        presigned = service == "s3" and presign.is_presigned(query)
        if presigned:
            try:
                presign.verify(method, path, query, headers)
            except presign.PresignedUrlRejected as rejection:
                return rejection.status, {"Content-Type": "application/xml"}, rejection.xml()
        elif service == "s3" and iam_auth.is_unsigned(headers, query):  # anonymous: bucket policy only
            refusal = iam_auth.anonymous_refusal(method, path, query)
            if refusal is not None:
                return refusal
        if service == "sqs":  # SQS's size rules (attributes count; 256 KiB default), which moto lacks
            body, refusal = sqs_rules.apply(headers, body, region)
            if refusal is not None:
                return refusal
        url = aws_url(service, region, headers, path, query)
        lost = None
        if chaos.REGISTRY.active:
            fired = chaos.REGISTRY.before(service, chaos.operation_of(service, method, path, headers, body), body)
            if fired is not None:
                lost, answer = fired
                if answer is not None:
                    return answer
        try:
            if lost is not None:  # apply the request, then drop its response
                self._answer(service, method, path, query, headers, body, url, presigned)
                return chaos.error_answer(service, lost, lost=True)
            return self._answer(service, method, path, query, headers, body, url, presigned)
        except Exception as error:  # an emulator bug must not take the server down
            logging.getLogger("cloudlab.embedded").exception("emulator error")
            return 500, {}, _error_xml("InternalError", f"{type(error).__name__}: {error}")

    def _answer(self, service, method, path, query, headers, body, url, presigned):
        """A local service's answer (``SERVICE_OVERRIDES``), else moto's, under IAM checks."""
        override = SERVICE_OVERRIDES.get(service)
        if override is not None:
            answer = override(method, path, query, headers, body)
            if answer is not None:
                return answer
        with iam_auth.enforce_for_request(headers, query, presigned):  # IAM users' and roles' keys
            return self.dispatcher.dispatch(method, url, headers, body)


    def _anonymous_get(self, method: str, target: str, headers: RequestHeaders):
        """An unsigned S3 REST request, answered exactly as one from outside would be."""
        return self.respond(method, target, headers, b"")


def _install_local_services(url: str) -> None:
    """Start cloudlab's own services ahead of moto (the local Lambda service, notebook 03)."""
    local_services.server_started(url)


class EmbeddedServer:
    """An AWS endpoint on 127.0.0.1, served from this process's threads.

    >>> server = EmbeddedServer().start()
    >>> server.url  # doctest: +SKIP
    'http://127.0.0.1:43211'
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, limits: HttpLimits = EMBEDDED_LIMITS) -> None:
        self.host, self.port, self.limits = host, port, limits
        self._server: HttpServer | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _listen(self) -> HttpServer:
        self._server = HttpServer(self.host, self.port, EmbeddedFront(MotoDispatcher()), s3_error_document,
                                  limits=self.limits, name="cloudlab-embedded")
        self.port = self._server.address[1]
        return self._server

    def start(self) -> "EmbeddedServer":
        self._listen().start()
        _install_local_services(self.url)
        return self

    def serve_forever(self) -> None:
        """Serve in the calling thread until interrupted (``python -m cloudlab backend serve``)."""
        server = self._listen()
        _install_local_services(self.url)
        server.serve_forever()

    def stop(self) -> None:
        """Stop serving and close every connection, kept-alive ones included."""
        if self._server is not None:
            self._server.stop()
            self._server = None
            local_services.server_stopped(self.url)


class StockMotoServer:
    """moto's own ``ThreadedMotoServer``, kept for the benchmark's comparison."""

    def __init__(self) -> None:
        ThreadedMotoServer = moto_compat.ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)

    def start(self) -> "StockMotoServer":
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.url = f"http://{host}:{port}"
        return self

    def stop(self) -> None:
        self._server.stop()


def wait_until_healthy(url: str, timeout: float = 5.0) -> bool:
    """True once ``url`` answers the health path, False after ``timeout`` seconds."""
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + HEALTH_PATH, timeout=1) as response:
                return response.status == 200
        except OSError:
            time.sleep(0.05)
    return False
