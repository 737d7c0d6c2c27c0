"""Probes for topic 03 (Lambda): cold and warm starts, timeouts, errors, concurrency, validations."""

from __future__ import annotations

import base64
import json
import re
import threading
from contextlib import contextmanager

from .suite import NotServed, Observation, claim, error_code, poll, quietly

FACTS = "aws-facts.md"
RUNTIME = "python3.12"
_TRUST = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]})


def _zip(source: str) -> bytes:
    from ..lambda_service import zip_code

    return zip_code(source)


@contextmanager
def function(probe, source: str, suffix: str = "fn", **config):
    """A Lambda function made from ``source`` (module ``app``, handler ``app.handler``), with its
    own execution role; deleted afterwards. Used by topic 04's event-source probes too."""
    iam, lam = probe.client("iam"), probe.client("lambda")
    name, role = probe.name(suffix), probe.name(suffix + "-role")
    role_arn = iam.create_role(RoleName=role, AssumeRolePolicyDocument=_TRUST)["Role"]["Arn"]
    try:
        def create() -> bool:
            try:
                lam.create_function(FunctionName=name, Runtime=RUNTIME, Role=role_arn, Handler="app.handler",
                                    Code={"ZipFile": _zip(source)}, **config)
                return True
            except Exception as error:  # noqa: BLE001 (on AWS a new role takes seconds to be assumable)
                if "cannot be assumed" not in str(error):
                    raise
                return False

        if not poll(create, 20, 1):
            raise TimeoutError("the new execution role never became assumable")
        poll(lambda: lam.get_function(FunctionName=name)["Configuration"].get("State", "Active") == "Active", 30, 0.25)
        yield name
    finally:
        quietly(lambda: lam.delete_function(FunctionName=name))
        quietly(lambda: iam.delete_role(RoleName=role))


def refused_code(call) -> str:
    """The error code a call is refused with, or "accepted"."""
    try:
        call()
        return "accepted"
    except Exception as error:  # noqa: BLE001
        if not error_code(error):
            raise
        return error_code(error)


def _log_tail(answer: dict) -> str:
    return base64.b64decode(answer.get("LogResult", "")).decode("utf-8", "replace")


def _not_served_if_lambda_missing(lam) -> None:
    try:
        lam.list_functions(MaxItems=1)
    except Exception as error:  # noqa: BLE001
        raise NotServed(f"Lambda: {error_code(error) or error}") from error


COUNTER = """
import os
invocations = 0

def handler(event, context):
    global invocations
    invocations += 1
    return {"invocations": invocations, "pid": os.getpid()}
"""


@claim("lambda-cold-then-warm", "03",
       "the first invoke starts an environment (INIT, a cold start); the next one reuses it",
       "first REPORT line has 'Init Duration', the second has none",
       "Lambda Developer Guide, 'Lambda execution environment lifecycle'", timeout=60)
def _cold_warm(probe):
    lam = probe.client("lambda")
    _not_served_if_lambda_missing(lam)
    with function(probe, COUNTER) as name:
        first = lam.invoke(FunctionName=name, Payload=b"{}", LogType="Tail")
        second = lam.invoke(FunctionName=name, Payload=b"{}", LogType="Tail")
        cold = ["Init Duration" in _log_tail(answer) for answer in (first, second)]
        words = ["cold" if c else "warm" for c in cold]
        return Observation(cold == [True, False], f"invokes: {words[0]}, then {words[1]}")


@claim("lambda-warm-globals", "03",
       "module globals survive between invokes of a warm environment",
       "a global counter reads 1, then 2",
       "Lambda Developer Guide, 'Lambda execution environment lifecycle' (reuse)", timeout=60)
def _warm_globals(probe):
    lam = probe.client("lambda")
    _not_served_if_lambda_missing(lam)
    with function(probe, COUNTER) as name:
        counts = [json.loads(lam.invoke(FunctionName=name, Payload=b"{}")["Payload"].read())["invocations"] for _ in range(2)]
        return Observation(counts == [1, 2], f"counter reads {counts}")


CONTEXT = """
import os

def handler(event, context):
    return {"name": context.function_name, "memory": int(context.memory_limit_in_mb),
            "remaining_ms": context.get_remaining_time_in_millis(),
            "env_name": os.environ.get("AWS_LAMBDA_FUNCTION_NAME")}
"""


@claim("lambda-context", "03",
       "the handler's context carries the function's name, memory and remaining time",
       "function_name and AWS_LAMBDA_FUNCTION_NAME match, memory_limit_in_mb 256, 0 < remaining <= 3,000 ms",
       "Lambda Developer Guide, 'Using the Lambda context object' (Python)", timeout=60)
def _context(probe):
    lam = probe.client("lambda")
    _not_served_if_lambda_missing(lam)
    with function(probe, CONTEXT, MemorySize=256, Timeout=3) as name:
        seen = json.loads(lam.invoke(FunctionName=name, Payload=b"{}")["Payload"].read())
        holds = seen["name"] == name == seen["env_name"] and seen["memory"] == 256 and 0 < seen["remaining_ms"] <= 3000
        return Observation(holds, f"name {'matches' if seen['name'] == name == seen['env_name'] else 'differs'}, "
                                  f"memory {seen['memory']}, remaining time {'within' if 0 < seen['remaining_ms'] <= 3000 else 'outside'} the timeout")


SLEEPER = """
import time

def handler(event, context):
    time.sleep(event.get("seconds", 0))
    return {"slept": event.get("seconds", 0)}
"""


@claim("lambda-timeout", "03",
       "an invoke that runs past the function's timeout is stopped and reported as an error",
       "FunctionError 'Unhandled', errorMessage 'Task timed out after 1.00 seconds'",
       f"{FACTS}, row 'Lambda limits'; Lambda Developer Guide, 'Configure Lambda function timeout'", timeout=60)
def _timeout(probe):
    lam = probe.client("lambda", read_timeout=30)
    _not_served_if_lambda_missing(lam)
    with function(probe, SLEEPER, Timeout=1) as name:
        answer = lam.invoke(FunctionName=name, Payload=json.dumps({"seconds": 5}).encode())
        payload = json.loads(answer["Payload"].read() or b"{}")
        found = re.search(r"Task timed out after [0-9.]+ seconds", payload.get("errorMessage", ""))
        message = found.group(0) if found else payload.get("errorMessage", "(no errorMessage)")[:60]
        return Observation(answer.get("FunctionError") == "Unhandled" and message == "Task timed out after 1.00 seconds",
                           f"FunctionError {answer.get('FunctionError')!r}, {message!r}")


FAILING = """
def handler(event, context):
    raise ValueError("bad order")
"""


@claim("lambda-unhandled-error", "03",
       "an exception in the handler comes back as a function error, not an API error",
       "Invoke answers 200 with FunctionError 'Unhandled' and errorType 'ValueError'",
       "Lambda Developer Guide, 'Lambda function errors in Python'", timeout=60)
def _unhandled(probe):
    lam = probe.client("lambda")
    _not_served_if_lambda_missing(lam)
    with function(probe, FAILING) as name:
        answer = lam.invoke(FunctionName=name, Payload=b"{}")
        payload = json.loads(answer["Payload"].read() or b"{}")
        return Observation(answer["StatusCode"] == 200 and answer.get("FunctionError") == "Unhandled" and payload.get("errorType") == "ValueError",
                           f"status {answer['StatusCode']}, FunctionError {answer.get('FunctionError')!r}, errorType {payload.get('errorType')!r}")


@claim("lambda-reserved-concurrency", "03",
       "beyond its reserved concurrency a function is throttled",
       "with ReservedConcurrentExecutions=1, of 3 simultaneous 1.5 s invokes some fail with TooManyRequestsException",
       f"{FACTS}, row 'Lambda limits'; Lambda Developer Guide, 'Configuring reserved concurrency'", timeout=60)
def _reserved(probe):
    lam = probe.client("lambda", read_timeout=30, max_pool_connections=10)
    _not_served_if_lambda_missing(lam)
    with function(probe, SLEEPER, Timeout=10) as name:
        lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=1)
        lam.invoke(FunctionName=name, Payload=b"{}")  # one warm environment, so the burst is not all INIT
        barrier, outcomes = threading.Barrier(3), []

        def one() -> None:
            barrier.wait()
            try:
                lam.invoke(FunctionName=name, Payload=json.dumps({"seconds": 1.5}).encode())
                outcomes.append("ok")
            except Exception as error:  # noqa: BLE001
                outcomes.append(error_code(error) or type(error).__name__)

        threads = [threading.Thread(target=one) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        kinds = sorted(set(outcomes))
        return Observation("ok" in outcomes and "TooManyRequestsException" in outcomes, f"outcomes: {kinds}")


def _create_refused(probe, **config) -> str:
    # parameter_validation=False: botocore would refuse some values before AWS sees them.
    lam, iam = probe.client("lambda", parameter_validation=False), probe.client("iam")
    _not_served_if_lambda_missing(lam)
    role = probe.name("role")
    role_arn = iam.create_role(RoleName=role, AssumeRolePolicyDocument=_TRUST)["Role"]["Arn"]
    name = probe.name("fn")
    try:
        return refused_code(lambda: lam.create_function(FunctionName=name, Runtime=RUNTIME, Role=role_arn,
                                                        Handler="app.handler", Code={"ZipFile": _zip(SLEEPER)}, **config))
    finally:
        quietly(lambda: lam.delete_function(FunctionName=name))
        quietly(lambda: iam.delete_role(RoleName=role))


_VALIDATION = ("ValidationException", "InvalidParameterValueException")


@claim("lambda-memory-range", "03",
       "memory is 128 to 10,240 MB: CreateFunction outside that range is refused",
       "MemorySize=64 refused with ValidationException",
       f"{FACTS}, row 'Lambda memory/CPU'", timeout=30)
def _memory_range(probe):
    code = _create_refused(probe, MemorySize=64)
    return Observation(code in _VALIDATION, f"MemorySize=64: {code}")


@claim("lambda-timeout-range", "03",
       "a function's timeout is at most 15 minutes: Timeout=901 is refused",
       "Timeout=901 refused with ValidationException",
       f"{FACTS}, row 'Lambda limits'", timeout=30)
def _timeout_range(probe):
    code = _create_refused(probe, Timeout=901)
    return Observation(code in _VALIDATION, f"Timeout=901: {code}")


@claim("lambda-reserved-variables", "03",
       "reserved environment variables (AWS_REGION, ...) cannot be set on a function",
       "CreateFunction with Environment AWS_REGION refused with InvalidParameterValueException",
       f"{FACTS}, row 'Lambda reserved environment variables'", timeout=30)
def _reserved_variables(probe):
    code = _create_refused(probe, Environment={"Variables": {"AWS_REGION": "eu-west-1"}})
    return Observation(code in _VALIDATION, f"Environment AWS_REGION: {code}")


@claim("lambda-sync-payload-6mb", "03",
       "a synchronous invoke's request payload is at most 6 MB",
       "Invoke with a 6.5 MB payload refused with RequestTooLargeException (413)",
       "Lambda Developer Guide, 'Lambda quotas' (invocation payload, synchronous 6 MB)", timeout=60)
def _payload_limit(probe):
    lam = probe.client("lambda", read_timeout=30)
    _not_served_if_lambda_missing(lam)
    with function(probe, SLEEPER) as name:
        payload = json.dumps({"blob": "x" * (6_500_000)}).encode()
        code = refused_code(lambda: lam.invoke(FunctionName=name, Payload=payload))
        return Observation(code == "RequestTooLargeException", f"6.5 MB payload: {code}")
