"""The capstone's local deployer (cloudlab.pipeline.deploy): lint, package, translate, CloudFormation.

Most tests share ONE deployment of the small SAM app in tests/fixtures/sam_app (a layer, an
API with a path parameter and Cors, an SQS mapping with ReportBatchItemFailures, an async
function with an OnFailure destination, a schedule, SNS -> SQS), deployed through moto's
CloudFormation exactly as the capstone's template is. Everything timed is polled to a deadline.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import boto3
import pytest

import cloudlab
from aws_calls import poll
from cloudlab.pipeline import deploy as deployer
from cloudlab.pipeline.deploy import DeployError, deploy, lint, teardown

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "sam_app" / "template.yaml"
CONTRACT_RESOURCES = {"UploadBucket", "JobsTable", "JobsQueue", "JobsDeadLetterQueue", "AnalyzerDeadLetterQueue",
                      "ResultsTopic", "NotificationsQueue", "UploadFunction", "StatusFunction", "DispatcherFunction",
                      "ModerationAnalyzerFunction", "CustomAnalyzerFunction", "SweeperFunction", "CommonLayer"}
CONTRACT_OUTPUTS = {"ApiUrl", "UploadBucketName", "ModelBucketName", "ModelKey", "JobsTableName", "JobsQueueUrl",
                    "JobsDeadLetterQueueUrl", "AnalyzerDeadLetterQueueUrl", "NotificationsQueueUrl", "ResultsTopicArn",
                    "UploadFunctionName", "StatusFunctionName", "DispatcherFunctionName",
                    "ModerationAnalyzerFunctionName", "CustomAnalyzerFunctionName", "SweeperFunctionName"}


# -- the template --------------------------------------------------------------------------------------
def test_the_capstone_template_passes_cfn_lint():
    assert lint() == []


def test_cfn_lint_fails_a_broken_copy_of_the_template(tmp_path):
    broken = tmp_path / "template.yaml"
    text = deployer.TEMPLATE.read_text()
    assert "!GetAtt JobsDeadLetterQueue.Arn" in text
    broken.write_text(text.replace("!GetAtt JobsDeadLetterQueue.Arn", "!GetAtt JobsDeadLeterQueue.Arn"))
    findings = lint(broken)
    assert findings and any("E1010" in line and "JobsDeadLeterQueue" in line for line in findings), findings


def test_the_fixture_template_passes_cfn_lint():
    assert lint(FIXTURE) == []


def test_the_capstone_template_translates_with_every_contract_name(tmp_path):
    sam = deployer.load_template(deployer.TEMPLATE)
    for resource in sam["Resources"].values():  # what package() would write, without the folders
        for prop in ("CodeUri", "ContentUri"):
            if prop in resource.get("Properties", {}):
                resource["Properties"][prop] = "s3://artifacts/code.zip"
    values = deployer.parameter_values(sam)
    translated = deployer.translate(sam, values, "us-east-1")
    resources = translated["Resources"]
    assert CONTRACT_RESOURCES - {"CommonLayer"} <= set(resources)
    assert any(r["Type"] == "AWS::Lambda::LayerVersion" for r in resources.values())
    assert CONTRACT_OUTPUTS <= set(translated["Outputs"])
    mapping = next(r for r in resources.values() if r["Type"] == "AWS::Lambda::EventSourceMapping")
    assert mapping["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    invoke_configs = [r for r in resources.values() if r["Type"] == "AWS::Lambda::EventInvokeConfig"]
    assert len(invoke_configs) == 2
    assert all(c["Properties"]["DestinationConfig"]["OnFailure"]["Destination"] == {"Fn::GetAtt": ["AnalyzerDeadLetterQueue", "Arn"]}
               for c in invoke_configs)
    routes, cors, stage = deployer.api_routes(translated, _names_as_refs(resources))
    assert routes == {"POST /uploads": "UploadFunction", "GET /jobs/{job_id}": "StatusFunction"}
    assert cors == {"AllowOrigin": "*", "AllowHeaders": "Content-Type", "AllowMethods": "GET,POST,OPTIONS"}
    assert stage == "prod"
    # the local timings: the sweeper's rate in seconds, which only the local scheduler fires
    assert values["SweepSchedule"] == "rate(5 seconds)" and int(values["JobsVisibilityTimeout"]) >= int(values["DispatcherTimeout"])
    assert deployer.parameter_values(sam, local=False)["SweepSchedule"] == "rate(5 minutes)"


def _names_as_refs(resources: dict) -> "deployer.Resolver":
    resolver = deployer.Resolver({}, {})
    resolver.refs = {lid: lid for lid in resources}
    return resolver


def test_bad_parameters_and_overrides_get_clear_errors():
    sam = deployer.load_template(FIXTURE)
    with pytest.raises(DeployError, match="no parameter TickSchedul"):
        deployer.parameter_values(sam, {"TickSchedul": "rate(1 minute)"})
    with pytest.raises(DeployError, match="outside every function and layer folder: elsewhere/x.py"):
        deployer.package(sam, FIXTURE.parent, {"elsewhere/x.py": "x = 1\n"}, s3=None, bucket="b", prefix="p")


# -- one deployment of the fixture app, shared ------------------------------------------------------------
@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:  # its own emulator, never a served one
        patch.setenv("CLOUDLAB_STATE_DIR", str(tmp_path_factory.mktemp("deploy-state")))
        patch.delenv("CLOUDLAB_ENDPOINT", raising=False)
        patch.delenv("CLOUDLAB_BACKEND", raising=False)
        cloudlab.use_backend()
        deployed = deploy("fixture", template=FIXTURE, parameters={"TickSchedule": "rate(2 seconds)",
                                                                   "WorkVisibilityTimeout": "2"})
        yield deployed
        cloudlab.use_backend()
        deployed.teardown()


@pytest.fixture
def aws(stack):
    cloudlab.use_backend()  # each test's environment is fresh (conftest): point boto3 at the emulator again
    return stack


def test_the_stack_reaches_create_complete_and_lists_what_moto_lacked(aws):
    cfn = boto3.client("cloudformation")
    assert cfn.describe_stacks(StackName="fixture")["Stacks"][0]["StackStatus"] == "CREATE_COMPLETE"
    created = {row["LogicalResourceId"] for row in cfn.describe_stack_resources(StackName="fixture")["StackResources"]
               if row.get("LogicalResourceId")}
    # moto created the bucket, table, queues, topic, roles, functions, layer, mapping and rule itself
    for lid in ("Bucket", "Table", "WorkQueue", "WorkDeadLetterQueue", "Topic", "BatchFunction", "BatchFunctionWork",
                "TickFunctionTick", "EchoFunctionRole"):
        assert lid in created
    noted = " | ".join(aws.created_by_deployer)
    for lid_and_type in ("NotesSubscription (AWS::SNS::Subscription)", "NotesQueuePolicy (AWS::SQS::QueuePolicy)",
                         "FailingFunctionEventInvokeConfig (AWS::Lambda::EventInvokeConfig)",
                         "(AWS::ApiGateway::Stage)", "EchoFunction (AWS::Lambda::Function Layers)",
                         "FailingFunction (AWS::Lambda::Function DeadLetterConfig)"):
        assert lid_and_type in noted
    # every resource of the translated template is accounted for: made by moto or listed
    for lid in aws.template["Resources"]:
        assert lid in created or lid in noted, lid
    assert aws.deploy_seconds > 0


def test_the_readme_table_names_every_gap_the_deployer_filled(aws):
    table = [line for line in (ROOT / "README.md").read_text().split("## The capstone pipeline: deployment")[1]
             .split("\n## ")[0].splitlines() if line.startswith("| `AWS::")]
    for note in aws.created_by_deployer:
        kind, _, prop = note.split(" (", 1)[1].split(")", 1)[0].partition(" ")
        rows = [line for line in table if f"`{kind}`" in line.split("|")[1] and (not prop or f"`{prop}`" in line.split("|")[1])]
        assert rows, f"README.md's deployment table has no row for {kind} {prop}: {note}"


def test_outputs_are_usable_names_on_this_backend(aws):
    sqs = boto3.client("sqs")
    url = aws.output("WorkQueueUrl")
    assert sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["VisibilityTimeout"])["Attributes"]["VisibilityTimeout"] == "2"
    boto3.client("dynamodb").describe_table(TableName=aws.output("TableName"))
    assert aws.output("ApiUrl") == aws.api_url and aws.api_url.startswith("http://127.0.0.1:")
    with pytest.raises(KeyError, match="no output 'Nope'"):
        aws.output("Nope")


def test_a_cloudformation_created_function_runs_with_its_layer_importable(aws):
    lam = boto3.client("lambda")
    name = aws.function_name("EchoFunction")
    layers = lam.get_function_configuration(FunctionName=name)["Layers"]
    assert [layer["Arn"] for layer in layers] == [aws.resources[next(lid for lid in aws.resources if lid.startswith("SharedLayer"))]]
    answer = lam.invoke(FunctionName=name, Payload=json.dumps({"resource": "/x", "httpMethod": "GET"}).encode())
    assert "FunctionError" not in answer, answer["Payload"].read()
    assert json.loads(json.loads(answer["Payload"].read())["body"])["greeting"] == "hello from the layer"


def test_the_cloudformation_created_sqs_mapping_delivers_and_honours_batch_item_failures(aws):
    lam, sqs, table = boto3.client("lambda"), boto3.client("sqs"), boto3.resource("dynamodb").Table(aws.output("TableName"))
    mappings = lam.list_event_source_mappings(FunctionName=aws.function_name("BatchFunction"))["EventSourceMappings"]
    assert len(mappings) == 1 and mappings[0]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mappings[0]["BatchSize"] == 5 and mappings[0]["UUID"] == aws.resources["BatchFunctionWork"]
    tag = uuid.uuid4().hex[:8]
    sqs.send_message(QueueUrl=aws.output("WorkQueueUrl"), MessageBody=f"ok-{tag}")
    sqs.send_message(QueueUrl=aws.output("WorkQueueUrl"), MessageBody=f"fail-{tag}")
    poll(lambda: table.get_item(Key={"pk": f"batch#ok-{tag}"}).get("Item"), 30, "the good message was processed")

    def poisoned():  # reported failed -> redelivered after 2 s -> failed again -> DLQ (maxReceiveCount 2)
        got = sqs.receive_message(QueueUrl=aws.output("WorkDeadLetterQueueUrl"), WaitTimeSeconds=1,
                                  MaxNumberOfMessages=10).get("Messages", [])
        return [m for m in got if m["Body"] == f"fail-{tag}"]
    poll(poisoned, 40, "the reported failure reached the queue's DLQ")
    # moto never delivered the messages itself (it would have ignored batchItemFailures)
    assert not table.get_item(Key={"pk": f"batch#fail-{tag}"}).get("Item")


def test_an_async_failure_reaches_the_on_failure_destination_after_its_retries(aws):
    lam, sqs = boto3.client("lambda"), boto3.client("sqs")
    table = boto3.resource("dynamodb").Table(aws.output("TableName"))
    config = lam.get_function_event_invoke_config(FunctionName=aws.function_name("FailingFunction"))
    assert config["MaximumRetryAttempts"] == 1
    tag = uuid.uuid4().hex[:8]
    lam.invoke(FunctionName=aws.function_name("FailingFunction"), InvocationType="Event",
               Payload=json.dumps({"id": tag}).encode())

    def failure_record():
        got = sqs.receive_message(QueueUrl=aws.output("FailuresQueueUrl"), WaitTimeSeconds=1,
                                  MaxNumberOfMessages=10).get("Messages", [])
        return [json.loads(m["Body"]) for m in got if json.loads(m["Body"]).get("requestPayload", {}).get("id") == tag]
    record = poll(failure_record, 40, "the failed event reached FailuresQueue")[0]
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert record["requestContext"]["approximateInvokeCount"] == 2
    assert table.get_item(Key={"pk": f"failing#{tag}"})["Item"]["attempts"] == 2  # one try + one retry

    def dead_letter():  # the function's DeadLetterConfig (SAM DeadLetterQueue) gets the original event too
        got = sqs.receive_message(QueueUrl=aws.output("DeadLettersQueueUrl"), WaitTimeSeconds=1, MaxNumberOfMessages=10,
                                  MessageAttributeNames=["All"]).get("Messages", [])
        return [m for m in got if json.loads(m["Body"]).get("id") == tag]
    message = poll(dead_letter, 20, "the failed event reached the function's dead-letter queue")[0]
    assert "failing on purpose" in message["MessageAttributes"]["ErrorMessage"]["StringValue"]


def test_the_schedule_rule_fires_the_function_at_the_local_rate(aws):
    events = boto3.client("events")
    rule = events.describe_rule(Name=aws.resources["TickFunctionTick"])
    assert rule["ScheduleExpression"] == "rate(1 minute)"  # what AWS and moto accept
    tags = events.list_tags_for_resource(ResourceARN=rule["Arn"])["Tags"]
    assert {"Key": "cloudlab:local-schedule", "Value": "rate(2 seconds)"} in tags
    table = boto3.resource("dynamodb").Table(aws.output("TableName"))

    def fired_twice():
        item = table.get_item(Key={"pk": "tick"}).get("Item")
        return item if item and item["fired"] >= 2 else None
    item = poll(fired_twice, 40, "the sweeper-like function was fired twice")
    assert item["detail_type"] == "Scheduled Event"


def test_the_api_front_routes_both_paths_with_path_parameters_and_gets_the_cors_settings(aws):
    request = urllib.request.Request(aws.api_url + "/items", data=b'{"a": 1}', method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        created = json.loads(response.read())
    assert created["resource"] == "/items" and created["method"] == "POST" and created["body"] == '{"a": 1}'
    with urllib.request.urlopen(aws.api_url + "/items/item-42", timeout=30) as response:
        read = json.loads(response.read())
    assert read["resource"] == "/items/{item_id}" and read["path_parameters"] == {"item_id": "item-42"}
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(aws.api_url + "/elsewhere", timeout=30)
    assert missing.value.code == 403
    assert aws.api_front.cors == {"AllowOrigin": "*", "AllowHeaders": "Content-Type", "AllowMethods": "GET,POST,OPTIONS"}


def test_the_topic_delivers_to_its_subscribed_queue(aws):
    sqs = boto3.client("sqs")
    policy = json.loads(sqs.get_queue_attributes(QueueUrl=aws.output("NotesQueueUrl"),
                                                 AttributeNames=["Policy"])["Attributes"]["Policy"])
    assert policy["Statement"][0]["Condition"]["ArnEquals"]["aws:SourceArn"] == aws.output("TopicArn")
    tag = uuid.uuid4().hex
    boto3.client("sns").publish(TopicArn=aws.output("TopicArn"), Message=tag)

    def delivered():
        got = sqs.receive_message(QueueUrl=aws.output("NotesQueueUrl"), WaitTimeSeconds=1).get("Messages", [])
        return [m for m in got if json.loads(m["Body"]).get("Message") == tag]
    poll(delivered, 20, "the SNS message reached the subscribed queue")


# -- overrides, redeploy, teardown (their own stacks) ------------------------------------------------------
def test_overrides_replace_a_layer_file_and_redeploy_replaces_and_teardown_removes_everything(stack):
    cloudlab.use_backend()
    lam, cfn, sqs = boto3.client("lambda"), boto3.client("cloudformation"), boto3.client("sqs")
    first = deploy("fixture-b", template=FIXTURE, api=False)
    second = deploy("fixture-b", template=FIXTURE, api=False,
                    overrides={"layer/python/fixture_shared.py": 'GREETING = "overridden by a student"\n'})
    names = [f["FunctionName"] for f in lam.list_functions()["Functions"] if f["FunctionName"].startswith("fixture-b-")]
    assert sorted(names) == sorted(second.function_names.values())  # replaced: the first stack's functions are gone
    assert first.function_name("EchoFunction") not in names
    answer = lam.invoke(FunctionName=second.function_name("EchoFunction"), Payload=b'{"resource": "/", "httpMethod": "GET"}')
    assert json.loads(json.loads(answer["Payload"].read())["body"])["greeting"] == "overridden by a student"
    mappings = [m for m in lam.list_event_source_mappings()["EventSourceMappings"]
                if ":function:fixture-b-" in m["FunctionArn"]]
    assert [m["UUID"] for m in mappings] == [second.resources["BatchFunctionWork"]]
    subscription = second.resources["NotesSubscription"]

    second.teardown()
    with pytest.raises(Exception, match="does not exist"):
        cfn.describe_stacks(StackName="fixture-b")
    assert not [f for f in lam.list_functions()["Functions"] if f["FunctionName"].startswith("fixture-b-")]
    assert not [m for m in lam.list_event_source_mappings()["EventSourceMappings"] if ":function:fixture-b-" in m["FunctionArn"]]
    assert subscription not in [s["SubscriptionArn"] for s in boto3.client("sns").list_subscriptions()["Subscriptions"]]
    assert not [u for u in sqs.list_queues(QueueNamePrefix="fixture-b-").get("QueueUrls", [])]
    assert teardown("fixture-b") is False  # nothing left to delete
    # the shared stack is untouched
    assert cfn.describe_stacks(StackName="fixture")["Stacks"][0]["StackStatus"] == "CREATE_COMPLETE"


def test_the_cli_registers_deploy_and_teardown(capsys):
    from cloudlab.__main__ import main

    with pytest.raises(SystemExit):
        main(["pipeline", "--help"])
    assert "deploy" in capsys.readouterr().out
    cloudlab.use_backend()
    assert main(["pipeline", "teardown", "--stack", "never-deployed"]) == 0
    assert "never-deployed was not deployed" in capsys.readouterr().out
    assert main(["pipeline", "deploy", "--template", str(FIXTURE), "--stack", "cli-fixture", "--json",
                 "--param", "TickSchedule=rate(1 hour)"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["stack"] == "cli-fixture" and printed["outputs"]["ApiUrl"].startswith("http://127.0.0.1:")
    assert any("AWS::SNS::Subscription" in note for note in printed["created_by_deployer"])
    assert main(["pipeline", "teardown", "--stack", "cli-fixture"]) == 0
    assert "cli-fixture deleted" in capsys.readouterr().out
    assert main(["pipeline", "deploy", "--template", str(FIXTURE), "--param", "TickSchedul=x"]) == 1
    assert "no parameter TickSchedul" in capsys.readouterr().err


def test_a_lab_override_of_the_capstone_layer_lands_in_the_layer_zip_only():
    import io
    import zipfile

    class RecordingS3:
        def __init__(self):
            self.objects = {}

        def put_object(self, Bucket, Key, Body):
            self.objects[Key] = Body

    s3 = RecordingS3()
    student = "def claim_job(table, job_id):\n    return True  # a student's version\n"
    sam = deployer.load_template(deployer.TEMPLATE)
    packaged, keys = deployer.package(sam, deployer.PIPELINE_DIR,
                                      {"layers/common/python/moderation/coordination.py": student},
                                      s3, "artifacts", "packages/lab")
    layer_id = next(lid for lid, r in sam["Resources"].items() if r["Type"] == "AWS::Serverless::LayerVersion")
    assert set(keys) == {layer_id, "UploadFunction", "StatusFunction", "DispatcherFunction",
                         "ModerationAnalyzerFunction", "CustomAnalyzerFunction", "SweeperFunction"}
    layer = zipfile.ZipFile(io.BytesIO(s3.objects[keys[layer_id]]))
    assert layer.read("python/moderation/coordination.py").decode() == student
    assert "python/moderation/decisions.py" in layer.namelist()  # the rest of the layer is still there
    assert packaged["Resources"][layer_id]["Properties"]["ContentUri"] == f"s3://artifacts/{keys[layer_id]}"
    upload = zipfile.ZipFile(io.BytesIO(s3.objects[keys["UploadFunction"]]))
    assert "app.py" in upload.namelist() and not any("coordination" in name for name in upload.namelist())
