"""Managed-moderation analyzer (invoked asynchronously by the dispatcher).

Notebook 06 (the capstone). Calls Rekognition exactly as on AWS::

    rekognition.detect_moderation_labels(Image={"S3Object": {"Bucket": ..., "Name": ...}}, MinConfidence=...)

Rekognition reads the image from S3 itself; the bytes never pass through this function.
On the course's emulators the answer comes from a STAND-IN (neither moto nor LocalStack serves
this API; ``cloudlab/backend/moderation_standin.py`` decides from the pixels, in Rekognition's
response shape). Then: store the result, and finalize the job if the custom branch is done.

An exception here fails the invocation: Lambda retries it twice, then sends the event to the
analyzer dead-letter queue; the sweeper fails the job if nothing finishes it.

Environment: JOBS_TABLE, RESULTS_TOPIC_ARN, MIN_CONFIDENCE (default 50).
"""

from __future__ import annotations

import os
import time

import boto3

from moderation import joblog
from moderation.coordination import check_and_finalize, notify_once
from moderation.results import moderation_result

table = boto3.resource("dynamodb").Table(os.environ["JOBS_TABLE"])
rekognition = boto3.client("rekognition")
sns = boto3.client("sns")
TOPIC_ARN = os.environ["RESULTS_TOPIC_ARN"]
MIN_CONFIDENCE = float(os.environ.get("MIN_CONFIDENCE", 50))


def image_location(event: dict) -> tuple[str, str]:
    """The job's image: from the event, else from the job item."""
    if event.get("bucket") and event.get("key"):
        return event["bucket"], event["key"]
    item = table.get_item(Key={"job_id": event["job_id"]}, ConsistentRead=True).get("Item")
    if item is None:
        raise LookupError(f"job {event['job_id']} does not exist")
    return item["bucket"], item["key"]


def handler(event, context):
    joblog.start_invocation("moderation_analyzer", context)
    job_id = event["job_id"]
    joblog.log("analysis started", job_id, stage="moderation_started")
    bucket, key = image_location(event)
    started = time.perf_counter()
    try:
        response = rekognition.detect_moderation_labels(Image={"S3Object": {"Bucket": bucket, "Name": key}},
                                                        MinConfidence=MIN_CONFIDENCE)
        result = moderation_result(response)
    except (rekognition.exceptions.InvalidImageFormatException, rekognition.exceptions.ImageTooLargeException) as error:
        # Rekognition reads JPEG and PNG only: a GIF or WebP upload goes to a human (manual_review)
        result = {"error": error.response["Error"]["Code"], "labels": [], "max_confidence": 0.0, "top_category": None}
    result["latency_ms"] = round((time.perf_counter() - started) * 1000, 2)
    joblog.log("moderation labels", job_id, stage="moderation_done", labels=len(result["labels"]),
               top_category=result["top_category"], max_confidence=result["max_confidence"], error=result.get("error"))
    decision = check_and_finalize(table, job_id, "moderation", result)
    if decision is not None:
        joblog.log("job finalized", job_id, stage="finalized", decision=decision, branch="moderation")
        notify_once(table, sns, TOPIC_ARN, job_id)
    return {"job_id": job_id, "branch": "moderation", "finalized": decision is not None, "decision": decision}
