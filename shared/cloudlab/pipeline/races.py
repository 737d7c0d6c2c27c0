"""Races of the capstone's check-and-finalize: both analyzer branches finishing at the same moment.

Introduced in notebook 06 (the coordination problem: a naive read-then-write finalizer raced
against the conditional one, and the race rate against the number of racers) and used by lab 06,
whose tests race a student's ``check_and_finalize``.

A race is one fresh job item (status ``analyzing``) in a jobs table on the current backend, and k
threads, each with its own boto3 ``Table`` resource (its own connections), that wait at a
``threading.Barrier`` and then call ``check_and_finalize(table, job_id, branch, result)`` at the
same moment. The racers' branches alternate ``moderation``, ``custom``, ``moderation``, ...: with
more than two racers the extra ones are duplicate deliveries of a branch, which Lambda's async
invokes and SQS both allow. The pipeline's contract for ``moderation.coordination.check_and_finalize``:
a call returns the decision if THIS call finalized the job, else ``None``; the caller then notifies. So a race
"finalized n times" when n calls returned a decision, and the job must end ``decided``.

:func:`race_claim_job` races the dispatcher's ``claim_job`` the same way: duplicate deliveries of
one job's message against the sweeper failing the still-pending job (lab 06, question 3).

The embedded backend makes DynamoDB conditional writes atomic, as DynamoDB does (moto alone
does not; see docs/emulators.md, "conditional writes under concurrency").

No window is widened: over loopback, with both racers released by the barrier, a read-then-write
finalizer double-finalizes in most races (83-91 % of 200 races with two racers) and in nearly
every race with three or more (measured figures in docs/emulators.md), so a few dozen races catch it every
time, while correct conditional code finalizes exactly once in every race.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Callable

import boto3

from .layer import layer_module

__all__ = ["BRANCHES", "SAMPLE_RESULTS", "RaceResult", "create_jobs_table", "new_job",
           "race_check_and_finalize", "race_rate_by_racers", "read_then_write_finalize",
           "ClaimRaceResult", "race_claim_job", "sweep_if_pending"]

BRANCHES = ("moderation", "custom")

# Results shaped as the analyzers write them (PIPELINE-CONTRACT, "Result maps"); races cycle
# through these pairs so the decisions vary.
SAMPLE_RESULTS = [
    ({"labels": [], "model_version": "7.0", "max_confidence": 0.0, "top_category": None},
     {"unsafe_probability": 0.04, "model": "race-harness", "load_ms": 0.0, "cold": False}),
    ({"labels": [{"Name": "Explicit", "ParentName": "", "Confidence": 97.5, "TaxonomyLevel": 1}],
      "model_version": "7.0", "max_confidence": 97.5, "top_category": "Explicit"},
     {"unsafe_probability": 0.93, "model": "race-harness", "load_ms": 0.0, "cold": False}),
    ({"labels": [{"Name": "Violence", "ParentName": "", "Confidence": 62.0, "TaxonomyLevel": 1}],
      "model_version": "7.0", "max_confidence": 62.0, "top_category": "Violence"},
     {"unsafe_probability": 0.35, "model": "race-harness", "load_ms": 0.0, "cold": False}),
]


def create_jobs_table(name: str | None = None, dynamodb=None) -> str:
    """Create a jobs table shaped like the pipeline's ``JobsTable`` (pk ``job_id`` S, on demand) and
    wait until it is active; returns its name (default ``races-<random>``)."""
    dynamodb = dynamodb or boto3.client("dynamodb")
    name = name or f"races-{uuid.uuid4().hex[:8]}"
    dynamodb.create_table(TableName=name, BillingMode="PAY_PER_REQUEST",
                          AttributeDefinitions=[{"AttributeName": "job_id", "AttributeType": "S"}],
                          KeySchema=[{"AttributeName": "job_id", "KeyType": "HASH"}])
    dynamodb.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 0.2, "MaxAttempts": 150})
    return name


def _job_item(job_id: str, status: str) -> dict:
    now = Decimal(str(round(time.time(), 3)))
    return {"job_id": job_id, "user_id": "race-harness", "filename": "race.png", "status": status,
            "created_at": now, "updated_at": now, "timeline": [{"stage": "uploaded", "at": now}, {"stage": status, "at": now}]}


def new_job(table, job_id: str | None = None, status: str = "analyzing") -> str:
    """Put a fresh job item as the dispatcher leaves it (``analyzing``, no results); returns its id."""
    job_id = job_id or f"race-{uuid.uuid4().hex}"
    table.put_item(Item=_job_item(job_id, status))
    return job_id


def _new_jobs(table, count: int, status: str) -> list[str]:
    """``count`` fresh jobs, written in batches (a race's set-up then costs no request of its own)."""
    job_ids = [f"race-{uuid.uuid4().hex}" for _ in range(count)]
    with table.batch_writer() as batch:
        for job_id in job_ids:
            batch.put_item(Item=_job_item(job_id, status))
    return job_ids


def _statuses(table, job_ids: list[str]) -> dict[str, str | None]:
    """Each job's status, read consistently in batches of 100 (BatchGetItem's limit)."""
    found: dict[str, str | None] = {job_id: None for job_id in job_ids}
    client = table.meta.client
    for start in range(0, len(job_ids), 100):
        keys = [{"job_id": job_id} for job_id in job_ids[start:start + 100]]
        request = {table.name: {"Keys": keys, "ConsistentRead": True, "ProjectionExpression": "job_id, #s",
                                "ExpressionAttributeNames": {"#s": "status"}}}
        while request:
            answer = client.batch_get_item(RequestItems=request)
            for item in answer["Responses"].get(table.name, []):
                found[item["job_id"]] = item.get("status")
            request = answer.get("UnprocessedKeys") or None
    return found


@dataclass
class RaceResult:
    """What ``races`` races of ``racers`` racers gave: ``finalized[n]`` races in which n calls said they
    finalized; ``undecided`` races whose item did not end ``decided``; ``errors``, the first few
    exceptions racers raised (``error_count`` in all); ``seconds`` the wall time."""

    races: int
    racers: int
    finalized: Counter = field(default_factory=Counter)
    undecided: int = 0
    error_count: int = 0
    errors: list = field(default_factory=list)
    seconds: float = 0.0

    @property
    def once(self) -> int:
        return self.finalized[1]

    @property
    def never(self) -> int:
        return self.finalized[0]

    @property
    def more_than_once(self) -> int:
        return sum(count for times, count in self.finalized.items() if times >= 2)

    @property
    def mean_finalizations(self) -> float:
        """Finalizations (so notifications) per race; 1.0 for correct code."""
        return sum(times * count for times, count in self.finalized.items()) / self.races if self.races else 0.0

    @property
    def double_rate(self) -> float:
        """Share of races that finalized two or more times."""
        return self.more_than_once / self.races if self.races else 0.0

    @property
    def correct(self) -> bool:
        """Every race finalized exactly once, ended ``decided``, and no racer raised."""
        return self.once == self.races and not self.undecided and not self.error_count

    def summary(self) -> str:
        return (f"{self.races} races of {self.racers} racers: "
                f"finalized once {self.once}, never {self.never}, twice or more {self.more_than_once}; "
                f"item not decided {self.undecided}; racer errors {self.error_count}; {self.seconds:.1f} s")

    def explain(self) -> str:
        """What went wrong, in words a student can act on, most useful first ("" when every race was right)."""
        if self.correct:
            return ""
        problems = []
        if self.more_than_once:
            problems.append(f"{self.more_than_once} of {self.races} races finalized the job more than once (each "
                            "such call would notify): more than one call saw 'both results, not decided yet'. Let "
                            "DynamoDB check 'not decided yet' in the finalizing write itself (a ConditionExpression) "
                            "and return None when that check fails")
        if self.never:
            problems.append(f"{self.never} of {self.races} races never finalized: no call returned the decision")
        if self.undecided:
            problems.append(f"{self.undecided} of {self.races} jobs did not end with status 'decided'")
        if self.error_count:
            problems.append(f"racers raised {self.error_count} exceptions, e.g. {'; '.join(self.errors)}")
        return ". ".join(problems) + f". ({self.summary()})"

    def as_dict(self) -> dict:
        return {"races": self.races, "racers": self.racers,
                "finalized": {str(k): v for k, v in sorted(self.finalized.items())}, "once": self.once,
                "never": self.never, "more_than_once": self.more_than_once, "double_rate": self.double_rate,
                "mean_finalizations": self.mean_finalizations,
                "undecided": self.undecided, "errors": self.error_count, "seconds": round(self.seconds, 2)}


class _Starter:
    """Threads that each call their function at the same moment (a barrier), once per race."""

    def __init__(self, functions: list[Callable[[str], object]], timeout: float) -> None:
        self.functions, self.timeout = functions, timeout
        self.start_line = threading.Barrier(len(functions) + 1)
        self.finish_line = threading.Barrier(len(functions) + 1)
        self.job_id: str | None = None
        self.returned: list = [None] * len(functions)
        self.raised: list = [None] * len(functions)
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True, name=f"racer-{i}")
                        for i in range(len(functions))]
        for thread in self.threads:
            thread.start()

    def _run(self, index: int) -> None:
        while True:
            try:
                self.start_line.wait()
            except threading.BrokenBarrierError:
                return
            try:
                self.returned[index] = self.functions[index](self.job_id)
            except Exception as error:  # noqa: BLE001 - a racer's exception is part of the outcome
                self.raised[index] = error
            try:
                self.finish_line.wait()
            except threading.BrokenBarrierError:
                return

    def race(self, job_id: str, number: int) -> None:
        """Release every racer on ``job_id`` and wait until all have returned (or raised)."""
        self.job_id = job_id
        self.returned[:] = [None] * len(self.functions)
        self.raised[:] = [None] * len(self.functions)
        self.start_line.wait(timeout=self.timeout)
        try:
            self.finish_line.wait(timeout=self.timeout)
        except threading.BrokenBarrierError:
            raise TimeoutError(f"race {number}: the racers had not all returned after {self.timeout:.0f} s") from None

    def close(self) -> None:
        self.start_line.abort()
        self.finish_line.abort()


def _racer_tables(name: str, count: int) -> list:
    """One Table resource per racer, each with its own client (so its own connections): resources
    are not thread-safe. They are built here, one after the other, from one session, which is
    safe and loads the service model once."""
    session = boto3.session.Session()
    return [session.resource("dynamodb").Table(name) for _ in range(count)]


def race_check_and_finalize(check_and_finalize: Callable, races: int = 200, racers: int = 2, *,
                            table_name: str | None = None, results=None, timeout: float = 30.0) -> RaceResult:
    """Race ``check_and_finalize`` ``races`` times, ``racers`` calls at once per fresh job; see the
    module docstring. Uses ``table_name`` or a table of its own (deleted afterwards). A race whose
    racers have not all returned within ``timeout`` seconds stops the run with an error."""
    if not callable(check_and_finalize):
        raise TypeError(f"check_and_finalize must be a function, got {check_and_finalize!r}")
    if races < 1 or racers < 2:
        raise ValueError(f"need at least 1 race and 2 racers, got races={races}, racers={racers}")
    results = results or SAMPLE_RESULTS
    name = table_name or create_jobs_table()
    tables = _racer_tables(name, racers)
    checker = boto3.resource("dynamodb").Table(name)
    outcome = RaceResult(races=races, racers=racers)
    pair = {"results": results[0]}

    def calling(index: int):
        branch = BRANCHES[index % len(BRANCHES)]
        return lambda job_id: check_and_finalize(tables[index], job_id, branch, pair["results"][index % len(BRANCHES)])

    starter = _Starter([calling(i) for i in range(racers)], timeout)
    started = time.monotonic()
    try:
        job_ids = _new_jobs(checker, races, "analyzing")
        for number, job_id in enumerate(job_ids):
            pair["results"] = results[number % len(results)]
            starter.race(job_id, number + 1)
            outcome.finalized[sum(1 for value in starter.returned if value is not None)] += 1
            for index, error in enumerate(starter.raised):
                if error is not None:
                    outcome.error_count += 1
                    if len(outcome.errors) < 3:
                        outcome.errors.append(f"{BRANCHES[index % len(BRANCHES)]}: {type(error).__name__}: {error}")
        outcome.undecided = sum(1 for status in _statuses(checker, job_ids).values() if status != "decided")
    finally:
        starter.close()
        outcome.seconds = time.monotonic() - started
        if table_name is None:
            checker.meta.client.delete_table(TableName=name)
    return outcome


@dataclass
class ClaimRaceResult:
    """What ``races`` races of ``claimers`` ``claim_job`` calls against the sweeper gave: ``wrong``
    races broke a rule (first few described in ``examples``); ``sweeper_won`` races the sweeper
    failed the pending job first; ``error_count`` exceptions claimers raised."""

    races: int
    claimers: int
    wrong: int = 0
    sweeper_won: int = 0
    error_count: int = 0
    examples: list = field(default_factory=list)
    seconds: float = 0.0

    @property
    def correct(self) -> bool:
        return not self.wrong and not self.error_count

    def explain(self) -> str:
        """What went wrong, in words a student can act on, most useful first ("" when every race was right)."""
        if self.correct:
            return ""
        problems = []
        if self.wrong:
            problems.append(f"{self.wrong} of {self.races} races broke the rules: a claim must move the job only if "
                            "it is still pending, in one conditional update, and report a job the sweeper failed "
                            "as terminal (False)")
        if self.error_count:
            problems.append(f"claims raised {self.error_count} exceptions")
        return ". ".join(problems + self.examples) + f". ({self.summary()})"

    def summary(self) -> str:
        return (f"{self.races} races of {self.claimers} claims and the sweeper: wrong {self.wrong} "
                f"(sweeper first in {self.sweeper_won}); claimer errors {self.error_count}; {self.seconds:.1f} s")


def sweep_if_pending(table, job_id: str) -> bool:
    """The sweeper's move on a job never dispatched: ``pending`` -> ``failed`` with one conditional
    update; True if it moved it."""
    try:
        table.update_item(Key={"job_id": job_id}, UpdateExpression="SET #s = :failed, #e = :why",
                          ConditionExpression="#s = :pending", ExpressionAttributeNames={"#s": "status", "#e": "error"},
                          ExpressionAttributeValues={":failed": "failed", ":pending": "pending",
                                                     ":why": "stuck in pending (race harness)"})
        return True
    except table.meta.client.exceptions.ConditionalCheckFailedException:
        return False


def race_claim_job(claim_job: Callable, races: int = 100, claimers: int = 2, *, table_name: str | None = None,
                   timeout: float = 30.0) -> ClaimRaceResult:
    """Race ``claimers`` calls of ``claim_job(table, job_id)`` (duplicate deliveries of one SQS message)
    and the sweeper failing the still-``pending`` job, all at the same moment, ``races`` times.

    The rules (lab 06, the idempotent dispatcher step): if the sweeper failed the job, it stays
    ``failed`` and every claim returns False (a terminal job is never brought back); otherwise the job
    ends ``analyzing`` and every claim returns True (a redelivery fans out again, harmlessly).
    A claim that reads ``pending`` and then writes ``analyzing`` without a condition revives jobs
    the sweeper failed in between.
    """
    if not callable(claim_job):
        raise TypeError(f"claim_job must be a function, got {claim_job!r}")
    if races < 1 or claimers < 1:
        raise ValueError(f"need at least 1 race and 1 claimer, got races={races}, claimers={claimers}")
    name = table_name or create_jobs_table()
    tables = _racer_tables(name, claimers + 1)
    checker = boto3.resource("dynamodb").Table(name)
    outcome = ClaimRaceResult(races=races, claimers=claimers)
    functions = [(lambda job_id, table=table: claim_job(table, job_id)) for table in tables[:-1]]
    functions.append(lambda job_id: sweep_if_pending(tables[-1], job_id))
    starter = _Starter(functions, timeout)
    started = time.monotonic()
    try:
        job_ids = _new_jobs(checker, races, "pending")
        raced = []
        for number, job_id in enumerate(job_ids):
            starter.race(job_id, number + 1)
            *claims, swept = starter.returned
            errors = [error for error in starter.raised if error is not None]
            if errors:
                outcome.error_count += len(errors)
                if len(outcome.examples) < 3:
                    outcome.examples.append(f"race {number + 1}: {type(errors[0]).__name__}: {errors[0]}")
                continue
            raced.append((number, job_id, claims, bool(swept)))
        statuses = _statuses(checker, [job_id for _, job_id, _, _ in raced])
        for number, job_id, claims, swept in raced:
            status = statuses[job_id]
            outcome.sweeper_won += swept
            expected = ("failed", False) if swept else ("analyzing", True)
            if status != expected[0] or any(claim is not expected[1] for claim in claims):
                outcome.wrong += 1
                if len(outcome.examples) < 3:
                    outcome.examples.append(
                        f"race {number + 1}: the sweeper {'failed the pending job first' if swept else 'came too late'}, "
                        f"so expected status {expected[0]!r} and every claim {expected[1]}; "
                        f"found status {status!r}, claims returned {claims}")
    finally:
        starter.close()
        outcome.seconds = time.monotonic() - started
        if table_name is None:
            checker.meta.client.delete_table(TableName=name)
    return outcome


def race_rate_by_racers(check_and_finalize: Callable, racer_counts=(2, 3, 4, 6, 8), races: int = 50) -> dict[int, RaceResult]:
    """Race ``check_and_finalize`` with each number of racers (the two branches plus duplicate
    deliveries); returns ``{racers: RaceResult}`` for notebook 06's plot of the race rate
    (``double_rate``, ``mean_finalizations``) against the number of racers. One table serves every count."""
    name = create_jobs_table()
    try:
        return {k: race_check_and_finalize(check_and_finalize, races, k, table_name=name)
                for k in racer_counts}
    finally:
        boto3.client("dynamodb").delete_table(TableName=name)


def read_then_write_finalize(table, job_id: str, branch: str, result: dict) -> str | None:
    """WRONG ON PURPOSE (notebook 06): check-and-finalize written as read-then-write.

    It writes this branch's result, reads the item consistently, and if both results are there and
    the job is not decided yet, finalizes with an UNCONDITIONAL update. Two branches that both read
    before either writes both see "both results, not decided" and both finalize, so both notify.
    The fix is to let DynamoDB check "not decided yet" in the same write (a ConditionExpression).
    """
    if branch not in BRANCHES:
        raise ValueError(f"branch must be one of {BRANCHES}, got {branch!r}")
    coordination, decisions = layer_module("coordination"), layer_module("decisions")
    to_dynamo, from_dynamo = coordination.to_dynamo, coordination.from_dynamo  # floats <-> Decimal
    key = {"job_id": job_id}
    table.update_item(Key=key, UpdateExpression="SET #result = :result, updated_at = :now",
                      ExpressionAttributeNames={"#result": f"{branch}_result"},
                      ExpressionAttributeValues={":result": to_dynamo(result), ":now": to_dynamo(time.time())})
    item = table.get_item(Key=key, ConsistentRead=True)["Item"]
    if item.get("status") == "decided" or not all(f"{b}_result" in item for b in BRANCHES):
        return None
    decision = decisions.decide(from_dynamo(item["moderation_result"]), from_dynamo(item["custom_result"]))
    now = to_dynamo(time.time())
    table.update_item(Key=key,  # the bug: nothing checks that the job is still undecided
                      UpdateExpression="SET #status = :decided, decision = :decision, finalized_by = :branch, "
                                       "finalized_at = :now, updated_at = :now",
                      ExpressionAttributeNames={"#status": "status"},
                      ExpressionAttributeValues={":decided": "decided", ":decision": decision, ":branch": branch,
                                                 ":now": now})
    return decision
