"""Conditional writes on the embedded backend are atomic, as on DynamoDB (issue: topic 04).

moto checks a condition and applies the write in two steps. To make the race certain
rather than rare, these tests widen the window: the condition check sleeps after it
evaluates. With cloudlab's write serialisation exactly one racer wins; with it switched off
(the control), several do, which proves the test can fail.
"""

from __future__ import annotations

import threading
import time

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from cloudlab.backend import embedded

RACERS = 3


@pytest.fixture
def slow_condition_checks(monkeypatch):
    import moto.dynamodb.models as models

    original = models.create_condition_expression_parser

    def parser_with_slow_check(*args, **kwargs):
        parser = original(*args, **kwargs)
        parse = parser.parse

        def parse_then_slow():
            condition = parse()
            evaluate = condition.expr

            def slow_evaluate(item):
                verdict = evaluate(item)
                time.sleep(0.05)  # the gap between check and write, widened
                return verdict

            condition.expr = slow_evaluate
            return condition

        parser.parse = parse_then_slow
        return parser

    monkeypatch.setattr(models, "create_condition_expression_parser", parser_with_slow_check)


def _winners_per_race(server, races: int) -> list[int]:
    def client():
        return boto3.client("dynamodb", endpoint_url=server.url, region_name="us-east-1", aws_access_key_id="t",
                            aws_secret_access_key="t", config=Config(retries={"max_attempts": 1}))

    setup = client()
    table = f"atomic-{time.monotonic_ns()}"
    setup.create_table(TableName=table, KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                       AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                       BillingMode="PAY_PER_REQUEST")
    clients = [client() for _ in range(RACERS)]
    results = []
    for race in range(races):
        setup.put_item(TableName=table, Item={"pk": {"S": f"job-{race}"}, "state": {"S": "open"}})
        barrier, wins = threading.Barrier(RACERS), []

        def claim(racer: int) -> None:
            barrier.wait()
            try:
                clients[racer].update_item(
                    TableName=table, Key={"pk": {"S": f"job-{race}"}}, UpdateExpression="SET #s = :done",
                    ConditionExpression="#s = :open", ExpressionAttributeNames={"#s": "state"},
                    ExpressionAttributeValues={":open": {"S": "open"}, ":done": {"S": "done"}})
                wins.append(racer)
            except ClientError as error:
                assert error.response["Error"]["Code"] == "ConditionalCheckFailedException"

        threads = [threading.Thread(target=claim, args=(racer,)) for racer in range(RACERS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        results.append(len(wins))
    return results


@pytest.fixture
def server():
    running = embedded.EmbeddedServer().start()
    yield running
    running.stop()


def test_exactly_one_conditional_update_wins(slow_condition_checks, server):
    assert _winners_per_race(server, races=3) == [1, 1, 1]


def test_control_without_serialisation_has_double_winners(slow_condition_checks, server, monkeypatch):
    monkeypatch.setattr(embedded.MotoDispatcher, "_write_lock_for", lambda self, host, headers: embedded._NO_LOCK)
    assert max(_winners_per_race(server, races=2)) > 1


def test_reads_are_not_serialised(server):
    dispatcher = embedded.MotoDispatcher()
    headers = embedded.RequestHeaders([("X-Amz-Target", "DynamoDB_20120810.GetItem")])
    assert dispatcher._write_lock_for("dynamodb.us-east-1.amazonaws.com", headers) is embedded._NO_LOCK
    headers = embedded.RequestHeaders([("X-Amz-Target", "DynamoDB_20120810.TransactWriteItems")])
    assert dispatcher._write_lock_for("dynamodb.us-east-1.amazonaws.com", headers) is not embedded._NO_LOCK
