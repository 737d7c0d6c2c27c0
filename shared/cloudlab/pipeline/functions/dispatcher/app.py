"""Dispatcher function (SQS event source on the jobs queue, ``ReportBatchItemFailures``).

Notebook 06 (the capstone). For each message: claim the job (conditional ``pending`` ->
``analyzing``), then start both analyzers with asynchronous invokes (``InvocationType="Event"``):
neither waits for the other, and Lambda retries each and sends what still fails to its DLQ.

Safe on redelivery: a job already ``analyzing`` is fanned out again (the analyzers store the
same results and only one finalizes); a terminal job is skipped. A message that names no job
(malformed, or an unknown id: a poison message) is reported in ``batchItemFailures``, so SQS
redelivers it and, after ``maxReceiveCount`` receives, moves it to the queue's dead-letter queue.

Environment: JOBS_TABLE, MODERATION_FUNCTION, CUSTOM_FUNCTION.
"""

from __future__ import annotations

import json
import os

import boto3

from moderation import joblog
from moderation.coordination import claim_job

table = boto3.resource("dynamodb").Table(os.environ["JOBS_TABLE"])
lambda_client = boto3.client("lambda")
ANALYZERS = {"moderation": os.environ["MODERATION_FUNCTION"], "custom": os.environ["CUSTOM_FUNCTION"]}


def dispatch(message: dict) -> None:
    """Claim one job and fan out; raises for a message that must be retried or dead-lettered."""
    job_id = message.get("job_id") if isinstance(message, dict) else None
    if not isinstance(job_id, str) or not job_id:
        raise ValueError("message has no job_id")
    if not claim_job(table, job_id):  # LookupError for an unknown job: poison
        joblog.log("job already terminal; not dispatched", job_id)
        return
    joblog.log("job claimed", job_id, stage="dispatched")
    for branch, function_name in ANALYZERS.items():
        payload = {"job_id": job_id, "bucket": message.get("bucket"), "key": message.get("key"), "branch": branch}
        lambda_client.invoke(FunctionName=function_name, InvocationType="Event", Payload=json.dumps(payload).encode())


def handler(event, context):
    joblog.start_invocation("dispatcher", context)
    failures = []
    for record in event.get("Records", []):
        try:
            message = json.loads(record["body"])
        except ValueError:
            message = None
        try:
            dispatch(message)
        except Exception as error:
            job_id = message.get("job_id") if isinstance(message, dict) else None
            joblog.log("message not dispatched; SQS will redeliver it", job_id if isinstance(job_id, str) else None,
                       level="ERROR", message_id=record["messageId"], error=repr(error),
                       receive_count=record.get("attributes", {}).get("ApproximateReceiveCount"))
            failures.append({"itemIdentifier": record["messageId"]})
    return {"batchItemFailures": failures}
