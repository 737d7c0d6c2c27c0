"""moto's internals in one place (issue 14): what a moto upgrade must keep, and who imports what."""

from __future__ import annotations

import ast
import importlib.metadata
import json
import re
import tomllib
import uuid
from pathlib import Path

import boto3
import pytest

import cloudlab
from cloudlab.backend import local_services, moto_compat
from cloudlab.backend.embedded import EmbeddedServer
from cloudlab.lambda_service import zip_code

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "shared" / "cloudlab"


def test_every_moto_internal_cloudlab_relies_on_is_still_there_with_its_shape():
    problems = moto_compat.problems()
    assert not problems, "a moto upgrade moved or changed internals cloudlab uses:\n" + "\n".join(problems)


def test_a_moved_internal_is_named_in_the_failure(monkeypatch):
    from moto.core import utils
    from moto.awslambda.models import LambdaFunction

    monkeypatch.delattr(utils, "method_names_from_class")
    monkeypatch.setattr(LambdaFunction, "invoke", lambda self, body: None)
    problems = "\n".join(moto_compat.problems())
    assert "moto internal moto.core.utils:method_names_from_class (used by memoize_pure_helpers) is gone" in problems
    assert "moto.awslambda.models:LambdaFunction.invoke (used by replace_lambda_invoke) takes ('self', 'body')" in problems


def test_another_moto_version_is_refused_at_start_naming_what_changed(monkeypatch):
    from moto.core import utils

    monkeypatch.setattr(importlib.metadata, "version", lambda name: "9.9.9")
    moto_compat.check_installed_version()  # another version whose internals all still fit: fine
    monkeypatch.delattr(utils, "camelcase_to_underscores")
    with pytest.raises(moto_compat.MotoChanged, match=r"(?s)needs moto==5\.2\.5 \(found 9\.9\.9.*"
                                                     r"moto\.core\.utils:camelcase_to_underscores"):
        moto_compat.check_installed_version()


def test_instance_attributes_cloudlab_reads_are_on_live_moto_objects():
    cloudlab.use_backend()
    iam, lam, logs = boto3.client("iam"), boto3.client("lambda"), boto3.client("logs")
    name = f"compat-{uuid.uuid4().hex[:8]}"
    iam.create_user(UserName=name)
    key_id = iam.create_access_key(UserName=name)["AccessKey"]["AccessKeyId"]
    role = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                               "Principal": {"Service": "lambda.amazonaws.com"}}]}))["Role"]["Arn"]
    lam.create_function(FunctionName=name, Runtime="python3.12", Role=role, Handler="app.handler",
                        Code={"ZipFile": zip_code("def handler(event, context):\n    return 1\n")})
    logs.create_log_group(logGroupName=f"/aws/lambda/{name}")
    events, sqs = boto3.client("events"), boto3.client("sqs")
    events.put_rule(Name=name, ScheduleExpression="rate(1 hour)")
    queue_url = sqs.create_queue(QueueName=name)["QueueUrl"]
    try:
        account = moto_compat.DEFAULT_ACCOUNT_ID
        iam_backend = moto_compat.iam_backends[account]["global"]
        user = iam_backend.users[name]
        objects = {
            "moto.iam.models:IAMBackend": iam_backend,
            "moto.iam.models:User": user,
            "moto.iam.models:AccessKey": next(k for k in user.access_keys if k.access_key_id == key_id),
            "moto.awslambda.models:LambdaFunction": moto_compat.lambda_backends[account]["us-east-1"].get_function(name),
            "moto.logs.models:LogGroup": moto_compat.logs_backends[account]["us-east-1"].groups[f"/aws/lambda/{name}"],
            "moto.events.models:EventsBackend": moto_compat.events_backends[account]["us-east-1"],
            "moto.events.models:Rule": moto_compat.events_backends[account]["us-east-1"].event_buses["default"].rules[name],
            "moto.sqs.models:Queue": moto_compat.sqs_backends[account]["us-east-1"].queues[name],
        }
        problems = moto_compat.instance_problems(objects)
        assert not problems, "\n".join(problems)
    finally:
        lam.delete_function(FunctionName=name)
        events.delete_rule(Name=name)
        sqs.delete_queue(QueueUrl=queue_url)


def test_patches_are_applied_once_the_embedded_server_runs():
    cloudlab.use_backend()
    assert set(moto_compat.applied()) == {
        "moto.core.utils:camelcase_to_underscores", "moto.core.utils:method_names_from_class",
        "moto.core.authorization:ActionAuthenticatorMixin._authenticate_and_authorize_action",
        "moto.core.serialize:BaseJSONSerializer._serialize_type_structure",
        "moto.dynamodb.parsing.expressions:UpdateExpressionParser.make",
        "moto.events.models:Rule.send_to_targets",
        "moto.awslambda.models:LambdaFunction.invoke",
        "moto.awslambda.models:LambdaBackend.create_event_source_mapping",
        "moto.awslambda.models:LambdaBackend.delete_event_source_mapping"}
    from moto.core.authorization import ActionAuthenticatorMixin
    from moto.core.utils import camelcase_to_underscores

    original = moto_compat.original(
        "moto.core.authorization:ActionAuthenticatorMixin._authenticate_and_authorize_action")
    assert ActionAuthenticatorMixin._authenticate_and_authorize_action is not original
    assert original.__module__ == "moto.core.authorization"
    assert camelcase_to_underscores("VisibilityTimeout") == "visibility_timeout"  # the cached copy still answers


def test_a_rule_with_only_a_schedule_matches_no_put_events():
    """As on AWS: a schedule-only rule fires on its schedule, never on events (moto matched every
    event, so one deployed sweeper rule made every later PutEvents on the bus reach its target)."""
    cloudlab.use_backend()
    events, sqs = boto3.client("events"), boto3.client("sqs")
    name = f"compat-{uuid.uuid4().hex[:8]}"
    queues = {kind: sqs.create_queue(QueueName=f"{name}-{kind}")["QueueUrl"] for kind in ("scheduled", "pattern")}
    arns = {kind: sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            for kind, url in queues.items()}
    events.put_rule(Name=f"{name}-scheduled", ScheduleExpression="rate(1 hour)")
    events.put_rule(Name=f"{name}-pattern", EventPattern=json.dumps({"source": [name]}))
    for kind in queues:
        events.put_targets(Rule=f"{name}-{kind}", Targets=[{"Id": "queue", "Arn": arns[kind]}])
    try:
        answer = events.put_events(Entries=[{"Source": name, "DetailType": "test", "Detail": "{}"}])
        assert answer["FailedEntryCount"] == 0
        received = {kind: sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1).get("Messages", [])
                    for kind, url in queues.items()}
        assert len(received["pattern"]) == 1, "the rule with a pattern gets the event"
        assert received["scheduled"] == [], "the schedule-only rule must not"
    finally:
        for kind, url in queues.items():
            events.remove_targets(Rule=f"{name}-{kind}", Ids=["queue"])
            events.delete_rule(Name=f"{name}-{kind}")
            sqs.delete_queue(QueueUrl=url)


def _dynamodb_body(operation: str, result: dict, walk_members) -> dict:
    """moto's JSON body for a DynamoDB ``operation`` answering ``result``, with ``walk_members``
    as the structure serializer (moto's own, or the patched one)."""
    from moto.core.responses import XFormedAttributePicker
    from moto.core.serialize import JSONSerializer
    from moto.core.utils import get_service_model

    class Serializer(JSONSerializer):
        _serialize_type_structure = walk_members

    operation_model = get_service_model("dynamodb").operation_model(operation)
    answer = Serializer(operation_model=operation_model, value_picker=XFormedAttributePicker()).serialize(result)
    return json.loads(answer["body"])


ITEM = {
    "job_id": {"S": "j-1"}, "size": {"N": "1234"}, "ratio": {"N": "0.25"}, "empty": {"S": ""},
    "ok": {"BOOL": False}, "nothing": {"NULL": True}, "tags": {"SS": ["a", "b"]}, "scores": {"NS": ["1", "2.5"]},
    "blob": {"B": "aGVsbG8="}, "blobs": {"BS": ["aGk=", "eW8="]}, "no_list": {"L": []}, "no_map": {"M": {}},
    "timeline": {"L": [{"M": {"stage": {"S": "uploaded"}, "at": {"N": "1796053197.42"}, "by": {"S": "upload"}}},
                       {"M": {"stage": {"S": "decided"}, "flags": {"L": [{"BOOL": True}, {"NULL": True}]},
                              "raw": {"B": "AAE="}}}]},
    "result": {"M": {"labels": {"L": [{"M": {"Name": {"S": "Violence"}, "Confidence": {"N": "87.5"}}}]},
                     "top": {"NULL": True}}},
}


@pytest.mark.parametrize("operation, result", [
    ("GetItem", {"Item": ITEM}),
    ("UpdateItem", {"Attributes": ITEM, "ConsumedCapacity": {"TableName": "jobs", "CapacityUnits": 1.0}}),
    ("Query", {"Items": [ITEM, {"job_id": {"S": "j-2"}}], "Count": 2, "ScannedCount": 2,
               "LastEvaluatedKey": {"job_id": {"S": "j-2"}}}),
    ("BatchGetItem", {"Responses": {"jobs": [ITEM]}, "UnprocessedKeys": {}}),
])
def test_dynamodb_attribute_values_are_written_as_moto_writes_them(operation, result):
    """The patched serializer (``moto_compat.fast_attribute_values``) writes the same JSON as
    moto's own, binary values (moto's path) included."""
    cloudlab.use_backend()
    path = "moto.core.serialize:BaseJSONSerializer._serialize_type_structure"
    from moto.core.serialize import BaseJSONSerializer

    assert BaseJSONSerializer._serialize_type_structure is not moto_compat.original(path)
    fast = _dynamodb_body(operation, result, BaseJSONSerializer._serialize_type_structure)
    assert fast == _dynamodb_body(operation, result, moto_compat.original(path))
    assert moto_compat.plain_attribute_value(ITEM["timeline"]) is moto_compat._NOT_PLAIN  # a binary inside
    assert moto_compat.plain_attribute_value(ITEM["result"]) == ITEM["result"]


def test_update_expressions_are_parsed_once_and_each_update_still_applies_its_own_values():
    cloudlab.use_backend()
    from moto.dynamodb.parsing.expressions import UpdateExpressionParser

    assert UpdateExpressionParser.make("SET a = :a") is UpdateExpressionParser.make("SET a = :a")  # one parse
    table = boto3.resource("dynamodb").create_table(
        TableName=f"parsed-{uuid.uuid4().hex[:8]}", BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}])
    for value in range(3):  # the same expression, other values: each update sees its own
        table.update_item(Key={"pk": "k"}, UpdateExpression="SET #n = :n, #l = list_append(if_not_exists(#l, :e), :v)",
                          ExpressionAttributeNames={"#n": "n", "#l": "log"},
                          ExpressionAttributeValues={":n": value, ":e": [], ":v": [value]})
    assert table.get_item(Key={"pk": "k"})["Item"] == {"pk": "k", "n": 2, "log": [0, 1, 2]}
    with pytest.raises(table.meta.client.exceptions.ClientError, match="Invalid UpdateExpression"):
        table.update_item(Key={"pk": "k"}, UpdateExpression="SET = :n", ExpressionAttributeValues={":n": 1})


def test_moto_is_pinned_exactly_and_the_pin_is_the_one_checked_here():
    pins = [dep for dep in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
            if dep.startswith("moto")]
    assert pins == [f"moto[server]=={moto_compat.MOTO_VERSION}"]
    assert f"moto[server]=={moto_compat.MOTO_VERSION}" in (ROOT / "environment.yml").read_text()
    assert importlib.metadata.version("moto") == moto_compat.MOTO_VERSION


def _imports(path: Path) -> list[str]:
    """Absolute names of every module ``path`` imports (relative imports resolved, any depth)."""
    module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    package = package.removesuffix(".__init__")
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                anchor = ".".join(parts[:len(parts) - node.level + 1])
                base = f"{anchor}.{base}" if base else anchor
            names.append(base)
            names += [f"{base}.{alias.name}" for alias in node.names]
    return names


def test_only_moto_compat_imports_moto():
    offenders = {}
    for path in PACKAGE.rglob("*.py"):
        if path.name == "moto_compat.py" or "_watchdog" in path.parts:
            continue
        moto = [name for name in _imports(path) if name == "moto" or name.startswith("moto.")]
        if moto:
            offenders[str(path.relative_to(PACKAGE))] = moto
    assert not offenders, f"go through cloudlab.backend.moto_compat instead: {offenders}"


def test_the_backend_never_imports_the_lambda_service():
    upward = {}
    for path in sorted((PACKAGE / "backend").glob("*.py")):
        found = [name for name in _imports(path) if re.match(r"cloudlab\.lambda_service(\.|$)", name)]
        if found:
            upward[path.name] = found
    assert not upward, f"backend modules import cloudlab.lambda_service: {upward}"
    # ...and the resolver does see such an import when there is one:
    assert "cloudlab.lambda_service" in _imports(PACKAGE / "__init__.py")


def test_an_embedded_server_brings_lambda_up_through_the_hooks_and_takes_it_down():
    server = EmbeddedServer().start()
    try:
        assert "lambda" in local_services.SERVICE_OVERRIDES
        lam = boto3.client("lambda", endpoint_url=server.url, region_name="us-east-1",
                           aws_access_key_id="test", aws_secret_access_key="test")
        assert "Functions" in lam.list_functions()
    finally:
        server.stop()
    from cloudlab import lambda_service

    if not lambda_service._servers:  # no other server of this test session still running
        assert "lambda" not in local_services.SERVICE_OVERRIDES


def test_shared_wire_facts_are_defined_once_in_aws_protocol():
    homes: dict[str, list[str]] = {"DEFAULT_REGION": [], "reason phrases": [], "credential-scope regex": []}
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Assign):
                names = [target.id for target in node.targets if isinstance(target, ast.Name)]
                if "DEFAULT_REGION" in names:
                    homes["DEFAULT_REGION"].append(path.name)
                if any("REASONS" in name for name in names):
                    homes["reason phrases"].append(path.name)
            if (isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "compile" and node.args
                    and isinstance(node.args[0], ast.Constant) and "Credential=" in str(node.args[0].value)):
                homes["credential-scope regex"].append(path.name)
    assert homes == {name: ["aws_protocol.py"] for name in homes}, homes
