"""The request and cost ledger (issue: topic 02): counts, bytes and a hand-checked estimate."""

from __future__ import annotations

import boto3
import pytest
from botocore.exceptions import ClientError

import cloudlab
from cloudlab.ledger import Ledger, dynamodb_item_size, estimate, prices


@pytest.fixture(autouse=True)
def backend():
    return cloudlab.use_backend()


def test_price_table_has_source_and_date_for_every_row():
    import csv

    from cloudlab.ledger import PRICES_CSV

    rows = list(csv.DictReader(open(PRICES_CSV)))
    assert rows and all(row["source"] and row["checked"] for row in rows)
    assert prices()[("s3", "tier1_request")] == pytest.approx(0.005 / 1000)


def test_s3_calls_are_counted_and_priced_by_request_class():
    s3 = boto3.client("s3")
    with Ledger() as ledger:
        s3.create_bucket(Bucket="ledger-s3")                                  # tier 1
        for key in ("a", "b", "c"):
            s3.put_object(Bucket="ledger-s3", Key=key, Body=b"x" * 100)       # 3 x tier 1
        s3.list_objects_v2(Bucket="ledger-s3")                                 # tier 1
        s3.list_objects_v2(Bucket="ledger-s3", Prefix="a")                     # tier 1
        for key in ("a", "b", "c", "a"):
            s3.get_object(Bucket="ledger-s3", Key=key)["Body"].read()          # 4 x tier 2
        s3.head_object(Bucket="ledger-s3", Key="b")                            # tier 2
        s3.delete_object(Bucket="ledger-s3", Key="a")                          # free
        s3.delete_object(Bucket="ledger-s3", Key="b")                          # free
    hand_computed = 6 * 0.005 / 1000 + 5 * 0.0004 / 1000
    assert ledger.count("s3") == 13
    assert ledger.count("s3", "GetObject") == 4
    assert ledger.cost() == pytest.approx(hand_computed)
    summary = ledger.summary().set_index("operation")
    assert summary.loc["PutObject", "calls"] == 3
    assert summary.loc["PutObject", "bytes_out"] == 300
    assert summary.loc["GetObject", "bytes_in"] == 400


def test_sqs_payloads_are_billed_in_64_kb_chunks():
    sqs = boto3.client("sqs")
    with Ledger() as ledger:
        url = sqs.create_queue(QueueName="ledger-queue")["QueueUrl"]          # 1 request
        sqs.send_message(QueueUrl=url, MessageBody="small")                   # 1 chunk
        sqs.send_message(QueueUrl=url, MessageBody="x" * 70_000)              # 2 chunks
        sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1)              # the small one: 1 chunk
    assert ledger.count("sqs") == 4
    assert ledger.cost() == pytest.approx((1 + 1 + 2 + 1) * 0.40 / 1_000_000)


def test_dynamodb_request_units_follow_item_size_and_consistency():
    dynamodb = boto3.client("dynamodb")
    dynamodb.create_table(TableName="ledger-table", KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                          AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                          BillingMode="PAY_PER_REQUEST")
    item = {"pk": {"S": "job-1"}, "payload": {"S": "y" * 2500}}               # ~2.5 KB
    assert 2048 < dynamodb_item_size(item) <= 3072
    with Ledger() as ledger:
        dynamodb.put_item(TableName="ledger-table", Item=item)                 # 3 WRU
        dynamodb.get_item(TableName="ledger-table", Key={"pk": {"S": "job-1"}})                       # 0.5 RRU
        dynamodb.get_item(TableName="ledger-table", Key={"pk": {"S": "job-1"}}, ConsistentRead=True)  # 1 RRU
        with pytest.raises(ClientError):
            dynamodb.put_item(TableName="ledger-table", Item={"pk": {"S": "job-1"}},
                              ConditionExpression="attribute_not_exists(pk)")  # failed, still 1 WRU
    units = ledger.frame()["units"].tolist()
    assert units == [{"write_request_unit": 3}, {"read_request_unit": 0.5}, {"read_request_unit": 1},
                     {"write_request_unit": 1}]
    assert ledger.cost() == pytest.approx(4 * 0.625 / 1e6 + 1.5 * 0.125 / 1e6)
    assert ledger.frame()["error"].tolist()[-1] == "ConditionalCheckFailedException"


def test_lambda_invoke_uses_the_report_line_when_present():
    import base64

    report = "REPORT RequestId: x\tDuration: 10.2 ms\tBilled Duration: 11 ms\tMemory Size: 512 MB\n"
    headers = {"x-amz-log-result": base64.b64encode(report.encode()).decode()}
    units, cost = estimate("lambda", "Invoke", response_headers=headers, latency_ms=50)
    assert units == {"request": 1, "gb_second_x86": pytest.approx(0.011 * 0.5)}
    assert cost == pytest.approx(0.20 / 1e6 + 0.011 * 0.5 * 0.0000166667)


def test_ledgers_only_see_calls_while_active_and_can_nest():
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="ledger-nest")
    outer = Ledger().start()
    with Ledger() as inner:
        s3.list_objects_v2(Bucket="ledger-nest")
    s3.list_objects_v2(Bucket="ledger-nest")
    outer.stop()
    s3.list_objects_v2(Bucket="ledger-nest")
    assert (inner.count(), outer.count()) == (1, 2)
