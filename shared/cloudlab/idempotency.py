"""Process once on at-least-once delivery: idempotency keys and a DynamoDB-backed store.

Introduced in notebook 04 (SQS delivers at least once, so consumers must make duplicates
harmless); used again by the capstone. Plain boto3 against whatever backend
``cloudlab.use_backend()`` selected.

- :func:`idempotency_key` — a key from a request's logical identity, not its MessageId;
- :func:`create_key_table` — an on-demand table keyed by one string attribute (idempotency
  records, balances, counters);
- :class:`IdempotencyStore` — run a function at most once per key, claimed with a conditional
  put; :class:`AlreadyInProgress` when another delivery holds the key.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Callable

from botocore.exceptions import ClientError

__all__ = ["idempotency_key", "create_key_table", "AlreadyInProgress", "IdempotencyStore"]


def idempotency_key(operation: str, **identity) -> str:
    """A deterministic key for one logical operation, e.g. ``idempotency_key("charge", order_id="o-1")``.

    Introduced in notebook 04. Built from the operation's *logical identity* (the fields that
    make it "the same request"), never from a queue-assigned MessageId: a producer that
    retries a send creates a new message with a new MessageId but the same logical request.
    Field order does not matter; any value change gives a different key.
    """
    canonical = json.dumps(identity, sort_keys=True, separators=(",", ":"), default=str)
    return f"{operation}:{hashlib.sha256(canonical.encode()).hexdigest()[:20]}"


def create_key_table(dynamodb, name: str, key: str = "pk") -> str:
    """Create (or reuse) an on-demand DynamoDB table with string hash key ``key``; return its name.

    Introduced in notebook 04 (idempotency records, balances, counters).
    """
    try:
        dynamodb.create_table(TableName=name, BillingMode="PAY_PER_REQUEST",
                              AttributeDefinitions=[{"AttributeName": key, "AttributeType": "S"}],
                              KeySchema=[{"AttributeName": key, "KeyType": "HASH"}])
    except ClientError as error:
        if error.response["Error"]["Code"] != "ResourceInUseException":
            raise
    return name


class AlreadyInProgress(Exception):
    """Another delivery of the same key is being processed right now: try again later."""


class IdempotencyStore:
    """Run a function at most once per key, recorded in DynamoDB with a conditional put.

    Introduced in notebook 04. ``run_once(key, fn, *args)``:

    1. claims the key with PutItem ``status=IN_PROGRESS`` under the condition "no record, or
       an IN_PROGRESS record whose lease expired" (a crashed holder);
    2. on success runs ``fn(*args)`` and stores ``status=COMPLETED`` with its JSON result;
    3. if the claim fails, the key is someone else's: a COMPLETED record returns the stored
       result (``duplicate=True``), a live IN_PROGRESS one raises :class:`AlreadyInProgress`
       (leave the message alone; it comes back after its visibility timeout).

    If ``fn`` raises, the claim is deleted so a retry can run. The conditional put is atomic
    (on AWS, and on the course's embedded backend), so concurrent duplicates cannot both
    claim. What it cannot do: make ``fn``'s side effect and the COMPLETED record one atomic
    step. A crash between them re-runs ``fn`` after the lease expires; put both in one
    ``transact_write_items`` when the side effect is a DynamoDB write (notebook 04 shows it).
    """

    def __init__(self, dynamodb, table: str, *, lease_seconds: float = 30.0) -> None:
        self.dynamodb, self.table, self.lease = dynamodb, table, lease_seconds

    def run_once(self, key: str, fn: Callable, *args) -> tuple[object, bool]:
        """Returns ``(result, duplicate)``."""
        now = time.time()
        try:
            self.dynamodb.put_item(
                TableName=self.table,
                Item={"pk": {"S": key}, "status": {"S": "IN_PROGRESS"},
                      "expires": {"N": str(now + self.lease)}},
                ConditionExpression="attribute_not_exists(pk) OR (#s = :p AND #e < :now)",
                ExpressionAttributeNames={"#s": "status", "#e": "expires"},
                ExpressionAttributeValues={":p": {"S": "IN_PROGRESS"}, ":now": {"N": str(now)}})
        except ClientError as error:
            if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            item = self.dynamodb.get_item(TableName=self.table, Key={"pk": {"S": key}},
                                          ConsistentRead=True).get("Item", {})
            if item.get("status", {}).get("S") == "COMPLETED":
                return json.loads(item["result"]["S"]), True
            raise AlreadyInProgress(key) from None
        try:
            result = fn(*args)
        except BaseException:
            self.dynamodb.delete_item(TableName=self.table, Key={"pk": {"S": key}})
            raise
        self.dynamodb.put_item(TableName=self.table, Item={
            "pk": {"S": key}, "status": {"S": "COMPLETED"}, "result": {"S": json.dumps(result, default=str)}})
        return result, False
