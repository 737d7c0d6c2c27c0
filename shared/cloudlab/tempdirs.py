"""Temporary folders cloudlab makes, removed at exit and, after a killed process, at the next start.

Introduced in notebook 01 (a simulated instance's instance store, ``SharedFolder``) and used by
the local Lambda service of notebook 03 (its execution environments' code and ``/tmp``). Each
folder is ``cloudlab-<kind>-<pid>-...`` in the system temporary directory, where ``pid`` is
the process that owns it. The owner removes it when done or at exit. A process killed
without cleanup (a kernel killed or restarted, a grader's timeout) cannot, so the first folder
a later cloudlab process makes sweeps away every such folder whose owner is no longer running.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import threading
import weakref
from pathlib import Path

_OWNED = re.compile(r"^cloudlab-(?P<kind>[a-z]+)-(?P<pid>\d+)-")
_swept = {"done": False}
_sweep_lock = threading.Lock()


def make(kind: str, label: str = "") -> Path:
    """A new folder ``cloudlab-<kind>-<this pid>-[<label>-]<random>``; the first call sweeps stale ones."""
    if not re.fullmatch(r"[a-z]+", kind):
        raise ValueError(f"kind must be lower-case letters, not {kind!r}")
    with _sweep_lock:
        if not _swept["done"]:
            _swept["done"] = True
            remove_stale()
    label = re.sub(r"[^A-Za-z0-9_.-]", "_", label)
    return Path(tempfile.mkdtemp(prefix=f"cloudlab-{kind}-{os.getpid()}-" + (f"{label}-" if label else "")))


def remove_with(owner, path: Path) -> weakref.finalize:
    """Remove ``path`` when ``owner`` is garbage collected or, at the latest, when this process exits."""
    return weakref.finalize(owner, shutil.rmtree, str(path), True)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def remove_stale(directory: str | os.PathLike | None = None) -> list[Path]:
    """Delete cloudlab's folders in ``directory`` (default: the system temporary directory) whose
    owner process is gone; the paths removed."""
    directory = Path(directory or tempfile.gettempdir())
    removed = []
    try:
        entries = list(directory.iterdir())
    except OSError:
        return removed
    for entry in entries:
        match = _OWNED.match(entry.name)
        if match and not _alive(int(match.group("pid"))) and entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed
