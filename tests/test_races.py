"""The race harness of notebook 06 and lab 06 (cloudlab.pipeline.races) tells right from wrong.

The pipeline's own coordination code must finalize and claim correctly in every race; the
naive read-then-write versions must be caught. The measured rates (docs/emulators.md) are far
above what these assertions need: a read-then-write finalizer double-finalizes in most races,
so 30 races without a double finalization would be a broken harness, not bad luck.
"""

from __future__ import annotations

import pytest

import cloudlab
from cloudlab.pipeline import races
from cloudlab.pipeline.layer import layer_module

coordination = layer_module("coordination")


@pytest.fixture(autouse=True)
def backend():
    return cloudlab.use_backend()


def test_the_pipelines_finalizer_finalizes_once_in_every_race():
    outcome = races.race_check_and_finalize(coordination.check_and_finalize, races=40, racers=2)
    assert outcome.correct, outcome.summary() + f" {outcome.errors}"
    assert outcome.once == 40 and outcome.mean_finalizations == 1.0 and outcome.explain() == ""


def test_read_then_write_is_caught_finalizing_twice():
    outcome = races.race_check_and_finalize(races.read_then_write_finalize, races=30, racers=2)
    assert outcome.more_than_once > 0, outcome.summary()
    assert not outcome.correct and outcome.undecided == 0 and outcome.error_count == 0
    assert outcome.explain().startswith(f"{outcome.more_than_once} of 30 races finalized the job more than once")
    assert "ConditionExpression" in outcome.explain()


def test_race_rate_by_racers_counts_duplicate_deliveries():
    rates = races.race_rate_by_racers(races.read_then_write_finalize, racer_counts=(2, 4), races=10)
    assert list(rates) == [2, 4]
    assert all(result.racers == k and result.races == 10 for k, result in rates.items())
    assert rates[4].mean_finalizations > 1.0, rates[4].summary()
    correct = races.race_rate_by_racers(coordination.check_and_finalize, racer_counts=(4,), races=10)
    assert correct[4].correct and correct[4].double_rate == 0.0, correct[4].summary()


def test_a_finalizer_that_never_finalizes_or_raises_is_counted():
    never = races.race_check_and_finalize(lambda table, job_id, branch, result: None, races=3)
    assert never.never == 3 and never.undecided == 3 and not never.correct

    def broken(table, job_id, branch, result):
        raise RuntimeError("boom")

    raised = races.race_check_and_finalize(broken, races=2)
    assert raised.error_count == 4 and raised.errors[0].endswith("RuntimeError: boom") and not raised.correct


def test_claims_against_the_sweeper():
    assert races.race_claim_job(coordination.claim_job, races=30, claimers=2).correct

    def read_then_claim(table, job_id):
        item = table.get_item(Key={"job_id": job_id}, ConsistentRead=True)["Item"]
        if item["status"] == "pending":
            table.update_item(Key={"job_id": job_id}, UpdateExpression="SET #s = :a",
                              ExpressionAttributeNames={"#s": "status"}, ExpressionAttributeValues={":a": "analyzing"})
            return True
        return item["status"] == "analyzing"

    caught = races.race_claim_job(read_then_claim, races=30, claimers=2)
    assert caught.wrong > 0 and "expected status 'failed'" in caught.examples[0], caught.summary()
    assert caught.explain().startswith(f"{caught.wrong} of 30 races broke the rules")


def test_bad_arguments_get_clear_errors():
    with pytest.raises(TypeError, match="must be a function"):
        races.race_check_and_finalize("not a function")
    with pytest.raises(ValueError, match="at least 1 race and 2 racers"):
        races.race_check_and_finalize(coordination.check_and_finalize, races=5, racers=1)
    with pytest.raises(ValueError, match="at least 1 race and 1 claimer"):
        races.race_claim_job(coordination.claim_job, races=0)
    with pytest.raises(ValueError, match="branch must be one of"):
        races.read_then_write_finalize(None, "job", "third", {})
