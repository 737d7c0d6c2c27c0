"""Coordination of one job through DynamoDB conditional writes: claim, finalize once, notify once.

Part of the pipeline's Lambda layer (notebook 06, the capstone; lab 06 lets students replace
:func:`claim_job` and :func:`check_and_finalize`, so their signatures stay as they are).

The job item moves ``pending`` -> ``analyzing`` -> ``decided`` | ``failed``. Every move is one
conditional ``UpdateItem``, so two Lambda invocations racing for the same move cannot both
make it (DynamoDB evaluates the condition and applies the write atomically).

Retries are the hard part. A write can be APPLIED while its response is lost; botocore then
sends the same request again, and a plain "only if not finalized yet" condition would now
fail for the very caller that won. So each terminal write records who made it
(``finalized_by``: the Lambda request id, which AWS keeps across the async retries of one
event) and its condition also accepts "already made by me". A retried request, or a retried
invocation, sees itself as the winner again instead of a loser, and the job still moves once.

Notification uses the same idea as a lease: :func:`notify_once` claims the right to publish
(``notify_claimed_by``), publishes to SNS, then marks ``notified_at``. A retry of the claimer
re-publishes only if ``notified_at`` was never written; another caller may take over a claim
only after it is older than a lease (the sweeper repairs a job whose notifier died). The one
window left is "published, then crashed before marking": that gives a second message, which
subscribers can drop by ``job_id`` (SNS standard topics are at-least-once on AWS anyway).
"""

from __future__ import annotations

import json
import time
import uuid
from decimal import Decimal

from . import joblog

BRANCHES = ("moderation", "custom")
TERMINAL = ("decided", "failed")
NOTIFY_LEASE_SECONDS = 60.0


# --- DynamoDB numbers are Decimal; results are plain floats everywhere else -------------------

def to_dynamo(value):
    """``value`` with floats as ``Decimal`` (what the boto3 resource layer needs to store numbers)."""
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, dict):
        return {key: to_dynamo(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_dynamo(item) for item in value]
    return value


def from_dynamo(value):
    """``value`` with ``Decimal`` back as int or float (JSON-ready)."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() and "." not in str(value) else float(value)
    if isinstance(value, dict):
        return {key: from_dynamo(item) for key, item in value.items()}
    if isinstance(value, list):
        return [from_dynamo(item) for item in value]
    return value


def invocation_id() -> str:
    """Who is writing: the Lambda request id when a handler set it (joblog.start_invocation), else
    a fresh id per call (then only botocore's own retries of one request count as "me")."""
    return joblog.request_id() or f"local-{uuid.uuid4()}"


def _event(stage: str, by: str, **fields) -> list[dict]:
    return [to_dynamo({"stage": stage, "at": time.time(), "by": by, **fields})]


_APPEND = "timeline = list_append(if_not_exists(timeline, :empty), :event)"


def _conditional_failed(table, error) -> bool:
    return isinstance(error, table.meta.client.exceptions.ConditionalCheckFailedException)


# --- the moves ----------------------------------------------------------------------------

def claim_job(table, job_id: str) -> bool:
    """Move ``job_id`` from ``pending`` to ``analyzing``; True if it is now analyzing.

    True when this call moved it, and also when it was already ``analyzing`` (a redelivered
    SQS message: the dispatcher fans out again, which the analyzers tolerate). False when the
    job is already terminal. Raises ``LookupError`` for a job that does not exist (a poison
    message: the dispatcher reports it failed, so it ends in the queue's DLQ).
    """
    by = invocation_id()
    try:
        table.update_item(
            Key={"job_id": job_id},
            UpdateExpression=f"SET #s = :analyzing, updated_at = :now, claimed_by = :by, {_APPEND}",
            ConditionExpression="#s = :pending",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={":analyzing": "analyzing", ":pending": "pending", ":by": by,
                                       ":now": to_dynamo(time.time()), ":empty": [],
                                       ":event": _event("analyzing", by)})
        return True
    except Exception as error:
        if not _conditional_failed(table, error):
            raise
    item = table.get_item(Key={"job_id": job_id}, ConsistentRead=True).get("Item")
    if item is None:
        raise LookupError(f"job {job_id} does not exist")
    return item.get("status") == "analyzing"


def check_and_finalize(table, job_id: str, branch: str, result: dict) -> str | None:
    """Store this branch's result; if both results are in, decide and finalize the job once.

    Returns the decision if THIS call finalized the job (or a retry of the call that did),
    else None: the other branch is still running, or someone else finalized, or the job is
    already terminal (a late duplicate, or the sweeper failed it).
    """
    from .decisions import decide  # the decision rules (one home: decisions.py)

    if branch not in BRANCHES:
        raise ValueError(f"branch must be one of {BRANCHES}, not {branch!r}")
    by = invocation_id()
    names = {"#s": "status"}
    try:
        table.update_item(
            Key={"job_id": job_id},
            UpdateExpression=f"SET {branch}_result = :result, updated_at = :now, {_APPEND}",
            ConditionExpression="#s = :analyzing OR finalized_by = :by",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues={":result": to_dynamo(result), ":now": to_dynamo(time.time()),
                                       ":analyzing": "analyzing", ":by": by, ":empty": [],
                                       ":event": _event(f"{branch}_done", by)})
    except Exception as error:
        if not _conditional_failed(table, error):
            raise
        joblog.log("job is no longer analyzing; result not stored", job_id, branch=branch)
        return None
    item = table.get_item(Key={"job_id": job_id}, ConsistentRead=True).get("Item") or {}
    if item.get("finalized_by") == by:
        return item.get("decision")
    if item.get("status") != "analyzing" or "moderation_result" not in item or "custom_result" not in item:
        return None
    decision = decide(from_dynamo(item["moderation_result"]), from_dynamo(item["custom_result"]))
    try:
        table.update_item(
            Key={"job_id": job_id},
            UpdateExpression=(f"SET #s = :decided, decision = :decision, finalized_by = :by, finalized_at = :now, "
                              f"updated_at = :now, {_APPEND}"),
            ConditionExpression="(#s = :analyzing AND attribute_not_exists(finalized_by)) OR finalized_by = :by",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues={":decided": "decided", ":decision": decision, ":by": by,
                                       ":analyzing": "analyzing", ":now": to_dynamo(time.time()), ":empty": [],
                                       ":event": _event("decided", by, decision=decision)})
    except Exception as error:
        if not _conditional_failed(table, error):
            raise
        joblog.log("finalize race lost: the other branch finalized first", job_id, branch=branch)
        return None  # the other branch finalized between our read and our write
    return decision


def fail_job(table, job_id: str, reason: str, stuck_before: float) -> bool:
    """Move a job that has not changed since ``stuck_before`` (epoch s) to ``failed``, once.

    Used by the sweeper. True if this call failed it (or a retry of the call that did).
    """
    by = invocation_id()
    try:
        table.update_item(
            Key={"job_id": job_id},
            UpdateExpression=(f"SET #s = :failed, #e = :reason, finalized_by = :by, finalized_at = :now, "
                              f"updated_at = :now, {_APPEND}"),
            ConditionExpression=("(#s IN (:pending, :analyzing) AND updated_at < :cutoff "
                                 "AND attribute_not_exists(finalized_by)) OR finalized_by = :by"),
            ExpressionAttributeNames={"#s": "status", "#e": "error"},
            ExpressionAttributeValues={":failed": "failed", ":reason": reason, ":by": by, ":pending": "pending",
                                       ":analyzing": "analyzing", ":cutoff": to_dynamo(float(stuck_before)),
                                       ":now": to_dynamo(time.time()), ":empty": [],
                                       ":event": _event("failed", by, reason=reason)})
        return True
    except Exception as error:
        if not _conditional_failed(table, error):
            raise
        return False


def notification(item: dict) -> dict:
    """The message published for a terminal job (JSON, shaped like an e-mail to its user)."""
    item = from_dynamo(item)
    outcome = item.get("decision") or item.get("status")
    return {"job_id": item["job_id"], "user_id": item.get("user_id"), "filename": item.get("filename"),
            "status": item.get("status"), "decision": item.get("decision"), "error": item.get("error"),
            "finalized_at": item.get("finalized_at"),
            "email": {"to": item.get("user_id"), "subject": f"Your upload {item.get('filename')}: {outcome}",
                      "text": f"Moderation of {item.get('filename')} finished: {outcome}."}}


def notify_once(table, sns, topic_arn: str, job_id: str, lease_seconds: float = NOTIFY_LEASE_SECONDS) -> bool:
    """Publish the job's outcome to SNS exactly once; True if this call published it.

    Claim (conditional, retry-safe) -> publish -> mark ``notified_at``. See the module
    docstring for why this is once even when responses are lost or the caller is retried.
    """
    by = invocation_id()
    now = time.time()
    try:
        answer = table.update_item(
            Key={"job_id": job_id},
            UpdateExpression="SET notify_claimed_by = :by, notify_claimed_at = :now",
            ConditionExpression=("#s IN (:decided, :failed) AND attribute_not_exists(notified_at) AND "
                                 "(attribute_not_exists(notify_claimed_by) OR notify_claimed_by = :by "
                                 "OR notify_claimed_at < :stale)"),
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={":by": by, ":now": to_dynamo(now), ":stale": to_dynamo(now - lease_seconds),
                                       ":decided": "decided", ":failed": "failed"},
            ReturnValues="ALL_NEW")
    except Exception as error:
        if not _conditional_failed(table, error):
            raise
        return False  # not terminal, already notified, or someone else holds a fresh claim
    item = answer["Attributes"]
    message = notification(item)
    attributes = {"job_id": {"DataType": "String", "StringValue": job_id},
                  "status": {"DataType": "String", "StringValue": message["status"]}}
    extra = {}
    if topic_arn.endswith(".fifo"):  # a FIFO topic drops a second publish of the same job by itself
        extra = {"MessageGroupId": job_id, "MessageDeduplicationId": job_id}
    published = sns.publish(TopicArn=topic_arn, Message=json.dumps(message), Subject=message["email"]["subject"][:99],
                            MessageAttributes=attributes, **extra)
    table.update_item(
        Key={"job_id": job_id},
        UpdateExpression=f"SET notified_at = if_not_exists(notified_at, :now), notification_id = :mid, {_APPEND}",
        ExpressionAttributeValues={":now": to_dynamo(time.time()), ":mid": published["MessageId"], ":empty": [],
                                   ":event": _event("notified", by)})
    joblog.log("notification published", job_id, stage="notified", message_id=published["MessageId"])
    return True

