"""Execution environments: one OS process each, running the AWS runtime interface client.

Introduced in notebook 03 ("invocation versus process lifecycle"). An environment is
``python -m awslambdaric module.handler``, the same runtime client the AWS Python runtime
uses, with ``AWS_LAMBDA_RUNTIME_API`` pointing at a Runtime API of cloudlab's
(``runtime_api.py``). So:

- a cold start is a new process: Python starts, imports the handler module, runs its
  module-level code (the INIT phase), then asks for an event;
- a warm start is the same process asked again: module globals and files it wrote survive;
- ``context`` is the real ``LambdaContext``: request id, ``get_remaining_time_in_millis()``
  from the deadline header, ``memory_limit_in_mb`` from the environment.

What differs from AWS, on purpose or by necessity:

- ``/tmp``: each environment gets its own directory and ``TMPDIR`` points at it, so
  ``tempfile`` (and anything that honours ``TMPDIR``) is private to the environment and
  survives warm invokes. A handler that writes the literal path ``/tmp/x`` writes to this
  machine's shared ``/tmp``; isolating it would need root (mount namespaces) or Docker.
- Memory: ``Max Memory Used`` is the process's peak resident set (``VmHWM``, Linux). The limit
  is checked after each invoke (AWS kills the moment it is crossed): over it, the
  environment is killed and the invoke fails with ``Runtime.OutOfMemory``.
- CPU: AWS gives a function CPU in proportion to its memory (1,769 MB = 1 vCPU). A process
  here gets whatever this machine's cores give it. ``model_duration_ms`` on each outcome is a
  MODEL, not a measurement: measured wall time plus the measured CPU time stretched by
  1769/memory (for memory below 1,769 MB). It is never written into the REPORT line.
- The handler runs on this machine's Python, whatever ``Runtime`` the function declares.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from .runtime_api import INIT_ERROR_PATH, NEXT_PATH, RuntimeApiEndpoint, RuntimeGone

LOG_TAIL_BYTES = 4096
MAX_RESPONSE_BYTES = 6 * 1024 * 1024
INIT_TIMEOUT_SECONDS = 10.0
MB_PER_VCPU = 1769
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_WATCHDOG_DIR = Path(__file__).parent / "_watchdog"
_SIGNAL_WORDS = {9: "killed", 6: "aborted", 11: "segmentation fault", 15: "terminated", 2: "interrupt"}


@dataclass
class FunctionSnapshot:
    """The configuration an environment was started with (any change means new environments)."""

    name: str
    arn: str                    # unqualified function ARN
    version: str                # "$LATEST" or a published version number
    handler: str
    runtime: str
    memory_mb: int
    timeout_s: float
    variables: dict[str, str]
    code_dir: Path
    layer_dirs: list[Path]
    region: str
    account: str
    key: tuple
    # Where the handler's boto3 calls go: AWS_ENDPOINT_URL and AWS_ENDPOINT_URL_<SERVICE>.
    endpoints: dict[str, str] = field(default_factory=dict)
    reserved: int | None = None
    dead_letter_arn: str | None = None
    event_invoke_config: dict = field(default_factory=dict)

    @property
    def qualified_arn(self) -> str:
        return f"{self.arn}:{self.version}"

    @property
    def log_group(self) -> str:
        return f"/aws/lambda/{self.name}"


@dataclass
class InvokeOutcome:
    """What one invoke did, with the figures of its REPORT line."""

    request_id: str
    payload: bytes
    status: str                 # ok | error | timeout | exited | init_error | oom
    function_error: str | None  # "Unhandled" when the payload is an error, as on AWS
    error_type: str | None
    cold: bool
    init_ms: float | None
    duration_ms: float
    billed_ms: int
    memory_mb: int
    max_memory_mb: int | None
    cpu_ms: float | None
    model_duration_ms: float    # MODEL: CPU scaled with memory, see the module docstring
    environment_id: str
    executed_version: str
    log: bytes = b""            # this invoke's log: START..REPORT (and init output on a cold start)
    retry_elsewhere: bool = False  # the environment had died before the event was sent

    @property
    def log_tail(self) -> bytes:
        return self.log[-LOG_TAIL_BYTES:]

    def record(self) -> dict:
        """A row for tables and plots (notebook 03)."""
        return {"request_id": self.request_id, "cold": self.cold, "status": self.status,
                "init_ms": self.init_ms, "duration_ms": self.duration_ms, "billed_ms": self.billed_ms,
                "memory_mb": self.memory_mb, "max_memory_mb": self.max_memory_mb, "cpu_ms": self.cpu_ms,
                "model_duration_ms": self.model_duration_ms, "environment": self.environment_id,
                "error_type": self.error_type}


def _proc_stats(pid: int) -> tuple[int | None, float | None]:
    """(peak RSS in MB, CPU seconds used) of a process, from /proc; (None, None) elsewhere."""
    peak = cpu = None
    try:
        with open(f"/proc/{pid}/status", "rb") as status:
            for line in status:
                if line.startswith(b"VmHWM:"):
                    peak = math.ceil(int(line.split()[1]) / 1024)
                    break
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
            cpu = (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS
    except (OSError, ValueError, IndexError):
        pass
    return peak, cpu


def model_duration_ms(wall_ms: float, cpu_ms: float | None, memory_mb: int) -> float:
    """MODEL of the duration on AWS: CPU time stretched by the vCPU share memory buys.

    With ``memory_mb`` below 1,769 MB a function gets ``memory_mb / 1769`` of a vCPU, so CPU
    work takes ``1769 / memory_mb`` times as long; waiting (I/O, sleep) does not stretch.
    A model, not a measurement: shown only where it is labelled as one.
    """
    if not cpu_ms or memory_mb >= MB_PER_VCPU:
        return round(wall_ms, 2)
    cpu_ms = min(cpu_ms, wall_ms)
    return round(wall_ms + cpu_ms * (MB_PER_VCPU / memory_mb - 1), 2)


def _exit_words(returncode: int | None) -> str:
    if returncode is None:
        return "signal: killed"
    if returncode < 0:
        number = -returncode
        word = _SIGNAL_WORDS.get(number)
        if word is None:
            try:
                word = signal.Signals(number).name
            except ValueError:
                word = str(number)
        return f"signal: {word}"
    return f"exit status {returncode}"


def new_request_id() -> str:
    return str(uuid.uuid4())


class ExecutionEnvironment:
    """One execution environment: a runtime process, its Runtime API, its /tmp and its log."""

    def __init__(self, snapshot: FunctionSnapshot, root: Path, init_type: str = "on-demand") -> None:
        self.snapshot = snapshot
        self.init_type = init_type
        self.id = uuid.uuid4().hex
        self.directory = Path(root) / "environments" / self.id[:12]
        self.tmp = self.directory / "tmp"
        self.tmp.mkdir(parents=True)
        self.log_path = self.directory / "log"
        self._log_fd = os.open(self.log_path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        self.api = RuntimeApiEndpoint()
        self.process: subprocess.Popen | None = None
        self.invocations = 0
        self.init_ms: float | None = None
        self._cpu_seen: float | None = None
        self._watch_write: int | None = None
        self.prewarmed = False  # INIT ran ahead of any invoke (provisioned concurrency)
        self.provisioned = False  # kept warm: not reclaimed when idle
        self.dead = False
        self.created = self.last_used = time.monotonic()
        self.log_stream = time.strftime("%Y/%m/%d/", time.gmtime()) + f"[{snapshot.version}]{self.id}"

    # -- process ---------------------------------------------------------------------------
    def environment_variables(self) -> dict[str, str]:
        snap = self.snapshot
        variables = {key: str(value) for key, value in (snap.variables or {}).items()}
        python_path = [str(snap.code_dir)]
        for layer in snap.layer_dirs:
            python_path += [str(layer / "python"), str(layer / "python" / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages")]
        reserved = {
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            "LANG": "en_US.UTF-8",
            "TZ": ":UTC",
            "HOME": str(self.directory),  # never the student's home (and its ~/.aws)
            "TMPDIR": str(self.tmp),
            "PYTHONPATH": os.pathsep.join(python_path + [str(_WATCHDOG_DIR)]),
            "CLOUDLAB_LAMBDA_WATCHDOG_FD": str(self._watch_read),
            "LAMBDA_TASK_ROOT": str(snap.code_dir),
            "LAMBDA_RUNTIME_DIR": str(Path(__import__("awslambdaric").__file__).parent),
            "_HANDLER": snap.handler,
            # The configured Runtime, as on AWS; the interpreter itself is this machine's (notebook 03 says so).
            "AWS_EXECUTION_ENV": f"AWS_Lambda_{snap.runtime}",
            "AWS_LAMBDA_FUNCTION_NAME": snap.name,
            "AWS_LAMBDA_FUNCTION_VERSION": snap.version,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(snap.memory_mb),
            "AWS_LAMBDA_LOG_GROUP_NAME": snap.log_group,
            "AWS_LAMBDA_LOG_STREAM_NAME": self.log_stream,
            "AWS_LAMBDA_INITIALIZATION_TYPE": self.init_type,
            "AWS_LAMBDA_RUNTIME_API": self.api.address,
            "AWS_REGION": snap.region,
            "AWS_DEFAULT_REGION": snap.region,
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_SESSION_TOKEN": "test",
        }
        reserved.update(snap.endpoints)
        if os.environ.get("LD_LIBRARY_PATH"):
            reserved["LD_LIBRARY_PATH"] = os.environ["LD_LIBRARY_PATH"]
        variables.update(reserved)  # as on AWS, reserved names cannot be overridden
        return variables

    def start(self) -> None:
        """Start the runtime process (the INIT phase begins)."""
        runtime = f"python:{sys.version_info.major}.{sys.version_info.minor}.local"
        self._log(f"INIT_START Runtime Version: {runtime}\tRuntime Version ARN: (local awslambdaric)\n")
        # The child gets the read end of a pipe only this process writes to: if this process
        # dies without cleaning up, the child's watchdog (_watchdog/sitecustomize.py) sees EOF.
        self._watch_read, self._watch_write = os.pipe()
        self._spawned = time.monotonic()
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "awslambdaric", self.snapshot.handler],
                cwd=self.snapshot.code_dir, env=self.environment_variables(),
                stdin=subprocess.DEVNULL, stdout=self._log_fd, stderr=subprocess.STDOUT,
                start_new_session=True, close_fds=True, pass_fds=(self._watch_read,))
        finally:
            os.close(self._watch_read)

    def wait_ready(self, deadline: float | None = None) -> InvokeOutcome | None:
        """Finish INIT (first ``/next``), for pre-warming. Returns an outcome only on failure."""
        if self.api.next_pending:
            return None
        deadline = deadline or (self._spawned + INIT_TIMEOUT_SECONDS)
        return self._await_next(deadline, new_request_id(), cold=True, log_start=0)

    def _await_next(self, deadline: float, request_id: str, cold: bool, log_start: int) -> InvokeOutcome | None:
        """Read until the runtime parks a ``GET /next``; an outcome if it fails instead."""
        while True:
            try:
                request = self.api.read_request(deadline, self.process)
            except TimeoutError:
                if not cold:
                    return self._gone(request_id, retry=True)
                self.kill()
                message = f"RequestId: {request_id} Error: Task timed out after {INIT_TIMEOUT_SECONDS:.2f} seconds"
                self._log(f"INIT_REPORT Init Duration: {INIT_TIMEOUT_SECONDS * 1000:.2f} ms\tPhase: init\tStatus: timeout\n")
                return self._failure(request_id, "timeout", "Sandbox.Timedout", message, cold, log_start)
            except RuntimeGone:
                if not cold:
                    return self._gone(request_id, retry=True)
                self.dead = True
                message = f"RequestId: {request_id} Error: Runtime exited with error: {_exit_words(self.process.returncode)}"
                self._log(message + "\nRuntime.ExitError\n")
                return self._failure(request_id, "exited", "Runtime.ExitError", message, cold, log_start)
            if request.method == "GET" and request.path == NEXT_PATH:
                self.api.next_pending = True
                if cold and self.init_ms is None:
                    self.init_ms = (time.monotonic() - self._spawned) * 1000
                    self._cpu_seen = _proc_stats(self.process.pid)[1]
                return None
            if request.path == INIT_ERROR_PATH:
                self.api.respond(202, b'{"status":"OK"}')
                init_ms = (time.monotonic() - self._spawned) * 1000
                try:
                    error = json.loads(request.body)
                except ValueError:
                    error = {"errorMessage": request.body.decode("utf-8", "replace"), "errorType": "Runtime.Unknown"}
                error_type = request.headers.get("lambda-runtime-function-error-type") or error.get("errorType")
                self._log(f"INIT_REPORT Init Duration: {init_ms:.2f} ms\tPhase: init\tStatus: error\tError Type: {error_type}\n")
                self.kill()
                self.init_ms = init_ms
                return self._failure(request_id, "init_error", error_type, None, cold, log_start,
                                     payload=json.dumps(error).encode())
            self.api.respond(404, b'{"errorMessage":"not served by cloudlab","errorType":"InvalidRequest"}')

    # -- one invoke ------------------------------------------------------------------------
    def invoke(self, payload: bytes, request_id: str | None = None, client_context: str | None = None,
               invoked_arn: str | None = None) -> InvokeOutcome:
        """Run one event through the handler; the environment is dead afterwards on failures."""
        snap = self.snapshot
        request_id = request_id or new_request_id()
        cold = self.invocations == 0 and not self.prewarmed
        log_start = 0 if cold else os.fstat(self._log_fd).st_size
        self.invocations += 1
        if not self.api.next_pending:
            deadline = (self._spawned + INIT_TIMEOUT_SECONDS) if cold else time.monotonic() + snap.timeout_s
            failure = self._await_next(deadline, request_id, cold, log_start)
            if failure is not None:
                return failure
        cpu_before = self._cpu_seen  # CPU used up to the end of the previous invoke (one /proc read per invoke)
        self._log(f"START RequestId: {request_id} Version: {snap.version}\n")
        started = time.monotonic()
        deadline = started + snap.timeout_s
        if invoked_arn is None:
            invoked_arn = snap.arn if snap.version == "$LATEST" else snap.qualified_arn
        self.api.send_event(request_id, int((time.time() + snap.timeout_s) * 1000), invoked_arn,
                            payload, client_context)
        status, error_type, body = "ok", None, b""
        while True:
            try:
                request = self.api.read_request(deadline, self.process)
            except TimeoutError:
                self.kill()
                message = f"RequestId: {request_id} Error: Task timed out after {snap.timeout_s:.2f} seconds"
                self._log(time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".000Z {request_id} Task timed out after {snap.timeout_s:.2f} seconds\n")
                return self._finish(request_id, "timeout", "Sandbox.Timedout", _error_json(message, "Sandbox.Timedout"),
                                    cold, started, log_start, cpu_before)
            except RuntimeGone:
                self.dead = True
                message = f"RequestId: {request_id} Error: Runtime exited with error: {_exit_words(self.process.returncode)}"
                self._log(message + "\nRuntime.ExitError\n")
                return self._finish(request_id, "exited", "Runtime.ExitError", _error_json(message, "Runtime.ExitError"),
                                    cold, started, log_start, cpu_before)
            path = request.path
            if request.method == "POST" and path.endswith("/response") and f"/{request_id}/" in path:
                self.api.respond(202, b'{"status":"OK"}')
                body = request.body
                if len(body) > MAX_RESPONSE_BYTES:
                    status, error_type = "error", "Function.ResponseSizeTooLarge"
                    body = _error_json(f"Response payload size exceeded maximum allowed payload size ({MAX_RESPONSE_BYTES} bytes).", error_type)
                break
            if request.method == "POST" and path.endswith("/error") and f"/{request_id}/" in path:
                self.api.respond(202, b'{"status":"OK"}')
                status, body = "error", request.body
                try:
                    error_type = json.loads(body).get("errorType")
                except (ValueError, AttributeError):
                    error_type = None
                error_type = error_type or request.headers.get("lambda-runtime-function-error-type") or "Unhandled"
                break
            if path == NEXT_PATH:  # a runtime that asks again without answering: AWS calls it an error
                self.api.next_pending = True
                status, error_type = "error", "Runtime.InvalidResponse"
                body = _error_json("The runtime asked for the next event without answering this one", error_type)
                break
            self.api.respond(400, b'{"errorMessage":"unknown request id or path","errorType":"InvalidRequestID"}')
        return self._finish(request_id, status, error_type, body, cold, started, log_start, cpu_before)

    def _finish(self, request_id, status, error_type, body, cold, started, log_start, cpu_before) -> InvokeOutcome:
        snap = self.snapshot
        duration_ms = (time.monotonic() - started) * 1000
        if status == "timeout":  # AWS reports (and bills) exactly the timeout, not when the kill landed
            duration_ms = snap.timeout_s * 1000
        peak_mb, cpu_after = (None, None) if self.dead else _proc_stats(self.process.pid)
        self._cpu_seen = cpu_after
        if peak_mb is not None and peak_mb > snap.memory_mb and status in ("ok", "error"):
            self.kill()
            status, error_type = "oom", "Runtime.OutOfMemory"
            message = f"RequestId: {request_id} Error: Runtime exited with error: signal: killed"
            self._log(message + "\nRuntime.OutOfMemory\n")
            body = _error_json(message, error_type)
        cpu_ms = None if cpu_before is None or cpu_after is None else (cpu_after - cpu_before) * 1000
        init_ms = self.init_ms if cold else None
        billed_init = init_ms if (init_ms and self.init_type == "on-demand") else 0.0
        billed_ms = max(1, math.ceil(duration_ms + billed_init))  # INIT billed since 1 Aug 2025
        report = (f"REPORT RequestId: {request_id}\tDuration: {duration_ms:.2f} ms\tBilled Duration: {billed_ms} ms\t"
                  f"Memory Size: {snap.memory_mb} MB\tMax Memory Used: {peak_mb if peak_mb is not None else '-'} MB\t")
        if init_ms is not None:
            report += f"Init Duration: {init_ms:.2f} ms\t"
        if status == "timeout":
            report += "Status: timeout"
        elif status in ("exited", "oom"):
            report += "Status: error\tError Type: " + (error_type or "Runtime.ExitError")
        self._log(f"END RequestId: {request_id}\n{report}\n")
        self.last_used = time.monotonic()
        return InvokeOutcome(
            request_id=request_id, payload=body, status=status,
            function_error=None if status == "ok" else "Unhandled", error_type=error_type,
            cold=cold, init_ms=init_ms, duration_ms=round(duration_ms, 3), billed_ms=billed_ms,
            memory_mb=snap.memory_mb, max_memory_mb=peak_mb, cpu_ms=cpu_ms,
            model_duration_ms=model_duration_ms(duration_ms, cpu_ms, snap.memory_mb),
            environment_id=self.id, executed_version=snap.version, log=self.read_log(log_start))

    def _failure(self, request_id, status, error_type, message, cold, log_start, payload=None) -> InvokeOutcome:
        """An invoke that never reached the handler (INIT failed or timed out)."""
        snap = self.snapshot
        body = payload if payload is not None else _error_json(message, error_type)
        self._log(f"START RequestId: {request_id} Version: {snap.version}\nEND RequestId: {request_id}\n"
                  f"REPORT RequestId: {request_id}\tDuration: 0.00 ms\tBilled Duration: {max(1, math.ceil(self.init_ms or 0))} ms\t"
                  f"Memory Size: {snap.memory_mb} MB\tMax Memory Used: - MB\tStatus: error\tError Type: {error_type}\n")
        return InvokeOutcome(
            request_id=request_id, payload=body, status=status, function_error="Unhandled", error_type=error_type,
            cold=cold, init_ms=self.init_ms, duration_ms=0.0, billed_ms=max(1, math.ceil(self.init_ms or 0)),
            memory_mb=snap.memory_mb, max_memory_mb=None, cpu_ms=None, model_duration_ms=0.0,
            environment_id=self.id, executed_version=snap.version, log=self.read_log(log_start))

    def _gone(self, request_id: str, retry: bool) -> InvokeOutcome:
        """A warm environment that died between invokes: the caller retries on another one."""
        self.kill()
        return InvokeOutcome(request_id=request_id, payload=b"", status="exited", function_error=None,
                             error_type=None, cold=False, init_ms=None, duration_ms=0.0, billed_ms=0,
                             memory_mb=self.snapshot.memory_mb, max_memory_mb=None, cpu_ms=None,
                             model_duration_ms=0.0, environment_id=self.id,
                             executed_version=self.snapshot.version, retry_elsewhere=retry)

    # -- logs ------------------------------------------------------------------------------
    def _log(self, text: str) -> None:
        try:
            os.write(self._log_fd, text.encode("utf-8"))
        except OSError:
            pass

    def read_log(self, start: int = 0) -> bytes:
        try:
            size = os.fstat(self._log_fd).st_size
            return os.pread(self._log_fd, max(0, size - start), start)
        except OSError:
            return b""

    # -- end of life -----------------------------------------------------------------------
    def kill(self) -> None:
        """Kill the process group at once (no cleanup code runs, as on AWS)."""
        self.dead = True
        process = self.process
        if process is not None:
            try:  # the whole group: anything the handler started goes too
                os.killpg(process.pid, signal.SIGKILL)
            except (OSError, AttributeError):
                if process.poll() is None:
                    process.kill()
        if process is not None:
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        self.api.close()
        if self._watch_write is not None:
            try:
                os.close(self._watch_write)
            except OSError:
                pass
            self._watch_write = None

    def discard(self) -> None:
        """Kill the process and delete the environment's files."""
        self.kill()
        try:
            os.close(self._log_fd)
        except OSError:
            pass
        shutil.rmtree(self.directory, ignore_errors=True)


def _error_json(message: str, error_type: str) -> bytes:
    return json.dumps({"errorType": error_type, "errorMessage": message}).encode()
