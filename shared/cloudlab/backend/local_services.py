"""Services cloudlab serves itself ahead of moto, and how they hook into the embedded server.

Introduced with notebook 03: moto cannot run Lambda code without Docker, so the local Lambda
service (``cloudlab.lambda_service``) answers the Lambda API instead. The backend owns this
small interface and knows nothing of who uses it (no module of ``cloudlab.backend`` imports
``cloudlab.lambda_service``; ``tests/test_moto_compat.py`` checks the direction):

- :func:`add_server_hooks`: ``on_start(url)`` runs whenever an embedded server starts (in a
  kernel, in ``python -m cloudlab backend serve``, in a grader's kernel), ``on_stop(url)``
  when it stops. ``cloudlab.lambda_service`` registers its hooks when it is imported, and
  ``import cloudlab`` imports it, so every server brings Lambda up;
- :data:`SERVICE_OVERRIDES`: signing name -> ``handler(method, path, query, headers, body)``
  returning ``(status, headers, body)``, or ``None`` to let moto answer;
- :func:`set_data_endpoint` / :func:`data_endpoint`: where the code those services run finds
  S3, SQS, DynamoDB...: ``None`` for the embedded emulator itself, LocalStack's URL when
  ``CLOUDLAB_BACKEND=localstack`` (``use_backend`` sets it).
"""

from __future__ import annotations

import threading
from typing import Callable

Handler = Callable[..., "tuple[int, dict, bytes] | None"]
SERVICE_OVERRIDES: dict[str, Handler] = {}

_lock = threading.Lock()
_hooks: list[tuple[Callable[[str], None], Callable[[str], None]]] = []
_data_endpoint: dict[str, str | None] = {"url": None}


def add_server_hooks(on_start: Callable[[str], None], on_stop: Callable[[str], None]) -> None:
    """Call ``on_start(url)`` / ``on_stop(url)`` as embedded servers start and stop (once per pair)."""
    with _lock:
        if (on_start, on_stop) not in _hooks:
            _hooks.append((on_start, on_stop))


def set_override(signing_name: str, handler: Handler | None) -> None:
    """Answer requests for ``signing_name`` with ``handler`` ahead of moto (``None``: moto again)."""
    if handler is None:
        SERVICE_OVERRIDES.pop(signing_name, None)
    else:
        SERVICE_OVERRIDES[signing_name] = handler


def set_data_endpoint(url: str | None) -> None:
    """Point locally served code at another emulator for data services (``None``: this one)."""
    _data_endpoint["url"] = url


def data_endpoint() -> str | None:
    return _data_endpoint["url"]


def server_started(url: str) -> None:
    """An embedded server at ``url`` is listening (``EmbeddedServer`` calls this)."""
    for on_start, _ in list(_hooks):
        on_start(url)


def server_stopped(url: str) -> None:
    """The embedded server at ``url`` has stopped."""
    for _, on_stop in reversed(list(_hooks)):
        on_stop(url)
