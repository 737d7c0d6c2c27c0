"""The experiments of notebook 05 that drive the flaky service: a thundering herd in real time,
and client policies compared on a manual clock.

Introduced in notebook 05 (resilience patterns).
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass

import numpy as np

from .backoff import backoff_delay
from .clock import ManualClock
from .flaky import FaultPlan, FlakyService, call
from .patterns import CircuitBreaker, CircuitOpenError, RetryBudget, RetryBudgetExhausted, retry_call

__all__ = ["herd", "Policy", "run_policy", "compare_policies"]


def herd(url: str, *, clients: int, strategy: str, base: float = 0.02, cap: float = 1.0, max_attempts: int = 60,
         timeout: float = 5.0, seed: int = 0) -> dict:
    """``clients`` threads start at once and each calls ``url`` until it succeeds (or
    ``max_attempts``), waiting ``backoff_delay(strategy, ...)`` between tries. Real time.

    Returns calls, successes and the completion time (s). Introduced in notebook 05.
    """
    barrier = threading.Barrier(clients)
    lock = threading.Lock()
    totals = {"calls": 0, "succeeded": 0}
    finished: list[float] = []

    def client(number: int) -> None:
        rng = random.Random(seed * 10_007 + number)
        previous = None
        barrier.wait()
        for attempt in range(1, max_attempts + 1):
            with lock:
                totals["calls"] += 1
            try:
                call(url, timeout=timeout)
            except Exception:        # noqa: BLE001 - every failure is retried in this experiment
                if attempt < max_attempts:
                    previous = backoff_delay(strategy, attempt, rng, base=base, cap=cap, previous=previous)
                    time.sleep(previous)
                continue
            with lock:
                totals["succeeded"] += 1
                finished.append(time.monotonic())
            return

    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(clients)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return {"strategy": strategy, "clients": clients, "calls": totals["calls"], "succeeded": totals["succeeded"],
            "completion_s": (max(finished) - started) if finished else float("nan")}


@dataclass
class Policy:
    """How a client calls a dependency: a read timeout (``None``: wait for ever), attempts per
    request, the backoff between them, an optional retry budget and circuit breaker."""

    name: str
    timeout: float | None = 1.0
    attempts: int = 1
    strategy: str = "none"
    base: float = 0.05
    cap: float = 1.0
    budget_ratio: float | None = None
    breaker: tuple[int, float] | None = None      # (failure threshold, recovery timeout)


def run_policy(policy: Policy, plan: FaultPlan, *, requests: int = 600, interval: float = 0.1,
               seed: int = 0) -> dict:
    """``requests`` requests, one every ``interval`` s of a manual clock, through ``policy``
    against a fresh :class:`FlakyService` serving ``plan``. Introduced in notebook 05.

    The requests are independent (as from many clients): each starts at its own due time even
    when the one before took longer, replayed one after another on the manual clock, so every
    figure is identical on every run. Latency counts from the request's start to its answer,
    waits included.
    """
    clock = ManualClock()
    rng = random.Random(seed)
    budget = RetryBudget(policy.budget_ratio) if policy.budget_ratio is not None else None
    breaker = (CircuitBreaker(policy.breaker[0], policy.breaker[1], clock=clock) if policy.breaker else None)
    latencies, ok = [], 0
    with FlakyService(plan, clock=clock) as service:
        for number in range(requests):
            clock.set(number * interval)
            started = clock.now()

            def attempt():
                if breaker is not None:
                    return breaker.call(call, service.url, timeout=policy.timeout)
                return call(service.url, timeout=policy.timeout)

            try:
                retry_call(attempt, attempts=policy.attempts, strategy=policy.strategy, base=policy.base,
                           cap=policy.cap, rng=rng, clock=clock, budget=budget,
                           retryable=lambda failure: not isinstance(failure, CircuitOpenError)
                           and _retryable(failure))
                ok += 1
            except (Exception,):        # noqa: BLE001 - counted as a failed request
                pass
            latencies.append(clock.now() - started)
        load = service.requests
    latencies = np.array(latencies)
    return {"policy": policy.name, "success %": 100 * ok / requests, "p50 ms": 1000 * np.percentile(latencies, 50),
            "p99 ms": 1000 * np.percentile(latencies, 99), "calls to dependency": load,
            "calls per request": load / requests}


def _retryable(failure) -> bool:
    from .patterns import is_retryable

    return not isinstance(failure, RetryBudgetExhausted) and is_retryable(failure)


def compare_policies(policies, plan: FaultPlan, **options):
    """:func:`run_policy` for each policy, as a pandas DataFrame. Introduced in notebook 05."""
    import pandas as pd

    return pd.DataFrame([run_policy(policy, plan, **options) for policy in policies]).set_index("policy")
