"""Resilience patterns on failures you control. Introduced in notebook 05.

- :mod:`.clock` — :class:`SystemClock` and :class:`ManualClock` (tests and labs move time);
- :mod:`.flaky` — :class:`FlakyService`, a loopback HTTP dependency with chosen faults, and :func:`call`;
- :mod:`.patterns` — :func:`is_retryable`, :func:`retry_call`, :class:`RetryBudget`,
  :class:`CircuitBreaker`, :class:`Deadline`, :class:`TokenBucket`;
- :mod:`.backoff` — backoff strategies and :func:`simulate_backoff` (the AWS Architecture Blog model);
- :mod:`.experiments` — the thundering herd in real time, client policies compared;
- :mod:`.orchestration` — :func:`state_machine_endpoint`, Step Functions that run state machines;
- :mod:`.models` — chain availability, a call chain with timeouts, an edge cache under Zipf traffic.

Faults injected into boto3 calls live in :mod:`cloudlab.faults`.
"""

from .backoff import STRATEGIES, backoff_delay, simulate_backoff, sweep_backoff
from .clock import ManualClock, SystemClock
from .experiments import Policy, compare_policies, herd, run_policy
from .flaky import KINDS, FaultPlan, FlakyService, call, unaccepting_port
from .models import (ChainResult, chain_availability, run_chain, simulate_chain_availability, simulate_edge_cache,
                     zipf_weights)
from .orchestration import state_machine_endpoint
from .patterns import (CircuitBreaker, CircuitOpenError, Deadline, DeadlineExceeded, HttpError, RetryBudget,
                       RetryBudgetExhausted, TokenBucket, is_retryable, retry_call)

__all__ = ["Policy", "compare_policies", "herd", "run_policy", "STRATEGIES", "backoff_delay", "simulate_backoff", "sweep_backoff", "ManualClock", "SystemClock", "KINDS",
           "FaultPlan", "FlakyService", "call", "unaccepting_port", "ChainResult", "chain_availability", "run_chain",
           "simulate_chain_availability", "simulate_edge_cache", "zipf_weights", "CircuitBreaker", "CircuitOpenError",
           "Deadline", "DeadlineExceeded", "HttpError", "RetryBudget", "RetryBudgetExhausted", "TokenBucket",
           "is_retryable", "retry_call", "state_machine_endpoint"]
