"""Small helpers the emulator-fidelity tests share: an API call's error code, a raw HTTP
request (presigned URLs, anonymous requests) with its status and body, and polling to a deadline."""

from __future__ import annotations

import urllib.error
import urllib.request

from botocore.exceptions import ClientError


def code(call) -> str:
    """The AWS error code ``call()`` raises, or "OK"."""
    try:
        call()
    except ClientError as error:
        return error.response["Error"]["Code"]
    return "OK"


def fetch(url: str, method: str = "GET", data: bytes | None = None) -> tuple[int, bytes]:
    """Send a plain HTTP request (no signing of its own); return status and body, errors included."""
    headers = {"Content-Type": "text/plain"} if data is not None else {}
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def error_code(body: bytes) -> str:
    """The ``<Code>`` of an S3 XML error body."""
    return body.split(b"<Code>")[1].split(b"</Code>")[0].decode()


def poll(check, timeout: float, what: str, interval: float = 0.2):
    """``check()`` until it returns something truthy (the package's ``wait_until``); fail the test,
    naming ``what``, after ``timeout`` seconds."""
    import pytest

    from cloudlab.queues import wait_until

    try:
        return wait_until(check, timeout=timeout, every=interval)
    except TimeoutError:
        pytest.fail(f"{what}: not within {timeout} s")
