"""The lecture's check-and-finalize, as the lecture writes it, so notebook 06 can race it.

Introduced in notebook 06 (section 4). The syllabus's capstone ("Implementing Check-and-Finalize")
claims its ``ConditionExpression`` lets exactly one branch finalize. Its claim update is::

    UpdateExpression='SET #s = :s, finalized_at = :t',
    ConditionExpression='#s <> :done',                  # :s = 'finalizing', :done = 'complete'

The winner sets the status to ``finalizing``, and ``'finalizing' <> 'complete'`` is true, so a
second branch that read "both results are in" passes the same condition and finalizes too; only
a branch that arrives after the winner's *second* write (``complete``) is stopped. The condition
must reject every status but the one before finalization (the pipeline's own code:
``#s = :analyzing AND attribute_not_exists(finalized_by)``).

:func:`lecture_check_and_finalize` keeps the lecture's steps and conditions and speaks the
pipeline contract (``check_and_finalize(table, job_id, branch, result) -> decision | None``,
with the pipeline's ``decided`` for the lecture's ``complete``, in the condition too), so
``races.race_check_and_finalize`` can race it. It is WRONG ON
PURPOSE; never call it from the pipeline.
"""

from __future__ import annotations

import time

from .layer import layer_module

BRANCHES = ("moderation", "custom")


def lecture_check_and_finalize(table, job_id: str, branch: str, result: dict) -> str | None:
    """The lecture's branch epilogue: store the result, read consistently, claim with
    ``#s <> :done``, then finalize (the lecture's ``finalize_job``). Returns the decision if this
    call finalized."""
    if branch not in BRANCHES:
        raise ValueError(f"branch must be one of {BRANCHES}, got {branch!r}")
    coordination, decisions = layer_module("coordination"), layer_module("decisions")
    key = {"job_id": job_id}
    # the branch handler's own write of its result (the lecture's update_item ... SET <branch>_result)
    table.update_item(Key=key, UpdateExpression="SET #result = :result",
                      ExpressionAttributeNames={"#result": f"{branch}_result"},
                      ExpressionAttributeValues={":result": coordination.to_dynamo(result)})
    item = table.get_item(Key=key, ConsistentRead=True).get("Item", {})  # "Strong consistency required"
    if not all(f"{name}_result" in item for name in BRANCHES):
        return None  # "Other branch not done yet - nothing to do"
    try:  # "Both done - try to claim finalization"
        table.update_item(Key=key, UpdateExpression="SET #s = :s, finalized_at = :t",
                          ConditionExpression="#s <> :done", ExpressionAttributeNames={"#s": "status"},
                          ExpressionAttributeValues={":s": "finalizing", ":done": "decided",
                                                     ":t": coordination.to_dynamo(time.time())})
    except table.meta.client.exceptions.ConditionalCheckFailedException:
        return None  # "Other branch already claimed finalization"
    # finalize_job: combine and write the final status (the pipeline's name for it is "decided")
    decision = decisions.decide(coordination.from_dynamo(item["moderation_result"]),
                                coordination.from_dynamo(item["custom_result"]))
    table.update_item(Key=key, UpdateExpression="SET #s = :status, decision = :decision, completed_at = :t",
                      ExpressionAttributeNames={"#s": "status"},
                      ExpressionAttributeValues={":status": "decided", ":decision": decision,
                                                 ":t": coordination.to_dynamo(time.time())})
    return decision
