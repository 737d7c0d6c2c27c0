"""The embedded backend's server-side chaos rules and call counts (backend/chaos.py, request_log.py)."""

from __future__ import annotations

import threading
import time
import uuid

import boto3
import pytest
from botocore.config import Config

import cloudlab
from cloudlab.backend import chaos, request_log


@pytest.fixture
def table():
    backend = cloudlab.use_backend("embedded")
    name = f"chaos{uuid.uuid4().hex[:8]}"
    ddb = boto3.client("dynamodb")
    ddb.create_table(TableName=name, BillingMode="PAY_PER_REQUEST",
                     AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
                     KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}])
    rules = chaos.ChaosClient(backend.endpoint)
    yield backend, name, rules
    rules.clear()


def client(attempts: int):
    return boto3.client("dynamodb", config=Config(retries={"mode": "standard", "total_max_attempts": attempts}))


def test_lost_response_applies_the_write_and_the_retry_meets_it(table):
    backend, name, rules = table
    rules.add([{"fault": "lost_response", "service": "dynamodb", "operation": "PutItem", "match": ["first"], "times": 1}])
    once = client(1)
    with pytest.raises(once.exceptions.InternalServerError):
        once.put_item(TableName=name, Item={"k": {"S": "first"}}, ConditionExpression="attribute_not_exists(k)")
    assert "Item" in once.get_item(TableName=name, Key={"k": {"S": "first"}})  # applied all the same
    rules.clear()
    rules.add([{"fault": "lost_response", "service": "dynamodb", "operation": "PutItem", "times": 1}])
    retried = client(3)
    with pytest.raises(retried.exceptions.ConditionalCheckFailedException):  # the retry meets its own write
        retried.put_item(TableName=name, Item={"k": {"S": "second"}}, ConditionExpression="attribute_not_exists(k)")
    assert [rule["fired"] for rule in rules.report()] == [1]


def test_throttle_and_error_leave_state_alone(table):
    backend, name, rules = table
    rules.add([{"fault": "throttle", "service": "dynamodb", "operation": "PutItem", "times": 2},
               {"fault": "error", "service": "dynamodb", "operation": "DeleteItem", "code": "Boom"}])
    once = client(1)
    with pytest.raises(once.exceptions.ProvisionedThroughputExceededException):
        once.put_item(TableName=name, Item={"k": {"S": "a"}})
    assert "Item" not in once.get_item(TableName=name, Key={"k": {"S": "a"}})
    client(3).put_item(TableName=name, Item={"k": {"S": "a"}})  # second throttle, then through
    with pytest.raises(once.exceptions.ClientError, match="Boom"):
        client(3).delete_item(TableName=name, Key={"k": {"S": "a"}})
    assert "Item" in once.get_item(TableName=name, Key={"k": {"S": "a"}})


def test_groups_pick_items_and_barrier_releases_both_together(table):
    backend, name, rules = table
    rules.add([{"fault": "error", "service": "dynamodb", "operation": "PutItem", "groups": 1},
               {"fault": "barrier", "service": "dynamodb", "operation": "UpdateItem", "parties": 2, "timeout": 20}])
    ddb = client(1)
    with pytest.raises(ddb.exceptions.ClientError):
        ddb.put_item(TableName=name, Item={"k": {"S": "chosen"}})
    ddb.put_item(TableName=name, Item={"k": {"S": "other"}})  # a second item is not chosen
    with pytest.raises(ddb.exceptions.ClientError):
        ddb.put_item(TableName=name, Item={"k": {"S": "chosen"}})  # the chosen one fails every time
    arrived = {}

    def update(attribute):
        client(1).update_item(TableName=name, Key={"k": {"S": "other"}}, UpdateExpression=f"SET {attribute} = :v",
                              ExpressionAttributeValues={":v": {"N": "1"}})
        arrived[attribute] = time.monotonic()

    first = threading.Thread(target=update, args=("a",))
    first.start()
    first.join(1.0)
    assert first.is_alive()  # held at the barrier until the second party comes
    update("b")
    first.join(10)
    assert abs(arrived["a"] - arrived["b"]) < 1.0


def test_request_log_counts_calls_per_caller_with_costs(table):
    backend, name, rules = table
    request_log.fetch(backend.endpoint, "POST")
    try:
        ddb = client(1)
        ddb.put_item(TableName=name, Item={"k": {"S": "x"}, "v": {"S": "y" * 2500}})
        other = boto3.client("dynamodb", aws_access_key_id="counted-apart", aws_secret_access_key="x")
        other.get_item(TableName=name, Key={"k": {"S": "nope"}}, ConsistentRead=True)
        rows = {(row["caller"], row["operation"]): row for row in request_log.fetch(backend.endpoint)}
    finally:
        request_log.fetch(backend.endpoint, "DELETE")
    put = rows[("test", "PutItem")]
    assert put["calls"] == 1 and put["units"] == {"write_request_unit": 3} and put["cost_usd"] > 0
    assert rows[("counted-apart", "GetItem")]["calls"] == 1


def test_bad_rules_are_refused():
    with pytest.raises(ValueError):
        chaos.Rule(fault="explode", service="dynamodb")
    assert chaos.http_answer("POST", b'{"rules": [{"fault": "nope", "service": "s3"}]}')[0] == 400


def test_a_dynamodb_read_that_meets_a_concurrent_write_mid_iteration_is_read_again(table, monkeypatch):
    """moto walks its item dicts unlocked; a Scan beside a PutItem can fail with "dictionary
    changed size during iteration". The embedded backend runs such a read again."""
    from moto.dynamodb.models import DynamoDBBackend

    backend, name, rules = table
    original, failures = DynamoDBBackend.scan, []

    def scan_failing_once(self, *args, **kwargs):
        if not failures:
            failures.append(1)
            raise RuntimeError("dictionary changed size during iteration")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(DynamoDBBackend, "scan", scan_failing_once)
    assert client(1).scan(TableName=name)["Count"] == 0 and failures == [1]
