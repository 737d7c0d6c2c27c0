"""Status function (API Gateway proxy, ``GET /jobs/{job_id}``): the job, its decision, its timeline.

Notebook 06 (the capstone). 200 with the job document, 404 ``{"error": "NotFound"}``.
The read is strongly consistent, so a client that just got its 202 sees its own job.

Environment: JOBS_TABLE.
"""

from __future__ import annotations

import json
import os

import boto3

from moderation import joblog
from moderation.coordination import from_dynamo

table = boto3.resource("dynamodb").Table(os.environ["JOBS_TABLE"])
FIELDS = ("job_id", "user_id", "filename", "content_type", "size", "status", "decision", "error",
          "created_at", "updated_at", "finalized_at", "notified_at")


# API Gateway's Cors answers only the preflight; every answer carries the origin itself, or a
# browser page on another origin cannot read it.
CORS_ALLOW_ORIGIN = os.environ.get("CORS_ALLOW_ORIGIN", "*")


def _answer(status: int, body: dict) -> dict:
    return {"statusCode": status, "headers": {"Content-Type": "application/json",
                                              "Access-Control-Allow-Origin": CORS_ALLOW_ORIGIN},
            "body": json.dumps(body)}


def job_document(item: dict) -> dict:
    """The API's view of a job item: its fields, both results, and its timeline in time order
    (a write retried after a lost response can append the same event twice; shown once)."""
    item = from_dynamo(item)
    document = {name: item.get(name) for name in FIELDS}
    document["results"] = {"moderation": item.get("moderation_result"), "custom": item.get("custom_result")}
    seen, timeline = set(), []
    for event in sorted(item.get("timeline") or [], key=lambda event: event.get("at", 0)):
        key = json.dumps(event, sort_keys=True)
        if key not in seen:
            seen.add(key)
            timeline.append(event)
    document["timeline"] = timeline
    return document


def handler(event, context):
    joblog.start_invocation("status", context)
    job_id = ((event.get("pathParameters") or {}).get("job_id") or "").strip()
    if not job_id:
        return _answer(400, {"error": "MissingJobId", "message": "The path must be /jobs/<job_id>."})
    item = table.get_item(Key={"job_id": job_id}, ConsistentRead=True).get("Item")
    if item is None:
        return _answer(404, {"error": "NotFound", "message": f"No job {job_id}."})
    joblog.log("status read", job_id, status=item.get("status"))
    return _answer(200, job_document(item))
