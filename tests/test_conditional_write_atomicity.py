"""Conditional writes on the embedded backend are atomic, as on DynamoDB and S3 (topics 02 and 04).

moto checks a condition and applies the write in two steps (DynamoDB's ConditionExpression,
S3's If-None-Match / If-Match), so two racers can both pass the check. To make the race
certain rather than rare, these tests hold every racer in the gap between its check and its
write until all racers of the race have checked (a gate, not a sleep). With cloudlab's write
serialisation only one racer can be in the gap, so the first waits out the gate's hold alone
and exactly one wins. With the serialisation switched off (the controls), every racer passes
the check and every one wins, which proves the tests can fail.

The lock must not cost what it protects against: reads, and other services (an SQS long
poll), go on while a write holds it.
"""

from __future__ import annotations

import threading
import uuid

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from cloudlab.backend import embedded

RACERS = 3
HOLD_WITH_LOCK = 1.0  # the first racer waits this long, alone, for others that the lock keeps out
HOLD_WITHOUT_LOCK = 30.0  # a deadline only: without the lock the gate opens as soon as all have checked
NOT_BLOCKED_WITHIN = 30.0  # a read that is not held up answers in milliseconds; the margin is for a busy machine
BLOCKED_FOR = 1.0  # how long a held-up call is watched not finishing (waiting longer cannot change that)


class CheckGate:
    """Holds each racer between its condition check and its write until all ``racers`` of its race
    (one race per key) have checked, or the first has waited ``hold`` seconds. Then the race's gate
    stays open. Keys nobody registered pass straight through."""

    def __init__(self, hold: float = HOLD_WITH_LOCK, racers: int = RACERS) -> None:
        self.racers, self.hold = racers, hold
        self._changed = threading.Condition()
        self._checked: dict[str, int] = {}
        self._open: set[str] = set()

    def race(self, key: str) -> str:
        with self._changed:
            self._checked[key] = 0
        return key

    def between_check_and_write(self, key) -> None:
        with self._changed:
            if key not in self._checked:
                return
            self._checked[key] += 1
            self._changed.notify_all()
            self._changed.wait_for(lambda: key in self._open or self._checked[key] >= self.racers, timeout=self.hold)
            self._open.add(key)


class Hold:
    """Parks the conditional write on one key between its check and its write until released."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.entered, self.released = threading.Event(), threading.Event()

    def between_check_and_write(self, key) -> None:
        if key == self.key:
            self.entered.set()
            self.released.wait(timeout=60)


@pytest.fixture
def between_dynamodb_check_and_write(monkeypatch):
    """Calls each function put in the returned list with the item's key after every DynamoDB condition
    check, before its write."""
    import moto.dynamodb.models as models

    hooks = []
    original = models.create_condition_expression_parser

    def parser_with_hook(*args, **kwargs):
        parser = original(*args, **kwargs)
        parse = parser.parse

        def parse_with_hook():
            condition = parse()
            evaluate = condition.expr

            def evaluate_then_hook(item):
                verdict = evaluate(item)
                for hook in hooks:
                    hook(item.hash_key.value if item is not None else None)
                return verdict

            condition.expr = evaluate_then_hook
            return condition

        parser.parse = parse_with_hook
        return parser

    monkeypatch.setattr(models, "create_condition_expression_parser", parser_with_hook)
    return hooks


@pytest.fixture
def between_s3_check_and_write(monkeypatch):
    """Calls each function put in the returned list with the key after each object lookup inside
    PutObject: its If-None-Match / If-Match check (S3 looks objects up elsewhere too, e.g. before
    dispatching; those pass)."""
    from moto.s3.models import S3Backend
    from moto.s3.responses import S3Response

    hooks, inside_put = [], threading.local()
    get_object, put_object = S3Backend.get_object, S3Response.put_object

    def get_object_then_hook(self, bucket_name, key_name, *args, **kwargs):
        found = get_object(self, bucket_name, key_name, *args, **kwargs)
        if getattr(inside_put, "active", False):
            for hook in hooks:
                hook(key_name)
        return found

    def put_object_marked(self, *args, **kwargs):
        inside_put.active = True
        try:
            return put_object(self, *args, **kwargs)
        finally:
            inside_put.active = False

    monkeypatch.setattr(S3Backend, "get_object", get_object_then_hook)
    monkeypatch.setattr(S3Response, "put_object", put_object_marked)
    return hooks


@pytest.fixture
def server():
    running = embedded.EmbeddedServer().start()
    yield running
    running.stop()


@pytest.fixture
def without_serialisation(monkeypatch):
    """The control: cloudlab's write serialisation switched off, as in moto's own server."""
    monkeypatch.setattr(embedded.MotoDispatcher, "_write_lock_for", lambda self, host, headers: embedded._NO_LOCK)


def client(server, service: str, **config):
    return boto3.client(service, endpoint_url=server.url, region_name="us-east-1", aws_access_key_id="t",
                        aws_secret_access_key="t", config=Config(retries={"max_attempts": 1}, **config))


def race(attempts) -> list[str]:
    """Runs each attempt in its own thread, released together; returns their outcomes."""
    barrier, outcomes = threading.Barrier(len(attempts)), []

    def run(attempt) -> None:
        barrier.wait()
        try:
            attempt()
            outcomes.append("OK")
        except ClientError as error:
            outcomes.append(error.response["Error"]["Code"])

    threads = [threading.Thread(target=run, args=(attempt,)) for attempt in attempts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sorted(outcomes)


def make_table(dynamodb) -> str:
    table = f"atomic-{uuid.uuid4().hex[:8]}"
    dynamodb.create_table(TableName=table, KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                          AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                          BillingMode="PAY_PER_REQUEST")
    return table


def _dynamodb_winners_per_race(server, gate: CheckGate, races: int) -> list[int]:
    setup = client(server, "dynamodb")
    table = make_table(setup)
    clients = [client(server, "dynamodb") for _ in range(RACERS)]
    winners = []
    for number in range(races):
        job = gate.race(f"job-{number}")
        setup.put_item(TableName=table, Item={"pk": {"S": job}, "state": {"S": "open"}})

        def claim(racer: int):
            return lambda: clients[racer].update_item(
                TableName=table, Key={"pk": {"S": job}}, UpdateExpression="SET #s = :done",
                ConditionExpression="#s = :open", ExpressionAttributeNames={"#s": "state"},
                ExpressionAttributeValues={":open": {"S": "open"}, ":done": {"S": "done"}})

        outcomes = race([claim(racer) for racer in range(RACERS)])
        assert set(outcomes) <= {"OK", "ConditionalCheckFailedException"}, outcomes
        winners.append(outcomes.count("OK"))
    return winners


def test_exactly_one_conditional_update_wins(between_dynamodb_check_and_write, server):
    gate = CheckGate()
    between_dynamodb_check_and_write.append(gate.between_check_and_write)
    assert _dynamodb_winners_per_race(server, gate, races=2) == [1, 1]


def test_control_without_serialisation_every_racer_wins(between_dynamodb_check_and_write, server,
                                                         without_serialisation):
    gate = CheckGate(hold=HOLD_WITHOUT_LOCK)
    between_dynamodb_check_and_write.append(gate.between_check_and_write)
    assert _dynamodb_winners_per_race(server, gate, races=2) == [RACERS, RACERS]


def _s3_winners_per_race(server, gate: CheckGate, condition: str, races: int) -> list[int]:
    s3 = client(server, "s3")
    bucket = f"atomic-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    winners = []
    for number in range(races):
        key = f"race-{number}"
        if condition == "If-Match":  # replace the version everyone read: S3 lets exactly one do it
            etag = s3.put_object(Bucket=bucket, Key=key, Body=b"v0")["ETag"]
            expectation = {"IfMatch": etag}
        else:  # create only if absent
            expectation = {"IfNoneMatch": "*"}
        gate.race(key)

        def put(racer: int):
            return lambda: s3.put_object(Bucket=bucket, Key=key, Body=f"racer {racer}".encode(), **expectation)

        outcomes = race([put(racer) for racer in range(RACERS)])
        assert set(outcomes) <= {"OK", "PreconditionFailed"}, outcomes
        winners.append(outcomes.count("OK"))
        # the stored object is the winner's, and only a winner's
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read().startswith(b"racer ")
    return winners


@pytest.mark.parametrize("condition", ["If-None-Match", "If-Match"])
def test_exactly_one_conditional_s3_put_wins(between_s3_check_and_write, server, condition):
    gate = CheckGate()
    between_s3_check_and_write.append(gate.between_check_and_write)
    assert _s3_winners_per_race(server, gate, condition, races=2) == [1, 1]


@pytest.mark.parametrize("condition", ["If-None-Match", "If-Match"])
def test_control_without_serialisation_every_s3_racer_wins(between_s3_check_and_write, server,
                                                          without_serialisation, condition):
    gate = CheckGate(hold=HOLD_WITHOUT_LOCK)
    between_s3_check_and_write.append(gate.between_check_and_write)
    assert _s3_winners_per_race(server, gate, condition, races=2) == [RACERS, RACERS]


# ---- the lock holds up writes only ---------------------------------------------------------------


def finishes_within(call, seconds: float) -> tuple[bool, threading.Thread, list]:
    """Starts ``call`` in a thread; whether it finished within ``seconds``, the thread, its result."""
    result: list = []
    thread = threading.Thread(target=lambda: result.append(call()), daemon=True)
    thread.start()
    thread.join(seconds)
    return not thread.is_alive(), thread, result


@pytest.fixture
def held_write(between_dynamodb_check_and_write, server):
    """A conditional DynamoDB write parked between its check and its write (so holding the write
    lock), on a table with one item; yields (table, hold). Released at the end of the test."""
    dynamodb = client(server, "dynamodb", read_timeout=120)
    table = make_table(dynamodb)
    dynamodb.put_item(TableName=table, Item={"pk": {"S": "job"}, "state": {"S": "open"}})
    hold = Hold("job")
    between_dynamodb_check_and_write.append(hold.between_check_and_write)
    writer = threading.Thread(target=lambda: dynamodb.update_item(
        TableName=table, Key={"pk": {"S": "job"}}, UpdateExpression="SET #s = :done", ConditionExpression="#s = :open",
        ExpressionAttributeNames={"#s": "state"}, ExpressionAttributeValues={":open": {"S": "open"}, ":done": {"S": "done"}}))
    writer.start()
    assert hold.entered.wait(30), "the conditional write never reached its condition check"
    yield table, hold
    hold.released.set()
    writer.join(60)


def test_reads_and_other_services_go_on_while_a_write_holds_the_lock(server, held_write):
    table, hold = held_write
    dynamodb, sqs = client(server, "dynamodb"), client(server, "sqs", read_timeout=30)
    queue = sqs.create_queue(QueueName=f"atomic-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    reads = {
        "GetItem": lambda: dynamodb.get_item(TableName=table, Key={"pk": {"S": "job"}})["Item"]["state"]["S"],
        "Query": lambda: [item["state"]["S"] for item in dynamodb.query(
            TableName=table, KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": "job"}})["Items"]],
        "Scan": lambda: dynamodb.scan(TableName=table)["Count"],
        "SQS long poll": lambda: (sqs.send_message(QueueUrl=queue, MessageBody="m"),
                                  [message["Body"] for message in sqs.receive_message(
                                      QueueUrl=queue, WaitTimeSeconds=5).get("Messages", [])])[1],
    }
    for name, read in reads.items():
        finished, _, result = finishes_within(read, NOT_BLOCKED_WITHIN)
        assert finished, f"{name} was held up by a DynamoDB write in progress"
        assert result[0] == {"GetItem": "open", "Query": ["open"], "Scan": 1, "SQS long poll": ["m"]}[name], name
    assert not hold.released.is_set()
    # a second write does wait: the hold is real, so the reads above were tested while it held
    other = lambda: dynamodb.put_item(TableName=table, Item={"pk": {"S": "other"}, "state": {"S": "open"}})
    finished, writer, _ = finishes_within(other, BLOCKED_FOR)
    assert not finished, "a second DynamoDB write went through while the first held the lock"
    hold.released.set()
    writer.join(NOT_BLOCKED_WITHIN)
    assert not writer.is_alive()
    assert dynamodb.get_item(TableName=table, Key={"pk": {"S": "job"}})["Item"]["state"]["S"] == "done"


def test_control_a_read_serialised_with_writes_is_seen_held_up(server, held_write, monkeypatch):
    """If reads took the write lock too, the test above would see them held up."""
    table, hold = held_write
    choose = embedded.MotoDispatcher._write_lock_for
    as_write = {"X-Amz-Target": "DynamoDB_20120810.PutItem"}
    monkeypatch.setattr(embedded.MotoDispatcher, "_write_lock_for",
                        lambda self, host, headers: choose(self, "dynamodb.us-east-1.amazonaws.com", as_write))
    dynamodb = client(server, "dynamodb", read_timeout=120)
    finished, reader, _ = finishes_within(lambda: dynamodb.get_item(TableName=table, Key={"pk": {"S": "job"}}), BLOCKED_FOR)
    assert not finished
    hold.released.set()
    reader.join(NOT_BLOCKED_WITHIN)
    assert not reader.is_alive()
