"""cloudlab's one HTTP/1.1 server layer, built on h11 (the state machine under httpcore and uvicorn).

Introduced in notebook 01 (the embedded emulator answers every boto3 call through it) and used
again in notebook 03 by the Lambda Runtime API and the API Gateway front. The three servers
share this module, so they share its parsing, its limits and its answers to bad requests:

- **parsing** is h11's: a ``Content-Length`` that is not a plain decimal number (``abc``,
  ``1e14``, ``-1``), a bad chunk size, a header line without a colon, or a request head that
  ends early is a protocol error, answered ``400`` and never handed to the service;
- **truncated bodies** (fewer bytes than ``Content-Length``, or a chunked body without its
  last chunk, then end of file) are answered ``400 IncompleteBody``, as S3 does, and nothing
  is stored;
- **limits** (``HttpLimits``): the request line and headers together, the number of header
  lines, the body size, the time a request may take to arrive, the time a kept-alive
  connection may sit idle, and the number of open connections;
- ``HttpServer.stop()`` closes every connection, kept-alive ones included.

Each server shapes its own error documents (S3 XML, API Gateway JSON, Runtime API JSON)
through an ``error_document`` function; this module only says which error it is.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from dataclasses import dataclass
from typing import Callable

import h11

from .aws_protocol import HTTP_REASONS
_RECEIVE_SIZE = 65536
_LINGER_SECONDS, _LINGER_BYTES = 1.0, 4 * 1024 * 1024  # after an error: drain this much, this long, then close


@dataclass(frozen=True)
class HttpLimits:
    """How much a client may send, and for how long, before it gets an error instead.

    Defaults, and why (the AWS figures are rows of docs/aws-facts.md):

    - ``max_head_bytes`` 16 KiB for the request line and every header together. S3 limits a
      PUT's request headers to 8 KB; a presigned URL's query string rides in the request line
      on top of that (a SigV4 signature and session token are 1-3 KB), so twice S3's figure.
    - ``max_header_count`` 100, the limit CPython's own ``http.client`` and ``http.server`` use;
      a boto3 request sends about 10, an S3 PUT with metadata a few more.
    - ``max_body_bytes``: set per server (S3 single PUT, Lambda payloads, API Gateway payload).
    - ``read_timeout`` 20 s: the longest pause allowed while a request is arriving, close to
      the pause after which S3 answers ``RequestTimeout``; on loopback a live client never
      pauses that long.
    - ``idle_timeout`` 60 s between requests on a kept-alive connection (the idle timeout AWS
      load balancers default to); clients open a new connection when theirs was closed.
    - ``max_connections`` open at once; one more is answered ``503`` and closed.
    """

    max_head_bytes: int = 16 * 1024
    max_header_count: int = 100
    max_body_bytes: int = 10 * 1024 * 1024
    read_timeout: float = 20.0
    idle_timeout: float = 60.0
    max_connections: int = 256


class RequestHeaders:
    """Request headers in arrival order, looked up without regard to case."""

    __slots__ = ("_items", "_lookup")

    def __init__(self, items: list[tuple[str, str]]) -> None:
        self._items = items
        self._lookup = {name.lower(): value for name, value in items}

    def get(self, name: str, default=None):
        return self._lookup.get(name.lower(), default)

    def items(self):
        return list(self._items)

    def __contains__(self, name: str) -> bool:
        return name.lower() in self._lookup


@dataclass(slots=True)
class Request:
    """One complete request: nothing reaches a service until its whole body has arrived."""

    method: str
    target: str  # path and query, as sent
    headers: RequestHeaders
    body: bytes
    client: tuple  # (host, port) of the peer


class RequestRejected(Exception):
    """A request that must be answered with an error and its connection closed.

    ``code`` names the error the way S3 does (``IncompleteBody``, ``EntityTooLarge``,
    ``RequestHeaderSectionTooLarge``, ``RequestTimeout``, ``BadRequest``, ``SlowDown``); each
    server's ``error_document`` turns it into its own shape and status.
    """

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class IdleTimeout(TimeoutError):
    """No request began on a kept-alive connection within the time allowed."""


# Text the S3 documentation uses for these errors, so students see familiar messages.
_INCOMPLETE = "You did not provide the number of bytes specified by the Content-Length HTTP header."
_HEAD_TOO_LARGE = "Your request header section exceeds the maximum allowed size."
_TIMEOUT = ("Your socket connection to the server was not read from or written to within the "
            "timeout period.")


class HttpConnection:
    """The server side of one HTTP/1.1 connection: h11's state machine over a blocking socket.

    ``read_request`` returns a complete request (body included), ``None`` when the client
    closed the connection between requests, or raises ``RequestRejected`` (answer it with
    ``send_error``) or ``IdleTimeout``. ``send_response`` answers it and says whether the
    connection can carry another request.
    """

    __slots__ = ("sock", "limits", "client", "_h11", "_buffered")

    def __init__(self, sock: socket.socket, limits: HttpLimits, client: tuple = ("127.0.0.1", 0)) -> None:
        self.sock, self.limits, self.client = sock, limits, client
        self._h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=limits.max_head_bytes)
        self._buffered = False  # whether h11 holds bytes of a request not yet read

    def _receive(self, timeout: float | None, started: bool) -> None:
        """Feed h11 the next bytes from the socket (``b""`` at end of file)."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(_RECEIVE_SIZE)
        except (TimeoutError, socket.timeout):
            if not started:
                raise IdleTimeout("no request on this connection within the idle timeout") from None
            raise RequestRejected(400, "RequestTimeout", _TIMEOUT) from None
        except ConnectionError:
            data = b""
        self._h11.receive_data(data)

    def read_request(self, wait: float | None = None, timeout_for=None) -> Request | None:
        """The next complete request.

        ``wait`` is how long the request may take to begin (``None``: the idle timeout).
        ``timeout_for(default)``, when given, returns the timeout for each read as a request
        arrives, and may raise (the Lambda Runtime API stops at its invoke's deadline).
        """
        conn, limits = self._h11, self.limits
        started = False
        try:
            if not self._buffered:  # nothing received yet: wait for bytes before asking h11
                self._receive(limits.idle_timeout if wait is None else wait, False)
                started = True
            event = conn.next_event()
            while event is h11.NEED_DATA:
                if started:
                    self._receive(timeout_for(limits.read_timeout) if timeout_for else limits.read_timeout, True)
                else:
                    self._receive(limits.idle_timeout if wait is None else wait, False)
                    started = True
                event = conn.next_event()
            if type(event) is not h11.Request:  # ConnectionClosed between requests
                return None
            if len(event.headers) > limits.max_header_count:
                raise RequestRejected(400, "RequestHeaderSectionTooLarge",
                                      f"{_HEAD_TOO_LARGE} (at most {limits.max_header_count} header lines)")
            headers = RequestHeaders([(name.decode("latin-1"), value.decode("latin-1"))
                                      for name, value in event.headers.raw_items()])
            length = headers.get("Content-Length")
            if length is not None and int(length) > limits.max_body_bytes:  # h11 checked it is digits
                raise _too_large(int(length), limits.max_body_bytes)
            chunks = []
            received = 0
            while True:
                body_event = conn.next_event()
                if type(body_event) is h11.Data:
                    received += len(body_event.data)
                    if received > limits.max_body_bytes:
                        raise _too_large(received, limits.max_body_bytes)
                    chunks.append(body_event.data)
                elif type(body_event) is h11.EndOfMessage:
                    break
                elif body_event is h11.NEED_DATA:
                    if conn.they_are_waiting_for_100_continue:
                        self.sock.sendall(conn.send(h11.InformationalResponse(status_code=100, headers=[], reason="Continue")))
                    self._receive(timeout_for(limits.read_timeout) if timeout_for else limits.read_timeout, True)
                else:  # ConnectionClosed in the middle of a body
                    raise RequestRejected(400, "IncompleteBody", _INCOMPLETE)
        except h11.RemoteProtocolError as error:
            raise _rejection(error) from None
        body = bytes(chunks[0]) if len(chunks) == 1 else b"".join(chunks)  # h11 hands out bytearrays
        return Request(event.method.decode("ascii"), event.target.decode("latin-1"), headers, body, self.client)

    def send_response(self, status: int, headers, body: bytes | str, *, head: bool = False) -> bool:
        """Answer the request just read, in one write; True if the connection stays open.

        ``headers`` is a dict or a list of pairs. A ``HEAD`` answer keeps the ``Content-Length``
        its handler gave (the size of the body it does not send; S3 clients read it).

        h11 decided how the request was framed and whether the connection may be kept alive;
        the answer itself (status line, headers, a body of known length) is written here, which
        costs a third of going through h11's event validation. The next request is then parsed
        by a fresh h11 connection that starts from the bytes already received (a pipelined
        request), as ``h11.Connection.trailing_data`` is meant for.
        """
        conn = self._h11
        their_state = conn.their_state
        if their_state is not h11.DONE and their_state is not h11.MUST_CLOSE:
            raise ConnectionError("no request is waiting for an answer on this connection")
        keep_alive = their_state is h11.DONE
        if isinstance(body, str):
            body = body.encode("utf-8")
        body = body or b""
        lines = [f"HTTP/1.1 {status} {HTTP_REASONS.get(status, '')}"]
        length = None
        for name, value in (headers.items() if isinstance(headers, dict) else headers):
            lowered = name.lower()
            if lowered == "content-length":
                length = value
            elif lowered not in _HOP_BY_HOP:
                lines.append(f"{name}: {_header_text(value)}")
        lines.append(f"Content-Length: {length if head and length is not None else len(body)}")
        if not keep_alive:
            lines.append("Connection: close")
        payload = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")
        if body and not head and status not in (204, 304):
            payload += body
        self.sock.sendall(payload)  # one write: headers and body leave in one segment
        if keep_alive:
            received, closed = conn.trailing_data
            self._h11 = fresh = h11.Connection(h11.SERVER, max_incomplete_event_size=self.limits.max_head_bytes)
            self._buffered = bool(received) or closed
            if received:
                fresh.receive_data(bytes(received))
            if closed:
                fresh.receive_data(b"")
        return keep_alive

    def send_error(self, status: int, headers, body: bytes, linger: float = _LINGER_SECONDS) -> None:
        """Answer a rejected request, then end the connection (h11 may no longer be in step).

        The rest of what the client sends is read and dropped for a moment before closing
        ("lingering close"): closing with unread data would reset the connection, and the
        client could lose the answer explaining why.
        """
        lines = [f"HTTP/1.1 {status} {HTTP_REASONS.get(status, '')}"]
        lines += [f"{name}: {_header_text(value)}" for name, value in
                  (headers.items() if isinstance(headers, dict) else headers)]
        lines += [f"Content-Length: {len(body)}", "Connection: close"]
        try:
            self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace") + body)
            self.sock.shutdown(socket.SHUT_WR)
            drained, until = 0, time.monotonic() + linger
            while drained < _LINGER_BYTES:
                self.sock.settimeout(max(0.0, until - time.monotonic()))  # 0: only what has arrived
                data = self.sock.recv(_RECEIVE_SIZE)
                if not data:
                    break
                drained += len(data)
        except OSError:
            pass

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


_HOP_BY_HOP = frozenset({"connection", "transfer-encoding", "keep-alive", "server", "date"})


def _header_text(value) -> str:
    """A header value as one line of text (a line break inside would start a new header)."""
    text = str(value)
    if "\r" in text or "\n" in text:
        text = " ".join(text.split())
    return text


def _too_large(size: int, limit: int) -> RequestRejected:
    return RequestRejected(400, "EntityTooLarge",
                           f"Your proposed upload exceeds the maximum allowed size: {size} bytes or more, and "
                           f"this server accepts at most {limit} bytes in one request.")


def _rejection(error: h11.RemoteProtocolError) -> RequestRejected:
    """Which S3-style error an h11 protocol error is."""
    text = str(error)
    if error.error_status_hint == 431 or "buffer too long" in text:
        return RequestRejected(400, "RequestHeaderSectionTooLarge", _HEAD_TOO_LARGE)
    if "peer closed connection without sending complete message body" in text:
        return RequestRejected(400, "IncompleteBody", _INCOMPLETE)
    return RequestRejected(400, "BadRequest", f"malformed HTTP request: {text}")


ErrorDocument = Callable[[int, str, str], tuple[int, list, bytes]]
Handler = Callable[[Request], tuple[int, object, bytes]]


class HttpServer:
    """A threaded HTTP/1.1 server on ``HttpConnection``: one thread per open connection.

    ``handler(request)`` returns ``(status, headers, body)``; ``error_document(status, code,
    message)`` returns ``(status, headers, body)`` for rejected requests, in the server's own
    error shape. ``stop()`` closes the listening socket and every open connection.
    """

    def __init__(self, host: str, port: int, handler: Handler, error_document: ErrorDocument, *,
                 limits: HttpLimits = HttpLimits(), name: str = "cloudlab-http") -> None:
        self.handler, self.error_document, self.limits, self.name = handler, error_document, limits, name
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((host, port))
        self._listener.listen(128)
        self.address = self._listener.getsockname()
        self._connections: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._stopping = False
        self._thread: threading.Thread | None = None

    @property
    def open_connections(self) -> int:
        with self._lock:
            return len(self._connections)

    def start(self) -> "HttpServer":
        self._thread = threading.Thread(target=self.serve_forever, name=self.name, daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Accept connections in the calling thread until ``stop()``."""
        while not self._stopping:
            try:
                sock, client = self._listener.accept()
            except OSError:
                if self._stopping:
                    return
                continue
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # small replies leave at once
            with self._lock:
                full = len(self._connections) >= self.limits.max_connections
                if not full and not self._stopping:
                    self._connections.add(sock)
            if full or self._stopping:
                self._refuse(sock, client)
                continue
            threading.Thread(target=self._serve_connection, args=(sock, client),
                             name=f"{self.name}-connection", daemon=True).start()

    def _refuse(self, sock: socket.socket, client) -> None:
        connection = HttpConnection(sock, self.limits, client)
        status, headers, body = self.error_document(
            503, "SlowDown", f"Please reduce your request rate: {self.limits.max_connections} connections are open.")
        sock.settimeout(1.0)
        connection.send_error(status, headers, body, linger=0)  # the accept loop must not wait
        connection.close()

    def _serve_connection(self, sock: socket.socket, client) -> None:
        connection = HttpConnection(sock, self.limits, client)
        try:
            while not self._stopping:
                try:
                    request = connection.read_request()
                except IdleTimeout:
                    break
                except RequestRejected as rejected:
                    silent = rejected.code == "RequestTimeout"  # nothing is coming to drain
                    connection.send_error(*self.error_document(rejected.status, rejected.code, rejected.message),
                                          linger=0 if silent else _LINGER_SECONDS)
                    break
                if request is None or self._stopping:
                    break
                try:
                    status, headers, body = self.handler(request)
                except Exception as error:  # a server bug must not end the thread without an answer
                    logging.getLogger("cloudlab.http").exception("handler error")
                    connection.send_error(*self.error_document(500, "InternalError", f"{type(error).__name__}: {error}"))
                    break
                if self._stopping or not connection.send_response(status, headers, body, head=request.method == "HEAD"):
                    break
        except OSError:
            pass
        finally:
            with self._lock:
                self._connections.discard(sock)
            connection.close()

    def stop(self) -> None:
        """Stop accepting, and close every open connection (kept-alive and half-sent ones too)."""
        self._stopping = True
        try:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() in serve_forever
        except OSError:
            pass
        self._listener.close()
        with self._lock:
            connections = list(self._connections)
        for sock in connections:
            try:
                sock.shutdown(socket.SHUT_RDWR)  # the connection's thread sees end of file and ends
            except OSError:
                pass
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
