"""Faults injected on purpose into boto3 calls, so every emulator (and AWS) sees the same failure.

Introduced in notebook 02 (:class:`FailOnce`: what a retried multipart part costs) and
generalised in notebook 05 (:class:`InjectFaults`: throttling, 5xx and lost responses for
botocore's retry modes). The faults are made in the client, by botocore event hooks that answer
instead of the network, never by changing the emulator.
"""

from __future__ import annotations

import random
import threading
import time

from .hooks import ClientHooks

__all__ = ["FailOnce", "InjectFaults", "FAULTS"]


class FailOnce(ClientHooks):
    """Makes the first attempt of one request fail with HTTP 500 ``InternalError``, as a
    network or server fault would; botocore's retry handler then sends it again.

    Introduced in notebook 02 (what a retried multipart part costs)::

        with FailOnce(s3, "UploadPart", lambda params: params["PartNumber"] == 3):
            s3.upload_file(...)

    The failure is made in the client (a ``before-send`` hook answers instead of the
    network), so every emulator sees the same fault.
    """

    def __init__(self, client, operation: str, match=lambda params: True) -> None:
        self.client, self.operation, self.match = client, operation, match
        self.failed = 0
        self._lock = threading.Lock()

    def _before_send(self, request, **_):
        from botocore.awsrequest import AWSResponse

        context = getattr(request, "context", {}) or {}
        if not self.match(context.get("cloudlab_params", {})):
            return None
        with self._lock:
            if self.failed:
                return None
            self.failed += 1
        body = b"<Error><Code>InternalError</Code><Message>We encountered an internal error. Please try again.</Message></Error>"
        return AWSResponse(request.url, 500, {"Content-Type": "application/xml"}, _Raw(body))

    def _remember(self, params, context, **_) -> None:  # the call's own parameters, before serialisation
        context["cloudlab_params"] = dict(params)

    def hooks(self) -> dict:
        return {f"before-parameter-build.s3.{self.operation}": self._remember,
                f"before-send.s3.{self.operation}": self._before_send}


class _Raw:
    """The minimal raw-response object botocore reads a body from."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_):
        yield self._body


FAULTS = ("throttle", "500", "503", "lost")


class InjectFaults(ClientHooks):
    """Seeded faults on the attempts of one boto3 client, per operation or for all of them.

    Introduced in notebook 05 (botocore's retry modes against throttling). Each attempt that
    reaches the network is one draw: with probability ``rate`` it fails with a kind drawn from
    ``kinds`` (weights); or ``script`` lists the outcomes of the first attempts in order
    (``"ok"`` or a kind) and later ones succeed. Kinds:

    - ``throttle``: the service's throttling error (``ThrottlingException``, for S3 503 ``SlowDown``);
    - ``500`` / ``503``: ``InternalError`` / ``ServiceUnavailable``;
    - ``lost``: the request really goes to the server, which acts on it, and then the answer is
      dropped (``ConnectionClosedError``); a retry repeats an action that already happened.

    ``attempts`` records ``(seconds since enter, operation, outcome)`` for every attempt::

        with InjectFaults(sqs, operations=["SendMessage"], rate=0.5, seed=1) as faults:
            sqs.send_message(...)
        faults.attempts
    """

    def __init__(self, client, *, operations=None, rate: float = 1.0, kinds=None, script=None, seed: int = 0) -> None:
        kinds = {"throttle": 1.0} if kinds is None else (dict(kinds) if isinstance(kinds, dict)
                                                          else {kind: 1.0 for kind in kinds})
        if set(kinds) - set(FAULTS) or (script and set(script) - set(FAULTS) - {"ok"}):
            raise ValueError(f"fault kinds are {FAULTS} (and 'ok' in a script); got {sorted(kinds)} / {script}")
        if not 0 <= rate <= 1:
            raise ValueError(f"rate is a probability between 0 and 1, got {rate}")
        self.client, self.rate, self.kinds = client, rate, kinds
        self.operations = [operations] if isinstance(operations, str) else operations
        self.script = list(script or [])
        self.scripted = script is not None     # a script replaces the random draws
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self.attempts: list[tuple[float, str, str]] = []
        self._started = time.monotonic()

    def __enter__(self):
        self._started = time.monotonic()
        return super().__enter__()

    def _draw(self) -> str:
        with self._lock:
            if self.script:
                return self.script.pop(0)
            if not self.scripted and self._rng.random() < self.rate:
                return self._rng.choices(list(self.kinds), weights=list(self.kinds.values()))[0]
            return "ok"

    def count(self, outcome: str | None = None) -> int:
        return sum(1 for _, _, o in self.attempts if outcome is None or o == outcome)

    def _before_send(self, request, **_):
        from botocore.awsrequest import AWSResponse
        from botocore.exceptions import ConnectionClosedError

        operation = (getattr(request, "context", None) or {}).get("cloudlab_operation", "?")
        outcome = self._draw()
        with self._lock:
            self.attempts.append((time.monotonic() - self._started, operation, outcome))
        if outcome == "ok":
            return None
        if outcome == "lost":
            # the server acts on the request; only its answer is lost on the way back
            self.client._endpoint.http_session.send(request)
            raise ConnectionClosedError(endpoint_url=request.url)
        status, code = _ERRORS[outcome]
        if outcome == "throttle" and self.client.meta.service_model.service_name == "s3":
            status, code = 503, "SlowDown"
        headers, body = _error_body(self.client.meta.service_model.protocol, code)
        return AWSResponse(request.url, status, headers, _Raw(body))

    def _remember(self, model, context, **_) -> None:
        context["cloudlab_operation"] = model.name

    def hooks(self) -> dict:
        service = self.client.meta.service_model.service_id.hyphenize()
        names = [f".{name}" for name in self.operations] if self.operations else [""]
        hooks = {}
        for suffix in names:
            hooks[f"before-call.{service}{suffix}"] = self._remember
            hooks[f"before-send.{service}{suffix}"] = self._before_send
        return hooks


_ERRORS = {"throttle": (400, "ThrottlingException"), "500": (500, "InternalError"), "503": (503, "ServiceUnavailable")}


def _error_body(protocol: str, code: str) -> tuple[dict, bytes]:
    """An error answer in the client's wire protocol, so botocore parses the code as AWS sends it."""
    message = "injected by cloudlab.faults"
    if protocol in ("json", "rest-json", "smithy-rpc-v2-cbor"):
        import json

        return ({"Content-Type": "application/x-amz-json-1.0", "x-amzn-ErrorType": code,
                 "x-amzn-query-error": f"{code};Sender"},
                json.dumps({"__type": code, "message": message}).encode())
    if protocol == "rest-xml":
        return {"Content-Type": "application/xml"}, f"<Error><Code>{code}</Code><Message>{message}</Message></Error>".encode()
    return ({"Content-Type": "text/xml"},
            f"<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error></ErrorResponse>".encode())
