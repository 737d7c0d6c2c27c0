"""Backoff strategies and the discrete-event simulator of many clients racing to write one row.

Introduced in notebook 05 (resilience patterns, section "backoff and jitter").

:func:`backoff_delay` is the wait before retry number ``attempt`` for each strategy of the AWS
Architecture Blog post "Exponential Backoff And Jitter" (Marc Brooker, 2015):

- ``none``: retry at once;
- ``exponential``: ``min(cap, base * 2**attempt)``;
- ``equal``: half of that, plus a uniform random half;
- ``full``: uniform between 0 and the exponential value;
- ``decorrelated``: ``min(cap, uniform(base, previous * 3))``, starting from ``base``.

:func:`simulate_backoff` reproduces the post's model, as its reference simulator
(aws-samples/aws-arch-backoff-simulator) sets it up: one row under optimistic concurrency
control; each client reads the row's version and then writes with that version; a write whose
version is stale fails, and the client backs off and starts again (read, then write) until its
write succeeds. Every message crosses the network with a delay of ``|N(10 ms, 2 ms)|``;
``base`` is 5 ms and ``cap`` 2,000 ms. The post counts *calls* (writes sent to the server) and
the *completion time* (when the last client learns its write succeeded). It is a discrete-event
simulation: time is a number on each event in a heap, nothing sleeps, and one seed gives one
result.
"""

from __future__ import annotations

import heapq
import random

__all__ = ["STRATEGIES", "backoff_delay", "simulate_backoff", "sweep_backoff"]

STRATEGIES = ("none", "exponential", "equal", "full", "decorrelated")


def backoff_delay(strategy: str, attempt: int, rng: random.Random, *, base: float, cap: float,
                  previous: float | None = None) -> float:
    """The wait before retry number ``attempt`` (1 for the first retry), in the unit of ``base``.

    ``previous`` is the last wait (decorrelated jitter only; ``None`` before the first retry).
    Introduced in notebook 05.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    if attempt < 1:
        raise ValueError(f"attempt counts retries from 1, got {attempt}")
    if strategy == "none":
        return 0.0
    if strategy == "decorrelated":
        return min(cap, rng.uniform(base, (previous if previous is not None else base) * 3))
    ceiling = min(cap, base * 2 ** attempt)
    if strategy == "exponential":
        return ceiling
    if strategy == "equal":
        return ceiling / 2 + rng.uniform(0, ceiling / 2)
    return rng.uniform(0, ceiling)  # full


# event kinds, in the order a client goes through them
_READ_AT_SERVER, _VERSION_AT_CLIENT, _WRITE_AT_SERVER, _RESULT_AT_CLIENT = range(4)


def _one_run(clients: int, strategy: str, rng: random.Random, base: float, cap: float,
             net_mean: float, net_sd: float) -> tuple[int, float]:
    def net() -> float:
        return abs(rng.normalvariate(net_mean, net_sd))

    version = 0
    calls = 0
    attempt = [0] * clients
    previous: list[float | None] = [None] * clients
    read_version = [0] * clients
    write_ok = [False] * clients
    events: list[tuple[float, int, int, int]] = []
    sequence = 0                       # breaks ties in time, so the order never depends on anything else
    for client in range(clients):
        events.append((net(), sequence, _READ_AT_SERVER, client))
        sequence += 1
    heapq.heapify(events)
    now = 0.0
    while events:
        now, _, kind, client = heapq.heappop(events)
        if kind == _READ_AT_SERVER:
            read_version[client] = version
            after, next_kind = net(), _VERSION_AT_CLIENT
        elif kind == _VERSION_AT_CLIENT:
            after, next_kind = net(), _WRITE_AT_SERVER
        elif kind == _WRITE_AT_SERVER:
            calls += 1
            write_ok[client] = read_version[client] == version
            if write_ok[client]:
                version += 1
            after, next_kind = net(), _RESULT_AT_CLIENT
        else:  # the write's result reaches the client
            if write_ok[client]:
                continue               # done: this client stops
            attempt[client] += 1
            wait = backoff_delay(strategy, attempt[client], rng, base=base, cap=cap, previous=previous[client])
            previous[client] = wait
            after, next_kind = net() + wait, _READ_AT_SERVER
        heapq.heappush(events, (now + after, sequence, next_kind, client))
        sequence += 1
    return calls, now


def simulate_backoff(clients: int, strategy: str, runs: int = 100, seed: int = 0, *, base: float = 5.0,
                     cap: float = 2000.0, net_mean: float = 10.0, net_sd: float = 2.0) -> dict:
    """Average over ``runs`` simulated contests of ``clients`` writers: total write calls and
    completion time (ms).

    Returns ``{"clients", "strategy", "calls", "time_ms"}``. Introduced in notebook 05::

        simulate_backoff(clients=50, strategy="full", runs=100, seed=1)
    """
    if not isinstance(clients, int) or clients < 1:
        raise ValueError(f"clients must be a positive integer, got {clients!r}")
    if not isinstance(runs, int) or runs < 1:
        raise ValueError(f"runs must be a positive integer, got {runs!r}")
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    rng = random.Random(f"{seed}:{clients}:{strategy}")
    total_calls = total_time = 0.0
    for _ in range(runs):
        calls, finished = _one_run(clients, strategy, rng, base, cap, net_mean, net_sd)
        total_calls += calls
        total_time += finished
    return {"clients": clients, "strategy": strategy, "calls": total_calls / runs, "time_ms": total_time / runs}


def sweep_backoff(client_counts, strategies=STRATEGIES, runs: int = 100, seed: int = 0, **model):
    """:func:`simulate_backoff` for every client count and strategy, as a pandas DataFrame with
    columns clients, strategy, calls, time_ms. Introduced in notebook 05."""
    import pandas as pd

    return pd.DataFrame([simulate_backoff(n, s, runs=runs, seed=seed, **model)
                         for n in client_counts for s in strategies])
