"""Upload function (API Gateway proxy, ``POST /uploads``): check, store, create the job, queue it.

The capstone's entry point (notebook 06). Body: ``{"user_id", "filename", "image": base64}``.
Answers 202 ``{"job_id", "status": "pending", "status_url"}`` with a ``Location`` header.

Everything is checked before anything is written: user id, base64, size (``MAX_UPLOAD_BYTES``),
image type from the bytes' magic number, and a filename cleaned of path tricks. Bad input gets
a 4xx ``{"error", "message"}`` and nothing is stored. The writes then go S3 -> DynamoDB -> SQS;
if a later one fails, the earlier ones are undone, so a half-stored upload never lingers (and
the queue only ever names jobs that exist).

Environment: UPLOAD_BUCKET, JOBS_TABLE, JOBS_QUEUE_URL, MAX_UPLOAD_BYTES (default 4 MiB: the 6 MB synchronous invoke payload carries about 4.4 MiB as base64).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import time
import uuid

import boto3

from moderation import joblog
from moderation.coordination import to_dynamo
from moderation.images import EXTENSIONS, clean_filename, sniff_image_type

s3 = boto3.client("s3")
table = boto3.resource("dynamodb").Table(os.environ["JOBS_TABLE"])
sqs = boto3.client("sqs")
BUCKET = os.environ["UPLOAD_BUCKET"]
QUEUE_URL = os.environ["JOBS_QUEUE_URL"]
MAX_UPLOAD_BYTES = int(os.environ.get("MAX_UPLOAD_BYTES", 4 * 1024 * 1024))
USER_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class BadUpload(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


# API Gateway's Cors answers only the preflight; every answer (4xx included) carries the origin
# itself, or a browser page on another origin cannot read it.
CORS_ALLOW_ORIGIN = os.environ.get("CORS_ALLOW_ORIGIN", "*")


def _answer(status: int, body: dict, headers: dict | None = None) -> dict:
    return {"statusCode": status, "headers": {"Content-Type": "application/json",
                                              "Access-Control-Allow-Origin": CORS_ALLOW_ORIGIN, **(headers or {})},
            "body": json.dumps(body)}


def parse_upload(event: dict) -> dict:
    """The checked upload: ``{"user_id", "filename", "image", "content_type"}``, or ``BadUpload``."""
    raw = event.get("body") or ""
    if event.get("isBase64Encoded"):
        try:
            raw = base64.b64decode(raw).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise BadUpload(400, "InvalidBody", "The request body is not valid base64-encoded UTF-8.") from None
    try:
        body = json.loads(raw)
    except ValueError:
        raise BadUpload(400, "InvalidJSON", 'The body must be JSON: {"user_id": ..., "filename": ..., "image": "<base64>"}.') from None
    if not isinstance(body, dict):
        raise BadUpload(400, "InvalidJSON", "The body must be a JSON object.")
    user_id = body.get("user_id")
    if not isinstance(user_id, str) or not user_id:
        raise BadUpload(400, "MissingUserId", "user_id is required.")
    if not USER_ID.match(user_id):
        raise BadUpload(400, "InvalidUserId", "user_id must be 1-64 letters, digits, '_' or '-'.")
    encoded = body.get("image")
    if not isinstance(encoded, str) or not encoded:
        raise BadUpload(400, "EmptyImage", "image is required: the file's bytes, base64-encoded.")
    if len(encoded) > (MAX_UPLOAD_BYTES + 2) // 3 * 4 + 4:  # refuse before decoding a huge string
        raise BadUpload(413, "TooLarge", f"The image is larger than the limit of {MAX_UPLOAD_BYTES} bytes.")
    try:
        image = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise BadUpload(400, "InvalidBase64", "image is not valid base64.") from None
    if not image:
        raise BadUpload(400, "EmptyImage", "The image is empty (0 bytes).")
    if len(image) > MAX_UPLOAD_BYTES:
        raise BadUpload(413, "TooLarge", f"The image is {len(image)} bytes; the limit is {MAX_UPLOAD_BYTES}.")
    content_type = sniff_image_type(image)
    if content_type is None:
        raise BadUpload(415, "UnsupportedType", "The file is not a PNG, JPEG, GIF or WebP image (checked from its bytes).")
    filename = clean_filename(body.get("filename") or f"image{EXTENSIONS[content_type]}")
    if not filename:
        raise BadUpload(400, "InvalidFilename", "The filename has no usable characters once path parts are removed.")
    return {"user_id": user_id, "filename": filename, "image": image, "content_type": content_type}


def put_job(item: dict) -> None:
    """Create the job once. If the response to our PutItem was lost, the SDK's retry finds the
    item already there (ConditionalCheckFailed): it is ours when it names our object key."""
    try:
        table.put_item(Item=to_dynamo(item), ConditionExpression="attribute_not_exists(job_id)")
    except table.meta.client.exceptions.ConditionalCheckFailedException:
        existing = table.get_item(Key={"job_id": item["job_id"]}, ConsistentRead=True).get("Item") or {}
        if existing.get("key") != item["key"]:
            raise


def store(upload: dict, job_id: str) -> dict:
    """S3 object, then the pending job, then the queue message; undoes earlier writes on failure."""
    key = f"uploads/{upload['user_id']}/{job_id}/{upload['filename']}"
    now = time.time()
    s3.put_object(Bucket=BUCKET, Key=key, Body=upload["image"], ContentType=upload["content_type"],
                  Metadata={"user-id": upload["user_id"], "job-id": job_id, "original-filename": upload["filename"]})
    item = {"job_id": job_id, "user_id": upload["user_id"], "filename": upload["filename"], "bucket": BUCKET,
            "key": key, "content_type": upload["content_type"], "size": len(upload["image"]), "status": "pending",
            "created_at": now, "updated_at": now, "timeline": [{"stage": "uploaded", "at": now, "by": "upload"}]}
    try:
        put_job(item)
    except Exception:
        s3.delete_object(Bucket=BUCKET, Key=key)
        raise
    try:
        sqs.send_message(QueueUrl=QUEUE_URL, MessageBody=json.dumps({"job_id": job_id, "bucket": BUCKET, "key": key}))
    except Exception:
        table.delete_item(Key={"job_id": job_id})
        s3.delete_object(Bucket=BUCKET, Key=key)
        raise
    return item


def handler(event, context):
    joblog.start_invocation("upload", context)
    try:
        upload = parse_upload(event)
    except BadUpload as refusal:
        joblog.log("upload refused", None, level="WARNING", error=refusal.code, reason=refusal.message)
        return _answer(refusal.status, {"error": refusal.code, "message": refusal.message})
    job_id = str(uuid.uuid4())
    try:
        item = store(upload, job_id)
    except Exception as error:
        joblog.log("upload could not be stored; nothing kept", job_id, level="ERROR", error=repr(error))
        return _answer(503, {"error": "ServiceUnavailable", "message": "The upload could not be stored; try again."})
    joblog.log("upload stored", job_id, stage="uploaded", user_id=item["user_id"],
               size=item["size"], content_type=item["content_type"])
    status_url = f"/jobs/{job_id}"
    return _answer(202, {"job_id": job_id, "status": "pending", "status_url": status_url}, {"Location": status_url})
