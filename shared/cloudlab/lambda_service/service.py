"""The local Lambda service: functions' execution environments, concurrency, async invokes.

Introduced in notebook 03. moto keeps the functions' metadata (create, get, list, update,
versions, aliases, concurrency settings, event invoke configs all stay moto's), so
``get_function`` and ``list_functions`` answer as before; this service reads that metadata
in-process at each invoke and runs the code, which moto cannot do without Docker.

Concurrency, as on AWS: an invoke takes an idle (warm) environment of the function's
current configuration, or starts a new one (cold). In-flight invokes of a function are
capped by its reserved concurrency; all in-flight invokes together by an account limit
(``CLOUDLAB_LAMBDA_CONCURRENCY``, default 10: a 2-core machine is not a region of servers;
AWS's default is 1,000). Over a limit the invoke is throttled (``TooManyRequestsException``).
Any configuration or code change retires the old environments, as on AWS.

Settings (attributes of the service, defaults from environment variables):

- ``idle_seconds`` (``CLOUDLAB_LAMBDA_IDLE_SECONDS``, 300): an environment unused that long is
  reclaimed (AWS does not document the figure; environments are seen to live minutes);
- ``concurrency_limit`` (``CLOUDLAB_LAMBDA_CONCURRENCY``, 10), ``max_environments``
  (``CLOUDLAB_LAMBDA_MAX_ENVIRONMENTS``, 24 live processes; the least recently used idle one
  is reclaimed first);
- ``async_retry_delays`` (``CLOUDLAB_LAMBDA_ASYNC_RETRY_DELAYS``, "1,2" seconds): the waits
  before the two retries of a failed async invoke. AWS waits about 1 and 2 MINUTES; the
  course scales them down so a cell finishes. Labelled as a scaled model wherever shown;
- ``CLOUDLAB_LAMBDA_ASYNC_WORKERS`` (4): how many ``Event`` invokes run at once (AWS scales
  its async pollers out; the capstone's benchmark raises it with the concurrency limit).
"""

from __future__ import annotations

import atexit
import collections
import hashlib
import io
import json
import os
import shutil
import tempfile
import threading
import time
import weakref
import zipfile
from pathlib import Path

from .. import tempdirs
from ..backend import local_services, moto_compat
from ..backend.aws_protocol import DEFAULT_REGION
from .environment import ExecutionEnvironment, FunctionSnapshot, InvokeOutcome, new_request_id


ATTEMPTS_ON_DEAD_ENVIRONMENTS = 3  # a warm environment found dead: the event goes to another


class LambdaServiceError(Exception):
    """An invoke refused before any code ran; carries the AWS error code and HTTP status."""

    code = "ServiceException"
    status = 500

    def __init__(self, message: str, **fields) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields


class FunctionNotFound(LambdaServiceError):
    code, status = "ResourceNotFoundException", 404


class Throttled(LambdaServiceError):
    code, status = "TooManyRequestsException", 429


class InvalidRuntime(LambdaServiceError):
    code, status = "InvalidRuntimeException", 502


class InvalidCode(LambdaServiceError):
    code, status = "InvalidParameterValueException", 400


class InvalidParameterValue(LambdaServiceError):
    code, status = "InvalidParameterValueException", 400


# AWS keeps 100 of an account's default 1,000 concurrent executions unreserved (docs/aws-facts.md).
AWS_ACCOUNT_CONCURRENCY, AWS_UNRESERVED_MINIMUM = 1000, 100


def _setting(name: str, default):
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    if isinstance(default, tuple):
        return tuple(float(part) for part in value.split(",") if part.strip())
    return type(default)(value)


def _int_or_none(value) -> int | None:
    try:
        return None if value is None or value == "" else int(value)
    except (TypeError, ValueError):
        return None


class _Pool:
    """The environments of one function configuration."""

    def __init__(self, snapshot: FunctionSnapshot) -> None:
        self.snapshot = snapshot
        self.idle: list[ExecutionEnvironment] = []
        self.all: set[ExecutionEnvironment] = set()
        self.retired = False


class LocalLambdaService:
    """Runs Lambda functions stored in moto as awslambdaric processes (see the module docstring)."""

    def __init__(self, endpoint_url: str | None = None, root: str | Path | None = None) -> None:
        self.endpoint_url = endpoint_url
        self.root = Path(root) if root else tempdirs.make("lambda")
        self._owns_root = root is None
        self.idle_seconds = _setting("CLOUDLAB_LAMBDA_IDLE_SECONDS", 300.0)
        self.concurrency_limit = _setting("CLOUDLAB_LAMBDA_CONCURRENCY", 10)
        self.max_environments = _setting("CLOUDLAB_LAMBDA_MAX_ENVIRONMENTS", 24)
        self.async_retry_delays = _setting("CLOUDLAB_LAMBDA_ASYNC_RETRY_DELAYS", (1.0, 2.0))
        self._lock = threading.Lock()
        self._code_lock = threading.Lock()
        self._pools: dict[tuple, _Pool] = {}
        self._current_key: dict[tuple, tuple] = {}
        self._in_flight: collections.Counter = collections.Counter()
        self._in_flight_total = 0
        self._snapshots: dict[tuple, FunctionSnapshot] = {}
        self._history: dict[str, collections.deque] = collections.defaultdict(lambda: collections.deque(maxlen=2000))
        self.dead_letter_configs: dict[tuple[str, str], str] = {}  # (region, name) -> target ARN; moto drops it
        self.provisioned: dict[tuple[str, str, str], dict] = {}  # (region, name, qualifier) -> config; moto has none
        self._stop = threading.Event()
        self._reaper: threading.Thread | None = None
        self._clients: dict[tuple[str, str, str | None], object] = {}
        self._clients_lock = threading.Lock()
        self._log_lock = threading.Lock()
        self._log_batch: list[tuple] = []
        self._log_thread: threading.Thread | None = None
        from .async_invoke import AsyncInvoker
        from .event_sources import EventSourceMappings
        from .schedules import Scheduler

        self.async_invoker = AsyncInvoker(self, workers=_setting("CLOUDLAB_LAMBDA_ASYNC_WORKERS", 4))
        self.event_source_mappings = EventSourceMappings(self)
        self.scheduler = Scheduler(self)  # started by install(): it reads moto in-process
        _live_services.add(self)

    # -- where handlers and the service's own clients send their calls ----------------------------
    @property
    def data_endpoint_url(self) -> str | None:
        """Where handlers and pollers find S3, SQS, DynamoDB...: ``None`` for the embedded
        emulator itself, LocalStack when ``CLOUDLAB_BACKEND=localstack`` (Lambda stays here)."""
        return local_services.data_endpoint()

    def endpoint_variables(self) -> dict[str, str]:
        """The endpoint configuration, as the variables boto3 reads: ``AWS_ENDPOINT_URL`` for
        every service, ``AWS_ENDPOINT_URL_LAMBDA`` when Lambda is served apart (LocalStack), and
        the process's other ``AWS_ENDPOINT_URL_<SERVICE>`` variables.

        Environments are started with it and keyed by it, and the service's clients are
        cached by it: after a backend switch nothing keeps talking to the old endpoint.
        """
        # Per-service endpoints of this process come first: under localstack, DynamoDB, IAM and
        # Logs are the embedded emulator's (backend.EMBEDDED_UNDER_LOCALSTACK), for handlers too.
        variables = {name: value for name, value in os.environ.items() if name.startswith("AWS_ENDPOINT_URL_")}
        data = self.data_endpoint_url or self.endpoint_url
        if data:
            variables["AWS_ENDPOINT_URL"] = data
        if self.endpoint_url and self.endpoint_url != data:
            variables["AWS_ENDPOINT_URL_LAMBDA"] = self.endpoint_url
        return variables

    # -- functions, from moto ------------------------------------------------------------------
    def moto_function(self, name: str, qualifier: str | None = None, region: str | None = None):
        """moto's record of a function (``name`` may be a name, ``name:qualifier`` or an ARN)."""
        lambda_backends = moto_compat.lambda_backends
        region, account = region or DEFAULT_REGION, moto_compat.DEFAULT_ACCOUNT_ID
        if name.startswith("arn:"):
            parts = name.split(":")
            region, account = parts[3] or region, parts[4] or account
        try:
            return lambda_backends[account][region].get_function(name, qualifier)
        except Exception:
            arn_name = name if name.startswith("arn:") else f"arn:aws:lambda:{region}:{account}:function:{name}"
            if qualifier and not name.startswith("arn:"):
                arn_name += f":{qualifier}"
            raise FunctionNotFound(f"Function not found: {arn_name}") from None

    def snapshot(self, fn) -> FunctionSnapshot:
        """The configuration environments of ``fn`` (a moto function) are started with,
        endpoints included."""
        endpoints = self.endpoint_variables()
        key = (fn.function_name, fn.region, str(fn.version), fn.code_sha_256, fn.handler, fn.run_time,
               int(fn.memory_size or 128), float(fn.timeout or 3),
               json.dumps(fn.environment_vars or {}, sort_keys=True),
               tuple(layer["Arn"] for layer in (fn.layers or [])), tuple(sorted(endpoints.items())))
        snapshot = self._snapshots.get(key)
        if snapshot is not None:
            return snapshot
        if getattr(fn, "package_type", "Zip") != "Zip" or not str(fn.run_time or "").startswith("python"):
            raise InvalidRuntime(
                f"The runtime parameter of {fn.run_time or fn.package_type} is not supported by the local "
                "Lambda service: it runs Python zip functions (on this machine's Python).")
        code_dir = self._unpacked(fn.code_bytes, "code")
        layer_dirs = []
        for layer in fn.layers or []:
            layer_version = moto_compat.lambda_backends[fn.account_id][fn.region].layers_versions_by_arn(layer["Arn"])
            if layer_version is not None:
                layer_dirs.append(self._unpacked(layer_version.code_bytes, "layers"))
        arn = f"arn:aws:lambda:{fn.region}:{fn.account_id}:function:{fn.function_name}"
        snapshot = FunctionSnapshot(
            name=fn.function_name, arn=arn, version=str(fn.version), handler=fn.handler or "",
            runtime=fn.run_time, memory_mb=int(fn.memory_size or 128), timeout_s=float(fn.timeout or 3),
            variables=dict(fn.environment_vars or {}), code_dir=code_dir, layer_dirs=layer_dirs,
            region=fn.region, account=fn.account_id, key=key, endpoints=endpoints)
        self._snapshots[key] = snapshot
        return snapshot

    def _unpacked(self, code: bytes, kind: str) -> Path:
        """The zip's files in a folder (shared by every environment of that code, read-only use)."""
        digest = hashlib.sha256(code).hexdigest()[:20]
        target = self.root / kind / digest
        if target.is_dir():
            return target
        with self._code_lock:
            if not target.is_dir():
                staging = Path(tempfile.mkdtemp(dir=self.root, prefix="unzip-"))
                try:
                    with zipfile.ZipFile(io.BytesIO(code)) as archive:
                        archive.extractall(staging)
                except zipfile.BadZipFile:
                    shutil.rmtree(staging, ignore_errors=True)
                    raise InvalidCode("Could not unzip uploaded file. Please check your file, then try to upload again.") from None
                target.parent.mkdir(parents=True, exist_ok=True)
                staging.rename(target)
        return target

    # -- environments ----------------------------------------------------------------------------
    def _acquire(self, snapshot: FunctionSnapshot, reserved: int | None):
        evicted: list[ExecutionEnvironment] = []
        with self._lock:
            identity = (snapshot.name, snapshot.region, snapshot.version)
            pool = self._pools.get(snapshot.key)
            if pool is None:
                pool = self._pools[snapshot.key] = _Pool(snapshot)
            old_key = self._current_key.get(identity)
            if old_key is not None and old_key != snapshot.key:
                old = self._pools.pop(old_key, None)
                if old is not None:
                    old.retired = True
                    evicted += old.idle
                    old.all.difference_update(old.idle)
                    old.idle.clear()
            self._current_key[identity] = snapshot.key
            function_key = (snapshot.name, snapshot.region)
            if reserved is not None and self._in_flight[function_key] >= reserved:
                raise Throttled("Rate Exceeded.", Reason="ReservedFunctionConcurrentInvocationLimitExceeded")
            if self._in_flight_total >= self.concurrency_limit:
                raise Throttled("Rate Exceeded.", Reason="ConcurrentInvocationLimitExceeded")
            self._in_flight[function_key] += 1
            self._in_flight_total += 1
            env = pool.idle.pop() if pool.idle else None
            if env is None:
                live = sum(len(p.all) for p in self._pools.values())
                if live >= self.max_environments:
                    idle = [e for p in self._pools.values() for e in p.idle]
                    if idle:
                        oldest = min(idle, key=lambda e: e.last_used)
                        for p in self._pools.values():
                            if oldest in p.idle:
                                p.idle.remove(oldest)
                                p.all.discard(oldest)
                        evicted.append(oldest)
        for old_env in evicted:
            old_env.discard()
        if env is None:
            try:
                env = ExecutionEnvironment(snapshot, self.root)
                env.start()
            except BaseException:
                if env is not None:  # its start failed: no process to keep, only files to delete
                    env.discard()
                self._release_slot(snapshot)
                raise
            with self._lock:
                pool.all.add(env)
            self._ensure_reaper()
        return env, pool

    def _release_slot(self, snapshot: FunctionSnapshot) -> None:
        with self._lock:
            self._in_flight[(snapshot.name, snapshot.region)] -= 1
            self._in_flight_total -= 1

    def _release(self, env: ExecutionEnvironment, pool: _Pool) -> None:
        discard = False
        with self._lock:
            self._in_flight[(pool.snapshot.name, pool.snapshot.region)] -= 1
            self._in_flight_total -= 1
            if env.dead or pool.retired or self._stop.is_set():
                pool.all.discard(env)
                discard = True
            else:
                pool.idle.append(env)
        if discard:
            env.discard()

    def _ensure_reaper(self) -> None:
        if self._reaper is None or not self._reaper.is_alive():
            self._reaper = threading.Thread(target=self._reap_loop, name="cloudlab-lambda-reaper", daemon=True)
            self._reaper.start()

    def _reap_loop(self) -> None:
        while not self._stop.wait(min(1.0, max(0.05, self.idle_seconds / 4))):
            self.reclaim_idle()

    def reclaim_idle(self, older_than: float | None = None) -> int:
        """Stop environments idle for ``older_than`` seconds (default ``idle_seconds``); how many."""
        limit = self.idle_seconds if older_than is None else older_than
        now = time.monotonic()
        reclaimed = []
        with self._lock:
            for pool in self._pools.values():
                for env in list(pool.idle):
                    if now - env.last_used >= limit and not (env.provisioned and older_than is None):
                        pool.idle.remove(env)
                        pool.all.discard(env)
                        reclaimed.append(env)
        for env in reclaimed:
            env.discard()
        return len(reclaimed)

    def environments(self, function_name: str | None = None) -> list[dict]:
        """The live execution environments (notebook 03): id, pid, invokes served, state."""
        now = time.monotonic()
        with self._lock:
            rows = []
            for pool in self._pools.values():
                if function_name and pool.snapshot.name != function_name:
                    continue
                for env in pool.all:
                    rows.append({"function": pool.snapshot.name, "version": pool.snapshot.version,
                                 "environment": env.id, "pid": env.process.pid if env.process else None,
                                 "invocations": env.invocations, "state": "idle" if env in pool.idle else "busy",
                                 "idle_seconds": round(now - env.last_used, 1) if env in pool.idle else 0.0,
                                 "tmp": str(env.tmp)})
        return rows

    def forget_function(self, name: str, region: str | None = None) -> None:
        """Stop every environment of a function (it was deleted)."""
        if name.startswith("arn:"):
            parts = name.split(":")
            region, name = parts[3], parts[6]
        name = name.split(":")[0]
        region = region or DEFAULT_REGION
        doomed = []
        with self._lock:
            for key in [k for k, p in self._pools.items() if p.snapshot.name == name and p.snapshot.region == region]:
                pool = self._pools.pop(key)
                pool.retired = True
                doomed += pool.idle
                pool.all.difference_update(pool.idle)
                pool.idle.clear()
        self.dead_letter_configs.pop((region, name), None)
        self.event_source_mappings.forget_function(name, region)
        for env in doomed:
            env.discard()

    def prewarm(self, function_name: str, count: int, qualifier: str | None = None, region: str | None = None) -> int:
        """Start ``count`` environments and run their INIT now (provisioned concurrency, notebook 03).

        They are not reclaimed when idle, and their first invoke is warm (no Init Duration).
        """
        fn = self.moto_function(function_name, qualifier, region)
        snapshot = self.snapshot(fn)
        started = []
        try:
            for _ in range(count):
                env = ExecutionEnvironment(snapshot, self.root, init_type="provisioned-concurrency")
                started.append(env)
                env.start()
        except BaseException:  # one failed to start: stop the ones already running too
            for env in started:
                env.discard()
            raise
        ready = 0
        for env in started:
            if env.wait_ready() is None:
                env.prewarmed = env.provisioned = True
                with self._lock:
                    pool = self._pools.setdefault(snapshot.key, _Pool(snapshot))
                    self._current_key[(snapshot.name, snapshot.region, snapshot.version)] = snapshot.key
                    pool.all.add(env)
                    pool.idle.append(env)
                ready += 1
            else:
                env.discard()
        self._ensure_reaper()
        return ready

    def release_prewarmed(self, function_name: str, qualifier: str, region: str | None = None) -> None:
        """Provisioned concurrency removed: its environments become ordinary (reclaimed when idle)."""
        with self._lock:
            for pool in self._pools.values():
                snap = pool.snapshot
                if snap.name == function_name and snap.version == str(qualifier) and snap.region == (region or DEFAULT_REGION):
                    for env in pool.all:
                        env.provisioned = False

    # -- invoking ---------------------------------------------------------------------------------
    # -- reserved concurrency: the unreserved minimum, scaled ----------------------------------------
    @property
    def unreserved_minimum(self) -> int:
        """Concurrency no reservation may take: AWS's 100 of 1,000 (10 %), scaled to ``concurrency_limit``.

        Introduced in notebook 03. With the local account limit of 10, one execution stays
        unreserved, so reservations may total 9 at most.
        """
        return max(1, -(-self.concurrency_limit * AWS_UNRESERVED_MINIMUM // AWS_ACCOUNT_CONCURRENCY))

    def reserved_total(self, region: str | None = None, excluding: str | None = None) -> int:
        """Reserved concurrency of all functions of ``region``, leaving out function ``excluding``."""
        lambda_backends, DEFAULT_ACCOUNT_ID = moto_compat.lambda_backends, moto_compat.DEFAULT_ACCOUNT_ID
        total = 0
        for fn in lambda_backends[DEFAULT_ACCOUNT_ID][region or DEFAULT_REGION].list_functions():
            if fn.function_name != excluding:
                total += _int_or_none(getattr(fn, "reserved_concurrency", None)) or 0
        return total

    def check_reservation(self, function_name: str, reserved: int, region: str | None = None) -> None:
        """Refuse, as AWS does, a reservation that leaves less than :attr:`unreserved_minimum` unreserved."""
        name = self.moto_function(function_name, None, region).function_name
        unreserved = self.concurrency_limit - self.reserved_total(region, excluding=name) - reserved
        if unreserved < self.unreserved_minimum:
            raise InvalidParameterValue(
                "Specified ReservedConcurrentExecutions for function decreases account's "
                f"UnreservedConcurrentExecution below its minimum value of [{self.unreserved_minimum}]. "
                f"(The local Lambda service scales AWS's minimum of {AWS_UNRESERVED_MINIMUM} unreserved out of "
                f"{AWS_ACCOUNT_CONCURRENCY:,} to {self.unreserved_minimum} out of its account limit of "
                f"{self.concurrency_limit}.)")

    def invoke(self, function_name: str, payload: bytes | str | dict | None = None, *, qualifier: str | None = None,
               region: str | None = None, client_context: str | None = None,
               request_id: str | None = None) -> InvokeOutcome:
        """Run one synchronous invoke (RequestResponse). Raises ``Throttled`` or ``FunctionNotFound``."""
        if payload is None or payload == b"" or payload == "":
            payload = b"{}"
        elif isinstance(payload, dict | list):
            payload = json.dumps(payload).encode()
        elif isinstance(payload, str):
            payload = payload.encode()
        fn = self.moto_function(function_name, qualifier, region)
        snapshot = self.snapshot(fn)
        reserved = _int_or_none(getattr(fn, "reserved_concurrency", None))
        request_id = request_id or new_request_id()
        for _ in range(ATTEMPTS_ON_DEAD_ENVIRONMENTS):
            env, pool = self._acquire(snapshot, reserved)
            try:
                outcome = env.invoke(payload, request_id, client_context)
            except BaseException:
                env.kill()
                raise
            finally:
                self._release(env, pool)
            if not outcome.retry_elsewhere:
                break
        else:  # never ran: a service failure, not a successful invoke with an empty answer
            raise LambdaServiceError(
                f"The AWS Lambda service encountered an internal error: {ATTEMPTS_ON_DEAD_ENVIRONMENTS} execution "
                "environments in a row exited before they could take the event.", Type="Service")
        self._history[snapshot.name].append(outcome.record())
        self._ship_logs(snapshot, env, outcome)
        return outcome

    def invoke_async(self, function_name: str, payload: bytes | str | dict | None = None, *,
                     qualifier: str | None = None, region: str | None = None) -> str:
        """Queue an ``Event`` invoke (retries and destinations as on AWS); its request id."""
        fn = self.moto_function(function_name, qualifier, region)
        if isinstance(payload, dict | list):
            payload = json.dumps(payload).encode()
        elif isinstance(payload, str):
            payload = payload.encode()
        return self.async_invoker.submit(fn, payload or b"{}", qualifier)

    def invocations(self, function_name: str) -> list[dict]:
        """One row per invoke of ``function_name``: cold or warm, init, duration, memory (notebook 03)."""
        return list(self._history.get(function_name, ()))

    def in_flight(self, function_name: str, region: str | None = None) -> int:
        return self._in_flight[(function_name, region or DEFAULT_REGION)]

    # -- logs ---------------------------------------------------------------------------------------
    def _ship_logs(self, snapshot: FunctionSnapshot, env: ExecutionEnvironment, outcome: InvokeOutcome) -> None:
        """Queue the invoke's log lines for CloudWatch Logs (/aws/lambda/<name>) on the emulator.

        A background thread copies them in batches, about every 0.2 s, off the invoke's path.
        """
        with self._log_lock:
            self._log_batch.append((snapshot.account, snapshot.region, snapshot.log_group, env.log_stream,
                                    int(time.time() * 1000), outcome.log))
            if self._log_thread is None or not self._log_thread.is_alive():
                self._log_thread = threading.Thread(target=self._log_loop, name="cloudlab-lambda-logs", daemon=True)
                self._log_thread.start()

    def flush_logs(self) -> None:
        """Copy queued log lines into CloudWatch Logs now."""
        with self._log_lock:
            batch, self._log_batch = self._log_batch, []
        if not batch:
            return
        try:
            logs_backends = moto_compat.logs_backends
            for account, region, group, stream, stamp, log in batch:
                backend = logs_backends[account][region]
                if group not in backend.groups:
                    backend.create_log_group(group, {})
                if stream not in backend.groups[group].streams:
                    backend.create_log_stream(group, stream)
                lines = [line for line in log.decode("utf-8", "replace").split("\n") if line]
                if lines:
                    backend.put_log_events(group, stream, [{"timestamp": stamp, "message": line} for line in lines])
        except Exception:
            pass  # logs are a convenience; an invoke never fails because of them

    def _log_loop(self) -> None:
        while not self._stop.wait(0.2):
            self.flush_logs()

    # -- clients to the emulator, for destinations and pollers ---------------------------------------
    def client(self, service: str, region: str | None = None):
        """A boto3 client for DLQs, destinations and pollers, at the current endpoint configuration."""
        variables = self.endpoint_variables()
        endpoint = variables.get(f"AWS_ENDPOINT_URL_{service.upper().replace('-', '_')}", variables.get("AWS_ENDPOINT_URL"))
        key = (service, region or DEFAULT_REGION, endpoint)
        client = self._clients.get(key)
        if client is None:
            with self._clients_lock:
                client = self._clients.get(key)
                if client is None:
                    import boto3
                    from botocore.config import Config

                    client = boto3.session.Session().client(
                        service, region_name=key[1],
                        endpoint_url=endpoint,
                        aws_access_key_id="test", aws_secret_access_key="test",
                        config=Config(retries={"mode": "standard", "total_max_attempts": 2}, read_timeout=70))
                    self._clients[key] = client
        return client

    # -- the end ------------------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Stop pollers and async workers and kill every environment (no orphan processes)."""
        self._stop.set()
        self.scheduler.stop()
        self.event_source_mappings.stop_all()
        self.async_invoker.stop()
        with self._lock:
            envs = [env for pool in self._pools.values() for env in pool.all]
            self._pools.clear()
        for env in envs:
            env.kill()
        for env in envs:
            env.discard()
        if self._owns_root:
            shutil.rmtree(self.root, ignore_errors=True)
        _live_services.discard(self)


_live_services: "weakref.WeakSet[LocalLambdaService]" = weakref.WeakSet()


@atexit.register
def _shutdown_all() -> None:
    for service in list(_live_services):
        try:
            service.shutdown()
        except Exception:
            pass
