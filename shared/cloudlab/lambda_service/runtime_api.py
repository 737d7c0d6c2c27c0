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

Every answer leaves in one ``sendall`` (headers and body together) on a ``TCP_NODELAY``
socket: a naive server that writes headers and body separately makes each warm invoke wait
~88 ms for Nagle's algorithm and the runtime's delayed ACK (measured: ``docs/emulators.md``).
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass

from ..backend.aws_protocol import HTTP_REASONS as _REASONS

PREFIX = "/2018-06-01/runtime"
NEXT_PATH = PREFIX + "/invocation/next"
INIT_ERROR_PATH = PREFIX + "/init/error"
_MAX_LINE = 65536


class RuntimeGone(Exception):
    """The runtime closed its connection (its process exited or was killed)."""


@dataclass
class RuntimeRequest:
    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    body: bytes


class RuntimeApiEndpoint:
    """One environment's Runtime API: a listening socket on 127.0.0.1 and the runtime's connection."""

    def __init__(self) -> None:
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(8)
        self.address = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self._connection: socket.socket | None = None
        self._reader = None
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
                connection, _ = self._listener.accept()
            except (TimeoutError, socket.timeout):
                continue
            connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._drop_connection()
            self._connection = connection
            self._reader = connection.makefile("rb", buffering=65536)
            return

    def _drop_connection(self) -> None:
        if self._reader is not None:
            try:
                self._reader.close()
            except OSError:
                pass
        if self._connection is not None:
            try:
                self._connection.close()
            except OSError:
                pass
        self._reader = self._connection = None

    def read_request(self, deadline: float, process) -> RuntimeRequest:
        """The runtime's next request, waiting at most until ``deadline`` (``time.monotonic``).

        A runtime opens a new connection for an init error, and may reconnect; when the current
        connection ends while the process lives, the next connection is accepted.
        Raises ``TimeoutError`` at the deadline and ``RuntimeGone`` when the process is gone.
        """
        while True:
            if self._connection is None:
                self._accept(deadline, process)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("deadline passed")
            self._connection.settimeout(remaining)
            try:
                request = self._read_one()
            except (TimeoutError, socket.timeout):
                raise TimeoutError("deadline passed") from None
            except (ConnectionError, OSError, ValueError):
                request = None
            if request is not None:
                return request
            self._drop_connection()
            # End of file: either the process is exiting, or it reconnects (init/error does).
            try:
                process.wait(timeout=0.05)
            except Exception:
                continue
            raise RuntimeGone()

    def _read_one(self) -> RuntimeRequest | None:
        reader = self._reader
        line = reader.readline(_MAX_LINE)
        if not line:
            return None
        method, target, _ = line.decode("latin-1").split(" ", 2)
        headers: dict[str, str] = {}
        while True:
            line = reader.readline(_MAX_LINE)
            if line in (b"\r\n", b"\n"):
                break
            if not line:
                return None
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        if headers.get("expect", "").lower() == "100-continue":
            self._connection.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        if headers.get("transfer-encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(reader.readline(_MAX_LINE).split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while reader.readline(_MAX_LINE) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(reader.read(size))
                reader.readline(_MAX_LINE)
            body = b"".join(chunks)
        else:
            length = int(headers.get("content-length") or 0)
            body = reader.read(length) if length else b""
        return RuntimeRequest(method, target.split("?", 1)[0], headers, body)

    def respond(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        """Answer the request just read: headers and body in one write."""
        lines = [f"HTTP/1.1 {status} {_REASONS.get(status, '')}"]
        for name, value in (headers or {}).items():
            lines.append(f"{name}: {value}")
        lines.append(f"Content-Length: {len(body)}")
        payload = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
        try:
            self._connection.sendall(payload)
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
