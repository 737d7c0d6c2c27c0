"""The Lambda Runtime API, served by cloudlab to one execution environment.

Introduced in notebook 03 ("the execution environment"). On AWS a Go program (the runtime
interface emulator in local tools, the Lambda service itself in the cloud) answers the Runtime
API that the runtime client inside every execution environment polls:

- ``GET  /2018-06-01/runtime/invocation/next``: long poll; the answer carries the event and the
  ``Lambda-Runtime-Aws-Request-Id``, ``Lambda-Runtime-Deadline-Ms`` and
  ``Lambda-Runtime-Invoked-Function-Arn`` headers that become the handler's ``context``;
- ``POST /2018-06-01/runtime/invocation/{id}/response`` or ``.../{id}/error``: the result;
- ``POST /2018-06-01/runtime/init/error``: the handler module could not be loaded.

Each environment gets its own loopback listening socket (``AWS_LAMBDA_RUNTIME_API`` points at
it), so a request's environment is known from the socket it arrives on.

There is no server thread. The thread that invokes the function drives the exchange itself:
it answers the ``/next`` request that the runtime has parked on its kept-alive connection with
the event, then reads the ``/response`` from the same connection and answers ``202``. The
runtime's following ``/next`` is read by the next invoke. A warm invoke therefore costs no
thread hand-offs, and a dead process shows up at once as end-of-file on its connection.

Requests are parsed by cloudlab's one HTTP layer (``backend/http11.py``, on h11): a malformed
or truncated request from a runtime is answered 400 in the Runtime API's JSON error shape and
never reaches the invoke. Every answer leaves in one ``sendall`` (headers and body together) on a ``TCP_NODELAY``
socket: a naive server that writes headers and body separately makes each warm invoke wait
~88 ms for Nagle's algorithm and the runtime's delayed ACK (measured: ``docs/emulators.md``).
"""

from __future__ import annotations

import json
import socket
import time
from dataclasses import dataclass

from ..backend.http11 import HttpConnection, HttpLimits, IdleTimeout, RequestHeaders, RequestRejected

PREFIX = "/2018-06-01/runtime"
NEXT_PATH = PREFIX + "/invocation/next"
INIT_ERROR_PATH = PREFIX + "/init/error"

# A response above Lambda's 6 MB synchronous limit is still read, so that the invoke reports
# Function.ResponseSizeTooLarge as Lambda does (environment.py); only a body past twice that
# is refused at the HTTP layer (413 RequestEntityTooLarge, as the runtime interface emulator answers).
RUNTIME_API_LIMITS = HttpLimits(max_body_bytes=12 * 1024 * 1024)


class RuntimeGone(Exception):
    """The runtime closed its connection (its process exited or was killed)."""


@dataclass
class RuntimeRequest:
    method: str
    path: str  # without the query string
    headers: RequestHeaders  # looked up without regard to case
    body: bytes


def runtime_error_document(status: int, code: str, message: str) -> tuple[int, list, bytes]:
    """A rejected request in the Runtime API's JSON error shape."""
    if code == "EntityTooLarge":
        status, code = 413, "RequestEntityTooLarge"
    body = json.dumps({"errorMessage": message, "errorType": code}).encode()
    return status, [("Content-Type", "application/json")], body


class RuntimeApiEndpoint:
    """One environment's Runtime API: a listening socket on 127.0.0.1 and the runtime's connection."""

    def __init__(self, limits: HttpLimits = RUNTIME_API_LIMITS) -> None:
        self.limits = limits
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(8)
        self.address = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self._connection: HttpConnection | None = None
        self.next_pending = False  # a GET /next has been read and waits for its event

    # -- connections ---------------------------------------------------------------------
    def _accept(self, deadline: float, process) -> None:
        """Wait for the runtime to connect, checking every 50 ms that its process still lives."""
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("runtime did not connect in time")
            if process.poll() is not None:
                raise RuntimeGone()
            self._listener.settimeout(min(remaining, 0.05))
            try:
                connection, client = self._listener.accept()
            except (TimeoutError, socket.timeout):
                continue
            connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._drop_connection()
            self._connection = HttpConnection(connection, self.limits, client)
            return

    def _drop_connection(self) -> None:
        if self._connection is not None:
            try:
                self._connection.close()
            except OSError:
                pass
        self._connection = None

    def read_request(self, deadline: float, process) -> RuntimeRequest:
        """The runtime's next request, waiting at most until ``deadline`` (``time.monotonic``).

        A runtime opens a new connection for an init error, and may reconnect; when the current
        connection ends while the process lives, the next connection is accepted. A malformed
        request is answered 400 (413 if too large) and its connection closed; it never reaches
        the invoke. Raises ``TimeoutError`` at the deadline and ``RuntimeGone`` when the process
        is gone.
        """
        while True:
            if self._connection is None:
                self._accept(deadline, process)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("deadline passed")
            connection = self._connection
            try:
                request = connection.read_request(
                    wait=remaining, timeout_for=lambda default: min(default, max(0.001, deadline - time.monotonic())))
            except IdleTimeout:
                raise TimeoutError("deadline passed") from None
            except RequestRejected as rejected:
                if rejected.code == "RequestTimeout" and time.monotonic() >= deadline:
                    raise TimeoutError("deadline passed") from None
                connection.send_error(*runtime_error_document(rejected.status, rejected.code, rejected.message))
                request = None
            except OSError:
                request = None
            if request is not None:
                return RuntimeRequest(request.method, request.target.split("?", 1)[0], request.headers, request.body)
            self._drop_connection()
            # End of file: either the process is exiting, or it reconnects (init/error does).
            try:
                process.wait(timeout=0.05)
            except Exception:
                continue
            raise RuntimeGone()

    def respond(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        """Answer the request just read: headers and body in one write."""
        if self._connection is None:
            return
        try:
            if not self._connection.send_response(status, headers or {}, body):
                self._drop_connection()
        except OSError:
            self._drop_connection()

    def send_event(self, request_id: str, deadline_ms: int, function_arn: str, payload: bytes,
                   client_context: str | None = None, trace_id: str | None = None) -> None:
        """Answer the parked ``GET /next`` with an event."""
        headers = {
            "Content-Type": "application/json",
            "Lambda-Runtime-Aws-Request-Id": request_id,
            "Lambda-Runtime-Deadline-Ms": str(deadline_ms),
            "Lambda-Runtime-Invoked-Function-Arn": function_arn,
            "Lambda-Runtime-Trace-Id": trace_id or f"Root=1-{int(time.time()):08x}-{request_id.replace('-', '')[:24]};Sampled=0",
        }
        if client_context:
            headers["Lambda-Runtime-Client-Context"] = client_context
        self.next_pending = False
        self.respond(200, payload, headers)

    def close(self) -> None:
        self._drop_connection()
        try:
            self._listener.close()
        except OSError:
            pass
