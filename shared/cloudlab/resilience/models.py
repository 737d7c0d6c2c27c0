"""Small seeded models for notebook 05: availability of a call chain, a call chain with
timeouts (wasted work, deadline propagation), and an edge cache (CloudFront) under Zipf traffic.

Introduced in notebook 05 (resilience patterns). They are models, labelled as such in the
notebook: each shows one mechanism with numbers you can change, reproducibly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .clock import ManualClock
from .patterns import Deadline, DeadlineExceeded

__all__ = ["chain_availability", "simulate_chain_availability", "ChainResult", "run_chain", "zipf_weights",
           "simulate_edge_cache"]


def chain_availability(per_hop, hops: int | None = None) -> float:
    """Availability of calls that need every hop to succeed: the product of the hops'.

    ``per_hop`` is one availability (with ``hops``) or a list of them. Introduced in notebook 05.
    """
    values = [per_hop] * hops if hops is not None else list(per_hop)
    if not values or any(not 0 <= v <= 1 for v in values):
        raise ValueError(f"availabilities are between 0 and 1, and at least one hop is needed: {values}")
    return float(np.prod(values))


def simulate_chain_availability(per_hop: float, hops: int, requests: int = 100_000, seed: int = 0) -> float:
    """Share of ``requests`` that succeed when each of ``hops`` fails independently with
    ``1 - per_hop``. Introduced in notebook 05 (checks :func:`chain_availability`)."""
    rng = np.random.default_rng(seed)
    return float((rng.random((requests, hops)) < per_hop).all(axis=1).mean())


@dataclass
class ChainResult:
    """What happened to one request through A -> B -> C (times in seconds)."""

    answered: bool                 # A got an answer before its own timeout
    a_gave_up_at: float | None
    c_worked: float                # seconds of work C did
    wasted: float                  # seconds of work (B waiting + C working) after A had given up
    c_refused: bool                # C saw the deadline had passed and did no work


def run_chain(*, a_timeout: float, b_timeout: float, c_work: float, network: float = 0.01,
              propagate: bool = False, margin: float = 0.0, clock: ManualClock | None = None) -> ChainResult:
    """One request through A -> B -> C on a manual clock. Introduced in notebook 05.

    A calls B with ``a_timeout``; B calls C with ``b_timeout``; C needs ``c_work`` seconds;
    each hop costs ``network`` seconds each way. Calls are synchronous, so a callee runs to
    its end even after its caller gave up, as on a real network (nobody tells it): that work
    is *wasted*. With ``propagate``, A sends its deadline down; B gives C ``min(b_timeout,
    deadline - margin)`` and C refuses work it cannot finish before the deadline.
    """
    clock = clock or ManualClock()
    start = clock.now()
    a_deadline = Deadline(start + a_timeout, clock)
    clock.advance(network)                                   # A -> B
    b_start = clock.now()
    b_deadline = Deadline(b_start + b_timeout, clock)
    if propagate:
        b_deadline = Deadline(min(b_deadline.at, a_deadline.at - margin), clock)
    clock.advance(network)                                   # B -> C
    c_refused = False
    c_worked = 0.0
    try:
        if propagate:
            b_deadline.check()
            if clock.now() + c_work > b_deadline.at:          # C cannot finish in time: don't start
                raise DeadlineExceeded("not enough time left")
        clock.advance(c_work)
        c_worked = c_work
    except DeadlineExceeded:
        c_refused = True
    c_done = clock.now()
    clock.advance(network)                                   # C -> B
    b_gets_answer = (not c_refused) and clock.now() <= b_deadline.at
    b_done = min(clock.now(), b_deadline.at) if not c_refused else clock.now()
    clock.advance(network)                                   # B -> A
    answered = b_gets_answer and clock.now() <= a_deadline.at
    a_gave_up = None if answered else min(a_deadline.at, clock.now())
    wasted = 0.0
    if a_gave_up is not None:
        c_start = b_start + network
        wasted += max(0.0, c_done - max(a_gave_up, c_start)) if c_worked else 0.0      # C still working
        wasted += max(0.0, b_done - a_gave_up)                                       # B still waiting
    return ChainResult(answered, a_gave_up, c_worked, round(wasted, 9), c_refused)


def zipf_weights(objects: int, s: float) -> np.ndarray:
    """Request probabilities of ``objects`` ranked by popularity: rank k gets ``k**-s``, normalised."""
    if objects < 1 or s < 0:
        raise ValueError("objects must be >= 1 and s >= 0")
    weights = np.arange(1, objects + 1, dtype=float) ** -s
    return weights / weights.sum()


def simulate_edge_cache(*, objects: int = 10_000, zipf_s: float = 1.0, ttl: float = 60.0, rate: float = 100.0,
                        duration: float = 3600.0, seed: int = 0) -> dict:
    """One edge location with a TTL cache in front of an origin. Introduced in notebook 05.

    ``rate`` requests a second (Poisson arrivals) for ``duration`` seconds pick objects by Zipf
    popularity. A request is a hit if its object was fetched from the origin less than ``ttl``
    seconds ago; otherwise it goes to the origin and starts a new TTL. No capacity eviction (an
    edge has room for the hot set). Returns hit ratio and origin requests per second.
    """
    if ttl < 0 or rate <= 0 or duration <= 0:
        raise ValueError("ttl >= 0, rate > 0 and duration > 0 are needed")
    rng = np.random.default_rng(seed)
    count = rng.poisson(rate * duration)
    times = np.sort(rng.uniform(0, duration, count))
    keys = rng.choice(objects, size=count, p=zipf_weights(objects, zipf_s))
    order = np.lexsort((times, keys))                 # each object's requests, in time order
    keys, times = keys[order], times[order]
    fetched_at = np.full(objects, -np.inf)
    misses = 0
    # per object, walk its requests: a miss renews the TTL (a loop over requests; fast enough at 1e6)
    for key, when in zip(keys.tolist(), times.tolist()):
        if when - fetched_at[key] >= ttl:
            fetched_at[key] = when
            misses += 1
    return {"requests": int(count), "hit_ratio": 1 - misses / count if count else 0.0,
            "origin_rps": misses / duration}
