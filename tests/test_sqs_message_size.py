"""SQS counts message attributes toward MaximumMessageSize, and defaults it to 256 KiB (issue 12, lab 02 q4).

Plain boto3 against the embedded backend; moto alone counts the body only and defaults to 1 MiB.
"""

from __future__ import annotations

import uuid

import boto3
import pytest
from botocore.exceptions import ClientError

import cloudlab
from cloudlab.backend.sqs_rules import message_size

KIB = 1024


@pytest.fixture
def sqs():
    cloudlab.use_backend()
    return boto3.client("sqs")


def new_queue(sqs, **attributes) -> str:
    return sqs.create_queue(QueueName=f"test-size-{uuid.uuid4().hex[:8]}",
                            Attributes={k: str(v) for k, v in attributes.items()})["QueueUrl"]


def refused(call) -> tuple[str, str]:
    with pytest.raises(ClientError) as error:
        call()
    return error.value.response["Error"]["Code"], error.value.response["Error"]["Message"]


def test_a_queue_left_at_default_accepts_256_kib(sqs):
    url = new_queue(sqs)
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["MaximumMessageSize"])["Attributes"]
    assert attributes == {"MaximumMessageSize": "262144"}
    sqs.send_message(QueueUrl=url, MessageBody="x" * (256 * KIB))
    assert refused(lambda: sqs.send_message(QueueUrl=url, MessageBody="x" * (256 * KIB + 1))) == (
        "InvalidParameterValue",
        "One or more parameters are invalid. Reason: Message must be shorter than 262144 bytes.")


def test_attributes_count_toward_the_size(sqs):
    url = new_queue(sqs)
    attribute = {"payload": {"DataType": "String", "StringValue": "inline"}}
    assert message_size("", attribute) == len("payload") + len("String") + len("inline")
    body = "x" * (256 * KIB - message_size("", attribute))
    sqs.send_message(QueueUrl=url, MessageBody=body, MessageAttributes=attribute)  # exactly at the limit
    code, message = refused(lambda: sqs.send_message(QueueUrl=url, MessageBody=body + "x", MessageAttributes=attribute))
    assert code == "InvalidParameterValue" and "shorter than 262144 bytes" in message
    binary = {"blob": {"DataType": "Binary", "BinaryValue": b"\x00" * 100}}
    assert message_size("", binary) == len("blob") + len("Binary") + 100
    code, _ = refused(lambda: sqs.send_message(QueueUrl=url, MessageBody="x" * (256 * KIB - 100),
                                               MessageAttributes=binary))
    assert code == "InvalidParameterValue"


def test_the_body_counts_in_bytes_not_characters(sqs):
    url = new_queue(sqs, MaximumMessageSize=1024)
    sqs.send_message(QueueUrl=url, MessageBody="é" * 512)  # 1,024 bytes
    assert refused(lambda: sqs.send_message(QueueUrl=url, MessageBody="é" * 513))[0] == "InvalidParameterValue"


def test_a_queue_raised_to_1_mib(sqs):
    url = new_queue(sqs, MaximumMessageSize=1_048_576)
    sqs.send_message(QueueUrl=url, MessageBody="x" * 1_048_576)
    attribute = {"a": {"DataType": "String", "StringValue": "b"}}
    assert refused(lambda: sqs.send_message(QueueUrl=url, MessageBody="x" * 1_048_576,
                                            MessageAttributes=attribute))[0] == "InvalidParameterValue"
    assert refused(lambda: sqs.create_queue(QueueName=f"test-size-{uuid.uuid4().hex[:8]}",
                                            Attributes={"MaximumMessageSize": "1048577"}))[0] == "InvalidAttributeValue"


def test_batches_count_attributes_per_entry(sqs):
    url = new_queue(sqs)
    attribute = {"kind": {"DataType": "String", "StringValue": "inline"}}
    entries = [{"Id": "ok", "MessageBody": "small"},
               {"Id": "big", "MessageBody": "x" * (256 * KIB), "MessageAttributes": attribute}]
    assert refused(lambda: sqs.send_message_batch(QueueUrl=url, Entries=entries))[0] == "InvalidParameterValue"
    sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": "ok", "MessageBody": "small", "MessageAttributes": attribute}])
