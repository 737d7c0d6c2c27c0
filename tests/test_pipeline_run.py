"""The capstone end to end: ``pipeline run`` deploys the template, pushes images through the
HTTP API and waits for every notification; ``--chaos`` meets its pass criteria."""

from __future__ import annotations

import base64
import json
import os
import time

import boto3
import pytest

import cloudlab
from cloudlab.pipeline import run as pipeline_run
from cloudlab.pipeline.deploy import deploy, teardown


def stored(stack) -> dict:
    """Objects under uploads/, job items, and messages in the jobs queue of a deployed stack."""
    s3, ddb, sqs = boto3.client("s3"), boto3.client("dynamodb"), boto3.client("sqs")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=stack.output("UploadBucketName"), Prefix="uploads/").get("Contents", [])]
    jobs = ddb.scan(TableName=stack.output("JobsTableName"), Select="COUNT")["Count"]
    return {"objects": len(keys), "jobs": jobs, "messages": pipeline_run.queue_depth(sqs, stack.output("JobsQueueUrl"))}


@pytest.fixture
def deployed_stacks():
    """Names of the stacks a test deploys, deleted after it: else the stack's functions, queue
    pollers, API front and its sweeper's schedule rule outlive the test in this process (moto's
    PutEvents then fails for every later test of the worker: a schedule rule with a Lambda target
    matches every event there, and moto cannot send to Lambda)."""
    names: list[str] = []
    yield names
    cloudlab.use_backend("embedded")
    for name in names:
        teardown(name)


def test_run_pushes_images_through_the_api_and_bad_uploads_store_nothing(deployed_stacks):
    cloudlab.use_backend("embedded")
    deployed_stacks.append("pipe-e2e")
    stack = deploy("pipe-e2e", parameters={"MaxUploadBytes": "100000"})
    summary = pipeline_run.run(count=12, clients=4, timeout=240, stack=stack, progress=False)
    assert summary["jobs"] == summary["uploads"] == 12
    assert summary["completed"] == 12 and summary["stuck"] == 0
    assert summary["statuses"] == {"decided": 12}
    assert summary["notifications_per_job"] == {"1": 12}
    assert sum(summary["decisions"].values()) == 12
    assert sum(sum(row.values()) for row in summary["confusion"].values()) == 12
    assert summary["latency_s"]["p50"] > 0 and summary["latency_s"]["p95"] >= summary["latency_s"]["p50"]
    # counted server-side: every job costs one Rekognition call and one SNS publish, and S3/DynamoDB calls
    assert summary["api_calls_by_service"]["rekognition"] == 1.0 and summary["api_calls_by_service"]["sns"] == 1.0
    assert summary["api_calls_per_job"] > 5 and summary["cost_per_1000_images_usd"] > 1.0  # Rekognition: $1/1,000
    assert summary["lambda"]["invocations"] >= 12 * 3  # upload + two analyzers per job, at least
    json.dumps(summary)  # --json prints it
    text = pipeline_run.format_summary(summary)
    assert "decision vs ground truth" in text and "p95" in text and "per 1,000 images" in text

    # Bad uploads through the real HTTP API: 4xx with a clear message, and nothing stored anywhere.
    before = stored(stack)
    assert before == {"objects": 12, "jobs": 12, "messages": 0}
    api = pipeline_run.Uploader(stack.api_url)
    png = (pipeline_run.DATA_DIR / "city_00.png").read_bytes()
    encoded = base64.b64encode(png).decode()
    bad = {
        "wrong type": ({"user_id": "u1", "filename": "x.png", "image": base64.b64encode(b"%PDF-1.7 x" * 9).decode()}, 415),
        "too large": ({"user_id": "u1", "filename": "x.png", "image": base64.b64encode(png[:8] + bytes(100000)).decode()}, 413),
        "empty": ({"user_id": "u1", "filename": "x.png", "image": ""}, 400),
        "../ name": ({"user_id": "u1", "filename": "../..", "image": encoded}, 400),
        "missing user": ({"filename": "x.png", "image": encoded}, 400),
    }
    for case, (body, status) in bad.items():
        code, answer = api.request("POST", "/uploads", body)
        assert code == status and answer["error"] and answer["message"], (case, code, answer)
    assert stored(stack) == before
    code, answer = api.request("POST", "/uploads", {"user_id": "u1", "filename": "../../etc/cat.png", "image": encoded})
    assert code == 202  # a path trick in a name is cleaned, not refused
    code, job = api.request("GET", answer["status_url"])
    assert code == 200 and job["filename"] == "cat.png" and job["timeline"][0]["stage"] == "uploaded"
    assert api.request("GET", "/jobs/no-such-job")[0] == 404

    # the same job's timeline, assembled from the functions' JSON log lines in CloudWatch Logs
    functions = list(stack.function_names.values())
    stages = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and "notified" not in stages:
        stages = [event["stage"] for event in pipeline_run.job_timeline(functions, answer["job_id"])]
        time.sleep(0.5)  # logs are shipped asynchronously; polled to the deadline
    assert stages[0] == "uploaded" and stages[-1] == "notified", stages
    assert {"dispatched", "moderation_done", "custom_done", "finalized"} <= set(stages), stages


@pytest.mark.timeout(420)
def test_chaos_meets_its_criteria_and_replay_moves_dlq_messages_back(deployed_stacks):
    cloudlab.use_backend("embedded")
    deployed_stacks.append("pipe-chaos")
    summary = pipeline_run.run(count=16, chaos=True, clients=4, timeout=300, stack_name="pipe-chaos", progress=False)
    chaos = summary["chaos"]
    assert chaos["passed"], chaos
    fired = {rule["name"]: rule["fired"] for rule in chaos["rules"]}
    assert fired["custom analyzer crashes"] >= 3  # one job's event: the first try and two async retries
    assert fired["both analyzers finish together"] >= 2 and fired["DynamoDB throttling"] > 0
    assert summary["statuses"].get("failed", 0) >= 1  # the crashed analyzer's job, failed by the sweeper
    assert summary["dlq_depth"]["jobs"] >= 2 and summary["dlq_depth"]["analyzer"] >= 1
    outputs = pipeline_run.stack_outputs("pipe-chaos")
    moved = pipeline_run.replay_dlq("pipe-chaos", outputs=outputs)
    assert moved["jobs"] == summary["dlq_depth"]["jobs"] and moved["analyzer"] == summary["dlq_depth"]["analyzer"]


def test_load_images_repeats_the_set_and_refuses_a_bad_count():
    images = pipeline_run.load_images()
    assert {image.truth for image in images} >= {"safe", "unsafe"}
    assert [image.filename for image in pipeline_run.load_images(len(images) + 2)][-2:] == [images[0].filename, images[1].filename]
    with pytest.raises(ValueError, match="at least 1"):
        pipeline_run.load_images(0)
    assert pipeline_run.percentile([3.0, 1.0, 2.0, 4.0], 0.5) == 2.0 and pipeline_run.percentile([], 0.5) is None


@pytest.mark.localstack
@pytest.mark.timeout(600)
@pytest.mark.skipif(os.environ.get("CLOUDLAB_BACKEND") != "localstack" or not os.environ.get("LOCALSTACK_HOST"),
                    reason="needs a real LocalStack: make test-localstack")
def test_chaos_meets_its_criteria_against_real_localstack(monkeypatch):
    """S3, SQS and SNS are LocalStack's; DynamoDB and Lambda (where the faults are made) the embedded backend's."""
    monkeypatch.setenv("CLOUDLAB_BACKEND", "localstack")
    monkeypatch.setenv("LOCALSTACK_HOST", os.environ["LOCALSTACK_HOST"])
    assert cloudlab.use_backend("localstack").name == "localstack"
    summary = pipeline_run.run(count=12, chaos=True, clients=4, timeout=300, stack_name=f"ls-chaos-{os.getpid()}",
                               progress=False, teardown=True)
    assert summary["backend"] == "localstack" and summary["chaos"]["passed"], summary["chaos"]
    assert summary["dlq_depth"]["jobs"] >= 2
