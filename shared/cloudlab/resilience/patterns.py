"""The client-side resilience patterns, each small enough to read in one sitting.

Introduced in notebook 05 (resilience patterns). All of them take a clock
(:mod:`cloudlab.resilience.clock`), so the notebook runs them in real time against the flaky
service and the lab grades them instantly with a :class:`ManualClock`.

- :func:`is_retryable` — which failures are worth another attempt (throttling, 5xx, timeouts,
  dropped connections) and which are not (every other 4xx);
- :class:`RetryBudget` — retries capped as a share of first attempts (token-bucket style, as
  gRPC's retry throttling and the AWS SDKs' retry quota do);
- :func:`retry_call` — attempts with backoff (any strategy of :mod:`.backoff`) and an optional budget;
- :class:`CircuitBreaker` — closed / open / half-open, with its state history for a timeline;
- :class:`Deadline` — an absolute deadline passed down a call chain (deadline propagation);
- :class:`TokenBucket` — the rate limiter API Gateway applies per stage / usage plan.
"""

from __future__ import annotations

import random
import socket
import threading

from .backoff import backoff_delay
from .clock import SystemClock

__all__ = ["HttpError", "is_retryable", "RetryBudget", "RetryBudgetExhausted", "retry_call", "CircuitBreaker",
           "CircuitOpenError", "Deadline", "DeadlineExceeded", "TokenBucket"]

RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
THROTTLING_CODES = frozenset({"Throttling", "ThrottlingException", "ThrottledException", "RequestThrottledException",
                              "TooManyRequestsException", "ProvisionedThroughputExceededException",
                              "TransactionInProgressException", "RequestLimitExceeded", "BandwidthLimitExceeded",
                              "LimitExceededException", "RequestThrottled", "SlowDown", "PriorRequestNotComplete",
                              "EC2ThrottledException"})  # botocore's list of throttling error codes


class HttpError(Exception):
    """An HTTP answer that is not 2xx: ``status`` and the ``Retry-After`` seconds if sent."""

    def __init__(self, status: int, retry_after: float | None = None, body: str = "") -> None:
        super().__init__(f"HTTP {status}" + (f" (Retry-After {retry_after:g} s)" if retry_after is not None else ""))
        self.status, self.retry_after, self.body = status, retry_after, body


def is_retryable(failure) -> bool:
    """True for a failure another attempt may fix. Introduced in notebook 05.

    ``failure`` is an HTTP status code, an :class:`HttpError`, a botocore ``ClientError`` or a
    network exception. Retryable: 429 and 5xx other than 501 (throttling, overload, server
    faults), throttling error codes, timeouts and dropped or refused connections. Not retryable:
    every other 4xx (the request itself is wrong: retrying sends the same wrong request) and
    anything unknown (retrying a bug hides it).
    """
    from botocore.exceptions import ClientError, ConnectionError as BotoConnectionError, HTTPClientError

    if isinstance(failure, bool):
        raise TypeError("give a status code or an exception, not a bool")
    if isinstance(failure, int):
        return failure in RETRYABLE_STATUS or (500 <= failure <= 599 and failure != 501)
    if isinstance(failure, HttpError):
        return is_retryable(failure.status)
    if isinstance(failure, ClientError):
        error = failure.response.get("Error", {})
        status = failure.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return error.get("Code") in THROTTLING_CODES or is_retryable(int(status or 0))
    if isinstance(failure, (BotoConnectionError, HTTPClientError)):
        return True
    if isinstance(failure, (TimeoutError, socket.timeout, ConnectionError)):   # resets, refusals, aborts
        return True
    if isinstance(failure, OSError) and isinstance(getattr(failure, "reason", None), (TimeoutError, ConnectionError)):
        return True                    # urllib wraps socket errors in URLError(reason=...)
    if isinstance(failure, BaseException):
        return False
    raise TypeError(f"cannot classify {failure!r}: give a status code or an exception")


class RetryBudgetExhausted(Exception):
    """A retry was wanted but the budget had no token left; the last failure is ``__cause__``."""


class RetryBudget:
    """Retries allowed as a share of traffic: every first attempt deposits ``ratio`` of a token,
    every retry spends one; at most ``max_tokens`` are saved, and it starts with ``initial``.

    Introduced in notebook 05. With ``ratio=0.1`` a dependency that fails everything gets at
    most about 1.1x its normal load, instead of 3x for three attempts per call.
    """

    def __init__(self, ratio: float = 0.1, *, max_tokens: float = 10.0, initial: float | None = None) -> None:
        if not 0 <= ratio <= 1:
            raise ValueError(f"ratio is a share of first attempts, between 0 and 1; got {ratio}")
        self.ratio, self.max_tokens = ratio, float(max_tokens)
        self.tokens = self.max_tokens if initial is None else float(initial)
        self.first_attempts = self.retries = self.refused = 0
        self._lock = threading.Lock()

    def on_first_attempt(self) -> None:
        with self._lock:
            self.first_attempts += 1
            self.tokens = min(self.max_tokens, self.tokens + self.ratio)

    def try_retry(self) -> bool:
        with self._lock:
            if self.tokens >= 1:
                self.tokens -= 1
                self.retries += 1
                return True
            self.refused += 1
            return False


def retry_call(call, *, attempts: int = 3, strategy: str = "full", base: float = 0.1, cap: float = 5.0,
               rng: random.Random | None = None, clock=None, budget: RetryBudget | None = None,
               retryable=is_retryable, honour_retry_after: bool = True, on_attempt=None):
    """Call ``call()`` up to ``attempts`` times, waiting a backoff between tries.

    Only failures ``retryable(exception)`` accepts are retried; the rest are raised at once.
    A ``Retry-After`` on an :class:`HttpError` is waited instead, when longer than the backoff.
    With a ``budget`` every retry must take a token; without one it raises
    :class:`RetryBudgetExhausted`. ``on_attempt(number, outcome)`` sees every attempt (for
    counting). Introduced in notebook 05.
    """
    if attempts < 1:
        raise ValueError(f"attempts must be at least 1, got {attempts}")
    rng = rng or random.Random()
    clock = clock or SystemClock()
    if budget is not None:
        budget.on_first_attempt()
    previous = None
    for attempt in range(1, attempts + 1):
        try:
            result = call()
        except Exception as failure:   # noqa: BLE001 - classified just below
            if on_attempt:
                on_attempt(attempt, failure)
            if attempt == attempts or not retryable(failure):
                raise
            if budget is not None and not budget.try_retry():
                raise RetryBudgetExhausted("retry budget exhausted") from failure
            wait = backoff_delay(strategy, attempt, rng, base=base, cap=cap, previous=previous)
            previous = wait
            if honour_retry_after and getattr(failure, "retry_after", None) is not None:
                wait = max(wait, float(failure.retry_after))
            clock.sleep(wait)
        else:
            if on_attempt:
                on_attempt(attempt, None)
            return result
    raise AssertionError("unreachable")


class CircuitOpenError(Exception):
    """Refused without calling: the breaker is open."""


class CircuitBreaker:
    """Closed, open, half-open. Introduced in notebook 05.

    Closed: calls go through; ``failure_threshold`` failures in a row open it. Open: calls are
    refused at once (:class:`CircuitOpenError`, no network call) until ``recovery_timeout``
    seconds have passed. Half-open: one trial call at a time goes through; ``success_threshold``
    successes close the breaker, a failure opens it again. Only failures ``counts(exception)``
    accepts count (by default the retryable ones: a 404 says nothing about the service's health).
    ``history`` holds ``(time, state)`` at every change, for a timeline.
    """

    CLOSED, OPEN, HALF_OPEN = "closed", "open", "half-open"

    def __init__(self, failure_threshold: int = 5, recovery_timeout: float = 30.0, *, success_threshold: int = 1,
                 clock=None, counts=is_retryable) -> None:
        if failure_threshold < 1 or success_threshold < 1 or recovery_timeout < 0:
            raise ValueError("thresholds must be >= 1 and recovery_timeout >= 0")
        self.failure_threshold, self.recovery_timeout = failure_threshold, recovery_timeout
        self.success_threshold, self.counts = success_threshold, counts
        self.clock = clock or SystemClock()
        self.state = self.CLOSED
        self.failures = self.successes = 0
        self.opened_at: float | None = None
        self.calls_made = self.calls_refused = 0
        self.history: list[tuple[float, str]] = [(self.clock.now(), self.state)]
        self._trial_in_flight = False
        self._lock = threading.Lock()

    def _set(self, state: str) -> None:
        if state != self.state:
            self.state = state
            self.history.append((self.clock.now(), state))

    def _admit(self) -> None:
        with self._lock:
            if self.state == self.OPEN and self.clock.now() - self.opened_at >= self.recovery_timeout:
                self._set(self.HALF_OPEN)
                self.successes = 0
            if self.state == self.OPEN or (self.state == self.HALF_OPEN and self._trial_in_flight):
                self.calls_refused += 1
                raise CircuitOpenError(f"circuit open since t={self.opened_at:g}")
            if self.state == self.HALF_OPEN:
                self._trial_in_flight = True
            self.calls_made += 1

    def _record(self, failure: BaseException | None) -> None:
        with self._lock:
            self._trial_in_flight = False
            if failure is not None and self.counts(failure):
                self.failures += 1
                if self.state == self.HALF_OPEN or self.failures >= self.failure_threshold:
                    self._set(self.OPEN)
                    self.opened_at = self.clock.now()
                    self.failures = 0
            else:
                self.failures = 0
                if self.state == self.HALF_OPEN:
                    self.successes += 1
                    if self.successes >= self.success_threshold:
                        self._set(self.CLOSED)

    def call(self, function, *args, **kwargs):
        self._admit()
        try:
            result = function(*args, **kwargs)
        except Exception as failure:
            self._record(failure)
            raise
        self._record(None)
        return result


class DeadlineExceeded(Exception):
    """The time the caller allowed has run out; doing the work now would be wasted."""


class Deadline:
    """An absolute point in time by which an answer is useful. Introduced in notebook 05.

    Pass it down the chain (in-process, or as an ``X-Deadline`` header of remaining
    milliseconds); each hop gives its own callee ``deadline.sub(margin)`` (a little less time,
    to answer its caller in time) and refuses work with ``check()`` once it has passed.
    """

    def __init__(self, at: float, clock=None) -> None:
        self.at, self.clock = float(at), clock or SystemClock()

    @classmethod
    def after(cls, seconds: float, clock=None) -> "Deadline":
        clock = clock or SystemClock()
        return cls(clock.now() + seconds, clock)

    def remaining(self) -> float:
        return max(0.0, self.at - self.clock.now())

    def expired(self) -> bool:
        return self.clock.now() >= self.at

    def sub(self, margin: float = 0.0, limit: float | None = None) -> "Deadline":
        """A deadline ``margin`` s earlier, and no later than ``limit`` s from now."""
        at = self.at - margin
        if limit is not None:
            at = min(at, self.clock.now() + limit)
        return Deadline(at, self.clock)

    def check(self) -> None:
        if self.expired():
            raise DeadlineExceeded(f"deadline t={self.at:g} passed (now t={self.clock.now():g})")


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved; each request takes one or is refused.

    Introduced in notebook 05 (API Gateway rate limiting); on a clock, so a timeline of arrivals
    can be replayed exactly. ``take()`` answers (allowed, seconds until a token is back).
    """

    def __init__(self, rate: float, burst: int, clock=None) -> None:
        if rate < 0 or burst < 1:
            raise ValueError(f"rate must be >= 0 and burst >= 1, got rate={rate}, burst={burst}")
        self.rate, self.burst, self.clock = float(rate), int(burst), clock or SystemClock()
        self.tokens, self.updated = float(burst), self.clock.now()

    def take(self) -> tuple[bool, float]:
        now = self.clock.now()
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True, 0.0
        return False, ((1 - self.tokens) / self.rate if self.rate > 0 else float("inf"))
