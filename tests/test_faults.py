"""cloudlab.faults.InjectFaults (notebook 05): seeded throttling, 5xx and lost responses on one
boto3 client, against the embedded backend. Uses botocore's standard retry mode with few waits."""

from __future__ import annotations

import uuid

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

import cloudlab
from cloudlab.faults import InjectFaults


@pytest.fixture
def sqs():
    cloudlab.use_backend()
    return boto3.client("sqs", config=Config(retries={"mode": "standard", "max_attempts": 3}))


def test_script_throttles_then_succeeds_and_records_each_attempt(sqs):
    with InjectFaults(sqs, operations="ListQueues", script=["throttle", "ok"]) as faults:
        sqs.list_queues()
    assert [outcome for _, _, outcome in faults.attempts] == ["throttle", "ok"]
    assert [operation for _, operation, _ in faults.attempts] == ["ListQueues", "ListQueues"]


@pytest.mark.parametrize("kind, code", [("throttle", "ThrottlingException"), ("500", "InternalError"),
                                        ("503", "ServiceUnavailable")])
def test_each_error_kind_parses_as_aws_sends_it(kind, code):
    cloudlab.use_backend()
    client = boto3.client("sqs", config=Config(retries={"mode": "standard", "total_max_attempts": 1}))
    with InjectFaults(client, operations="ListQueues", kinds=[kind]):
        with pytest.raises(ClientError) as raised:
            client.list_queues()
    assert raised.value.response["Error"]["Code"] == code


def test_s3_and_dynamodb_protocols_parse_too():
    cloudlab.use_backend()
    one_try = Config(retries={"mode": "standard", "total_max_attempts": 1})
    s3, dynamodb = boto3.client("s3", config=one_try), boto3.client("dynamodb", config=one_try)
    with InjectFaults(s3, kinds=["throttle"]), pytest.raises(ClientError) as raised:
        s3.list_buckets()
    assert raised.value.response["Error"]["Code"] == "SlowDown"
    with InjectFaults(dynamodb, kinds=["throttle"]), pytest.raises(ClientError) as raised:
        dynamodb.list_tables()
    assert raised.value.response["Error"]["Code"] == "ThrottlingException"


def test_lost_response_lets_the_server_act_and_the_retry_repeat_it(sqs):
    url = sqs.create_queue(QueueName=f"tf-lost-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    with InjectFaults(sqs, operations=["SendMessage"], script=["lost"]) as faults:
        sqs.send_message(QueueUrl=url, MessageBody="once")
    depth = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
    assert faults.count() == 2 and depth["Attributes"]["ApproximateNumberOfMessages"] == "2"
    sqs.delete_queue(QueueUrl=url)


def test_other_operations_are_untouched_and_hooks_go_away(sqs):
    with InjectFaults(sqs, operations="SendMessage", rate=1.0) as faults:
        sqs.list_queues()
    assert faults.count() == 0
    sqs.list_queues()                      # after the block: no fault


def test_seeded_draws_repeat(sqs):
    runs = []
    for _ in range(2):
        with InjectFaults(sqs, operations="ListQueues", rate=0.3, kinds={"throttle": 1, "500": 1}, seed=7) as faults:
            for _ in range(5):
                try:
                    sqs.list_queues()
                except ClientError:
                    pass
        runs.append([outcome for _, _, outcome in faults.attempts])
    assert runs[0] == runs[1]


def test_bad_kinds_are_refused(sqs):
    with pytest.raises(ValueError):
        InjectFaults(sqs, kinds=["404"])
    with pytest.raises(ValueError):
        InjectFaults(sqs, rate=2)
