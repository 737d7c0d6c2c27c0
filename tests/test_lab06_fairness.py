"""Lab 06 is fair: a read-then-write finalizer loses the race points, and only those; correct answers
written differently from the master (a transaction, a version attribute, a table lookup, a claim
that accepts "already analyzing" in its condition) earn every point.

The master's test cases run in-process here, in a namespace holding the answers under test, as
``check()`` and the grader run them in a student's notebook (see test_lab_fairness.py). The
in-pipeline question (q4) deploys the whole pipeline; it is graded with real kernels in
test_grader.py (master and generated lab) and is left out here.
"""

from __future__ import annotations

import json
import time
from decimal import Decimal
from pathlib import Path

import pytest

import cloudlab
from cloudlab.grading.markers import parse_master
from cloudlab.pipeline.layer import layer_module
from lab_cases import failures

REPO = Path(__file__).resolve().parents[1]
MASTER = REPO / "solutions" / "06_moderation_pipeline_lab.ipynb"
RACES = ["both branches at the same moment, 30 times: each job finalized exactly once",
         "both branches at the same moment, 200 times",
         "duplicate deliveries: four calls at once (each branch twice), 50 times"]

decisions = layer_module("decisions")
Thresholds = decisions.Thresholds


@pytest.fixture
def lab06():
    cloudlab.use_backend()  # per test: the autouse fixture in conftest.py resets the environment after each
    return parse_master(MASTER)


# ---- decide written as a table lookup -------------------------------------------------------------

VERDICTS = {("reject", "reject"): "reject", ("reject", "approve"): "manual_review", ("approve", "reject"): "manual_review",
            ("reject", "warn"): "reject", ("warn", "reject"): "reject", ("warn", "warn"): "warn",
            ("warn", "approve"): "warn", ("approve", "warn"): "warn", ("approve", "approve"): "approve"}


def decide_by_table(moderation_result, custom_result, thresholds=None):
    t = thresholds or Thresholds.from_env()
    if any(r is None or (isinstance(r, dict) and "error" in r) for r in (moderation_result, custom_result)):
        return "manual_review"
    if not isinstance(moderation_result, dict) or not isinstance(custom_result, dict):
        raise ValueError("results must be dicts")
    top = [(lab["Name"], float(lab["Confidence"])) for lab in moderation_result.get("labels", [])
           if not lab.get("ParentName")]
    if any(not 0 <= confidence <= 100 for _, confidence in top):
        raise ValueError("Confidence outside 0-100")
    c_reject = max([c for name, c in top if name in t.reject_categories], default=0)
    c_any = max([c for _, c in top], default=0)
    if "unsafe_probability" not in custom_result or not 0 <= float(custom_result["unsafe_probability"]) <= 1:
        raise ValueError("unsafe_probability must be within 0-1")
    p = float(custom_result["unsafe_probability"])
    if c_reject >= t.moderation_certain:
        return "reject"
    m = "reject" if c_reject >= t.moderation_reject else ("warn" if c_any >= t.moderation_warn else "approve")
    c = "reject" if p >= t.custom_reject else ("warn" if p >= t.custom_warn else "approve")
    return VERDICTS[(m, c)]


# ---- finalizers ---------------------------------------------------------------------------------------

def read_then_write(table, job_id, branch, result):
    """The master's answer without its ConditionExpression: what the race tests are for."""
    if branch not in ("moderation", "custom"):
        raise ValueError(branch)
    key = {"job_id": job_id}
    table.update_item(Key=key, UpdateExpression="SET #r = :r", ExpressionAttributeNames={"#r": f"{branch}_result"},
                      ExpressionAttributeValues={":r": json.loads(json.dumps(result), parse_float=Decimal)})
    item = table.get_item(Key=key, ConsistentRead=True)["Item"]
    if item.get("status") != "analyzing" or "moderation_result" not in item or "custom_result" not in item:
        return None
    decision = decide(item["moderation_result"], item["custom_result"])
    table.update_item(Key=key, UpdateExpression="SET #s = :d, decision = :x, finalized_by = :b, finalized_at = :t",
                      ExpressionAttributeNames={"#s": "status"},
                      ExpressionAttributeValues={":d": "decided", ":x": decision, ":b": branch,
                                                 ":t": Decimal(str(time.time()))})
    return decision


def finalize_by_transaction(table, job_id, branch, result):
    """Finalizes in a TransactWriteItems whose one Update carries the condition (a transaction of one write:
    what a student who learnt transactions first might write)."""
    if branch not in ("moderation", "custom"):
        raise ValueError(f"unknown branch {branch}")
    client = table.meta.client
    key = {"job_id": job_id}
    table.update_item(Key=key, UpdateExpression="SET #r = :r", ExpressionAttributeNames={"#r": branch + "_result"},
                      ExpressionAttributeValues={":r": json.loads(json.dumps(result), parse_float=Decimal)})
    item = table.get_item(Key=key, ConsistentRead=True)["Item"]
    if item["status"] != "analyzing" or not {"moderation_result", "custom_result"} <= set(item):
        return None
    decision = decide(item["moderation_result"], item["custom_result"])
    try:
        client.transact_write_items(TransactItems=[{"Update": {
            "TableName": table.name, "Key": key,
            "UpdateExpression": "SET #s = :d, decision = :x, finalized_by = :b, finalized_at = :t",
            "ConditionExpression": "#s = :a", "ExpressionAttributeNames": {"#s": "status"},
            "ExpressionAttributeValues": {":d": "decided", ":x": decision, ":b": branch, ":a": "analyzing",
                                          ":t": Decimal(int(time.time()))}}}])
    except client.exceptions.TransactionCanceledException:
        return None
    return decision


def finalize_with_version(table, job_id, branch, result):
    """Optimistic locking: every finalizer writes version + 1, on condition that the version it read is current."""
    if branch not in {"moderation", "custom"}:
        raise ValueError("bad branch")
    table.update_item(Key={"job_id": job_id}, UpdateExpression=f"SET {branch}_result = :r",
                      ExpressionAttributeValues={":r": json.loads(json.dumps(result), parse_float=Decimal)})
    item = table.get_item(Key={"job_id": job_id}, ConsistentRead=True)["Item"]
    if item.get("status") == "decided" or "moderation_result" not in item or "custom_result" not in item:
        return None
    version = int(item.get("version", 0))
    decision = decide(item["moderation_result"], item["custom_result"])
    try:
        table.update_item(Key={"job_id": job_id},
                          UpdateExpression="SET version = :next, #s = :d, decision = :x, finalized_by = :b, "
                                           "finalized_at = :t",
                          ConditionExpression="attribute_not_exists(version) OR version = :seen" if version == 0
                          else "version = :seen",
                          ExpressionAttributeNames={"#s": "status"},
                          ExpressionAttributeValues={":next": version + 1, ":seen": version, ":d": "decided",
                                                     ":x": decision, ":b": branch, ":t": Decimal(str(time.time()))})
    except Exception as error:  # noqa: BLE001 - only the lost condition is expected
        if type(error).__name__ != "ConditionalCheckFailedException":
            raise
        return None
    return decision


# ---- claims -----------------------------------------------------------------------------------------

def claim_pending_or_analyzing(table, job_id):
    """One update whose condition accepts both pending and analyzing; reads only to tell a missing job."""
    try:
        table.update_item(Key={"job_id": job_id}, UpdateExpression="SET #s = :analyzing",
                          ConditionExpression="#s IN (:pending, :analyzing)", ExpressionAttributeNames={"#s": "status"},
                          ExpressionAttributeValues={":analyzing": "analyzing", ":pending": "pending"})
        return True
    except table.meta.client.exceptions.ConditionalCheckFailedException:
        if "Item" not in table.get_item(Key={"job_id": job_id}, ConsistentRead=True):
            raise LookupError(job_id) from None
        return False


def read_then_claim(table, job_id):
    item = table.get_item(Key={"job_id": job_id}, ConsistentRead=True).get("Item")
    if item is None:
        raise LookupError(job_id)
    if item["status"] == "pending":
        table.update_item(Key={"job_id": job_id}, UpdateExpression="SET #s = :a", ExpressionAttributeNames={"#s": "status"},
                          ExpressionAttributeValues={":a": "analyzing"})
        return True
    return item["status"] == "analyzing"


# the finalizers above call `decide`, as a student's do; the tests swap in the pipeline's (with_pipeline_decide)
decide = decide_by_table


def test_decide_written_as_a_table_lookup_earns_every_point(lab06):
    assert failures(lab06, "q1_decide", {"decide": decide_by_table}, hidden=True) == []


def test_read_then_write_finalizer_loses_the_race_points_and_only_those(lab06):
    assert failures(lab06, "q2_finalize", {"check_and_finalize": read_then_write}, hidden=True) == RACES
    lost = sum(case.points for case in lab06.question("q2_finalize").cases if case.description in RACES)
    assert lost == 6


@pytest.mark.parametrize("finalizer", [finalize_by_transaction, finalize_with_version])
def test_other_correct_finalizers_earn_every_point(lab06, finalizer):
    assert failures(lab06, "q2_finalize", {"check_and_finalize": finalizer}, hidden=True) == []


def test_claims_written_differently_earn_every_point_and_read_then_claim_loses_the_races(lab06):
    assert failures(lab06, "q3_claim", {"claim_job": claim_pending_or_analyzing}, hidden=True) == []
    assert failures(lab06, "q3_claim", {"claim_job": read_then_claim}, hidden=True) == [
        "two deliveries and the sweeper at the same moment, 30 times",
        "three deliveries and the sweeper at the same moment, 100 times"]


def test_decide_that_calls_the_pipelines_own_earns_nothing(lab06):
    def borrowed(moderation_result, custom_result, thresholds=None):
        return decisions.decide(moderation_result, custom_result, thresholds)

    assert len(failures(lab06, "q1_decide", {"decide": borrowed}, hidden=True)) == len(lab06.question("q1_decide").cases)
