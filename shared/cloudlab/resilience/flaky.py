"""A flaky HTTP dependency on loopback, whose failures you choose, and a client for it.

Introduced in notebook 05 (resilience patterns); the lab and the capstone use it too.

:class:`FaultPlan` says how the service misbehaves: a share of requests that fail and how
(``500``, ``503``, ``429`` with ``Retry-After``, a connection ``reset``, a ``hang`` past any
sensible timeout), a latency distribution, outage windows, and a capacity above which it slows
down and then sheds load with 503s, as an overloaded server does. Every decision for request
number *n* comes from a random generator seeded with ``(seed, n)``, so a sequential client sees
the same faults on every run.

:class:`FlakyService` serves a plan on ``127.0.0.1`` (stdlib ``ThreadingHTTPServer``; at most
``max_connections`` requests at once, the rest get 503; ``stop()`` wakes every sleeping handler).
``configure(...)`` changes the plan while it runs. Its clock is the real one by default; with a
:class:`~cloudlab.resilience.clock.ManualClock` its delays move that clock instead of sleeping,
and a delay longer than the caller's timeout (sent by :func:`call` in ``X-Timeout``) comes back
as that timeout, so graded runs take no real time and never vary.

:func:`call` is the client: separate connect and read timeouts, and every failure as an
exception :func:`~cloudlab.resilience.patterns.is_retryable` understands.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import random
import socket
import struct
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from .clock import ManualClock, SystemClock
from .patterns import HttpError

__all__ = ["FaultPlan", "FlakyService", "call", "unaccepting_port", "KINDS"]

KINDS = ("500", "503", "429", "reset", "hang")


@dataclass
class FaultPlan:
    """How a :class:`FlakyService` misbehaves (times in seconds). Introduced in notebook 05.

    - ``error_rate``: share of requests that fail, drawn per request;
    - ``kinds``: relative weights of the failure kinds (``500``, ``503``, ``429``, ``reset``, ``hang``);
    - ``latency`` and ``latency_sd``: a normal latency, cut at zero; ``slow_rate`` of requests take
      ``slow_latency`` instead (a long tail);
    - ``outages``: ``(start, end)`` windows (service clock, from its start) when every request gets
      ``outage_kind``;
    - ``capacity``: requests served at full speed at once; above it latency grows in proportion,
      and above ``capacity * shed_at`` requests are refused with 503;
    - ``retry_after``: seconds in the 429's ``Retry-After``; ``hang``: how long a hang lasts.
    """

    error_rate: float = 0.0
    kinds: dict = field(default_factory=lambda: {"500": 1.0})
    latency: float = 0.002
    latency_sd: float = 0.0
    slow_rate: float = 0.0
    slow_latency: float = 0.5
    outages: list = field(default_factory=list)
    outage_kind: str = "503"
    capacity: int | None = None
    shed_at: float = 2.0
    retry_after: float = 1.0
    hang: float = 30.0
    seed: int = 0

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        if not 0 <= self.error_rate <= 1:
            raise ValueError(f"error_rate is a share between 0 and 1, got {self.error_rate}")
        unknown = set(self.kinds) - set(KINDS)
        if unknown or not self.kinds or min(self.kinds.values()) < 0:
            raise ValueError(f"kinds maps some of {KINDS} to weights >= 0; got {self.kinds}")
        if self.outage_kind not in KINDS:
            raise ValueError(f"outage_kind must be one of {KINDS}, got {self.outage_kind!r}")
        for window in self.outages:
            if len(window) != 2 or window[0] > window[1]:
                raise ValueError(f"an outage is a (start, end) pair with start <= end, got {window!r}")
        if self.capacity is not None and self.capacity < 1:
            raise ValueError(f"capacity must be >= 1 or None, got {self.capacity}")
        if min(self.latency, self.latency_sd, self.slow_latency, self.hang, self.retry_after) < 0:
            raise ValueError("times must not be negative")

    def decide(self, number: int, elapsed: float, in_flight: int = 1) -> tuple[str, float]:
        """(outcome, latency) for request ``number`` arriving ``elapsed`` s after the start with
        ``in_flight`` requests (itself included) being served. Outcome is ``ok`` or a kind."""
        rng = random.Random(self.seed * 1_000_003 + number)
        latency = self.slow_latency if rng.random() < self.slow_rate else abs(rng.gauss(self.latency, self.latency_sd))
        failing = rng.random() < self.error_rate
        kind = rng.choices(list(self.kinds), weights=list(self.kinds.values()))[0]
        if any(start <= elapsed < end for start, end in self.outages):
            return self.outage_kind, latency
        if self.capacity is not None and in_flight > self.capacity:
            if in_flight > self.capacity * self.shed_at:
                return "503", 0.0
            latency *= in_flight / self.capacity     # overloaded: everyone slows down
        return (kind if failing else "ok"), latency


class FlakyService:
    """A :class:`FaultPlan` served over HTTP on 127.0.0.1 (see the module docstring).

    Introduced in notebook 05::

        with FlakyService(FaultPlan(error_rate=0.2, kinds={"503": 1, "429": 1}, seed=1)) as service:
            call(service.url, timeout=1)
        service.counts          # {"ok": ..., "503": ..., "429": ...}
    """

    def __init__(self, plan: FaultPlan | None = None, *, clock=None, port: int = 0, max_connections: int = 256) -> None:
        self.plan = plan or FaultPlan()
        self.clock = clock or SystemClock()
        self.port, self.max_connections = port, max_connections
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server = None
        self.reset_counters()

    # -- control ---------------------------------------------------------------------------
    def reset_counters(self) -> None:
        with self._lock:
            self.requests = 0
            self.in_flight = self.peak_in_flight = 0
            self.counts: dict[str, int] = {}
            self.log: list[tuple[float, int, str]] = []       # (service time, request number, outcome)
            self.started_at = self.clock.now()

    def configure(self, **changes) -> FaultPlan:
        """Change the plan while serving, e.g. ``configure(error_rate=0.5)``; returns the new plan."""
        plan = dataclasses.replace(self.plan, **changes)
        with self._lock:
            self.plan = plan
        return plan

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def start(self) -> "FlakyService":
        service = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _serve(self):
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                service._handle(self)

            do_GET = do_POST = do_PUT = do_DELETE = _serve

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            allow_reuse_address = True
            request_queue_size = 128

        self._stopping.clear()
        self._server = Server(("127.0.0.1", self.port), Handler)
        self.port = self._server.server_address[1]
        self.reset_counters()
        threading.Thread(target=self._server.serve_forever, name="cloudlab-flaky", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._stopping.set()               # wakes handlers that sleep or hang
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "FlakyService":
        return self.start() if self._server is None else self

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- one request -----------------------------------------------------------------------
    def _wait(self, seconds: float) -> None:
        if isinstance(self.clock, ManualClock):
            self.clock.advance(seconds)
        elif seconds > 0:
            self._stopping.wait(seconds)

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        with self._lock:
            number = self.requests
            self.requests += 1
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
            in_flight, plan = self.in_flight, self.plan
            elapsed = self.clock.now() - self.started_at
        try:
            if in_flight > self.max_connections:
                outcome, latency = "503", 0.0
            else:
                outcome, latency = plan.decide(number, elapsed, in_flight)
            if outcome == "hang":
                latency = plan.hang
            caller_timeout = _float_or_none(handler.headers.get("X-Timeout"))
            if isinstance(self.clock, ManualClock) and caller_timeout is not None and latency > caller_timeout:
                self._wait(caller_timeout)     # the caller would have given up here
                self._record(elapsed, number, "timeout" if outcome in ("ok", "hang") else outcome)
                return self._send(handler, 599, {"timeout": caller_timeout}, [("X-Cloudlab-Timeout", "1")])
            self._record(elapsed, number, outcome)
            self._wait(latency)
            if outcome == "reset":
                # SO_LINGER 0 then close: the kernel sends RST, the client sees ECONNRESET
                handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                handler.close_connection = True
                return None
            if outcome == "hang":
                handler.close_connection = True
                return None
            if outcome == "ok":
                return self._send(handler, 200, {"ok": True, "request": number})
            extra = [("Retry-After", f"{plan.retry_after:g}")] if outcome == "429" else []
            return self._send(handler, int(outcome), {"error": outcome, "request": number}, extra)
        finally:
            with self._lock:
                self.in_flight -= 1

    def _record(self, elapsed: float, number: int, outcome: str) -> None:
        with self._lock:
            self.counts[outcome] = self.counts.get(outcome, 0) + 1
            self.log.append((elapsed, number, outcome))

    @staticmethod
    def _send(handler, status: int, document: dict, extra=()) -> None:
        body = json.dumps(document).encode()
        try:
            handler.send_response(status)
            for name, value in [("Content-Type", "application/json"), ("Content-Length", str(len(body))), *extra]:
                handler.send_header(name, value)
            handler.end_headers()
            handler.wfile.write(body)
        except OSError:
            handler.close_connection = True    # the client left already (it timed out)


def _float_or_none(text):
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None


def call(url: str, *, timeout: float | None = None, connect_timeout: float | None = None,
         read_timeout: float | None = None, method: str = "GET", headers: dict | None = None) -> dict:
    """One HTTP request; the JSON answer of a 2xx, otherwise an exception. Introduced in notebook 05.

    ``timeout`` sets both timeouts; ``connect_timeout`` / ``read_timeout`` set one each (``None``:
    wait forever). Raises :class:`~cloudlab.resilience.patterns.HttpError` (with ``retry_after``
    from a ``Retry-After`` header), ``TimeoutError`` (connect or read), ``ConnectionResetError``,
    ``ConnectionRefusedError``.
    """
    connect_timeout = timeout if connect_timeout is None else connect_timeout
    read_timeout = timeout if read_timeout is None else read_timeout
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"call() speaks plain http to a host: got {url!r}")
    connection = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=connect_timeout)
    try:
        try:
            connection.connect()
        except socket.timeout as exc:
            raise TimeoutError(f"connect timeout after {connect_timeout:g} s") from exc
        connection.sock.settimeout(read_timeout)
        send_headers = dict(headers or {})
        if read_timeout is not None:
            send_headers["X-Timeout"] = f"{read_timeout:g}"
        try:
            connection.request(method, parts.path or "/", headers=send_headers)
            response = connection.getresponse()
            body = response.read()
        except socket.timeout as exc:
            raise TimeoutError(f"read timeout after {read_timeout:g} s") from exc
        except http.client.RemoteDisconnected as exc:
            raise ConnectionResetError("the server closed the connection without answering") from exc
        if response.getheader("X-Cloudlab-Timeout"):
            raise TimeoutError(f"read timeout after {read_timeout:g} s")
        if 200 <= response.status < 300:
            return json.loads(body or b"{}")
        retry_after = _float_or_none(response.getheader("Retry-After"))
        raise HttpError(response.status, retry_after, body.decode(errors="replace"))
    finally:
        connection.close()


@contextmanager
def unaccepting_port():
    """A loopback port whose listener never accepts and whose backlog is full: a connect to it
    hangs (the kernel drops the SYN), as to a host that is down behind a firewall. Yields the
    port. Introduced in notebook 05 (connect timeout vs read timeout)."""
    listener = socket.socket()
    fillers = []
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        for _ in range(4):             # fill the accept queue; later SYNs are dropped
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
            fillers.append(filler)
        yield port
    finally:
        for filler in fillers:
            filler.close()
        listener.close()
