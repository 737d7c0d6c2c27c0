"""Choose, start and attach to the AWS endpoint a notebook talks to.

Introduced in notebook 01; every notebook, lab and grader run starts with
``backend = cloudlab.use_backend()``. After it, plain ``boto3.client("s3")`` reaches the
chosen backend through the standard ``AWS_ENDPOINT_URL`` variable, in the kernel and in any
subprocess it starts.

Backends, chosen by ``CLOUDLAB_BACKEND``:

- ``embedded`` (default): moto behind cloudlab's lean HTTP front on 127.0.0.1. Attaches to
  ``CLOUDLAB_ENDPOINT`` if set, else to a ``python -m cloudlab backend serve`` server if
  one is running, else starts one inside this process.
- ``localstack``: a running LocalStack at ``AWS_ENDPOINT_URL`` or ``LOCALSTACK_HOST``
  (default ``localhost:4566``), checked through its health endpoint. Lambda, IAM, DynamoDB
  and CloudWatch Logs still come from an embedded emulator in this process
  (``AWS_ENDPOINT_URL_<SERVICE>``), because LocalStack's free edition cannot serve them here;
  so does Rekognition's DetectModerationLabels, which only cloudlab's stand-in serves
  (``moderation_standin``).
- ``aws``: real AWS, only with ``CLOUDLAB_ALLOW_REAL_AWS=yes``.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from . import guard, local_services
from . import moderation_standin as _moderation_standin  # noqa: F401  registers the Rekognition stand-in with every embedded server
from .aws_protocol import DEFAULT_REGION
from .embedded import HEALTH_PATH, EmbeddedServer, wait_until_healthy
from .guard import REAL_AWS_OPT_IN, RealAWSBlocked

# Under CLOUDLAB_BACKEND=localstack these come from the embedded emulator, in the kernel and in
# Lambda environments: Lambda (LocalStack runs it only in Docker), IAM (where CreateFunction
# finds the execution role), DynamoDB (LocalStack's is Amazon's DynamoDB Local: Java, a vendor
# licence, downloaded at first use), CloudWatch Logs (where the local Lambda service writes) and
# Rekognition (LocalStack does not emulate it; cloudlab's moderation stand-in answers, notebook 06).
EMBEDDED_UNDER_LOCALSTACK = ("AWS_ENDPOINT_URL_LAMBDA", "AWS_ENDPOINT_URL_IAM",
                             "AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL_LOGS",
                             "AWS_ENDPOINT_URL_REKOGNITION")
BACKENDS = ("embedded", "localstack", "aws")
_CREDENTIAL_VARIABLES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                         "AWS_PROFILE", "AWS_DEFAULT_PROFILE")


class BackendError(RuntimeError):
    """The requested backend cannot be used; the message says what to do."""


@dataclass
class Backend:
    """The endpoint a notebook is using. ``repr`` leaves out the port so outputs stay stable."""

    name: str
    endpoint: str | None = field(repr=False)
    region: str = DEFAULT_REGION
    started_here: bool = field(default=False, repr=False)
    lambda_endpoint: str | None = field(default=None, repr=False)  # set when Lambda is served apart

    def reset(self) -> None:
        """Forget all emulator state (embedded only; LocalStack and AWS keep theirs)."""
        if self.name != "embedded":
            raise BackendError(f"reset() clears a whole emulator; on {self.name} use clean(prefix) instead")
        request = urllib.request.Request(self.endpoint + "/moto-api/reset", method="POST", data=b"")
        urllib.request.urlopen(request, timeout=10).close()

    def clean(self, prefix: str) -> dict[str, int]:
        """Delete the buckets, queues, topics, tables, Lambda functions, EC2 instances, EBS volumes
        and snapshots (``Name`` tag) and EFS file systems whose names start with ``prefix``.

        Lets a notebook own its resources on a shared backend: it cleans its prefix at the
        start, so a re-run starts from the same state. Returns how many of each were deleted.
        """
        from . import cleanup

        return cleanup.delete_prefixed(prefix)


_current: dict[str, object] = {"backend": None, "server": None}


def _state_file() -> Path:
    folder = os.environ.get("CLOUDLAB_STATE_DIR") or Path.home() / ".cache" / "cloudlab"
    return Path(folder) / "serve.json"


def running_server_url() -> str | None:
    """The URL of a healthy ``cloudlab backend serve`` server, if one is running."""
    try:
        url = json.loads(_state_file().read_text())["url"]
    except (OSError, ValueError, KeyError):
        return None
    return url if wait_until_healthy(url, timeout=0.5) else None


def _point_boto3_at(endpoint: str | None, region: str, dummy_credentials: bool,
                    lambda_endpoint: str | None = None, embedded_endpoint: str | None = None) -> None:
    if dummy_credentials:
        for name in _CREDENTIAL_VARIABLES:
            os.environ.pop(name, None)
        os.environ["AWS_ACCESS_KEY_ID"] = "test"
        os.environ["AWS_SECRET_ACCESS_KEY"] = "test"
    if endpoint:
        os.environ["AWS_ENDPOINT_URL"] = endpoint
    else:
        os.environ.pop("AWS_ENDPOINT_URL", None)
    # Subprocesses (Lambda environments, helper scripts) attach to this same embedded emulator.
    if embedded_endpoint:
        os.environ["CLOUDLAB_ENDPOINT"] = embedded_endpoint
    else:
        os.environ.pop("CLOUDLAB_ENDPOINT", None)
    # Services served apart from LocalStack, by the embedded emulator (see _localstack).
    for variable in EMBEDDED_UNDER_LOCALSTACK:
        if lambda_endpoint:
            os.environ[variable] = lambda_endpoint
        else:
            os.environ.pop(variable, None)
    os.environ["AWS_DEFAULT_REGION"] = region
    os.environ["AWS_REGION"] = region
    import boto3

    boto3.DEFAULT_SESSION = None  # the next boto3.client() reads the new environment


def _embedded() -> Backend:
    endpoint = os.environ.get("CLOUDLAB_ENDPOINT")
    if endpoint:
        if not guard.is_loopback(endpoint):
            raise BackendError(f"CLOUDLAB_ENDPOINT={endpoint} is not on this machine; the embedded backend is local only")
        if not wait_until_healthy(endpoint, timeout=5):
            raise BackendError(f"CLOUDLAB_ENDPOINT={endpoint} does not answer; unset it to start an emulator here")
        return Backend("embedded", endpoint)
    served = running_server_url()
    if served:
        return Backend("embedded", served)
    server = _current["server"]
    if server is None:
        server = EmbeddedServer().start()
        _current["server"] = server
    local_services.set_data_endpoint(None)  # Lambda handlers use this emulator too
    return Backend("embedded", server.url, started_here=True)


def localstack_endpoint() -> str:
    """LocalStack's URL as LocalStack's own tools find it: ``AWS_ENDPOINT_URL`` if set, else
    ``LOCALSTACK_HOST`` (default ``localhost:4566``), through ``localstack_client`` (the
    resolution ``localstack_client.session`` uses, so both agree)."""
    host = os.environ.get("LOCALSTACK_HOST", "")
    if "://" in host and not os.environ.get("AWS_ENDPOINT_URL"):
        return host.rstrip("/")  # a URL where localstack_client expects host:port; accept it
    from localstack_client.config import get_service_endpoint

    try:
        return get_service_endpoint("s3").rstrip("/")
    except RuntimeError as error:  # localstack_client's words for a malformed LOCALSTACK_HOST
        raise BackendError(f"LOCALSTACK_HOST={host!r}: {error}") from None


def _localstack() -> Backend:
    endpoint = localstack_endpoint()
    if not guard.is_loopback(endpoint):
        raise BackendError(f"LocalStack at {endpoint} is not on this machine; run it locally (-p 127.0.0.1:4566:4566)")
    try:
        localstack_health(endpoint)
    except (OSError, ValueError) as error:
        raise BackendError(
            f"No LocalStack answers at {endpoint} ({error}). Start one, then re-run this cell:\n"
            "  docker run --rm -p 127.0.0.1:4566:4566 -e S3_SKIP_SIGNATURE_VALIDATION=0 localstack/localstack:4.14   # tags up to 4.14 need no token\n"
            "  or, without Docker: .ci/localstack.sh install && .ci/localstack.sh run make lab   (README, section LocalStack)\n"
            "  or, with a free account: docker run --rm -e LOCALSTACK_AUTH_TOKEN=... -p 127.0.0.1:4566:4566 localstack/localstack\n"
            "Or unset CLOUDLAB_BACKEND to use the embedded emulator.") from None
    endpoint = endpoint.rstrip("/")
    # LocalStack runs Lambda only with Docker: functions run in cloudlab's local Lambda
    # service instead, served by an embedded emulator in this process, while their handlers
    # (and SQS pollers) use LocalStack's S3, SQS, SNS... IAM goes to the embedded
    # emulator too, because that is where CreateFunction looks for the execution role, and
    # so does DynamoDB (EMBEDDED_UNDER_LOCALSTACK says why).
    server = _current["server"]
    if server is None:
        server = EmbeddedServer().start()
        _current["server"] = server
    local_services.set_data_endpoint(endpoint)
    return Backend("localstack", endpoint, lambda_endpoint=server.url)


def localstack_health(endpoint: str) -> dict:
    """LocalStack's health report; raises OSError or ValueError when none answers."""
    with urllib.request.urlopen(endpoint.rstrip("/") + "/_localstack/health", timeout=3) as response:
        return json.load(response)


def current() -> Backend | None:
    """The backend ``use_backend()`` chose last in this process (``None`` before the first call)."""
    backend = _current["backend"]
    return backend if isinstance(backend, Backend) else None


def use_backend(name: str | None = None) -> Backend:
    """Make sure an AWS endpoint is running and point boto3 (and subprocesses) at it.

    Introduced in notebook 01. Call it once at the top of a notebook; calling it again
    returns the same backend. ``name`` overrides ``CLOUDLAB_BACKEND``.
    """
    guard.install()
    name = (name or os.environ.get("CLOUDLAB_BACKEND") or "embedded").strip().lower()
    if name not in BACKENDS:
        raise BackendError(f"CLOUDLAB_BACKEND={name!r} is not one of {', '.join(BACKENDS)}")
    current = _current["backend"]
    if isinstance(current, Backend) and current.name == name and (name == "aws" or wait_until_healthy(current.endpoint, 1)):
        _point_boto3_at(current.endpoint, current.region, dummy_credentials=name != "aws",
                        lambda_endpoint=current.lambda_endpoint,
                        embedded_endpoint=current.endpoint if name == "embedded" else None)
        return current
    if name == "aws":
        if os.environ.get(REAL_AWS_OPT_IN, "").lower() not in ("1", "yes", "true"):
            raise BackendError(
                f"CLOUDLAB_BACKEND=aws sends requests to real AWS, which costs money. "
                f"Set {REAL_AWS_OPT_IN}=yes as well if that is what you want. Nothing was sent.")
        guard.allow_real_aws(True)
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or DEFAULT_REGION
        backend = Backend("aws", None, region)
        _point_boto3_at(None, region, dummy_credentials=False)
    else:
        guard.allow_real_aws(False)
        backend = _embedded() if name == "embedded" else _localstack()
        _point_boto3_at(backend.endpoint, backend.region, dummy_credentials=True,
                        lambda_endpoint=backend.lambda_endpoint,
                        embedded_endpoint=backend.endpoint if name == "embedded" else None)
    _current["backend"] = backend
    return backend


__all__ = ["Backend", "BackendError", "RealAWSBlocked", "use_backend", "current", "running_server_url", "HEALTH_PATH"]
