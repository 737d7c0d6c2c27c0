"""SQS's message-size rules, which moto gets wrong, applied before moto sees the request.

Introduced in notebook 04 and lab 02 (q4: a body near the limit plus a message attribute).
What SQS does (docs/aws-facts.md, "SQS message size" rows):

- a message's size is its body plus every message attribute's name, data type and value,
  in bytes; moto counts the body only (and in characters, not bytes);
- a queue created without ``MaximumMessageSize`` accepts 262,144 bytes (256 KiB); the
  attribute can be raised to 1,048,576 (1 MiB). moto's queues default to 1 MiB;
- a message over the limit is refused with ``InvalidParameterValue`` "One or more parameters
  are invalid. Reason: Message must be shorter than N bytes."; a batch whose messages
  together exceed 1 MiB with ``BatchRequestTooLong``.

Only the JSON protocol (every current boto3) is looked at; other requests pass unchanged.
"""

from __future__ import annotations

import base64
import binascii
import json

DEFAULT_MAXIMUM_MESSAGE_SIZE = 262_144
MAXIMUM_MESSAGE_SIZE = 1_048_576
MAXIMUM_BATCH_SIZE = 1_048_576
_TARGET_PREFIX = "AmazonSQS."


def message_size(body: str, attributes: dict | None) -> int:
    """Bytes SQS counts against ``MaximumMessageSize``: body plus each attribute's name, type and value."""
    size = len((body or "").encode("utf-8"))
    for name, attribute in (attributes or {}).items():
        size += len(name.encode("utf-8")) + len(str(attribute.get("DataType", "")).encode("utf-8"))
        if "StringValue" in attribute:
            size += len(str(attribute["StringValue"]).encode("utf-8"))
        elif "BinaryValue" in attribute:
            value = attribute["BinaryValue"]
            if isinstance(value, (bytes, bytearray)):  # as boto3 takes it; on the wire it is base64
                size += len(value)
                continue
            try:
                size += len(base64.b64decode(value))
            except (binascii.Error, TypeError, ValueError):
                size += len(str(attribute["BinaryValue"]))
    return size


def _error(code: str, message: str) -> tuple[int, dict, bytes]:
    """An SQS JSON-protocol error, shaped as moto shapes its own (botocore reads the query code)."""
    headers = {"Content-Type": "application/x-amz-json-1.0", "X-Amzn-ErrorType": f"com.amazonaws.sqs#{code}",
               "x-amzn-query-error": f"{code};Sender"}
    return 400, headers, json.dumps({"__type": f"com.amazonaws.sqs#{code}", "message": message}).encode()


def _queue_limit(queue_url: str, region: str) -> int | None:
    from .moto_compat import DEFAULT_ACCOUNT_ID, sqs_backends

    name = (queue_url or "").rstrip("/").rsplit("/", 1)[-1]
    try:
        return int(sqs_backends[DEFAULT_ACCOUNT_ID][region].queues[name].maximum_message_size)
    except (KeyError, TypeError, ValueError):
        return None  # no such queue: moto answers QueueDoesNotExist itself


def too_long(size: int, limit: int) -> tuple[int, dict, bytes]:
    return _error("InvalidParameterValue",
                  f"One or more parameters are invalid. Reason: Message must be shorter than {limit} bytes.")


def apply(headers, body: bytes, region: str) -> tuple[bytes, tuple[int, dict, bytes] | None]:
    """``(body, refusal)``: the request body to hand to moto (CreateQueue gets SQS's default
    ``MaximumMessageSize``), or the error SQS would answer instead."""
    target = headers.get("X-Amz-Target") or ""
    if not target.startswith(_TARGET_PREFIX):
        return body, None
    action = target[len(_TARGET_PREFIX):]
    if action not in ("CreateQueue", "SendMessage", "SendMessageBatch"):
        return body, None
    try:
        document = json.loads(body or b"{}")
    except ValueError:
        return body, None
    if not isinstance(document, dict):
        return body, None
    if action == "CreateQueue":
        attributes = document.get("Attributes") or {}
        if "MaximumMessageSize" not in attributes:
            document["Attributes"] = dict(attributes, MaximumMessageSize=str(DEFAULT_MAXIMUM_MESSAGE_SIZE))
            return json.dumps(document).encode(), None
        return body, None
    limit = _queue_limit(document.get("QueueUrl", ""), region)
    if limit is None:
        return body, None
    if action == "SendMessage":
        size = message_size(document.get("MessageBody", ""), document.get("MessageAttributes"))
        return body, (too_long(size, limit) if size > limit else None)
    sizes = [message_size(entry.get("MessageBody", ""), entry.get("MessageAttributes"))
             for entry in document.get("Entries") or [] if isinstance(entry, dict)]
    if sum(sizes) > MAXIMUM_BATCH_SIZE:
        return body, _error("BatchRequestTooLong", f"Batch requests cannot be longer than {MAXIMUM_BATCH_SIZE} "
                                                   f"bytes. You have sent {sum(sizes)} bytes.")
    if any(size > limit for size in sizes):
        return body, too_long(max(sizes), limit)
    return body, None
