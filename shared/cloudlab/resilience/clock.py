"""Clocks: the real one, and one that tests and labs move by hand.

Introduced in notebook 05 (resilience patterns). Every pattern in :mod:`cloudlab.resilience`
(backoff waits, circuit-breaker timeouts, deadlines, token buckets, the flaky service's outage
windows) asks a clock for the time and asks it to sleep, so the same code runs in real time or,
with :class:`ManualClock`, instantly and identically on every run.
"""

from __future__ import annotations

import threading
import time

__all__ = ["SystemClock", "ManualClock"]


class SystemClock:
    """Real time: ``now()`` is ``time.monotonic()`` in seconds, ``sleep`` really sleeps."""

    def now(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


class ManualClock:
    """A clock that only moves when told: ``sleep(s)`` and ``advance(s)`` add ``s`` at once.

    Introduced in notebook 05; the lab grades with it. Thread-safe, so a service thread and a
    client can share one (sequential callers then see exactly reproducible times)::

        clock = ManualClock()
        clock.sleep(1.5); clock.now()     # 1.5, and no real time passed
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)
        self._lock = threading.Lock()
        self.slept: list[float] = []          # every sleep asked for, in order (to show waits)

    def now(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError(f"a clock cannot go back (advance by {seconds})")
        with self._lock:
            self._now += seconds
            return self._now

    def set(self, when: float) -> None:
        """Jump to ``when``, backwards too: replays independent requests one after another as
        if each started at its own time (notebook 05's policy comparison)."""
        with self._lock:
            self._now = float(when)

    def sleep(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"cannot sleep a negative time ({seconds})")
        self.slept.append(seconds)
        self.advance(seconds)
