"""Botocore event handlers on one client, for the length of a ``with`` block.

Introduced in notebook 01 (``storage.count_requests`` / ``log_requests``) and used again in
notebook 02 (``keydesign.InFlight`` / ``FailOnce``). The course-wide hooks (the safety guard
and the ledger) are registered for every session instead; see ``backend.guard`` and ``ledger``.
"""

from __future__ import annotations

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
