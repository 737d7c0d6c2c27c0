"""Botocore event handlers on one client, for the length of a ``with`` block.

Introduced in notebook 01 (``storage.count_requests`` / ``log_requests``) and used again in
notebook 02 (:class:`InFlight` here, ``faults.FailOnce``). The course-wide hooks (the safety guard
and the ledger) are registered for every session instead; see ``backend.guard`` and ``ledger``.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager


@contextmanager
def client_hooks(client, handlers: dict):
    """Register ``{event_name: handler}`` on ``client`` and remove them on exit."""
    events = client.meta.events
    registered = []
    try:
        for event_name, handler in handlers.items():
            unique_id = f"cloudlab-{event_name}-{id(handler)}"
            events.register(event_name, handler, unique_id=unique_id)
            registered.append((event_name, unique_id))
        yield client
    finally:
        for event_name, unique_id in registered:
            events.unregister(event_name, unique_id=unique_id)


class ClientHooks:
    """Base for context managers that hook one client (``self.client``) while active.

    Subclasses return ``{event_name: handler}`` from :meth:`hooks`.
    """

    client = None

    def hooks(self) -> dict:
        raise NotImplementedError

    def __enter__(self):
        self._registered = client_hooks(self.client, self.hooks())
        self._registered.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._registered.__exit__(*exc)


class InFlight(ClientHooks):
    """Counts the requests of one client that are in flight at once, by operation.

    Introduced in notebook 02 (multipart uploads run parts concurrently)::

        with InFlight(s3, "UploadPart") as watch:
            s3.upload_file(...)
        watch.peak          # most UploadPart requests in flight at the same moment
    """

    def __init__(self, client, operation: str) -> None:
        self.client, self.operation = client, operation
        self.now = self.peak = self.sent = 0
        self._lock = threading.Lock()

    def _before(self, **_) -> None:
        with self._lock:
            self.now += 1
            self.sent += 1
            self.peak = max(self.peak, self.now)

    def _after(self, **_) -> None:
        with self._lock:
            self.now -= 1

    def hooks(self) -> dict:
        return {f"before-send.s3.{self.operation}": self._before,
                f"response-received.s3.{self.operation}": self._after}
