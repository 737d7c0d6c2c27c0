"""The local scheduler (cloudlab.lambda_service.schedules) fires EventBridge schedule rules that
target functions: rules made with plain boto3 here (the capstone's come from CloudFormation,
tests/test_pipeline_deploy.py). Ticks are driven by hand (run_due(now=...)), so no test waits
for a period to pass."""

from __future__ import annotations

import json
import time
import uuid

import boto3
import pytest

import cloudlab
from cloudlab.lambda_service import get_service, zip_code
from cloudlab.lambda_service.schedules import LOCAL_SCHEDULE_TAG, Scheduler, rate_seconds
from test_lambda_service import lambda_role

RECORDER = """
import boto3, json, os

def handler(event, context):
    boto3.client("sqs").send_message(QueueUrl=os.environ["OUT"], MessageBody=json.dumps(event))
"""


def test_rate_expressions_and_what_is_not_fired():
    assert rate_seconds("rate(1 minute)") == 60
    assert rate_seconds("rate(5 minutes)") == 300
    assert rate_seconds("rate(2 hours)") == 7200
    assert rate_seconds("rate(1 day)") == 86400
    assert rate_seconds("rate(5 seconds)") == 5
    assert rate_seconds("rate(0 minutes)") is None
    assert rate_seconds("cron(0 12 * * ? *)") is None
    assert rate_seconds("every minute") is None


@pytest.fixture
def scheduled():
    cloudlab.use_backend()
    name = f"sched-{uuid.uuid4().hex[:8]}"
    sqs, events, lam = boto3.client("sqs"), boto3.client("events"), boto3.client("lambda")
    out = sqs.create_queue(QueueName=name)["QueueUrl"]
    role = lambda_role(boto3.client("iam"), "lambda-test-role")
    arn = lam.create_function(FunctionName=name, Runtime="python3.12", Role=role, Handler="app.handler",
                              Code={"ZipFile": zip_code(RECORDER)}, Environment={"Variables": {"OUT": out}})["FunctionArn"]
    yield name, arn, out
    for rule in events.list_rules(NamePrefix=name)["Rules"]:
        events.remove_targets(Rule=rule["Name"], Ids=["fn"])
        events.delete_rule(Name=rule["Name"])
    lam.delete_function(FunctionName=name)
    sqs.delete_queue(QueueUrl=out)


def test_a_rule_fires_its_function_once_per_period_with_a_scheduled_event(scheduled):
    name, arn, out = scheduled
    events, sqs = boto3.client("events"), boto3.client("sqs")
    rule_arn = events.put_rule(Name=name, ScheduleExpression="rate(1 minute)",
                               Tags=[{"Key": LOCAL_SCHEDULE_TAG, "Value": "rate(10 seconds)"}])["RuleArn"]
    events.put_targets(Rule=name, Targets=[{"Id": "fn", "Arn": arn}])
    scheduler = Scheduler(get_service())  # not started: only these ticks drive it (the service's own runs apart)
    start = time.monotonic()
    assert scheduler.run_due(now=start) == 0  # first seen: due one period later, as on AWS
    assert scheduler.run_due(now=start + 9.9) == 0
    assert scheduler.run_due(now=start + 10.0) == 1
    assert scheduler.run_due(now=start + 15.0) == 0
    deadline = time.monotonic() + 30
    while True:
        got = sqs.receive_message(QueueUrl=out, WaitTimeSeconds=1).get("Messages", [])
        if got:
            break
        assert time.monotonic() < deadline, "the scheduled invoke never ran"
    event = json.loads(got[0]["Body"])
    assert event["detail-type"] == "Scheduled Event" and event["source"] == "aws.events"
    assert event["resources"] == [rule_arn]


def test_cron_rules_and_disabled_rules_are_not_fired(scheduled):
    name, arn, _ = scheduled
    events = boto3.client("events")
    events.put_rule(Name=name + "-cron", ScheduleExpression="cron(0 12 * * ? *)")
    events.put_targets(Rule=name + "-cron", Targets=[{"Id": "fn", "Arn": arn}])
    events.put_rule(Name=name + "-off", ScheduleExpression="rate(1 minute)", State="DISABLED")
    events.put_targets(Rule=name + "-off", Targets=[{"Id": "fn", "Arn": arn}])
    scheduler = Scheduler(get_service())
    start = time.monotonic()
    scheduler.run_due(now=start)
    scheduler.run_due(now=start + 10_000)  # (other tests' rules may fire here: only ours are checked)
    assert not [f for f in scheduler.fired if f["rule"].startswith(name)]
    cron_arn = events.describe_rule(Name=name + "-cron")["Arn"]
    assert "only rate(...) expressions" in scheduler.skipped[cron_arn]
