"""The local Lambda service refuses what AWS refuses, with AWS's codes and messages (issue 12).

Plain boto3 against the embedded backend.
"""

from __future__ import annotations

import json
import re
import textwrap
import uuid

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

import cloudlab
from cloudlab.lambda_service import get_service, zip_code
from cloudlab.serverless import lambda_role

NO_RETRIES = Config(retries={"mode": "standard", "total_max_attempts": 1}, read_timeout=30)
ECHO = "import os\ndef handler(event, context):\n    return {'env': os.environ.get('AWS_EXECUTION_ENV')}\n"


@pytest.fixture
def aws():
    cloudlab.use_backend()
    iam = boto3.client("iam")
    role = lambda_role(iam, "lambda-test-role")
    lam = boto3.client("lambda", config=NO_RETRIES)
    created = []

    def function(source: str = ECHO, **settings) -> str:
        name = f"t-{uuid.uuid4().hex[:10]}"
        settings.setdefault("Runtime", "python3.12")
        lam.create_function(FunctionName=name, Role=role, Handler="app.handler",
                            Code={"ZipFile": zip_code(textwrap.dedent(source))}, **settings)
        created.append(name)
        return name

    yield lam, function
    for name in created:
        try:
            lam.delete_function_concurrency(FunctionName=name)
            lam.delete_function(FunctionName=name)
        except lam.exceptions.ResourceNotFoundException:
            pass


def refused(call) -> tuple[str, str, int]:
    with pytest.raises(ClientError) as error:
        call()
    response = error.value.response
    return response["Error"]["Code"], response["Error"]["Message"], response["ResponseMetadata"]["HTTPStatusCode"]


def test_timeout_above_900_is_refused_on_create_and_update(aws):
    lam, function = aws
    code, message, status = refused(lambda: function(Timeout=901))
    assert (code, status) == ("ValidationException", 400)
    assert message == ("1 validation error detected: Value '901' at 'timeout' failed to satisfy constraint: "
                       "Member must have value less than or equal to 900")
    name = function(Timeout=900)
    code, message, _ = refused(lambda: lam.update_function_configuration(FunctionName=name, Timeout=1000))
    assert code == "ValidationException" and "'1000' at 'timeout'" in message
    assert lam.get_function_configuration(FunctionName=name)["Timeout"] == 900


def test_memory_outside_128_to_10240_mb_is_refused_on_create_and_update(aws):
    lam, function = aws
    # botocore checks the minimum itself; other SDKs and raw HTTP calls reach the service
    unchecked = boto3.client("lambda", config=NO_RETRIES.merge(Config(parameter_validation=False)))
    role = boto3.client("iam").get_role(RoleName="lambda-test-role")["Role"]["Arn"]
    code, message, status = refused(lambda: unchecked.create_function(
        FunctionName=f"t-{uuid.uuid4().hex[:10]}", Runtime="python3.12", Role=role, Handler="app.handler",
        Code={"ZipFile": zip_code(ECHO)}, MemorySize=64))
    assert (code, status) == ("ValidationException", 400)
    assert message == ("1 validation error detected: Value '64' at 'memorySize' failed to satisfy constraint: "
                       "Member must have value greater than or equal to 128")
    name = function(MemorySize=10_240)
    code, message, _ = refused(lambda: lam.update_function_configuration(FunctionName=name, MemorySize=10_241))
    assert code == "ValidationException" and "less than or equal to 10240" in message
    assert lam.get_function_configuration(FunctionName=name)["MemorySize"] == 10_240


def test_reserved_environment_variables_are_refused_and_others_kept(aws):
    lam, function = aws
    code, message, status = refused(lambda: function(Environment={"Variables": {"AWS_REGION": "eu-west-1",
                                                                                  "_HANDLER": "x", "STAGE": "dev"}}))
    assert (code, status) == ("InvalidParameterValueException", 400)
    assert message.endswith("Reserved keys used in this request: AWS_REGION,_HANDLER")
    name = function(Environment={"Variables": {"STAGE": "dev", "AWS_ENDPOINT_URL_S3": "http://127.0.0.1:1"}})
    code, _, _ = refused(lambda: lam.update_function_configuration(
        FunctionName=name, Environment={"Variables": {"AWS_LAMBDA_FUNCTION_NAME": "other"}}))
    assert code == "InvalidParameterValueException"
    assert lam.get_function_configuration(FunctionName=name)["Environment"]["Variables"]["STAGE"] == "dev"


def sqs_queue(visibility: int, fifo: bool = False) -> str:
    sqs = boto3.client("sqs")
    attributes = {"VisibilityTimeout": str(visibility)}
    name = f"t-src-{uuid.uuid4().hex[:8]}"
    if fifo:
        name += ".fifo"
        attributes["FifoQueue"] = "true"
    url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]


def test_queue_visibility_shorter_than_the_function_timeout_is_refused(aws):
    lam, function = aws
    name = function(Timeout=10)
    code, message, status = refused(lambda: lam.create_event_source_mapping(
        EventSourceArn=sqs_queue(visibility=1), FunctionName=name, BatchSize=5))
    assert (code, status) == ("InvalidParameterValueException", 400)
    assert message == "Queue visibility timeout: 1 seconds is less than Function timeout: 10 seconds"
    mapping = lam.create_event_source_mapping(EventSourceArn=sqs_queue(visibility=10), FunctionName=name, BatchSize=5)
    lam.delete_event_source_mapping(UUID=mapping["UUID"])


def test_fifo_sources_take_batches_of_10_at_most_and_no_window(aws):
    lam, function = aws
    name = function(Timeout=3)
    fifo = sqs_queue(visibility=30, fifo=True)
    code, message, _ = refused(lambda: lam.create_event_source_mapping(
        EventSourceArn=fifo, FunctionName=name, BatchSize=11, MaximumBatchingWindowInSeconds=1))
    assert code == "InvalidParameterValueException" and "between 1 and 10" in message
    code, message, _ = refused(lambda: lam.create_event_source_mapping(
        EventSourceArn=fifo, FunctionName=name, BatchSize=10, MaximumBatchingWindowInSeconds=1))
    assert (code, message) == ("InvalidParameterValueException", "Batching window is not supported for FIFO queues")
    mapping = lam.create_event_source_mapping(EventSourceArn=fifo, FunctionName=name, BatchSize=10)
    try:
        assert refused(lambda: lam.update_event_source_mapping(UUID=mapping["UUID"], BatchSize=20))[0] == \
            "InvalidParameterValueException"
    finally:
        lam.delete_event_source_mapping(UUID=mapping["UUID"])
    # a standard queue takes up to 10,000 with a window, as before
    standard = lam.create_event_source_mapping(EventSourceArn=sqs_queue(visibility=30), FunctionName=name,
                                               BatchSize=100, MaximumBatchingWindowInSeconds=1)
    lam.delete_event_source_mapping(UUID=standard["UUID"])


def test_reservations_leave_the_scaled_unreserved_minimum(aws):
    lam, function = aws
    service = get_service()
    assert service.concurrency_limit == 10 and service.unreserved_minimum == 1
    first, second = function(), function()
    lam.put_function_concurrency(FunctionName=first, ReservedConcurrentExecutions=5)
    lam.put_function_concurrency(FunctionName=second, ReservedConcurrentExecutions=4)  # 9 reserved, 1 left
    code, message, status = refused(lambda: lam.put_function_concurrency(FunctionName=second,
                                                                         ReservedConcurrentExecutions=5))
    assert (code, status) == ("InvalidParameterValueException", 400)
    assert message.startswith("Specified ReservedConcurrentExecutions for function decreases account's "
                              "UnreservedConcurrentExecution below its minimum value of [1].")
    assert "100" in message and "1,000" in message  # says how AWS's rule was scaled
    lam.put_function_concurrency(FunctionName=first, ReservedConcurrentExecutions=4)  # its own share is replaced
    settings = lam.get_account_settings()
    assert settings["AccountLimit"]["ConcurrentExecutions"] == 10
    assert settings["AccountLimit"]["UnreservedConcurrentExecutions"] == 2
    assert settings["AccountUsage"]["FunctionCount"] >= 2


def test_function_urls_are_refused_clearly(aws):
    lam, function = aws
    name = function()
    code, message, _ = refused(lambda: lam.create_function_url_config(FunctionName=name, AuthType="NONE"))
    assert code == "InvalidParameterValueException"
    assert "not emulated" in message and "ApiGatewayFront" in message
    assert refused(lambda: lam.get_function_url_config(FunctionName=name))[0] == "ResourceNotFoundException"


def test_execution_env_names_the_runtime(aws):
    lam, function = aws
    for runtime in ("python3.12", "python3.11"):
        name = function(Runtime=runtime)
        payload = json.loads(lam.invoke(FunctionName=name)["Payload"].read())
        assert payload == {"env": f"AWS_Lambda_{runtime}"}


def test_report_duration_of_a_timed_out_invoke_is_the_timeout(aws):
    lam, function = aws
    name = function("import time\ndef handler(event, context):\n    time.sleep(30)\n", Timeout=1)
    answer = lam.invoke(FunctionName=name, LogType="Tail")
    import base64

    log = base64.b64decode(answer["LogResult"]).decode()
    report = [line for line in log.splitlines() if line.startswith("REPORT")][0]
    assert re.search(r"\tDuration: 1000\.00 ms\t", report), report
    assert "Status: timeout" in report
