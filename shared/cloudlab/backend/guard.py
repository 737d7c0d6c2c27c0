"""The safety guard: no request leaves this machine unless real AWS was asked for.

Introduced in notebook 01. Installed on ``import cloudlab``. It is a botocore
``before-send`` handler added to ``botocore.handlers.BUILTIN_HANDLERS``, the list every new
botocore session (and so every ``boto3.client(...)``) registers, plus boto3's default session
if one already exists. It raises before the HTTP request is made, so nothing is sent.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

REAL_AWS_OPT_IN = "CLOUDLAB_ALLOW_REAL_AWS"
_state = {"real_aws_allowed": False, "installed": False}


class RealAWSBlocked(RuntimeError):
    """A request was about to leave the machine without the real-AWS opt-in."""


def is_loopback(url: str) -> bool:
    host = (urlsplit(url).hostname or "").strip("[]")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_request(request, **_) -> None:
    """botocore ``before-send`` hook: refuse non-loopback requests unless opted in."""
    if _state["real_aws_allowed"] or is_loopback(request.url):
        return None
    host = urlsplit(request.url).hostname
    raise RealAWSBlocked(
        f"cloudlab refused to send a request to {host}: the course only talks to an emulator "
        f"on this machine. Call cloudlab.use_backend() first (it points boto3 at the emulator). "
        f"To use real AWS on purpose (it costs money), set CLOUDLAB_BACKEND=aws and "
        f"{REAL_AWS_OPT_IN}=yes.")


def allow_real_aws(allowed: bool) -> None:
    _state["real_aws_allowed"] = allowed


def install() -> None:
    """Register the hook for every botocore session made from now on, and boto3's default one."""
    if _state["installed"]:
        return
    from botocore import handlers

    handlers.BUILTIN_HANDLERS.append(("before-send", check_request))
    import boto3

    if boto3.DEFAULT_SESSION is not None:
        boto3.DEFAULT_SESSION.events.register("before-send", check_request)
    _state["installed"] = True
