"""Sweeper (scheduled): fails jobs stuck past a deadline, and makes sure every terminal job is notified.

Notebook 06 (the capstone). An analyzer whose event ended in its dead-letter queue never
finalizes its job; the sweeper is what turns "stuck in ``analyzing``" into a terminal state.
Each run:

1. every job ``pending`` or ``analyzing`` whose last change is older than
   ``STUCK_AFTER_SECONDS`` becomes ``failed`` (one conditional write: an analyzer finishing at
   the same moment and the sweeper cannot both win), and is notified;
2. every terminal job still not notified after that long is notified (its notifier died
   between finalizing and publishing); ``notify_once`` keeps it to one message.

A Scan with a filter is fine for a course-sized table; at scale a sparse GSI on "open" jobs
would be read instead.

Environment: JOBS_TABLE, RESULTS_TOPIC_ARN, STUCK_AFTER_SECONDS (default 900).
"""

from __future__ import annotations

import os
import time

import boto3
from boto3.dynamodb.conditions import Attr

from moderation import joblog
from moderation.coordination import fail_job, notify_once, to_dynamo

table = boto3.resource("dynamodb").Table(os.environ["JOBS_TABLE"])
sns = boto3.client("sns")
TOPIC_ARN = os.environ["RESULTS_TOPIC_ARN"]
STUCK_AFTER_SECONDS = float(os.environ.get("STUCK_AFTER_SECONDS", 900))


def _scan(condition) -> list[dict]:
    items, start = [], None
    while True:
        page = table.scan(FilterExpression=condition, ConsistentRead=True,
                          ProjectionExpression="job_id, #s", ExpressionAttributeNames={"#s": "status"},
                          **({"ExclusiveStartKey": start} if start else {}))
        items += page.get("Items", [])
        start = page.get("LastEvaluatedKey")
        if not start:
            return items


def sweep(now: float | None = None) -> dict:
    """One pass; returns how many jobs were failed and notified."""
    now = time.time() if now is None else now
    cutoff = to_dynamo(now - STUCK_AFTER_SECONDS)
    failed = notified = 0
    for item in _scan(Attr("status").is_in(["pending", "analyzing"]) & Attr("updated_at").lt(cutoff)):
        reason = f"stuck in {item['status']} for more than {STUCK_AFTER_SECONDS:g} s"
        if fail_job(table, item["job_id"], reason, now - STUCK_AFTER_SECONDS):
            failed += 1
            joblog.log("job failed by the sweeper", item["job_id"], stage="failed", reason=reason)
            notified += notify_once(table, sns, TOPIC_ARN, item["job_id"], lease_seconds=STUCK_AFTER_SECONDS)
    for item in _scan(Attr("status").is_in(["decided", "failed"]) & Attr("notified_at").not_exists()
                      & Attr("finalized_at").lt(cutoff)):
        if notify_once(table, sns, TOPIC_ARN, item["job_id"], lease_seconds=STUCK_AFTER_SECONDS):
            notified += 1
            joblog.log("late notification sent by the sweeper", item["job_id"])
    return {"failed": failed, "notified": notified}


def handler(event, context):
    joblog.start_invocation("sweeper", context)
    counts = sweep()
    joblog.log("sweep done", None, **counts)
    return counts
