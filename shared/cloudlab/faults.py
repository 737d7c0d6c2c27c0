"""Faults injected on purpose into boto3 calls, so every emulator (and AWS) sees the same failure.

Introduced in notebook 02 (:class:`FailOnce`: what a retried multipart part costs). The faults
are made in the client, by botocore event hooks that answer instead of the network, never by
changing the emulator.
"""

from __future__ import annotations

import threading

from .hooks import ClientHooks

__all__ = ["FailOnce"]


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
