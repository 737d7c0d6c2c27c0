"""The local deployer under CLOUDLAB_BACKEND=localstack: S3, SQS and SNS in LocalStack (created
with boto3 from the translated template), the rest through the embedded backend's CloudFormation.

Two runs of one check: against a stock moto server standing in for LocalStack (in ``make test``,
as tests/test_localstack_lambda.py does), and against real LocalStack (``make test-localstack``).
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import boto3
import pytest

import cloudlab
from aws_calls import poll
from cloudlab.pipeline.deploy import deploy, teardown
from test_localstack_lambda import localstack_stand_in  # noqa: F401  (a fixture)

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "sam_app" / "template.yaml"


def check_resources_split_and_pipeline_flows(backend, stack_name: str) -> None:
    data, embedded = backend.endpoint, backend.lambda_endpoint
    stack = deploy(stack_name, template=FIXTURE, api=False, parameters={"WorkVisibilityTimeout": "2"})
    try:
        def at(url, service):
            return boto3.client(service, endpoint_url=url)

        # S3, SQS, SNS are LocalStack's, created by the deployer; none is in the embedded backend
        queues = at(data, "sqs").list_queues(QueueNamePrefix=f"{stack_name}-").get("QueueUrls", [])
        assert len(queues) == 5, queues  # Work, WorkDeadLetter, Failures, DeadLetters, Notes
        assert not at(embedded, "sqs").list_queues(QueueNamePrefix=f"{stack_name}-").get("QueueUrls")
        assert stack.output("TopicArn") in [t["TopicArn"] for t in at(data, "sns").list_topics()["Topics"]]
        assert stack.output("BucketName") in [b["Name"] for b in at(data, "s3").list_buckets()["Buckets"]]
        assert stack.output("BucketName") not in [b["Name"] for b in at(embedded, "s3").list_buckets()["Buckets"]]
        for lid in ("WorkQueue", "Topic", "Bucket", "NotesSubscription", "BatchFunctionWork"):
            assert any(note.startswith(f"{lid} (") for note in stack.created_by_deployer), lid
        # the table, functions and the stack itself are the embedded backend's
        at(embedded, "dynamodb").describe_table(TableName=stack.output("TableName"))
        status = at(embedded, "cloudformation").describe_stacks(StackName=stack_name)["Stacks"][0]["StackStatus"]
        assert status == "CREATE_COMPLETE"

        # the mapping polls LocalStack's queue; the handler writes to the embedded DynamoDB
        tag = uuid.uuid4().hex[:8]
        at(data, "sqs").send_message(QueueUrl=stack.output("WorkQueueUrl"), MessageBody=f"ok-{tag}")
        table = boto3.resource("dynamodb", endpoint_url=embedded).Table(stack.output("TableName"))
        item = poll(lambda: table.get_item(Key={"pk": f"batch#ok-{tag}"}).get("Item"), 60, "the mapping delivered")
        assert item["greeting"] == "hello from the layer"
        # SNS -> SQS inside LocalStack, through the subscription the deployer made
        at(data, "sns").publish(TopicArn=stack.output("TopicArn"), Message=tag)

        def delivered():
            got = at(data, "sqs").receive_message(QueueUrl=stack.output("NotesQueueUrl"), WaitTimeSeconds=1).get("Messages", [])
            return [m for m in got if json.loads(m["Body"]).get("Message") == tag]
        poll(delivered, 30, "the topic delivered to its queue")
    finally:
        teardown(stack_name)
    assert not at(data, "sqs").list_queues(QueueNamePrefix=f"{stack_name}-").get("QueueUrls")
    assert stack.output("BucketName") not in [b["Name"] for b in at(data, "s3").list_buckets()["Buckets"]]


def test_deploy_splits_resources_between_a_localstack_stand_in_and_the_embedded_backend(localstack_stand_in):  # noqa: F811
    backend = cloudlab.use_backend("localstack")
    assert backend.endpoint == localstack_stand_in
    check_resources_split_and_pipeline_flows(backend, "lsfixture")


@pytest.mark.localstack
@pytest.mark.skipif(os.environ.get("CLOUDLAB_BACKEND") != "localstack" or not os.environ.get("LOCALSTACK_HOST"),
                    reason="needs a real LocalStack: make test-localstack")
def test_deploy_splits_resources_between_real_localstack_and_the_embedded_backend(monkeypatch):
    monkeypatch.setenv("CLOUDLAB_BACKEND", "localstack")
    monkeypatch.setenv("LOCALSTACK_HOST", os.environ["LOCALSTACK_HOST"])
    backend = cloudlab.use_backend("localstack")
    check_resources_split_and_pipeline_flows(backend, f"lslive-{uuid.uuid4().hex[:6]}")
