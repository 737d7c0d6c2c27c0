"""Server-side chaos for the embedded backend: faults on purpose, switched on explicitly.

Introduced with the capstone's ``python -m cloudlab pipeline run --chaos`` (notebook 06).
``cloudlab.faults`` makes faults inside one boto3 client of the kernel; the pipeline's
functions run in other processes (Lambda execution environments), so their faults have to
be made where their requests arrive. This registry is that one place. It is EMPTY unless
someone adds rules, and then it says so on every rule it fires (``fired`` counters).

Rules are added over HTTP on the embedded endpoint (so they work whether the emulator runs
in the kernel or in ``python -m cloudlab backend serve``, and, under
``CLOUDLAB_BACKEND=localstack``, for DynamoDB and Lambda, which the embedded emulator serves
there too)::

    POST   <endpoint>/_cloudlab/chaos   {"rules": [{...}, ...], "seed": 7}  -> adds rules
    GET    <endpoint>/_cloudlab/chaos                                        -> rules and counters
    DELETE <endpoint>/_cloudlab/chaos                                        -> removes every rule

A rule: ``{"name", "service", "operation", "fault", "match", "probability", "groups",
"times", "parties", "timeout", "code", "status"}``. It applies to requests of ``service``
(signing name: ``dynamodb``, ``sqs``...) and ``operation`` (``UpdateItem``...; ``*`` for any)
whose raw body contains every string of ``match``. Then, with ``probability`` (default 1):

- ``throttle``: answers the service's throttling error without touching state
  (DynamoDB ``ProvisionedThroughputExceededException``); SDKs retry it with backoff;
- ``lost_response``: the request IS applied, then its answer is replaced by a 500
  ``InternalServerError``, as when a connection drops after the server committed. The
  SDK retries, and the retry meets the state its first attempt already changed;
- ``error``: answers ``code`` (default ``ChaosInjectedError``, HTTP ``status`` 400, which no
  SDK retries) without touching state: the caller sees a failure it cannot retry away;
- ``barrier``: holds each matching request until ``parties`` (default 2) requests for the
  same item have arrived, or ``timeout`` seconds (default 10) passed, then lets them all go
  at once: "both analyzers finish at the same moment";
- ``duplicate``: not answered here; the local Lambda service's SQS pollers ask
  :func:`duplicate_delivery` and deliver a batch twice (SQS is at-least-once).

``groups`` (optional) limits a rule to the first N distinct items it meets (the DynamoDB
``Key`` of the request, or the whole body elsewhere), and then it fires on EVERY matching
request for those items: e.g. "the custom analyzer's result write fails for two jobs, on
every retry". ``times`` caps how often a rule fires in all.
"""

from __future__ import annotations

import json
import random
import re
import threading
from dataclasses import asdict, dataclass, field

PATH = "/_cloudlab/chaos"
FAULTS = ("throttle", "lost_response", "error", "barrier", "duplicate")
_DYNAMODB_KEY = re.compile(rb'"Key"\s*:\s*(\{[^{}]*\{[^{}]*\}[^{}]*\})')


@dataclass
class Rule:
    """One fault, where it applies, and how often it fired."""

    fault: str
    service: str
    operation: str = "*"
    match: list[str] = field(default_factory=list)
    probability: float = 1.0
    groups: int | None = None
    times: int | None = None
    parties: int = 2
    timeout: float = 10.0
    code: str = "ChaosInjectedError"
    status: int = 400
    name: str = ""
    fired: int = 0
    chosen: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.fault not in FAULTS:
            raise ValueError(f"fault must be one of {', '.join(FAULTS)}, not {self.fault!r}")
        if isinstance(self.match, str):
            self.match = [self.match]
        if not 0 <= float(self.probability) <= 1:
            raise ValueError(f"probability must be within 0-1, got {self.probability}")
        self.name = self.name or f"{self.fault}:{self.service}.{self.operation}"


class _Barrier:
    def __init__(self, parties: int) -> None:
        self.parties, self.arrived, self.released = parties, 0, threading.Event()


class ChaosRegistry:
    """The rules of one process's embedded backend (``REGISTRY``)."""

    def __init__(self) -> None:
        self._rules: list[Rule] = []
        self._lock = threading.Lock()
        self._random = random.Random(0)
        self._barriers: dict[tuple[int, str], _Barrier] = {}

    @property
    def active(self) -> bool:
        return bool(self._rules)

    def add(self, rules: list[dict], seed: int | None = None) -> list[Rule]:
        made = [Rule(**rule) for rule in rules]
        with self._lock:
            if seed is not None:
                self._random.seed(seed)
            self._rules.extend(made)
        return made

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()
            barriers = list(self._barriers.values())
            self._barriers.clear()
        for barrier in barriers:
            barrier.released.set()

    def report(self) -> list[dict]:
        with self._lock:
            return [asdict(rule) for rule in self._rules]

    def _item(self, service: str, body: bytes) -> str:
        if service == "dynamodb":
            found = _DYNAMODB_KEY.search(body)
            if found:
                return found.group(1).decode("utf-8", "replace")
        return body.decode("utf-8", "replace")

    def _pick(self, service: str, operation: str, body: bytes, faults: tuple[str, ...]) -> list[Rule]:
        """The rules that fire for this request (their counters already advanced)."""
        fired = []
        with self._lock:
            for rule in self._rules:
                if rule.fault not in faults or rule.service != service or rule.operation not in ("*", operation):
                    continue
                if rule.times is not None and rule.fired >= rule.times:
                    continue
                text = body.decode("utf-8", "replace")
                if not all(piece in text for piece in rule.match):
                    continue
                if rule.groups is not None:
                    item = self._item(service, body)
                    if item not in rule.chosen:
                        if len(rule.chosen) >= rule.groups:
                            continue
                        if self._random.random() >= rule.probability:
                            continue
                        rule.chosen.append(item)
                elif self._random.random() >= rule.probability:
                    continue
                rule.fired += 1
                fired.append(rule)
        return fired

    # -- the embedded front calls these ----------------------------------------------------------
    def before(self, service: str, operation: str, body: bytes):
        """``None`` to go on, or ``(rule, answer)``: ``answer`` None means "apply, then lose the response"."""
        for rule in self._pick(service, operation, body, ("barrier", "throttle", "error", "lost_response")):
            if rule.fault == "barrier":
                self._wait_at_barrier(rule, self._item(service, body))
            elif rule.fault == "lost_response":
                return rule, None
            else:
                return rule, error_answer(service, rule)
        return None

    def _wait_at_barrier(self, rule: Rule, item: str) -> None:
        key = (id(rule), item)
        with self._lock:
            barrier = self._barriers.setdefault(key, _Barrier(rule.parties))
            barrier.arrived += 1
            if barrier.arrived >= barrier.parties:
                barrier.released.set()
        barrier.released.wait(rule.timeout)

    def duplicate(self, service: str, operation: str, body: bytes) -> bool:
        return bool(self._pick(service, operation, body, ("duplicate",)))


REGISTRY = ChaosRegistry()


def duplicate_delivery(source_arn: str, body: str) -> bool:
    """Should this SQS batch be delivered twice? (asked by the local Lambda service's pollers;
    rules with ``fault: duplicate``, ``service: sqs``, ``operation: ReceiveMessage``; ``match``
    is tested against the queue ARN and the batch's bodies)."""
    if not REGISTRY.active:
        return False
    return REGISTRY.duplicate("sqs", "ReceiveMessage", f"{source_arn}\n{body}".encode())


_JSON_ERRORS = {"dynamodb": "com.amazonaws.dynamodb.v20120810#"}


def error_answer(service: str, rule: Rule, lost: bool = False) -> tuple[int, dict, bytes]:
    """The HTTP answer of a fault, in the service's own error shape."""
    if lost:
        status, code, message = 500, "InternalServerError", "Internal server error (cloudlab chaos: the write was applied, its response dropped)"
    elif rule.fault == "throttle":
        status = 400
        code = "ProvisionedThroughputExceededException" if service == "dynamodb" else "ThrottlingException"
        message = "Rate of requests exceeds the allowed throughput (cloudlab chaos)."
    else:
        status, code, message = rule.status, rule.code, f"{rule.code} (cloudlab chaos rule {rule.name})"
    if service in _JSON_ERRORS:
        body = json.dumps({"__type": _JSON_ERRORS[service] + code, "message": message}).encode()
        return status, {"Content-Type": "application/x-amz-json-1.0", "x-amzn-RequestId": _request_id()}, body
    body = (f"<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error>"
            f"<RequestId>{_request_id()}</RequestId></ErrorResponse>").encode()
    return status, {"Content-Type": "text/xml"}, body


def _request_id() -> str:
    import uuid

    return str(uuid.uuid4())


def operation_of(service: str, method: str, path: str, headers, body: bytes) -> str:
    """The API operation of a request: JSON protocols' ``X-Amz-Target``, else the query ``Action``."""
    target = headers.get("X-Amz-Target", "")
    if target:
        return target.rpartition(".")[2]
    if body[:7] == b"Action=" or b"&Action=" in body:
        for pair in body.split(b"&"):
            if pair.startswith(b"Action="):
                return pair[7:].decode()
    if service == "lambda" and path.endswith("/invocations"):
        return "Invoke"
    if service == "s3":  # REST: the method says enough for billing (tier 1 writes, tier 2 reads)
        return {"PUT": "PutObject", "GET": "GetObject", "HEAD": "HeadObject", "DELETE": "DeleteObject",
                "POST": "PostObject"}.get(method, method)
    return f"{method} {path}"


def http_answer(method: str, body: bytes) -> tuple[int, dict, bytes]:
    """Answer ``/_cloudlab/chaos`` (GET: report, POST: add rules, DELETE: clear)."""
    headers = {"Content-Type": "application/json"}
    if method == "GET":
        return 200, headers, json.dumps({"rules": REGISTRY.report()}).encode()
    if method == "DELETE":
        REGISTRY.clear()
        return 200, headers, b'{"rules": []}'
    if method == "POST":
        try:
            request = json.loads(body or b"{}")
            REGISTRY.add(list(request.get("rules") or []), request.get("seed"))
        except (ValueError, TypeError) as error:
            return 400, headers, json.dumps({"message": f"bad chaos rules: {error}"}).encode()
        return 200, headers, json.dumps({"rules": REGISTRY.report()}).encode()
    return 405, headers, b'{"message": "GET, POST or DELETE"}'


class ChaosClient:
    """Adds, reads and clears the rules of the embedded backend at ``endpoint`` (used by run.py)."""

    def __init__(self, endpoint: str) -> None:
        self.url = endpoint.rstrip("/") + PATH

    def _call(self, method: str, payload: dict | None = None) -> list[dict]:
        import urllib.request

        data = json.dumps(payload).encode() if payload is not None else (b"" if method != "GET" else None)
        request = urllib.request.Request(self.url, data=data, method=method, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.load(response)["rules"]

    def add(self, rules: list[dict], seed: int | None = None) -> list[dict]:
        return self._call("POST", {"rules": rules, "seed": seed})

    def report(self) -> list[dict]:
        return self._call("GET")

    def clear(self) -> None:
        self._call("DELETE")

