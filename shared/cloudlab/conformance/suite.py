"""Claims, probes and the runner of the conformance suite.

A *claim* is one behaviour the course teaches (a notebook's sentence about AWS). Its *probe* is a
few plain boto3 calls that show whether the current backend behaves that way, and returns what it
observed. Verdicts:

- ``holds``: the backend behaves as AWS documents;
- ``differs``: it answers, differently (or a probe ran out of time);
- ``not served``: the backend does not offer that service or operation at all.

Probes own their resources: every name starts with a prefix unique to the run, and each probe
deletes what it made in ``finally``. Each has a time bound; timers are polled to a deadline.
``observed`` texts are deterministic (no ids, no timings), so a results file and the README table
made from it only change when a behaviour does.
"""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Callable

import botocore.exceptions

HOLDS, DIFFERS, NOT_SERVED = "holds", "differs", "not served"
VERDICTS = (HOLDS, DIFFERS, NOT_SERVED)
TOPICS = {"01": "storage models", "02": "S3 key design", "03": "Lambda", "04": "SQS, SNS, DynamoDB"}


class NotServed(Exception):
    """The backend does not offer the service or operation a probe needs."""


@dataclass(frozen=True)
class Observation:
    holds: bool
    observed: str


@dataclass(frozen=True)
class Claim:
    id: str
    topic: str                 # "01".."04": the notebook that teaches it
    text: str                  # the claim, as the course states it
    expected: str              # AWS's documented behaviour
    source: str                # where AWS documents it (a row of aws-facts.md, or the AWS doc)
    probe: Callable[["Probe"], Observation] = field(repr=False, compare=False)
    timeout: float = 30.0      # seconds the probe may take, on any backend
    # Backends on which the course itself says the claim does not hold (a notebook states the
    # gap); on those the suite expects "differs", so a fixed emulator shows up too.
    course_says_differs: tuple[str, ...] = ()


@dataclass
class Result:
    id: str
    topic: str
    claim: str
    expected: str
    source: str
    observed: str
    verdict: str
    seconds: float

    def as_dict(self) -> dict:
        return asdict(self)


CLAIMS: list[Claim] = []


def claim(id: str, topic: str, text: str, expected: str, source: str, timeout: float = 30.0,
          course_says_differs: tuple[str, ...] = ()):
    """Register the decorated function as the probe of a claim."""
    if topic not in TOPICS:
        raise ValueError(f"claim {id}: topic {topic!r} is not one of {sorted(TOPICS)}")

    def register(probe: Callable[["Probe"], Observation]):
        if any(existing.id == id for existing in CLAIMS):
            raise ValueError(f"claim {id} is registered twice")
        CLAIMS.append(Claim(id, topic, text, expected, source, probe, timeout, course_says_differs))
        return probe

    return register


class Probe:
    """What a probe gets: a unique name prefix, boto3 clients with bounded time, and helpers."""

    def __init__(self, claim_id: str, run_id: str) -> None:
        self.prefix = f"cf-{run_id}-{claim_id}"[:40].rstrip("-")
        self._session = None
        self._clients: dict[tuple, object] = {}

    def name(self, suffix: str = "") -> str:
        """A resource name unique to this probe (lower case: valid for buckets too)."""
        return f"{self.prefix}-{suffix}".rstrip("-").lower() if suffix else self.prefix.lower()

    @property
    def session(self):
        """This probe's own boto3 session: probes run in parallel threads, and boto3's default
        session is not safe to create clients from in several threads at once."""
        if self._session is None:
            import boto3

            self._session = boto3.session.Session()
        return self._session

    def client(self, service: str, retries: int = 1, read_timeout: float = 20, credentials: dict | None = None, **kwargs):
        """A plain boto3 client; ``retries=1`` (no retry) so a probe sees every answer as it is.
        ``credentials``: an access key (IAM ``AccessKey`` or STS ``Credentials``) to sign with."""
        from botocore.config import Config

        key = (service, retries, read_timeout, tuple(sorted((credentials or {}).items())), tuple(sorted(kwargs.items())))
        if key not in self._clients:
            config = Config(retries={"mode": "standard", "total_max_attempts": retries},
                            connect_timeout=5, read_timeout=read_timeout, **kwargs)
            keys = {}
            if credentials:
                keys = {"aws_access_key_id": credentials["AccessKeyId"], "aws_secret_access_key": credentials["SecretAccessKey"],
                        "aws_session_token": credentials.get("SessionToken")}
            self._clients[key] = self.session.client(service, config=config, **keys)
        return self._clients[key]


def error_code(error: Exception) -> str:
    """The AWS error code of a botocore ClientError ("" for anything else)."""
    if isinstance(error, botocore.exceptions.ClientError):
        return error.response.get("Error", {}).get("Code", "") or str(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
    return ""


def status_code(error: Exception) -> int | None:
    if isinstance(error, botocore.exceptions.ClientError):
        return error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return None


_NOT_SERVED_CODES = {"NotImplemented", "NotImplementedError", "InternalFailure", "ServiceUnavailable"}
_NOT_SERVED_WORDS = ("not yet been emulated", "not included in your current license", "is not enabled",
                     "not implemented", "not yet implemented")


def is_not_served(error: Exception) -> bool:
    """True for the ways backends say "no such service or operation here"."""
    if isinstance(error, NotServed):
        return True
    if isinstance(error, botocore.exceptions.EndpointConnectionError):
        return True
    text = str(error).lower()
    if isinstance(error, botocore.exceptions.ClientError):
        if status_code(error) == 501 or (error_code(error) in _NOT_SERVED_CODES and any(w in text for w in _NOT_SERVED_WORDS)):
            return True
    return any(word in text for word in _NOT_SERVED_WORDS)


def poll(check: Callable[[], object], timeout: float, interval: float = 0.1):
    """Call ``check`` until it returns something truthy or ``timeout`` seconds pass; the last answer."""
    deadline = time.monotonic() + timeout
    while True:
        answer = check()
        if answer or time.monotonic() >= deadline:
            return answer
        time.sleep(interval)


def quietly(action: Callable[[], object]) -> None:
    """Run a clean-up step; a failure to clean up never changes a verdict."""
    try:
        action()
    except Exception:
        pass


def _run_one(claim_: Claim, run_id: str) -> Result:
    outcome: dict[str, object] = {}

    def target() -> None:
        try:
            outcome["observation"] = claim_.probe(Probe(claim_.id, run_id))
        except BaseException as error:  # reported in the table, never raised past the runner
            outcome["error"] = error

    started = time.monotonic()
    worker = threading.Thread(target=target, name=f"probe-{claim_.id}", daemon=True)
    worker.start()
    worker.join(claim_.timeout)
    seconds = round(time.monotonic() - started, 2)
    if worker.is_alive():
        verdict, observed = DIFFERS, f"no answer within {claim_.timeout:g} s"
    elif "error" in outcome:
        error = outcome["error"]
        if is_not_served(error):
            verdict, observed = NOT_SERVED, _short_error(error)
        else:
            verdict, observed = DIFFERS, "probe failed: " + _short_error(error)
    else:
        observation = outcome["observation"]
        verdict, observed = (HOLDS if observation.holds else DIFFERS), observation.observed
    return Result(claim_.id, claim_.topic, claim_.text, claim_.expected, claim_.source, observed, verdict, seconds)


def _short_error(error: BaseException) -> str:
    if isinstance(error, botocore.exceptions.ClientError):
        message = error.response.get("Error", {}).get("Message", "") or ""
        text = f"{error_code(error)}: {message}".strip(": ")
    else:
        text = f"{type(error).__name__}: {error}"
    return " ".join(text.split())[:160]


def select(ids: list[str] | None = None, topics: list[str] | None = None) -> list[Claim]:
    """The registered claims, in suite order, optionally only the given ids or topics."""
    from . import probes_lambda, probes_messaging, probes_storage  # noqa: F401 (they register)

    chosen = [c for c in CLAIMS if (not ids or c.id in ids) and (not topics or c.topic in topics)]
    unknown = set(ids or ()) - {c.id for c in CLAIMS}
    if unknown:
        raise ValueError(f"no such claim: {', '.join(sorted(unknown))}")
    return sorted(chosen, key=lambda c: (c.topic, CLAIMS.index(c)))


_WARM_UP = (("s3", "list_buckets"), ("sqs", "list_queues"), ("sns", "list_topics"), ("sts", "get_caller_identity"),
            ("ec2", "describe_availability_zones"), ("iam", "list_roles"), ("dynamodb", "list_tables"),
            ("lambda", "list_functions"))


def warm_up(timeout: float = 60) -> None:
    """One cheap call per service, so no probe's time bound pays for a backend's first-request
    start-up (LocalStack loads each service at its first request: seconds on a busy machine).
    One after the other: LocalStack 4.14 importing two services' modules at once can deadlock
    ("deadlock detected by _ModuleLock('moto.iam')" seen from STS and EC2 loaded together)."""
    probe = Probe("warm-up", "0")
    for service, operation in _WARM_UP:
        quietly(lambda: getattr(probe.client(service, read_timeout=timeout), operation)())


def run(claims: list[Claim] | None = None, jobs: int = 4) -> list[Result]:
    """Run the probes against the current backend (``cloudlab.use_backend()`` first); results in
    suite order. Probes are independent, so ``jobs`` of them run at once (their waits overlap)."""
    claims = select() if claims is None else claims
    warm_up()
    run_id = uuid.uuid4().hex[:6]
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        return list(pool.map(lambda c: _run_one(c, run_id), claims))
