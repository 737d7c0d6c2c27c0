"""The capstone's function handlers and layer, run in this process against the embedded backend.

Each handler module is loaded the way Lambda loads it (its folder's ``app.py``, the layer's
``python/`` folder on ``sys.path``, configuration from environment variables), with plain
boto3 pointed at a fresh embedded emulator. End-to-end runs through the deployed stack are in
``test_pipeline_run.py``.
"""

from __future__ import annotations

import base64
import importlib.util
import io
import json
import sys
import threading
import uuid
from pathlib import Path
from types import SimpleNamespace

import boto3
import pytest

import cloudlab
from cloudlab.pipeline import layer

FUNCTIONS = Path(cloudlab.__file__).resolve().parent / "pipeline" / "functions"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 40
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 40
GIF = b"GIF89a" + b"\x00" * 40
WEBP = b"RIFF\x24\x00\x00\x00WEBPVP8 " + b"\x00" * 40


@pytest.fixture
def stack(monkeypatch):
    """A bucket, a jobs table, a jobs queue, a topic with a subscribed queue, and the env vars
    the functions read. Returns a namespace with the clients and names."""
    cloudlab.use_backend("embedded")
    name = f"pt{uuid.uuid4().hex[:8]}"
    s3, sqs, sns, ddb = (boto3.client(service) for service in ("s3", "sqs", "sns", "dynamodb"))
    s3.create_bucket(Bucket=name)
    ddb.create_table(TableName=name, BillingMode="PAY_PER_REQUEST",
                     AttributeDefinitions=[{"AttributeName": "job_id", "AttributeType": "S"}],
                     KeySchema=[{"AttributeName": "job_id", "KeyType": "HASH"}])
    queue_url = sqs.create_queue(QueueName=f"{name}-jobs")["QueueUrl"]
    notes_url = sqs.create_queue(QueueName=f"{name}-notes")["QueueUrl"]
    notes_arn = sqs.get_queue_attributes(QueueUrl=notes_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    topic = sns.create_topic(Name=name)["TopicArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=notes_arn, Attributes={"RawMessageDelivery": "true"})
    for variable, value in {"UPLOAD_BUCKET": name, "JOBS_TABLE": name, "JOBS_QUEUE_URL": queue_url,
                            "RESULTS_TOPIC_ARN": topic, "MAX_UPLOAD_BYTES": "1000",
                            "MODERATION_FUNCTION": f"{name}-moderation", "CUSTOM_FUNCTION": f"{name}-custom",
                            "STUCK_AFTER_SECONDS": "30"}.items():
        monkeypatch.setenv(variable, value)
    monkeypatch.syspath_prepend(str(layer.LAYER_PYTHON))
    return SimpleNamespace(name=name, s3=s3, sqs=sqs, sns=sns, ddb=ddb, queue_url=queue_url, notes_url=notes_url,
                           topic=topic, table=boto3.resource("dynamodb").Table(name))


def load_function(folder: str):
    """``functions/<folder>/app.py`` as a fresh module (module-level clients read the env now)."""
    spec = importlib.util.spec_from_file_location(f"pipeline_fn_{folder}_{uuid.uuid4().hex[:6]}",
                                                  FUNCTIONS / folder / "app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def context(name: str = "fn"):
    return SimpleNamespace(function_name=name, aws_request_id=str(uuid.uuid4()))


def upload_event(body, *, raw: bool = False) -> dict:
    text = body if raw else json.dumps(body)
    return {"httpMethod": "POST", "path": "/uploads", "resource": "/uploads", "body": text, "isBase64Encoded": False,
            "headers": {"Content-Type": "application/json"}}


def image_body(data: bytes, filename: str = "cat.png", user_id: str = "u1") -> dict:
    return {"user_id": user_id, "filename": filename, "image": base64.b64encode(data).decode()}


def stored_anything(stack) -> dict:
    """What the stack holds: object keys, job ids, messages waiting in the jobs queue."""
    keys = [o["Key"] for o in stack.s3.list_objects_v2(Bucket=stack.name).get("Contents", [])]
    jobs = [i["job_id"]["S"] for i in stack.ddb.scan(TableName=stack.name)["Items"]]
    attributes = stack.sqs.get_queue_attributes(QueueUrl=stack.queue_url, AttributeNames=[
        "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    return {"keys": keys, "jobs": jobs, "messages": sum(int(v) for v in attributes.values())}


# --- images.py --------------------------------------------------------------------------------

@pytest.mark.parametrize("data, expected", [(PNG, "image/png"), (JPEG, "image/jpeg"), (GIF, "image/gif"),
                                            (WEBP, "image/webp"), (b"%PDF-1.7 " + b"x" * 20, None),
                                            (b"RIFF\x24\x00\x00\x00WAVEfmt ", None), (b"", None)])
def test_image_type_comes_from_the_magic_number(stack, data, expected):
    images = layer.layer_module("images")
    assert images.sniff_image_type(data) == expected


@pytest.mark.parametrize("name, expected", [
    ("cat.png", "cat.png"), ("../../etc/passwd", "passwd"), ("..\\..\\windows\\cat.png", "cat.png"),
    ("/abs/path/x.jpg", "x.jpg"), ("..", ""), ("...", ""), (".hidden.png", "hidden.png"),
    ("a b\x00c\n.png", "a_b_c_.png"), ("caf\u00e9.png", "cafe.png"), ("x/../../y.gif", "y.gif"),
    ("a" * 300 + ".webp", "a" * 95 + ".webp")])
def test_filenames_are_cleaned_of_path_tricks(stack, name, expected):
    assert layer.layer_module("images").clean_filename(name) == expected


# --- upload -------------------------------------------------------------------------------------

def test_upload_stores_object_job_and_message_and_answers_202(stack):
    upload = load_function("upload")
    answer = upload.handler(upload_event(image_body(PNG, filename="../../secret/cat.png")), context())
    assert answer["statusCode"] == 202, answer
    body = json.loads(answer["body"])
    job_id = body["job_id"]
    assert body == {"job_id": job_id, "status": "pending", "status_url": f"/jobs/{job_id}"}
    assert answer["headers"]["Location"] == f"/jobs/{job_id}"
    key = f"uploads/u1/{job_id}/cat.png"
    head = stack.s3.head_object(Bucket=stack.name, Key=key)
    assert head["ContentType"] == "image/png" and head["Metadata"]["user-id"] == "u1"
    item = stack.table.get_item(Key={"job_id": job_id}, ConsistentRead=True)["Item"]
    assert (item["status"], item["key"], item["size"]) == ("pending", key, len(PNG))
    message = stack.sqs.receive_message(QueueUrl=stack.queue_url, WaitTimeSeconds=1)["Messages"][0]
    assert json.loads(message["Body"]) == {"job_id": job_id, "bucket": stack.name, "key": key}


@pytest.mark.parametrize("case, body, status, code", [
    ("wrong type", image_body(b"%PDF-1.7 not an image at all"), 415, "UnsupportedType"),
    ("too large", image_body(PNG + b"\x00" * 1000), 413, "TooLarge"),
    ("empty image", image_body(b""), 400, "EmptyImage"),
    ("no image", {"user_id": "u1", "filename": "a.png"}, 400, "EmptyImage"),
    ("only ../ in name", image_body(PNG, filename="../.."), 400, "InvalidFilename"),
    ("missing user", {"filename": "a.png", "image": base64.b64encode(PNG).decode()}, 400, "MissingUserId"),
    ("bad user", image_body(PNG, user_id="../u1"), 400, "InvalidUserId"),
    ("bad base64", {"user_id": "u1", "filename": "a.png", "image": "@@not base64@@"}, 400, "InvalidBase64"),
    ("not json", "{this is not json", 400, "InvalidJSON"),
])
def test_bad_uploads_get_4xx_and_leave_nothing_stored(stack, case, body, status, code):
    upload = load_function("upload")
    answer = upload.handler(upload_event(body, raw=isinstance(body, str)), context())
    assert answer["statusCode"] == status, (case, answer)
    error = json.loads(answer["body"])
    assert error["error"] == code and error["message"]
    assert stored_anything(stack) == {"keys": [], "jobs": [], "messages": 0}


def test_upload_that_fails_half_way_leaves_nothing(stack, monkeypatch):
    """The queue refuses (here: it does not exist): the object and the job are removed again."""
    upload = load_function("upload")
    monkeypatch.setattr(upload, "QUEUE_URL", stack.queue_url + "-gone")
    answer = upload.handler(upload_event(image_body(PNG)), context())
    assert answer["statusCode"] == 503
    assert stored_anything(stack) == {"keys": [], "jobs": [], "messages": 0}


# --- status -------------------------------------------------------------------------------------

def test_status_returns_the_job_and_404_for_unknown(stack):
    upload, status = load_function("upload"), load_function("status")
    job_id = json.loads(upload.handler(upload_event(image_body(GIF, filename="g.gif")), context())["body"])["job_id"]
    answer = status.handler({"pathParameters": {"job_id": job_id}}, context())
    document = json.loads(answer["body"])
    assert answer["statusCode"] == 200
    assert (document["job_id"], document["status"], document["filename"], document["decision"]) == (job_id, "pending", "g.gif", None)
    assert [event["stage"] for event in document["timeline"]] == ["uploaded"]
    missing = status.handler({"pathParameters": {"job_id": "nope"}}, context())
    assert missing["statusCode"] == 404 and json.loads(missing["body"])["error"] == "NotFound"


# --- coordination ---------------------------------------------------------------------------

def new_job(stack, status: str = "pending", **fields) -> str:
    job_id = str(uuid.uuid4())
    coordination = layer.layer_module("coordination")
    stack.table.put_item(Item=coordination.to_dynamo({"job_id": job_id, "user_id": "u1", "filename": "a.png",
                                                      "status": status, "created_at": 1.0, "updated_at": 1.0,
                                                      "bucket": stack.name, "key": "k", **fields}))
    return job_id


MODERATION = {"labels": [], "model_version": "7.0", "max_confidence": 0.0, "top_category": None}
CUSTOM = {"unsafe_probability": 0.1, "model": "m", "load_ms": 1.0, "cold": True}


def test_claim_job_moves_pending_once_and_refuses_terminal_and_unknown(stack):
    coordination = layer.layer_module("coordination")
    job_id = new_job(stack)
    assert coordination.claim_job(stack.table, job_id) is True
    assert coordination.claim_job(stack.table, job_id) is True  # redelivery: still analyzing
    assert stack.table.get_item(Key={"job_id": job_id})["Item"]["status"] == "analyzing"
    assert coordination.claim_job(stack.table, new_job(stack, "decided")) is False
    with pytest.raises(LookupError):
        coordination.claim_job(stack.table, "no-such-job")


def test_check_and_finalize_finalizes_once_when_both_branches_race(stack):
    coordination, joblog = layer.layer_module("coordination"), layer.layer_module("joblog")
    for _ in range(5):
        job_id = new_job(stack, "analyzing")
        barrier, outcomes = threading.Barrier(2), {}

        def branch(name, result):
            joblog.start_invocation(name, context())
            barrier.wait()
            outcomes[name] = coordination.check_and_finalize(stack.table, job_id, name, result)

        threads = [threading.Thread(target=branch, args=args) for args in (("moderation", MODERATION), ("custom", CUSTOM))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        item = stack.table.get_item(Key={"job_id": job_id}, ConsistentRead=True)["Item"]
        winners = [decision for decision in outcomes.values() if decision is not None]
        assert len(winners) == 1 and item["status"] == "decided" and item["decision"] == winners[0] == "approve"


def test_check_and_finalize_retried_by_the_winner_still_wins_and_late_results_are_ignored(stack):
    coordination, joblog = layer.layer_module("coordination"), layer.layer_module("joblog")
    job_id = new_job(stack, "analyzing", moderation_result=MODERATION)
    joblog.start_invocation("custom", context())
    assert coordination.check_and_finalize(stack.table, job_id, "custom", CUSTOM) == "approve"
    # the same invocation again (a retried request or a retried async event): still the winner
    assert coordination.check_and_finalize(stack.table, job_id, "custom", CUSTOM) == "approve"
    joblog.start_invocation("moderation", context())  # a late duplicate of the other branch
    assert coordination.check_and_finalize(stack.table, job_id, "moderation", MODERATION) is None
    with pytest.raises(ValueError):
        coordination.check_and_finalize(stack.table, job_id, "other", CUSTOM)


def notifications(stack) -> list[dict]:
    messages = []
    while True:
        got = stack.sqs.receive_message(QueueUrl=stack.notes_url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
        if not got:
            return messages
        messages += [json.loads(m["Body"]) for m in got]


def test_notify_once_publishes_one_message_however_often_it_is_called(stack):
    coordination, joblog = layer.layer_module("coordination"), layer.layer_module("joblog")
    job_id = new_job(stack, "decided", decision="warn", finalized_at=2.0)
    assert coordination.notify_once(stack.table, stack.sns, stack.topic, "x" + job_id[1:]) is False  # no such job
    joblog.start_invocation("a", context())
    assert coordination.notify_once(stack.table, stack.sns, stack.topic, job_id) is True
    assert coordination.notify_once(stack.table, stack.sns, stack.topic, job_id) is False  # same caller again
    joblog.start_invocation("b", context())
    assert coordination.notify_once(stack.table, stack.sns, stack.topic, job_id, lease_seconds=0) is False
    assert coordination.notify_once(stack.table, stack.sns, stack.topic, new_job(stack, "analyzing")) is False
    messages = notifications(stack)
    assert [(m["job_id"], m["decision"]) for m in messages] == [(job_id, "warn")]


# --- dispatcher and sweeper -----------------------------------------------------------------

def sqs_event(*bodies: str) -> dict:
    return {"Records": [{"messageId": f"m{i}", "body": body, "attributes": {"ApproximateReceiveCount": "1"}}
                        for i, body in enumerate(bodies)]}


def test_dispatcher_claims_fans_out_and_reports_poison(stack):
    from cloudlab import serverless

    role = serverless.lambda_role(boto3.client("iam"), f"{stack.name}-role")
    lam = boto3.client("lambda")
    for name in (f"{stack.name}-moderation", f"{stack.name}-custom"):
        lam.create_function(FunctionName=name, Runtime="python3.12", Role=role, Handler="app.handler",
                            Code={"ZipFile": cloudlab.lambda_service.zip_code("def handler(event, context):\n    return event\n")})
    dispatcher = load_function("dispatcher")
    job_id = new_job(stack)
    done = new_job(stack, "decided")
    answer = dispatcher.handler(sqs_event(json.dumps({"job_id": job_id}), json.dumps({"job_id": done}),
                                          "not json", json.dumps({"job_id": "no-such-job"}), json.dumps([1])),
                                context())
    assert answer == {"batchItemFailures": [{"itemIdentifier": "m2"}, {"itemIdentifier": "m3"}, {"itemIdentifier": "m4"}]}
    assert stack.table.get_item(Key={"job_id": job_id})["Item"]["status"] == "analyzing"
    assert stack.table.get_item(Key={"job_id": done})["Item"]["status"] == "decided"


def test_sweeper_fails_stuck_jobs_once_and_notifies_each_once(stack):
    sweeper = load_function("sweeper")
    stuck = new_job(stack, "analyzing")  # updated_at 1.0: long ago
    fresh = new_job(stack, "analyzing", updated_at=9e12)
    unnotified = new_job(stack, "decided", decision="approve", finalized_at=1.0)
    assert sweeper.handler({}, context()) == {"failed": 1, "notified": 2}
    assert sweeper.handler({}, context()) == {"failed": 0, "notified": 0}
    item = stack.table.get_item(Key={"job_id": stuck})["Item"]
    assert item["status"] == "failed" and "stuck in analyzing" in item["error"]
    assert stack.table.get_item(Key={"job_id": fresh})["Item"]["status"] == "analyzing"
    assert sorted(m["job_id"] for m in notifications(stack)) == sorted([stuck, unnotified])


# --- joblog -----------------------------------------------------------------------------------

def test_every_log_line_is_json_with_job_id_and_the_timeline_comes_from_them(stack, capsys):
    joblog = layer.layer_module("joblog")
    joblog.start_invocation(f"dispatcher-{uuid.uuid4().hex[:6]}", context("disp"))  # a new logger, on capsys' stdout
    joblog.log("job claimed", "j1", stage="dispatched")
    joblog.log("something else", "j2", stage="dispatched")
    joblog.log("no stage", "j1")
    lines = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    parsed = [json.loads(line) for line in lines]
    assert [entry["job_id"] for entry in parsed] == ["j1", "j2", "j1"]
    assert all(entry["function"] == "disp" and entry["request_id"] for entry in parsed)
    timeline = joblog.timeline_from_logs(lines + ["START RequestId: x", "not json"], "j1")
    assert [event["stage"] for event in timeline] == ["dispatched"]
