"""The local Lambda service (issue 4): plain boto3 drives handlers run the way AWS runs them.

No timing assertions: waits poll for an outcome with a generous limit.
"""

from __future__ import annotations

import base64
import json
import os
import select
import subprocess
import sys
import textwrap
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from urllib.parse import unquote_plus

import boto3
import pytest
from botocore.config import Config

import cloudlab
from cloudlab.lambda_service import ApiGatewayFront, get_service, zip_code
from cloudlab.serverless import lambda_role

NO_RETRIES = Config(retries={"mode": "standard", "total_max_attempts": 1}, read_timeout=30)


@pytest.fixture
def aws():
    """The embedded backend with its local Lambda service, a role, and a name maker."""
    cloudlab.use_backend()
    iam = boto3.client("iam")
    role = lambda_role(iam, "lambda-test-role")
    lam = boto3.client("lambda", config=NO_RETRIES)
    created = []

    def function(source: str, **settings) -> str:
        name = f"t-{uuid.uuid4().hex[:10]}"
        lam.create_function(FunctionName=name, Runtime="python3.12", Role=role, Handler="app.handler",
                            Code={"ZipFile": zip_code(textwrap.dedent(source))}, **settings)
        created.append(name)
        return name

    yield lam, function
    for name in created:
        try:
            lam.delete_function(FunctionName=name)
        except lam.exceptions.ResourceNotFoundException:
            pass


def call(lam, name, event=None, **extra):
    answer = lam.invoke(FunctionName=name, Payload=json.dumps(event or {}).encode(), **extra)
    payload = json.loads(answer["Payload"].read() or b"null")
    log = base64.b64decode(answer["LogResult"]).decode() if "LogResult" in answer else ""
    return answer, payload, log


def eventually(check, limit=20.0, every=0.05):
    deadline = time.monotonic() + limit
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(every)


COUNTER = """
    import os, tempfile
    COUNT = 0
    print("module-level init runs once per environment")

    def handler(event, context):
        global COUNT
        COUNT += 1
        cache = os.path.join(tempfile.gettempdir(), "cache.txt")
        found = os.path.exists(cache)
        with open(cache, "a") as f:
            f.write("x")
        print("invoke", COUNT)
        return {"count": COUNT, "pid": os.getpid(), "cache_found": found, "colour": os.environ.get("COLOUR"),
                "memory": context.memory_limit_in_mb, "remaining": context.get_remaining_time_in_millis(),
                "request_id": context.aws_request_id, "name": os.environ["AWS_LAMBDA_FUNCTION_NAME"]}
"""


def test_cold_then_warm_keeps_globals_and_tmp_and_tails_report_lines(aws):
    lam, function = aws
    name = function(COUNTER, Environment={"Variables": {"COLOUR": "blue"}}, MemorySize=256)
    answer, first, log = call(lam, name, LogType="Tail")
    assert answer["StatusCode"] == 200 and answer["ExecutedVersion"] == "$LATEST" and "FunctionError" not in answer
    assert first["count"] == 1 and not first["cache_found"]
    assert first["colour"] == "blue" and first["memory"] == "256" and first["name"] == name
    assert 0 < first["remaining"] <= 3000
    assert "module-level init runs once" in log and f"START RequestId: {first['request_id']}" in log
    report = [line for line in log.splitlines() if line.startswith("REPORT")][0]
    for field in ("Duration:", "Billed Duration:", "Memory Size: 256 MB", "Max Memory Used:", "Init Duration:"):
        assert field in report

    _, second, log = call(lam, name, LogType="Tail")
    assert second["count"] == 2 and second["pid"] == first["pid"] and second["cache_found"]
    assert "Init Duration" not in log and "module-level" not in log and "invoke 2" in log

    rows = get_service().invocations(name)
    assert [row["cold"] for row in rows] == [True, False]

    # A configuration change means new environments (cold again), as on AWS.
    lam.update_function_configuration(FunctionName=name, Environment={"Variables": {"COLOUR": "red"}})
    _, third, _ = call(lam, name)
    assert third["count"] == 1 and third["colour"] == "red" and third["pid"] != first["pid"]

    # Idle environments are reclaimed; the next invoke is cold.
    assert get_service().reclaim_idle(older_than=0) >= 1
    _, fourth, _ = call(lam, name)
    assert fourth["count"] == 1


def test_timeout_kills_the_process_without_cleanup_and_the_next_invoke_is_cold(aws, tmp_path):
    lam, function = aws
    marker = tmp_path / "cleanup-ran"
    name = function(f"""
        import os, time
        def handler(event, context):
            if event.get("sleep"):
                try:
                    time.sleep(event["sleep"])
                finally:
                    open({str(marker)!r}, "w").write("cleanup")
            return {{"pid": os.getpid()}}
    """, Timeout=1)
    _, warm, _ = call(lam, name)
    answer, error, log = call(lam, name, {"sleep": 20}, LogType="Tail")
    assert answer["FunctionError"] == "Unhandled"
    assert "Task timed out after 1.00 seconds" in error["errorMessage"]
    assert "Task timed out after 1.00 seconds" in log and "Status: timeout" in log
    with pytest.raises(ProcessLookupError):
        os.kill(warm["pid"], 0)
    assert not marker.exists()
    _, after, _ = call(lam, name)
    assert after["pid"] != warm["pid"]


def test_reserved_concurrency_throttles_and_parallel_invokes_get_their_own_environments(aws):
    lam, function = aws
    name = function("""
        import os, time
        def handler(event, context):
            time.sleep(event.get("sleep", 0))
            return os.getpid()
    """, Timeout=10)
    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)
    with pytest.raises(lam.exceptions.TooManyRequestsException) as throttled:
        call(lam, name)
    assert throttled.value.response["Reason"] == "ReservedFunctionConcurrentInvocationLimitExceeded"

    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=2)
    pids, release = [], threading.Event()

    def slow():
        pids.append(call(boto3.client("lambda", config=NO_RETRIES), name, {"sleep": 3})[1])

    threads = [threading.Thread(target=slow) for _ in range(2)]
    for thread in threads:
        thread.start()
    eventually(lambda: get_service().in_flight(name) == 2)
    with pytest.raises(lam.exceptions.TooManyRequestsException):
        call(lam, name)
    for thread in threads:
        thread.join()
    assert len(set(pids)) == 2  # two environments, two processes
    assert call(lam, name)[1] in pids  # then a warm one is reused
    release.set()


def test_handler_failures_give_aws_errors_and_the_service_keeps_serving(aws):
    lam, function = aws
    name = function("""
        import sys
        def handler(event, context):
            if event.get("do") == "raise":
                raise ValueError("bad input")
            if event.get("do") == "set":
                return {1, 2}
            if event.get("do") == "exit":
                sys.exit(3)
            if event.get("do") == "hog":
                hog = bytearray(300 * 1024 * 1024)
            return "fine"
    """, Timeout=60)  # filling 300 MB on a loaded machine can outlast the default 3 s: OOM, not timeout, is the point
    answer, error, _ = call(lam, name, {"do": "raise"})
    assert answer["FunctionError"] == "Unhandled" and error["errorType"] == "ValueError"
    assert error["errorMessage"] == "bad input" and error["stackTrace"]
    answer, error, _ = call(lam, name, {"do": "set"})
    assert answer["FunctionError"] == "Unhandled" and error["errorType"] == "Runtime.MarshalError"
    answer, error, _ = call(lam, name, {"do": "exit"})
    assert answer["FunctionError"] == "Unhandled" and error["errorType"] == "Runtime.ExitError"
    assert "Runtime exited with error: exit status 3" in error["errorMessage"]
    answer, error, _ = call(lam, name, {"do": "hog"})  # 300 MB in a 128 MB function
    assert answer["FunctionError"] == "Unhandled" and error["errorType"] == "Runtime.OutOfMemory"
    assert call(lam, name)[1] == "fine"

    missing = function("x = 1\n")
    answer, error, _ = call(lam, missing)
    assert answer["FunctionError"] == "Unhandled" and error["errorType"] == "Runtime.HandlerNotFound"
    lam.update_function_configuration(FunctionName=missing, Handler="nowhere.handler")
    answer, error, _ = call(lam, missing)
    assert error["errorType"] == "Runtime.ImportModuleError"

    with pytest.raises(lam.exceptions.InvalidParameterValueException):
        lam.create_function(FunctionName="t-badzip", Runtime="python3.12", Handler="app.handler",
                            Role="arn:aws:iam::123456789012:role/lambda-test-role", Code={"ZipFile": b"not a zip"})
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.invoke(FunctionName="t-no-such-function", Payload=b"{}")


def test_provisioned_concurrency_runs_init_ahead_so_the_first_invoke_is_warm(aws):
    lam, function = aws
    name = function("""
        print("init ran")
        def handler(event, context):
            return "ok"
    """)
    version = lam.publish_version(FunctionName=name)["Version"]
    lam.put_provisioned_concurrency_config(FunctionName=name, Qualifier=version, ProvisionedConcurrentExecutions=1)
    assert lam.get_provisioned_concurrency_config(FunctionName=name, Qualifier=version)["Status"] == "READY"
    answer, result, log = call(lam, name, Qualifier=version, LogType="Tail")
    assert result == "ok" and answer["ExecutedVersion"] == version
    assert "Init Duration" not in log and "init ran" not in log
    assert get_service().invocations(name)[-1]["cold"] is False


def test_async_invoke_retries_twice_then_reaches_the_dlq_and_the_failure_destination(aws, monkeypatch):
    lam, function = aws
    sqs = boto3.client("sqs")
    suffix = uuid.uuid4().hex[:8]
    dlq = sqs.create_queue(QueueName=f"dlq-{suffix}")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    failures = sqs.create_queue(QueueName=f"onfail-{suffix}")["QueueUrl"]
    failures_arn = sqs.get_queue_attributes(QueueUrl=failures, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    monkeypatch.setattr(get_service(), "async_retry_delays", (0.05, 0.1))  # restored after the test
    name = function("""
        def handler(event, context):
            raise RuntimeError("always fails")
    """, DeadLetterConfig={"TargetArn": dlq_arn})
    lam.put_function_event_invoke_config(FunctionName=name, MaximumRetryAttempts=2,
                                         DestinationConfig={"OnFailure": {"Destination": failures_arn}})
    answer = lam.invoke(FunctionName=name, InvocationType="Event", Payload=b'{"order": 7}')
    assert answer["StatusCode"] == 202

    def first_message(url):
        messages = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1, MessageAttributeNames=["All"]).get("Messages")
        return messages[0] if messages else None

    dead = eventually(lambda: first_message(dlq))
    assert json.loads(dead["Body"]) == {"order": 7}
    assert dead["MessageAttributes"]["ErrorMessage"]["StringValue"] == "always fails"
    record = json.loads(eventually(lambda: first_message(failures))["Body"])
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert record["requestContext"]["approximateInvokeCount"] == 3
    assert record["requestPayload"] == {"order": 7} and record["responseContext"]["functionError"] == "Unhandled"
    assert len(get_service().invocations(name)) == 3  # the first try and two retries


def test_sqs_mapping_deletes_successes_and_leaves_reported_failures_to_the_queue(aws):
    lam, function = aws
    sqs, s3 = boto3.client("sqs"), boto3.client("s3")
    suffix = uuid.uuid4().hex[:8]
    bucket = f"processed-{suffix}"
    s3.create_bucket(Bucket=bucket)
    dlq = sqs.create_queue(QueueName=f"jobs-dlq-{suffix}")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    queue = sqs.create_queue(QueueName=f"jobs-{suffix}", Attributes={
        # AWS refuses a visibility timeout shorter than the function's timeout (5 s here)
        "VisibilityTimeout": "5", "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 2})})["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    name = function(f"""
        import boto3
        s3 = boto3.client("s3")  # reaches the emulator through AWS_ENDPOINT_URL

        def handler(event, context):
            failures = []
            for record in event["Records"]:
                if record["body"].startswith("bad"):
                    failures.append({{"itemIdentifier": record["messageId"]}})
                else:
                    s3.put_object(Bucket={bucket!r}, Key=record["messageId"], Body=record["body"].encode())
            return {{"batchItemFailures": failures}}
    """, Timeout=5)
    for body in ("good-1", "bad-1", "good-2"):
        sqs.send_message(QueueUrl=queue, MessageBody=body)
    mapping = lam.create_event_source_mapping(EventSourceArn=queue_arn, FunctionName=name, BatchSize=10,
                                              MaximumBatchingWindowInSeconds=1,
                                              FunctionResponseTypes=["ReportBatchItemFailures"])
    assert mapping["State"] in ("Creating", "Enabled")
    assert lam.get_event_source_mapping(UUID=mapping["UUID"])["BatchSize"] == 10

    dead = eventually(lambda: sqs.receive_message(QueueUrl=dlq, WaitTimeSeconds=1).get("Messages"), limit=60)
    assert [m["Body"] for m in dead] == ["bad-1"]
    stored = sorted(s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read().decode()
                    for o in s3.list_objects_v2(Bucket=bucket).get("Contents", []))
    assert stored == ["good-1", "good-2"]  # each success processed once and deleted
    counts = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["All"])["Attributes"]
    assert counts["ApproximateNumberOfMessages"] == "0" and counts["ApproximateNumberOfMessagesNotVisible"] == "0"
    assert [m["UUID"] for m in lam.list_event_source_mappings(FunctionName=name)["EventSourceMappings"]] == [mapping["UUID"]]
    lam.delete_event_source_mapping(UUID=mapping["UUID"])


def test_sqs_mapping_runs_concurrent_batches_under_a_backlog_up_to_its_maximum_concurrency(aws, tmp_path):
    lam, function = aws
    sqs = boto3.client("sqs")
    queue = sqs.create_queue(QueueName=f"backlog-{uuid.uuid4().hex[:8]}", Attributes={"VisibilityTimeout": "30"})["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    marks = tmp_path / "batches"
    name = function("""
        import os, time

        def handler(event, context):
            started = time.time()
            time.sleep(1.0)  # long enough for the next batch to start beside this one
            bodies = ",".join(record["body"] for record in event["Records"])
            with open(os.environ["MARKS"], "a") as out:
                out.write(f"{started} {time.time()} {bodies}\\n")
    """, Timeout=10, Environment={"Variables": {"MARKS": str(marks)}})
    for start in range(0, 60, 10):
        sqs.send_message_batch(QueueUrl=queue, Entries=[{"Id": str(i), "MessageBody": f"m{start + i}"} for i in range(10)])
    mapping = lam.create_event_source_mapping(EventSourceArn=queue_arn, FunctionName=name, BatchSize=10,
                                              ScalingConfig={"MaximumConcurrency": 2})

    def batches():
        rows = [line.split(" ") for line in marks.read_text().splitlines()] if marks.exists() else []
        return rows if sum(len(row[2].split(",")) for row in rows) >= 60 else None

    rows = eventually(batches, limit=90)
    lam.delete_event_source_mapping(UUID=mapping["UUID"])
    bodies = sorted(body for row in rows for body in row[2].split(","))
    assert bodies == sorted(f"m{i}" for i in range(60))  # each message handled once
    intervals = [(float(row[0]), float(row[1])) for row in rows]
    overlapping = max(sum(1 for s, e in intervals if s <= start < e) for start, _ in intervals)
    assert overlapping == 2  # a second batch ran beside the first, and never a third (MaximumConcurrency)


def test_s3_notification_runs_the_function_asynchronously_with_the_s3_event(aws):
    lam, function = aws
    s3, sqs = boto3.client("s3"), boto3.client("sqs")
    suffix = uuid.uuid4().hex[:8]
    seen = sqs.create_queue(QueueName=f"seen-{suffix}")["QueueUrl"]
    name = function(f"""
        import boto3, json
        sqs = boto3.client("sqs")
        def handler(event, context):
            record = event["Records"][0]
            sqs.send_message(QueueUrl={seen!r}, MessageBody=json.dumps(
                [record["eventSource"], record["s3"]["bucket"]["name"], record["s3"]["object"]["key"]]))
    """, Timeout=10)
    arn = lam.get_function(FunctionName=name)["Configuration"]["FunctionArn"]
    bucket = f"uploads-{suffix}"
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={
        "LambdaFunctionConfigurations": [{"LambdaFunctionArn": arn, "Events": ["s3:ObjectCreated:*"]}]})
    s3.put_object(Bucket=bucket, Key="photos/a b.jpg", Body=b"x")
    message = eventually(lambda: sqs.receive_message(QueueUrl=seen, WaitTimeSeconds=1).get("Messages"))
    source, bucket_name, key = json.loads(message[0]["Body"])
    assert (source, bucket_name, unquote_plus(key)) == ("aws:s3", bucket, "photos/a b.jpg")  # keys arrive URL-encoded


def test_api_gateway_front_proxies_events_and_answers_429_over_the_route_limit(aws):
    lam, function = aws
    name = function("""
        import json
        def handler(event, context):
            if event["pathParameters"]["id"] == "broken":
                return {"no": "statusCode"}
            return {"statusCode": 201, "headers": {"X-Item": event["pathParameters"]["id"]},
                    "body": json.dumps({"resource": event["resource"], "query": event["queryStringParameters"],
                                        "method": event["httpMethod"], "stage": event["requestContext"]["stage"]})}
    """)
    with ApiGatewayFront({"GET /items/{id}": name}, rate_limits={"GET /items/{id}": (0.01, 3)}) as front:
        with urllib.request.urlopen(front.url + "/items/42?colour=red") as response:
            assert response.status == 201 and response.headers["X-Item"] == "42"
            assert json.loads(response.read()) == {"resource": "/items/{id}", "query": {"colour": "red"},
                                                   "method": "GET", "stage": "prod"}
        with pytest.raises(urllib.error.HTTPError) as malformed:
            urllib.request.urlopen(front.url + "/items/broken")
        assert malformed.value.code == 502
        urllib.request.urlopen(front.url + "/items/1").read()
        with pytest.raises(urllib.error.HTTPError) as limited:
            urllib.request.urlopen(front.url + "/items/2")
        assert limited.value.code == 429 and int(limited.value.headers["Retry-After"]) >= 1
        assert json.loads(limited.value.read()) == {"message": "Too Many Requests"}
        with pytest.raises(urllib.error.HTTPError) as unknown:
            urllib.request.urlopen(front.url + "/nothing-here")
        assert unknown.value.code == 403


def test_no_environment_outlives_the_process_that_served_it(tmp_path):
    script = textwrap.dedent("""
        import json, boto3, cloudlab
        from cloudlab.lambda_service import zip_code, get_service
        cloudlab.use_backend()
        role = boto3.client("iam").create_role(RoleName="r", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        lam = boto3.client("lambda")
        lam.create_function(FunctionName="f", Runtime="python3.12", Role=role, Handler="app.handler",
                            Code={"ZipFile": zip_code("import os\\ndef handler(e, c):\\n    return os.getpid()\\n")})
        print(json.dumps([json.loads(lam.invoke(FunctionName="f")["Payload"].read()),
                          [row["pid"] for row in get_service().environments()]]))
    """)
    environment = {key: value for key, value in os.environ.items() if not key.startswith(("AWS_", "CLOUDLAB_ENDPOINT"))}
    environment["CLOUDLAB_STATE_DIR"] = str(tmp_path)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=environment)
    assert done.returncode == 0, done.stderr
    pid, pids = json.loads(done.stdout.strip().splitlines()[-1])
    assert pids == [pid]
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def first_line(process: subprocess.Popen, seconds: float, stderr_file) -> str:
    """The first line ``process`` prints, waited for up to ``seconds``; fails with its stderr if it
    exits or stays silent that long (a bare readline() would hang the suite)."""
    deadline, line = time.monotonic() + seconds, b""
    descriptor = process.stdout.fileno()
    while not line.endswith(b"\n"):
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([descriptor], [], [], remaining)[0]:
            pytest.fail(f"the child printed no line within {seconds} s; its stderr:\n"
                        + Path(stderr_file).read_text(errors="replace")[-3000:])
        chunk = os.read(descriptor, 4096)
        if not chunk:
            process.wait(timeout=10)
            pytest.fail(f"the child exited with code {process.returncode} before printing a line; its stderr:\n"
                        + Path(stderr_file).read_text(errors="replace")[-3000:])
        line += chunk
    return line.decode().splitlines()[0]


def test_a_busy_environment_dies_with_a_server_killed_without_cleanup(tmp_path):
    """kill -9 runs no atexit hook: the environment's watchdog pipe sees the end instead."""
    script = textwrap.dedent("""
        import json, threading, time, boto3, cloudlab
        from cloudlab.lambda_service import zip_code, get_service
        cloudlab.use_backend()
        role = boto3.client("iam").create_role(RoleName="r", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        lam = boto3.client("lambda")
        lam.create_function(FunctionName="f", Runtime="python3.12", Role=role, Handler="app.handler", Timeout=900,
                            Code={"ZipFile": zip_code("import time\\ndef handler(e, c):\\n    while True:\\n        time.sleep(1)\\n")})
        threading.Thread(target=lambda: lam.invoke(FunctionName="f"), daemon=True).start()
        while not get_service().environments():
            time.sleep(0.05)
        print(get_service().environments()[0]["pid"], flush=True)
        time.sleep(600)
    """)
    environment = {key: value for key, value in os.environ.items() if not key.startswith(("AWS_", "CLOUDLAB_ENDPOINT"))}
    environment["CLOUDLAB_STATE_DIR"] = str(tmp_path)
    errors = tmp_path / "server.err"
    with open(errors, "wb") as stderr:
        server = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=stderr, env=environment)
    try:
        pid = int(first_line(server, 60, errors))
        os.kill(pid, 0)  # the handler is running
    finally:
        server.kill()
        server.wait()
        server.stdout.close()

    def gone():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        try:  # a zombie is gone for our purposes (its parent was init)
            return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] == "Z"
        except OSError:
            return True

    eventually(gone, limit=10)
