"""cloudlab.resilience (notebook 05): the backoff simulator pinned to a seed, the flaky service's
faults, and each pattern on a manual clock (no real waiting, no timing assertions)."""

from __future__ import annotations

import random
import threading
import time

import pytest
from botocore.exceptions import ClientError

from cloudlab import resilience
from cloudlab.resilience import (CircuitBreaker, CircuitOpenError, Deadline, DeadlineExceeded, FaultPlan, FlakyService,
                                 HttpError, ManualClock, RetryBudget, RetryBudgetExhausted, TokenBucket, call,
                                 is_retryable, retry_call)


# ---- the backoff simulator ------------------------------------------------------------------

def test_simulator_gives_the_pinned_figures_for_seed_1():
    expected = {"none": (49.5, 372.2322890129441), "exponential": (51.15, 3494.34648150827),
                "equal": (42.35, 663.3463693597556), "full": (39.15, 463.6538429362678),
                "decorrelated": (37.4, 438.1017312508917)}
    for strategy, (calls, time_ms) in expected.items():
        result = resilience.simulate_backoff(clients=10, strategy=strategy, runs=20, seed=1)
        assert result["calls"] == pytest.approx(calls) and result["time_ms"] == pytest.approx(time_ms), strategy


def test_simulator_reproduces_the_blog_posts_ordering_at_100_clients():
    at100 = {s: resilience.simulate_backoff(clients=100, strategy=s, runs=10, seed=2) for s in resilience.STRATEGIES}
    calls = {s: r["calls"] for s, r in at100.items()}
    times = {s: r["time_ms"] for s, r in at100.items()}
    assert calls["full"] < 0.5 * calls["exponential"]            # full jitter: "more than half" fewer calls
    assert calls["equal"] > calls["full"] and times["equal"] > times["full"]
    assert max(times, key=times.get) == "exponential"             # no jitter: by far the slowest
    assert calls["decorrelated"] > calls["full"]                 # decorrelated: more work than full


def test_one_client_needs_one_write_and_four_network_delays():
    result = resilience.simulate_backoff(clients=1, strategy="full", runs=50, seed=0)
    assert result["calls"] == 1
    assert 30 < result["time_ms"] < 50          # read there and back, write there and back: 4 x ~10 ms


def test_simulator_is_reproducible_and_seed_dependent():
    first = resilience.simulate_backoff(clients=20, strategy="decorrelated", runs=5, seed=4)
    assert first == resilience.simulate_backoff(clients=20, strategy="decorrelated", runs=5, seed=4)
    assert first != resilience.simulate_backoff(clients=20, strategy="decorrelated", runs=5, seed=5)


def test_backoff_delays_follow_each_formula():
    rng = random.Random(0)
    assert resilience.backoff_delay("exponential", 3, rng, base=5, cap=2000) == 40
    assert resilience.backoff_delay("exponential", 20, rng, base=5, cap=2000) == 2000
    assert resilience.backoff_delay("none", 5, rng, base=5, cap=2000) == 0
    for attempt in range(1, 12):
        ceiling = min(2000, 5 * 2 ** attempt)
        assert 0 <= resilience.backoff_delay("full", attempt, rng, base=5, cap=2000) <= ceiling
        assert ceiling / 2 <= resilience.backoff_delay("equal", attempt, rng, base=5, cap=2000) <= ceiling
    assert 5 <= resilience.backoff_delay("decorrelated", 1, rng, base=5, cap=2000, previous=100) <= 300


@pytest.mark.parametrize("bad", [dict(clients=0, strategy="full"), dict(clients=5, strategy="linear"),
                                 dict(clients=5, strategy="full", runs=0)])
def test_simulator_rejects_bad_input(bad):
    with pytest.raises(ValueError):
        resilience.simulate_backoff(**bad)


# ---- the flaky service ------------------------------------------------------------------------

def outcomes(url, n, timeout=1.0):
    seen = []
    for _ in range(n):
        try:
            call(url, timeout=timeout)
            seen.append("ok")
        except HttpError as error:
            seen.append(str(error.status))
        except TimeoutError:
            seen.append("timeout")
        except ConnectionResetError:
            seen.append("reset")
    return seen


def test_same_seed_same_faults_on_a_manual_clock():
    plan = FaultPlan(error_rate=0.5, kinds={"500": 1, "503": 1, "429": 1, "reset": 1, "hang": 1}, latency=0.01, seed=9)
    runs = []
    for _ in range(2):
        clock = ManualClock()
        with FlakyService(plan, clock=clock) as service:
            runs.append((outcomes(service.url, 30), round(clock.now(), 6)))
    assert runs[0] == runs[1]
    assert {"ok", "500", "503", "429", "reset", "timeout"} <= set(runs[0][0])


def test_429_carries_retry_after_and_outage_windows_follow_the_clock():
    clock = ManualClock()
    with FlakyService(FaultPlan(outages=[(5, 10)], outage_kind="429", retry_after=3, latency=0), clock=clock) as service:
        call(service.url, timeout=1)
        clock.set(6)
        with pytest.raises(HttpError) as raised:
            call(service.url, timeout=1)
        clock.set(10)
        call(service.url, timeout=1)
    assert raised.value.status == 429 and raised.value.retry_after == 3


def test_configure_changes_the_plan_while_serving():
    clock = ManualClock()
    with FlakyService(FaultPlan(latency=0), clock=clock) as service:
        assert outcomes(service.url, 3) == ["ok"] * 3
        service.configure(error_rate=1.0, kinds={"503": 1})
        assert outcomes(service.url, 3) == ["503"] * 3
        assert service.counts == {"ok": 3, "503": 3}


def test_real_time_hang_is_cut_by_the_read_timeout_and_stop_frees_handlers():
    with FlakyService(FaultPlan(error_rate=1.0, kinds={"hang": 1}, hang=60)) as service:
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            call(service.url, connect_timeout=1, read_timeout=0.2)
        assert time.monotonic() - started < 5
    # stop() returned although a handler was hanging for 60 s: it was woken


def test_capacity_limit_sheds_load_with_503():
    with FlakyService(FaultPlan(latency=0.5, capacity=2, shed_at=1.5)) as service:
        results = []
        together = threading.Barrier(8)

        def client():
            together.wait(timeout=30)          # all eight arrive within the first request's 0.5 s
            results.extend(outcomes(service.url, 1, timeout=30))

        threads = [threading.Thread(target=client) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    assert "503" in results and "ok" in results and service.peak_in_flight >= 4


def test_fault_plan_rejects_bad_settings():
    for bad in (dict(error_rate=2), dict(kinds={"418": 1}), dict(outages=[(5, 1)]), dict(capacity=0)):
        with pytest.raises(ValueError):
            FaultPlan(**bad)
    with pytest.raises(ValueError):
        call("ftp://example.org/x")


# ---- the patterns ----------------------------------------------------------------------------

def test_is_retryable_classifies_statuses_aws_errors_and_network_failures():
    throttle = ClientError({"Error": {"Code": "ThrottlingException"}, "ResponseMetadata": {"HTTPStatusCode": 400}}, "X")
    invalid = ClientError({"Error": {"Code": "ValidationException"}, "ResponseMetadata": {"HTTPStatusCode": 400}}, "X")
    assert [is_retryable(s) for s in (400, 403, 404, 409, 429, 500, 501, 502, 503, 504)] == \
        [False, False, False, False, True, True, False, True, True, True]
    assert is_retryable(throttle) and not is_retryable(invalid)
    assert is_retryable(TimeoutError()) and is_retryable(ConnectionResetError()) and not is_retryable(KeyError())
    with pytest.raises(TypeError):
        is_retryable("503")


def test_retry_call_retries_retryable_failures_with_bounded_jittered_waits():
    clock = ManualClock()
    script = [HttpError(503), HttpError(500), "done"]

    def flaky():
        outcome = script.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    assert retry_call(flaky, attempts=3, base=0.1, cap=5, rng=random.Random(1), clock=clock) == "done"
    assert len(clock.slept) == 2 and 0 <= clock.slept[0] <= 0.2 and 0 <= clock.slept[1] <= 0.4


def test_retry_call_does_not_retry_a_4xx_and_honours_retry_after():
    clock = ManualClock()
    calls = []

    def bad_request():
        calls.append(1)
        raise HttpError(400)

    with pytest.raises(HttpError):
        retry_call(bad_request, attempts=5, clock=clock)
    assert len(calls) == 1 and clock.slept == []
    script = [HttpError(429, retry_after=7), "ok"]
    retry_call(lambda: script.pop(0) if script[0] == "ok" else (_ for _ in ()).throw(script.pop(0)),
               attempts=2, base=0.1, clock=clock, rng=random.Random(0))
    assert clock.slept == [7]


def test_retry_budget_caps_retries_to_a_share_of_first_attempts():
    budget = RetryBudget(0.1, max_tokens=10, initial=0)
    clock = ManualClock()
    attempts = []

    def always_503():
        attempts.append(1)
        raise HttpError(503)

    for _ in range(100):
        with pytest.raises((HttpError, RetryBudgetExhausted)):
            retry_call(always_503, attempts=3, clock=clock, rng=random.Random(0), budget=budget)
    assert 100 <= len(attempts) <= 111              # ~10 retries allowed for 100 first attempts, not 200
    with pytest.raises(ValueError):
        RetryBudget(1.5)


def test_circuit_breaker_opens_refuses_then_half_opens_and_closes():
    clock = ManualClock()
    breaker = CircuitBreaker(failure_threshold=3, recovery_timeout=10, clock=clock)
    failing = [True]
    called = []

    def dependency():
        called.append(clock.now())
        if failing[0]:
            raise HttpError(503)
        return "ok"

    for _ in range(3):
        with pytest.raises(HttpError):
            breaker.call(dependency)
    assert breaker.state == "open"
    with pytest.raises(CircuitOpenError):
        breaker.call(dependency)
    assert len(called) == 3                               # refused without calling
    clock.advance(10)
    with pytest.raises(HttpError):                        # the half-open trial fails: open again
        breaker.call(dependency)
    assert breaker.state == "open"
    clock.advance(10)
    failing[0] = False
    assert breaker.call(dependency) == "ok" and breaker.state == "closed"
    assert [s for _, s in breaker.history] == ["closed", "open", "half-open", "open", "half-open", "closed"]


def test_circuit_breaker_ignores_client_errors():
    breaker = CircuitBreaker(failure_threshold=2, recovery_timeout=1, clock=ManualClock())
    for _ in range(5):
        with pytest.raises(HttpError):
            breaker.call(lambda: (_ for _ in ()).throw(HttpError(404)))
    assert breaker.state == "closed"


def test_deadline_sub_and_check():
    clock = ManualClock()
    deadline = Deadline.after(2.0, clock)
    child = deadline.sub(margin=0.1, limit=5)
    assert child.at == pytest.approx(1.9) and deadline.sub(limit=0.5).at == pytest.approx(0.5)
    clock.advance(1.95)
    with pytest.raises(DeadlineExceeded):
        child.check()
    deadline.check()
    assert deadline.remaining() == pytest.approx(0.05)


def test_run_chain_measures_wasted_work_and_propagation_removes_it():
    wrong = resilience.run_chain(a_timeout=2, b_timeout=5, c_work=4)
    assert not wrong.answered and wrong.wasted == pytest.approx(4.05)
    right = resilience.run_chain(a_timeout=10, b_timeout=7, c_work=4)
    assert right.answered and right.wasted == 0
    propagated = resilience.run_chain(a_timeout=2, b_timeout=5, c_work=4, propagate=True, margin=0.05)
    assert propagated.c_refused and propagated.wasted == 0
    fast = resilience.run_chain(a_timeout=2, b_timeout=5, c_work=1, propagate=True, margin=0.05)
    assert fast.answered and not fast.c_refused


def test_token_bucket_admits_the_burst_then_the_rate():
    clock = ManualClock()
    bucket = TokenBucket(rate=2, burst=4, clock=clock)
    assert [bucket.take()[0] for _ in range(5)] == [True] * 4 + [False]
    allowed, wait = bucket.take()
    assert not allowed and wait == pytest.approx(0.5)
    clock.advance(0.5)
    assert bucket.take()[0]


def test_availability_models():
    assert resilience.chain_availability(0.999, 4) == pytest.approx(0.996006, abs=1e-6)
    assert resilience.simulate_chain_availability(0.99, 4, seed=1) == pytest.approx(0.99 ** 4, abs=0.003)
    with pytest.raises(ValueError):
        resilience.chain_availability([1.2])


def test_edge_cache_hit_ratio_grows_with_ttl_and_skew():
    short = resilience.simulate_edge_cache(objects=1000, zipf_s=1.0, ttl=1, rate=20, duration=300, seed=1)
    long = resilience.simulate_edge_cache(objects=1000, zipf_s=1.0, ttl=300, rate=20, duration=300, seed=1)
    skewed = resilience.simulate_edge_cache(objects=1000, zipf_s=1.2, ttl=1, rate=20, duration=300, seed=1)
    assert short["hit_ratio"] < long["hit_ratio"] and short["hit_ratio"] < skewed["hit_ratio"]
    assert long["origin_rps"] < short["origin_rps"]
    none = resilience.simulate_edge_cache(objects=1000, ttl=0, rate=20, duration=60, seed=1)
    assert none["hit_ratio"] == 0


def test_policy_comparison_is_identical_on_every_run():
    plan = FaultPlan(error_rate=0.2, kinds={"503": 1, "hang": 1}, latency=0.01, outages=[(2, 4)], seed=3)
    policy = resilience.Policy("all", attempts=3, strategy="full", budget_ratio=0.1, breaker=(3, 1.0))
    first = resilience.run_policy(policy, plan, requests=60, interval=0.1)
    assert first == resilience.run_policy(policy, plan, requests=60, interval=0.1)
    assert 0 < first["success %"] < 100


def test_state_machine_endpoint_runs_retry_and_catch_and_switches_back():
    import json
    import os

    import boto3
    from moto.core.config import default_user_config

    import cloudlab

    cloudlab.use_backend()
    definition = {"StartAt": "Put", "States": {
        "Put": {"Type": "Task", "Resource": "arn:aws:states:::dynamodb:putItem",
                "Parameters": {"TableName": "tr-missing", "Item": {"pk": {"S": "1"}}},
                "Retry": [{"ErrorEquals": ["States.ALL"], "IntervalSeconds": 1, "MaxAttempts": 1}],
                "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Undo"}], "End": True},
        "Undo": {"Type": "Pass", "Result": "undone", "ResultPath": "$.undo", "End": True}}}
    with resilience.state_machine_endpoint() as url:
        sfn = boto3.client("stepfunctions", endpoint_url=url)
        machine = sfn.create_state_machine(name="tr-machine", definition=json.dumps(definition),
                                           roleArn="arn:aws:iam::123456789012:role/tr")["stateMachineArn"]
        execution = sfn.start_execution(stateMachineArn=machine, input="{}")["executionArn"]
        deadline = time.monotonic() + 30
        while sfn.describe_execution(executionArn=execution)["status"] == "RUNNING" and time.monotonic() < deadline:
            time.sleep(0.05)
        result = sfn.describe_execution(executionArn=execution)
        failures = [e for e in sfn.get_execution_history(executionArn=execution)["events"] if e["type"] == "TaskFailed"]
        sfn.delete_state_machine(stateMachineArn=machine)
    assert result["status"] == "SUCCEEDED" and json.loads(result["output"])["undo"] == "undone"
    assert len(failures) == 2 and failures[0]["taskFailedEventDetails"]["error"] == "DynamoDB.ResourceNotFoundException"
    assert default_user_config["stepfunctions"]["execute_state_machine"] is False and "MOTO_PORT" not in os.environ
