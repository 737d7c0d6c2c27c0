"""Format analyzer: the THIRD branch notebook 06 adds to show that the pattern extends.

Not part of the deployed capstone (``template.yaml`` has two branches); ``cloudlab.pipeline.extension``
copies this folder next to the functions and adds it to the template. It checks what Rekognition
needs from an image, from its pixels: PNG or JPEG, at least 80 pixels on each side and at most
10,000 (docs/aws-facts.md, row "Rekognition image limits"), stores that as the job's
``format_result`` and finalizes through the same ``check_and_finalize`` as the other two branches,
which now waits for all three (``ANALYZER_BRANCHES``). The decision rules are unchanged.

Environment: JOBS_TABLE, RESULTS_TOPIC_ARN, ANALYZER_BRANCHES.
"""

from __future__ import annotations

import io
import os

import boto3
from PIL import Image

from moderation import joblog
from moderation.coordination import check_and_finalize, notify_once

table = boto3.resource("dynamodb").Table(os.environ["JOBS_TABLE"])
s3 = boto3.client("s3")
sns = boto3.client("sns")
TOPIC_ARN = os.environ["RESULTS_TOPIC_ARN"]
MIN_SIDE, MAX_SIDE = 80, 10_000  # Rekognition's DetectModerationLabels limits


def image_format(data: bytes) -> dict:
    """``{"format", "width", "height", "rekognition_ok"}`` of an image's bytes."""
    with Image.open(io.BytesIO(data)) as image:
        width, height, kind = image.width, image.height, image.format
    fits = kind in ("PNG", "JPEG") and MIN_SIDE <= min(width, height) and max(width, height) <= MAX_SIDE
    return {"format": kind, "width": width, "height": height, "rekognition_ok": fits}


def handler(event, context):
    joblog.start_invocation("format_analyzer", context)
    job_id = event["job_id"]
    joblog.log("analysis started", job_id, stage="format_started")
    data = s3.get_object(Bucket=event["bucket"], Key=event["key"])["Body"].read()
    result = image_format(data)
    joblog.log("format checked", job_id, stage="format_done", **result)
    decision = check_and_finalize(table, job_id, "format", result)
    if decision is not None:
        joblog.log("job finalized", job_id, stage="finalized", decision=decision, branch="format")
        notify_once(table, sns, TOPIC_ARN, job_id)
    return {"job_id": job_id, "branch": "format", "finalized": decision is not None, "decision": decision}
