"""Deploy the capstone's SAM template locally, as ``sam build`` + ``sam deploy`` do (notebook 06).

``deploy()`` takes ``template.yaml`` (or another SAM app's template) through the same steps
as the SAM CLI, with the same libraries, against the current backend:

1. **package**: zip each function's ``CodeUri`` folder and each layer's ``ContentUri`` folder
   (``overrides`` replace files first: how lab 06 runs a student's ``coordination.py`` inside
   the real pipeline), upload the zips to an artifacts bucket, and point the template at them;
2. **translate** the ``AWS::Serverless-2016-10-31`` transform with ``aws-sam-translator``
   (the library behind SAM and CloudFormation's own transform), offline: the managed-policy
   names come from the map bundled with the translator, not from IAM;
3. **create the stack** through CloudFormation on the embedded backend (moto's), and wait for
   ``CREATE_COMPLETE`` to a deadline;
4. **fill the gaps**: every resource moto's CloudFormation skipped, and every property it
   dropped, is created or set from the same translated template with boto3, and listed in
   :data:`Stack.created_by_deployer` (the README's section "The capstone pipeline:
   deployment" prints the list). What moto 5.2.5 lacks for this template:
   ``AWS::SNS::Subscription``, ``AWS::SQS::QueuePolicy``, ``AWS::Lambda::EventInvokeConfig``,
   ``AWS::ApiGateway::Stage`` (skipped), a function's ``Layers`` (dropped), a RestApi's
   swagger ``Body`` (its paths are not imported: the local API front serves them);
5. **serve**: the local Lambda service runs the functions CloudFormation created (their
   layers unpacked where ``/opt/python`` would be), polls the SQS mappings it created, fires
   the schedule rules, and sends failed async invokes to their destinations; an
   ``ApiGatewayFront`` serves the API's routes (path parameters, the template's ``Cors``).

Under ``CLOUDLAB_BACKEND=localstack`` the S3 buckets, SQS queues, SNS topics (with their
subscriptions and queue policies) are created in LocalStack with boto3 from the translated
template (LocalStack's CloudFormation is not used), and so are the SQS event source mappings
(in the local Lambda service, which polls LocalStack's queues); everything else (functions,
layers, roles, the DynamoDB table, rules) goes through the embedded backend's CloudFormation,
with the LocalStack resources' names and ARNs written into the template in their place
(``backend.EMBEDDED_UNDER_LOCALSTACK`` says why DynamoDB, Lambda, IAM and Logs stay embedded).
The artifacts bucket is always the embedded backend's: that is where its Lambda reads code.

The API front runs in the deploying process: ``Stack.api_url`` answers as long as it runs.
For real AWS use ``sam deploy --guided`` with the same template (README).
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import os
import re
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

PIPELINE_DIR = Path(__file__).resolve().parent
TEMPLATE = PIPELINE_DIR / "template.yaml"
ARTIFACTS_BUCKET = "cloudlab-sam-artifacts"
ACCOUNT_FOR_ARNS = "123456789012"  # the embedded backend's one account (moto's default)

# Timings a local run shortens (a template Parameter is only passed when the template declares it).
# The sweeper's rate is in seconds, which AWS and moto refuse: see lambda_service.schedules.
LOCAL_PARAMETERS = {
    "StuckAfterSeconds": "30",
    "SweepSchedule": "rate(5 seconds)",
    "JobsVisibilityTimeout": "10",
    "DispatcherTimeout": "10",
}
# Resource types that go to LocalStack under CLOUDLAB_BACKEND=localstack (created with boto3).
LOCALSTACK_TYPES = ("AWS::S3::Bucket", "AWS::SQS::Queue", "AWS::SNS::Topic", "AWS::SNS::Subscription",
                    "AWS::SQS::QueuePolicy", "AWS::Lambda::EventSourceMapping")
_CREATE_ORDER = {"AWS::SQS::Queue": 0, "AWS::SNS::Topic": 1, "AWS::S3::Bucket": 1, "AWS::SQS::QueuePolicy": 2,
                 "AWS::SNS::Subscription": 3, "AWS::Lambda::EventSourceMapping": 4}


class DeployError(RuntimeError):
    """The template could not be packaged, translated or deployed; the message says what to do."""


# -- the template ------------------------------------------------------------------------------------
def load_template(path: str | os.PathLike = TEMPLATE) -> dict:
    """The SAM template as a dict, with CloudFormation's short tags (``!Ref``, ``!GetAtt``, ``!Sub``)."""
    from samtranslator.yaml_helper import yaml_parse

    path = Path(path)
    if not path.is_file():
        raise DeployError(f"no SAM template at {path}")
    return yaml_parse(path.read_text())


def lint(path: str | os.PathLike = TEMPLATE) -> list[str]:
    """cfn-lint's findings for a template (errors and warnings), one line each; ``[]`` if clean.
    ``make test`` runs it on ``template.yaml`` (tests/test_pipeline_deploy.py)."""
    from cfnlint.api import lint as cfn_lint

    path = Path(path)
    return [f"{path.name}:{match.linenumber}: {match.rule.id} {match.message}" for match in cfn_lint(path.read_text())]


def parameter_values(template: dict, parameters: dict | None = None, local: bool = True) -> dict[str, str]:
    """The template's Parameters: its defaults, then :data:`LOCAL_PARAMETERS` (when ``local``),
    then ``parameters``. An unknown name is an error, so a typo does not pass unnoticed."""
    declared = template.get("Parameters") or {}
    unknown = sorted(set(parameters or {}) - set(declared))
    if unknown:
        raise DeployError(f"the template declares no parameter {', '.join(unknown)} "
                          f"(it has: {', '.join(sorted(declared)) or 'none'})")
    values = {name: str(spec["Default"]) for name, spec in declared.items() if "Default" in spec}
    if local:
        values.update({name: value for name, value in LOCAL_PARAMETERS.items() if name in declared})
    values.update({name: str(value) for name, value in (parameters or {}).items()})
    missing = sorted(set(declared) - set(values))
    if missing:
        raise DeployError(f"parameters without a value: {', '.join(missing)}")
    return values


def zip_folder(folder: Path, replacements: dict[str, str] | None = None) -> bytes:
    """A deterministic zip of ``folder`` (``__pycache__`` left out), with ``replacements``
    (path inside the folder -> text) written instead of, or next to, the files on disk."""
    replacements = dict(replacements or {})
    files = {path.relative_to(folder).as_posix(): path for path in sorted(folder.rglob("*"))
             if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(set(files) | set(replacements)):
            info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            data = replacements[name].encode() if name in replacements else files[name].read_bytes()
            archive.writestr(info, data)
    return buffer.getvalue()


def package(template: dict, root: Path, overrides: dict[str, str] | None, s3, bucket: str,
            prefix: str) -> tuple[dict, dict[str, str]]:
    """``sam package``: zip and upload every local ``CodeUri``/``ContentUri``; the template with
    ``s3://`` URIs instead, and ``{logical id: s3 key}``.

    ``overrides`` keys are paths relative to the template's folder
    (``layers/common/python/moderation/coordination.py``); each must fall inside a zipped folder.
    """
    packaged = copy.deepcopy(template)
    overrides = {str(Path(name).as_posix()).lstrip("./"): text for name, text in (overrides or {}).items()}
    global_code = ((packaged.get("Globals") or {}).get("Function") or {}).get("CodeUri")
    folders: dict[str, tuple[str, Path, str]] = {}  # logical id -> (property, folder, path from the root)
    for logical_id, resource in (packaged.get("Resources") or {}).items():
        kind = resource.get("Type")
        prop = {"AWS::Serverless::Function": "CodeUri", "AWS::Serverless::LayerVersion": "ContentUri"}.get(kind)
        if prop is None:
            continue
        properties = resource.setdefault("Properties", {})
        uri = properties.get(prop, global_code if kind == "AWS::Serverless::Function" else None)
        if properties.get("InlineCode") or (isinstance(uri, str) and uri.startswith("s3://")) or isinstance(uri, dict):
            continue
        if not isinstance(uri, str):
            raise DeployError(f"{logical_id}: no {prop} to package")
        folder = (root / uri).resolve()
        if not folder.is_dir():
            raise DeployError(f"{logical_id}: {prop} {uri} is not a folder next to the template ({folder})")
        folders[logical_id] = (prop, folder, folder.relative_to(root.resolve()).as_posix())
    unused = sorted(name for name in overrides
                    if not any(name.startswith(relative + "/") for _, _, relative in folders.values()))
    if unused:
        raise DeployError(f"overrides name files outside every function and layer folder: {', '.join(unused)}")
    uploaded: dict[str, str] = {}
    for logical_id, (prop, folder, relative) in folders.items():
        mine = {name[len(relative) + 1:]: text for name, text in overrides.items() if name.startswith(relative + "/")}
        code = zip_folder(folder, mine)
        key = f"{prefix}/{logical_id}-{hashlib.sha256(code).hexdigest()[:16]}.zip"
        s3.put_object(Bucket=bucket, Key=key, Body=code)
        packaged["Resources"][logical_id]["Properties"][prop] = f"s3://{bucket}/{key}"
        uploaded[logical_id] = key
    return packaged, uploaded


class _BundledManagedPolicies:
    """aws-sam-translator's managed-policy loader, offline: the map the translator ships."""

    def load(self) -> dict[str, str]:
        from samtranslator.internal.managed_policies import get_bundled_managed_policy_map

        return dict(get_bundled_managed_policy_map("aws") or {})


def translate(template: dict, parameters: dict[str, str], region: str) -> dict:
    """The SAM transform, as CloudFormation runs it: plain CloudFormation out."""
    from samtranslator.model.exceptions import InvalidDocumentException
    from samtranslator.translator.transform import transform

    import logging

    # The translator's usage metrics are for AWS's own service; unpublished here, and it says so.
    logging.getLogger("samtranslator.metrics.metrics").setLevel(logging.ERROR)
    previous = os.environ.get("AWS_DEFAULT_REGION")
    os.environ["AWS_DEFAULT_REGION"] = region  # the translator's pseudo parameters read it
    try:
        return transform(copy.deepcopy(template), dict(parameters), _BundledManagedPolicies())
    except InvalidDocumentException as error:
        raise DeployError("the SAM template does not translate: " + "; ".join(
            str(cause) for cause in error.causes)) from None
    finally:
        if previous is None:
            os.environ.pop("AWS_DEFAULT_REGION", None)
        else:
            os.environ["AWS_DEFAULT_REGION"] = previous


# -- intrinsic functions, for what boto3 creates ----------------------------------------------------
class _Unresolved(Exception):
    pass


class Resolver:
    """Resolves ``Ref``, ``Fn::GetAtt``, ``Fn::Sub``, ``Fn::Join``, ``Fn::Select``, ``Fn::Split``
    against known resources; ``partial`` leaves references to unknown resources in place."""

    def __init__(self, parameters: dict[str, str], pseudo: dict[str, str]) -> None:
        self.parameters, self.pseudo = parameters, pseudo
        self.refs: dict[str, str] = {}
        self.attributes: dict[tuple[str, str], str] = {}

    def ref(self, name: str) -> str:
        for table in (self.pseudo, self.parameters, self.refs):
            if name in table:
                return table[name]
        raise _Unresolved(name)

    def get_att(self, name: str, attribute: str) -> str:
        try:
            return self.attributes[(name, attribute)]
        except KeyError:
            raise _Unresolved(f"{name}.{attribute}") from None

    def resolve(self, value, partial: bool = False):
        try:
            return self._resolve(value, partial)
        except _Unresolved as missing:
            raise DeployError(f"cannot resolve {missing} in {json.dumps(value)[:200]}") from None

    def _resolve(self, value, partial: bool):
        if isinstance(value, list):
            return [item for item in (self._resolve(v, partial) for v in value) if item is not _NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            (key, argument), = value.items()
            try:
                if key == "Ref":
                    return _NO_VALUE if argument == "AWS::NoValue" else self.ref(argument)
                if key == "Fn::GetAtt":
                    name, attribute = argument.split(".", 1) if isinstance(argument, str) else argument
                    return self.get_att(name, attribute)
                if key == "Fn::Sub":
                    text, variables = (argument, {}) if isinstance(argument, str) else argument
                    variables = {k: self._resolve(v, False) for k, v in variables.items()}
                    return re.sub(r"\$\{([^}!]+)\}", lambda m: self._sub_variable(m.group(1), variables, partial), text) \
                        if not partial else self._partial_sub(text, variables, value)
                if key == "Fn::Join":
                    separator, items = argument
                    return separator.join(str(item) for item in self._resolve(items, False))
                if key == "Fn::Select":
                    index, items = argument
                    return self._resolve(items, False)[int(self._resolve(index, False))]
                if key == "Fn::Split":
                    separator, text = argument
                    return str(self._resolve(text, False)).split(separator)
            except _Unresolved:
                if partial:
                    return value
                raise
            if key.startswith("Fn::"):
                raise DeployError(f"{key} is not resolved by the local deployer")
        return {k: v for k, v in ((k, self._resolve(v, partial)) for k, v in value.items()) if v is not _NO_VALUE}

    def _sub_variable(self, name: str, variables: dict, partial: bool) -> str:
        if name in variables:
            return str(variables[name])
        if "." in name and name.split(".", 1)[0] not in self.pseudo:
            resource, attribute = name.split(".", 1)
            return str(self.get_att(resource, attribute))
        return str(self.ref(name))

    def _partial_sub(self, text: str, variables: dict, original):
        def replace(match):
            try:
                return self._sub_variable(match.group(1), variables, False)
            except _Unresolved:
                return match.group(0)
        replaced = re.sub(r"\$\{([^}!]+)\}", replace, text)
        if "${" in replaced.replace("${!", ""):
            argument = original["Fn::Sub"]
            return {"Fn::Sub": replaced if isinstance(argument, str) else [replaced, argument[1]]}
        return replaced


_NO_VALUE = object()


# -- the deployed stack ---------------------------------------------------------------------------------
@dataclass
class Stack:
    """A deployed stack: its outputs, resource names, the local API front, ``teardown()``."""

    name: str
    backend: str
    outputs: dict[str, str]
    resources: dict[str, str]  # logical id -> physical id (names, URLs, ARNs)
    resource_types: dict[str, str]
    api_url: str | None
    created_by_deployer: list[str]  # "<logical id> (<type or property>): why", see the module docstring
    deploy_seconds: float
    template: dict = field(repr=False, default_factory=dict)  # the translated template
    cors: dict | None = None
    api_front: object = field(repr=False, default=None)
    _cleanup: list = field(repr=False, default_factory=list)

    def output(self, name: str) -> str:
        try:
            return self.outputs[name]
        except KeyError:
            raise KeyError(f"stack {self.name} has no output {name!r} (it has: {', '.join(sorted(self.outputs))})") from None

    def function_name(self, logical_id: str) -> str:
        """The deployed name of a function, by its logical id (``DispatcherFunction``)."""
        if self.resource_types.get(logical_id) != "AWS::Lambda::Function":
            raise KeyError(f"stack {self.name} has no function {logical_id!r}")
        return self.resources[logical_id]

    @property
    def function_names(self) -> dict[str, str]:
        return {lid: name for lid, name in self.resources.items()
                if self.resource_types.get(lid) == "AWS::Lambda::Function"}

    @property
    def bucket(self) -> str:
        """The upload bucket (``UploadBucket``)."""
        return self.resources["UploadBucket"]

    @property
    def table(self) -> str:
        """The jobs table (``JobsTable``)."""
        return self.resources["JobsTable"]

    @property
    def topic_arn(self) -> str:
        """The results topic (``ResultsTopic``)."""
        return self.resources["ResultsTopic"]

    @property
    def queue_urls(self) -> dict[str, str]:
        """Every queue of the stack: logical id -> URL (``JobsQueue``, ``AnalyzerDeadLetterQueue``...)."""
        return {lid: url for lid, url in self.resources.items() if self.resource_types.get(lid) == "AWS::SQS::Queue"}

    def queue_url(self, logical_id: str) -> str:
        if self.resource_types.get(logical_id) != "AWS::SQS::Queue":
            raise KeyError(f"stack {self.name} has no queue {logical_id!r}")
        return self.resources[logical_id]

    def teardown(self, timeout: float = 60) -> None:
        """Stop the API front, delete the stack and what the deployer created beside it."""
        if self.api_front is not None:
            self.api_front.stop()
            self.api_front = None
        _active_fronts.pop(self.name, None)
        teardown(self.name, timeout=timeout)


_active_fronts: dict[str, object] = {}


def _clients(backend):
    """boto3 clients: ``data`` for S3/SQS/SNS (LocalStack under localstack), ``embedded`` for the rest."""
    import boto3
    from botocore.config import Config

    embedded = backend.lambda_endpoint or backend.endpoint

    def client(service: str, endpoint: str | None, attempts: int = 3):
        config = Config(retries={"mode": "standard", "total_max_attempts": attempts})
        return boto3.client(service, endpoint_url=endpoint, region_name=backend.region, config=config)

    class Clients:
        def embedded(self, service: str, attempts: int = 3):
            return client(service, embedded, attempts)

        def data(self, service: str):
            return client(service, backend.endpoint)

    return Clients()


class _SkippedTypeFilter:
    """Drops moto's "No Moto CloudFormation support for <type>" log lines (and nothing else)."""

    def filter(self, record) -> bool:
        return not str(record.msg).startswith("No Moto CloudFormation support")


def _quiet_moto_about_skipped_types() -> None:
    """moto logs and warns for each resource type its CloudFormation skips; the deployer makes
    those itself and lists them in ``Stack.created_by_deployer``, so the messages only confuse."""
    import logging
    import warnings

    moto_logger = logging.getLogger("moto")
    if not any(isinstance(f, _SkippedTypeFilter) for f in moto_logger.filters):
        moto_logger.addFilter(_SkippedTypeFilter())
    warnings.filterwarnings("ignore", message=r"Tried to parse .* not supported by moto's CloudFormation",
                            category=UserWarning)


def _backend():
    """The backend this process chose (``use_backend("localstack")`` in a notebook wins over an
    unset ``CLOUDLAB_BACKEND``), started or attached to as ``use_backend`` does."""
    from ..backend import current, use_backend

    chosen = current()
    return use_backend(chosen.name if chosen is not None and not os.environ.get("CLOUDLAB_BACKEND") else None)


def _record_key(stack_name: str) -> str:
    return f"stacks/{stack_name}/deployer-resources.json"


def _wait_for_stack(cloudformation, stack_name: str, wanted: str, timeout: float) -> str:
    """Poll the stack's status until ``wanted`` or a terminal failure, to a deadline."""
    deadline = time.monotonic() + timeout
    delay = 0.05
    while True:
        try:
            status = cloudformation.describe_stacks(StackName=stack_name)["Stacks"][0]["StackStatus"]
        except Exception as error:
            if wanted == "DELETE_COMPLETE" and "does not exist" in str(error):
                return wanted
            raise
        if status == wanted:
            return status
        if status.endswith("_FAILED") or status.endswith("ROLLBACK_COMPLETE"):
            events = cloudformation.describe_stack_events(StackName=stack_name).get("StackEvents", [])
            reasons = [f"{e.get('LogicalResourceId')}: {e.get('ResourceStatusReason')}" for e in events
                       if e.get("ResourceStatusReason")]
            raise DeployError(f"stack {stack_name} ended {status}: {'; '.join(reasons[:5]) or 'no reason given'}")
        if time.monotonic() > deadline:
            raise DeployError(f"stack {stack_name} still {status} after {timeout:.0f} s")
        time.sleep(delay)
        delay = min(delay * 2, 0.5)


def teardown(stack_name: str = "moderation", timeout: float = 60) -> bool:
    """Delete a stack deployed by :func:`deploy` and what the deployer created beside it
    (works from another process: what it created is recorded in the artifacts bucket).
    False if there was nothing to delete."""
    backend = _backend()
    clients = _clients(backend)
    front = _active_fronts.pop(stack_name, None)
    if front is not None:
        front.stop()
    s3 = clients.embedded("s3")
    try:
        record = json.loads(s3.get_object(Bucket=ARTIFACTS_BUCKET, Key=_record_key(stack_name))["Body"].read())
    except Exception:
        record = {"created": []}
    found = False
    for entry in reversed(record.get("created", [])):
        found = True
        try:
            _delete_created(clients, entry)
        except Exception:
            pass  # already gone (deleted with its stack or by hand)
    cloudformation = clients.embedded("cloudformation")
    try:
        cloudformation.describe_stacks(StackName=stack_name)
        exists = True
    except Exception:
        exists = False
    if exists:
        found = True
        cloudformation.delete_stack(StackName=stack_name)
        _wait_for_stack(cloudformation, stack_name, "DELETE_COMPLETE", timeout)
    try:
        s3.delete_object(Bucket=ARTIFACTS_BUCKET, Key=_record_key(stack_name))
    except Exception:
        pass
    return found


def _delete_created(clients, entry: dict) -> None:
    kind, physical = entry["type"], entry["physical"]
    where = clients.data if entry.get("where") == "data" else clients.embedded
    if kind == "AWS::SNS::Subscription":
        where("sns").unsubscribe(SubscriptionArn=physical)
    elif kind == "AWS::SQS::Queue":
        where("sqs").delete_queue(QueueUrl=physical)
    elif kind == "AWS::SNS::Topic":
        where("sns").delete_topic(TopicArn=physical)
    elif kind == "AWS::S3::Bucket":
        s3 = where("s3")
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=physical):
            for item in page.get("Contents", []):
                s3.delete_object(Bucket=physical, Key=item["Key"])
        s3.delete_bucket(Bucket=physical)
    elif kind == "AWS::Lambda::EventSourceMapping":
        where("lambda").delete_event_source_mapping(UUID=physical)
    # queue policies, invoke configs and layer settings go with their queue or function


# -- deploy ---------------------------------------------------------------------------------------------
def deploy(stack_name: str = "moderation", parameters: dict | None = None, overrides: dict[str, str] | None = None,
           *, template: str | os.PathLike | None = None, model: bool | None = None, local_timings: bool = True,
           timeout: float = 120, api: bool = True) -> Stack:
    """Deploy ``template`` (default: the capstone's ``template.yaml``) as stack ``stack_name``.

    ``parameters`` override the template's Parameters (after :data:`LOCAL_PARAMETERS` when
    ``local_timings``); ``overrides`` replace files in the zips (see :func:`package`);
    ``model`` trains and uploads the custom model (default: only for the capstone's template).
    Deploying a name that exists replaces that stack. Returns a :class:`Stack`.
    """
    started = time.perf_counter()
    _quiet_moto_about_skipped_types()
    backend = _backend()
    if backend.name == "aws":
        raise DeployError("the local deployer does not deploy to real AWS; use `sam deploy --guided` "
                          "with the same template (README, section The capstone pipeline: deployment)")
    template_path = Path(template) if template is not None else TEMPLATE
    if model is None:
        model = template_path.resolve() == TEMPLATE
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9-]{0,100}", stack_name):
        raise DeployError(f"stack name {stack_name!r}: letters, digits and hyphens, starting with a letter")
    sam = load_template(template_path)
    values = parameter_values(sam, parameters, local=local_timings)
    clients = _clients(backend)
    teardown(stack_name)  # idempotent: a second deploy replaces the first

    s3 = clients.embedded("s3")
    try:
        s3.head_bucket(Bucket=ARTIFACTS_BUCKET)
    except Exception:
        s3.create_bucket(Bucket=ARTIFACTS_BUCKET)
    packaged, _ = package(sam, template_path.parent, overrides, s3, ARTIFACTS_BUCKET, f"packages/{stack_name}")
    translated = translate(packaged, values, backend.region)
    resources = translated.get("Resources") or {}
    resolver = Resolver(values, {"AWS::Region": backend.region, "AWS::AccountId": ACCOUNT_FOR_ARNS,
                                 "AWS::StackName": stack_name, "AWS::Partition": "aws",
                                 "AWS::URLSuffix": "amazonaws.com", "AWS::StackId": stack_name})
    created: list[dict] = []
    notes: list[str] = []
    _shorten_schedules(translated, resolver, notes)

    # Under localstack: S3, SQS, SNS (and the mappings polling its queues) first, in LocalStack.
    cfn_template = translated
    if backend.name == "localstack":
        outside = {lid for lid, r in resources.items() if r["Type"] in LOCALSTACK_TYPES}
        try:
            _create_with_boto3(clients, resources, _dependency_order(resources, outside),
                               resolver, created, notes, stack_name, where="data", skip_mappings=True)
        except BaseException:
            _save_record(s3, stack_name, created)
            raise
        cfn_template = _without(translated, outside, resolver)

    _name_rest_apis(cfn_template, resolver, notes)
    cfn_template = _without_api_deployments(cfn_template, resolver, notes)
    cloudformation = clients.embedded("cloudformation", attempts=1)  # a retried CreateStack would find it half made
    declared = set((cfn_template.get("Parameters") or {}))
    try:
        cloudformation.create_stack(
            StackName=stack_name, TemplateBody=json.dumps(cfn_template),
            Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in values.items() if k in declared],
            Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"])
    except Exception as error:
        _save_record(s3, stack_name, created)
        teardown(stack_name)
        raise DeployError(f"CloudFormation refused stack {stack_name}: {error}") from None
    try:
        _wait_for_stack(cloudformation, stack_name, "CREATE_COMPLETE", timeout)
        stack_resources = {r["LogicalResourceId"]: r for r in
                           cloudformation.describe_stack_resources(StackName=stack_name)["StackResources"]
                           if r.get("LogicalResourceId")}
        for lid, row in stack_resources.items():
            if row["ResourceType"] == "AWS::Lambda::LayerVersion" and not row.get("PhysicalResourceId"):
                row["PhysicalResourceId"] = _find_layer(clients.embedded("lambda"), stack_name, lid, notes)
            if not row.get("PhysicalResourceId"):
                continue  # moto gives permissions none; nothing references them
            _learn(clients.embedded, resolver, lid, row["ResourceType"], row["PhysicalResourceId"])
        skipped = [lid for lid in (cfn_template.get("Resources") or {}) if lid not in stack_resources]
        _create_with_boto3(clients, resources, _dependency_order(resources, skipped),
                           resolver, created, notes, stack_name, where="embedded")
        if backend.name == "localstack":  # the mappings poll LocalStack's queues from the local service
            mappings = [lid for lid, r in resources.items() if r["Type"] == "AWS::Lambda::EventSourceMapping"]
            _create_with_boto3(clients, resources, mappings, resolver, created, notes, stack_name, where="embedded")
        _fill_function_properties(clients, resources, resolver, notes)
        _check_mappings(clients, resources, resolver, notes)
    finally:
        _save_record(s3, stack_name, created)

    outputs = {o["OutputKey"]: o["OutputValue"] for o in
               cloudformation.describe_stacks(StackName=stack_name)["Stacks"][0].get("Outputs", [])}
    # moto's CloudFormation answers a queue's Ref with an amazonaws.com URL and knows nothing of
    # LocalStack's resources: the deployer's own resolution (the URLs boto3 uses here) wins.
    for name, spec in (translated.get("Outputs") or {}).items():
        try:
            outputs[name] = str(resolver.resolve(spec["Value"]))
        except DeployError:
            pass
    physical = {lid: resolver.refs[lid] for lid in resources if lid in resolver.refs}
    types = {lid: r["Type"] for lid, r in resources.items()}
    stack = Stack(name=stack_name, backend=backend.name, outputs=outputs, resources=physical, resource_types=types,
                  api_url=None, created_by_deployer=notes, deploy_seconds=0.0, template=translated)
    if api:
        front, cors = _start_api(translated, resolver, clients)
        if front is not None:
            stack.api_front, stack.cors, stack.api_url = front, cors, front.url
            _active_fronts[stack_name] = front
            outputs["ApiUrl"] = front.url
    if model:
        upload_model(stack)
    stack.deploy_seconds = round(time.perf_counter() - started, 3)
    return stack


def _name_rest_apis(template: dict, resolver: Resolver, notes: list[str]) -> None:
    """moto's CloudFormation requires a RestApi's ``Name``; AWS takes it from the swagger
    ``Body`` (``info.title``), which is all SAM writes."""
    for lid, resource in (template.get("Resources") or {}).items():
        properties = resource.get("Properties") or {}
        if resource["Type"] == "AWS::ApiGateway::RestApi" and "Name" not in properties:
            title = ((properties.get("Body") or {}).get("info") or {}).get("title") or lid
            properties["Name"] = resolver.resolve(title)
            notes.append(f"{lid} (AWS::ApiGateway::RestApi Name): moto needs it; set from the swagger title. "
                         "Its Body's paths are not imported by moto: the local API front serves them")


def _without_api_deployments(template: dict, resolver: Resolver, notes: list[str]) -> dict:
    """moto refuses an ``AWS::ApiGateway::Deployment`` of a RestApi whose methods are in its
    swagger ``Body`` ("The REST API doesn't contain any methods": it does not import the Body),
    and has no ``AWS::ApiGateway::Stage``: both are left out; the local API front is the stage."""
    dropped = {lid for lid, r in (template.get("Resources") or {}).items()
               if r["Type"] in ("AWS::ApiGateway::Deployment", "AWS::ApiGateway::Stage")}
    for lid in sorted(dropped):
        kind = template["Resources"][lid]["Type"]
        resolver.refs[lid] = (template["Resources"][lid].get("Properties") or {}).get("StageName", lid)
        why = ("moto refuses it (it does not import the RestApi's swagger Body, so finds no methods)"
               if kind == "AWS::ApiGateway::Deployment" else "moto's CloudFormation has no such resource type")
        notes.append(f"{lid} ({kind}): not created, {why}; the local API front serves the stage")
    return _without(template, dropped, resolver) if dropped else template


def _save_record(s3, stack_name: str, created: list[dict]) -> None:
    s3.put_object(Bucket=ARTIFACTS_BUCKET, Key=_record_key(stack_name), Body=json.dumps({"created": created}).encode())


def _shorten_schedules(translated: dict, resolver: Resolver, notes: list[str]) -> None:
    """A rate in seconds (only the local scheduler accepts it) becomes ``rate(1 minute)`` for
    moto plus the ``cloudlab:local-schedule`` tag the local scheduler reads instead."""
    from ..lambda_service.schedules import LOCAL_SCHEDULE_TAG, rate_seconds

    for lid, resource in (translated.get("Resources") or {}).items():
        if resource["Type"] != "AWS::Events::Rule":
            continue
        properties = resource.setdefault("Properties", {})
        expression = resolver.resolve(properties.get("ScheduleExpression"))
        seconds = rate_seconds(expression) if isinstance(expression, str) else None
        if seconds is not None and seconds < 60:
            properties["ScheduleExpression"] = "rate(1 minute)"
            properties["Tags"] = list(properties.get("Tags") or []) + [{"Key": LOCAL_SCHEDULE_TAG, "Value": expression}]
            notes.append(f"{lid} (AWS::Events::Rule ScheduleExpression): {expression} is shorter than the 1-minute "
                         f"minimum of AWS and moto; the rule gets rate(1 minute) and the tag {LOCAL_SCHEDULE_TAG}, "
                         "which the local scheduler fires instead")


def _without(translated: dict, outside: set[str], resolver: Resolver) -> dict:
    """The template less the resources created elsewhere, their names and ARNs written in."""
    template = copy.deepcopy(translated)
    template["Resources"] = {lid: r for lid, r in template["Resources"].items() if lid not in outside}
    for resource in template["Resources"].values():
        depends = resource.get("DependsOn")
        if isinstance(depends, str):
            depends = [depends]
        if depends is not None:
            kept = [d for d in depends if d not in outside]
            if kept:
                resource["DependsOn"] = kept
            else:
                resource.pop("DependsOn")
        if "Properties" in resource:
            resource["Properties"] = resolver.resolve(resource["Properties"], partial=True)
    if "Outputs" in template:
        template["Outputs"] = {name: spec for name, spec in ((n, dict(s, Value=resolver.resolve(s["Value"], partial=True)))
                                                             for n, s in template["Outputs"].items())}
    return template


def _references(value) -> set[str]:
    """Logical ids a template fragment refers to (Ref, Fn::GetAtt, ${...} in Fn::Sub)."""
    found: set[str] = set()
    if isinstance(value, list):
        for item in value:
            found |= _references(item)
    elif isinstance(value, dict):
        for key, argument in value.items():
            if key == "Ref" and isinstance(argument, str):
                found.add(argument)
            elif key == "Fn::GetAtt":
                found.add(argument.split(".")[0] if isinstance(argument, str) else argument[0])
            elif key == "Fn::Sub":
                text = argument if isinstance(argument, str) else argument[0]
                found |= {name.split(".")[0] for name in re.findall(r"\$\{([^}!]+)\}", text)}
                if not isinstance(argument, str):
                    found |= _references(argument[1])
            else:
                found |= _references(argument)
    return found


def _dependency_order(resources: dict, logical_ids) -> list[str]:
    """``logical_ids`` ordered so each comes after the ones it refers to (a queue after its DLQ)."""
    wanted = set(logical_ids)
    ordered: list[str] = []
    visiting: set[str] = set()

    def visit(lid: str) -> None:
        if lid in ordered or lid not in wanted:
            return
        if lid in visiting:
            raise DeployError(f"{lid} refers to itself through other resources")
        visiting.add(lid)
        depends = resources[lid].get("DependsOn") or []
        for other in sorted(_references(resources[lid].get("Properties") or {}) | set(
                [depends] if isinstance(depends, str) else depends)):
            visit(other)
        visiting.discard(lid)
        ordered.append(lid)

    for lid in sorted(wanted, key=lambda lid: (_CREATE_ORDER.get(resources[lid]["Type"], 5), lid)):
        visit(lid)
    return ordered


def _queue_name(url_or_arn: str) -> str:
    return url_or_arn.rstrip("/").split("/")[-1].split(":")[-1]


def _learn(client, resolver: Resolver, lid: str, kind: str, physical: str) -> None:
    """Remember a resource's Ref value and the attributes the template reads (GetAtt)."""
    region, account = resolver.pseudo["AWS::Region"], resolver.pseudo["AWS::AccountId"]
    if kind == "AWS::SQS::Queue":
        sqs = client("sqs")
        url = sqs.get_queue_url(QueueName=_queue_name(physical))["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        resolver.refs[lid] = url
        resolver.attributes.update({(lid, "Arn"): arn, (lid, "QueueName"): _queue_name(arn), (lid, "QueueUrl"): url})
        return
    resolver.refs[lid] = physical
    if kind == "AWS::SNS::Topic":
        resolver.attributes.update({(lid, "TopicArn"): physical, (lid, "TopicName"): physical.split(":")[-1]})
    elif kind == "AWS::S3::Bucket":
        resolver.attributes.update({(lid, "Arn"): f"arn:aws:s3:::{physical}",
                                    (lid, "DomainName"): f"{physical}.s3.amazonaws.com"})
    elif kind == "AWS::Lambda::Function":
        resolver.attributes[(lid, "Arn")] = f"arn:aws:lambda:{region}:{account}:function:{physical}"
    elif kind == "AWS::IAM::Role":
        name = physical.split("/")[-1]
        resolver.attributes[(lid, "Arn")] = client("iam").get_role(RoleName=name)["Role"]["Arn"]
    elif kind == "AWS::DynamoDB::Table":
        resolver.attributes[(lid, "Arn")] = f"arn:aws:dynamodb:{region}:{account}:table/{physical}"
    elif kind == "AWS::ApiGateway::RestApi":
        resolver.attributes[(lid, "RootResourceId")] = ""
    elif kind == "AWS::Events::Rule":
        resolver.attributes[(lid, "Arn")] = f"arn:aws:events:{region}:{account}:rule/{physical}"


def _physical_name(stack_name: str, lid: str) -> str:
    """A CloudFormation-style generated name: stack-LogicalId-SUFFIX (SQS and S3 rules allow it)."""
    suffix = hashlib.sha256(f"{stack_name}/{lid}/{time.time_ns()}".encode()).hexdigest()[:12]
    return f"{stack_name}-{lid}-{suffix}"[:80]


def _create_with_boto3(clients, resources: dict, logical_ids: list[str], resolver: Resolver, created: list[dict],
                       notes: list[str], stack_name: str, where: str, skip_mappings: bool = False) -> None:
    """Create ``logical_ids`` from the translated template with boto3 (what moto's CloudFormation
    skipped, or, under localstack, what LocalStack serves)."""
    client = clients.data if where == "data" else clients.embedded
    because = ("LocalStack serves it; its CloudFormation is not used" if where == "data"
               else "moto's CloudFormation has no such resource type")
    for lid in logical_ids:
        resource = resources[lid]
        kind = resource["Type"]
        if skip_mappings and kind == "AWS::Lambda::EventSourceMapping":
            continue
        properties = resolver.resolve(resource.get("Properties") or {})
        if kind == "AWS::SQS::Queue":
            attributes = {}
            for name in ("VisibilityTimeout", "MessageRetentionPeriod", "DelaySeconds", "MaximumMessageSize",
                         "ReceiveMessageWaitTimeSeconds"):
                if name in properties:
                    attributes[name] = str(properties[name])
            if "RedrivePolicy" in properties:
                attributes["RedrivePolicy"] = json.dumps(properties["RedrivePolicy"])
            name = properties.get("QueueName") or _physical_name(stack_name, lid) + (".fifo" if properties.get("FifoQueue") else "")
            if properties.get("FifoQueue"):
                attributes["FifoQueue"] = "true"
            url = client("sqs").create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
            created.append({"logical": lid, "type": kind, "physical": url, "where": where})
            _learn(client, resolver, lid, kind, url)
        elif kind == "AWS::SNS::Topic":
            name = properties.get("TopicName") or _physical_name(stack_name, lid)
            arn = client("sns").create_topic(Name=name)["TopicArn"]
            created.append({"logical": lid, "type": kind, "physical": arn, "where": where})
            _learn(client, resolver, lid, kind, arn)
        elif kind == "AWS::S3::Bucket":
            name = properties.get("BucketName") or _physical_name(stack_name, lid).lower()[:63]
            client("s3").create_bucket(Bucket=name)
            created.append({"logical": lid, "type": kind, "physical": name, "where": where})
            _learn(client, resolver, lid, kind, name)
        elif kind == "AWS::SNS::Subscription":
            attributes = {}
            if "RawMessageDelivery" in properties:
                attributes["RawMessageDelivery"] = str(properties["RawMessageDelivery"]).lower()
            if "FilterPolicy" in properties:
                attributes["FilterPolicy"] = json.dumps(properties["FilterPolicy"])
            arn = client("sns").subscribe(TopicArn=properties["TopicArn"], Protocol=properties["Protocol"],
                                          Endpoint=properties["Endpoint"], Attributes=attributes,
                                          ReturnSubscriptionArn=True)["SubscriptionArn"]
            created.append({"logical": lid, "type": kind, "physical": arn, "where": where})
            resolver.refs[lid] = arn
        elif kind == "AWS::SQS::QueuePolicy":
            for url in properties["Queues"]:
                client("sqs").set_queue_attributes(QueueUrl=url, Attributes={"Policy": json.dumps(properties["PolicyDocument"])})
            resolver.refs[lid] = lid
        elif kind == "AWS::Lambda::EventInvokeConfig":
            arguments = {"FunctionName": properties["FunctionName"]}
            if properties.get("Qualifier") and properties["Qualifier"] != "$LATEST":
                arguments["Qualifier"] = properties["Qualifier"]
            for name in ("MaximumRetryAttempts", "MaximumEventAgeInSeconds"):
                if name in properties:
                    arguments[name] = int(properties[name])
            if properties.get("DestinationConfig"):
                arguments["DestinationConfig"] = properties["DestinationConfig"]
            clients.embedded("lambda").put_function_event_invoke_config(**arguments)
            resolver.refs[lid] = lid
        elif kind == "AWS::Lambda::EventSourceMapping":
            arguments = {k: properties[k] for k in ("EventSourceArn", "FunctionName", "BatchSize", "Enabled",
                                                    "MaximumBatchingWindowInSeconds", "FunctionResponseTypes",
                                                    "ScalingConfig") if k in properties}
            uuid = clients.embedded("lambda").create_event_source_mapping(**arguments)["UUID"]
            created.append({"logical": lid, "type": kind, "physical": uuid, "where": "embedded"})
            resolver.refs[lid] = uuid
        else:
            raise DeployError(f"{lid}: moto's CloudFormation skipped {kind} and the local deployer cannot create it")
        if kind != "AWS::Lambda::EventSourceMapping" or where == "data":
            notes.append(f"{lid} ({kind}): created with boto3, {because}")
        else:
            notes.append(f"{lid} ({kind}): created with boto3 in the local Lambda service, which polls LocalStack's queue")


def _find_layer(lam, stack_name: str, lid: str, notes: list[str]) -> str:
    """The ARN of the layer version moto's CloudFormation published for ``lid`` (moto returns
    no physical id for ``AWS::Lambda::LayerVersion``, so ``Ref`` to it cannot be read back)."""
    for layer in lam.list_layers()["Layers"]:
        if layer["LayerName"].startswith(f"{stack_name}-{lid}") or layer["LayerName"] == lid:
            notes.append(f"{lid} (AWS::Lambda::LayerVersion): created by moto without a physical id; "
                         "its ARN is read with list_layers")
            return layer["LatestMatchingVersion"]["LayerVersionArn"]
    raise DeployError(f"{lid}: moto's CloudFormation published no layer for it")


def _fill_function_properties(clients, resources: dict, resolver: Resolver, notes: list[str]) -> None:
    """Set function properties moto's CloudFormation dropped (``Layers``, ``DeadLetterConfig``),
    checked, not assumed."""
    lam = clients.embedded("lambda")
    for lid, resource in resources.items():
        if resource["Type"] != "AWS::Lambda::Function":
            continue
        properties = resource.get("Properties") or {}
        wanted = resolver.resolve(properties.get("Layers") or [])
        dead_letter = resolver.resolve(properties.get("DeadLetterConfig") or {})
        if not wanted and not dead_letter:
            continue
        name = resolver.refs[lid]
        configuration = lam.get_function_configuration(FunctionName=name)
        have = [layer["Arn"] for layer in configuration.get("Layers", [])]
        if wanted and have != wanted:
            lam.update_function_configuration(FunctionName=name, Layers=wanted)
            notes.append(f"{lid} (AWS::Lambda::Function Layers): dropped by moto's CloudFormation; "
                         "set with update_function_configuration")
        if dead_letter and (configuration.get("DeadLetterConfig") or {}).get("TargetArn") != dead_letter.get("TargetArn"):
            lam.update_function_configuration(FunctionName=name, DeadLetterConfig=dead_letter)
            notes.append(f"{lid} (AWS::Lambda::Function DeadLetterConfig): dropped by moto's CloudFormation; "
                         "set with update_function_configuration")


def _check_mappings(clients, resources: dict, resolver: Resolver, notes: list[str]) -> None:
    """The local service must poll every mapping of the template with its settings; a missing
    one or a dropped ``FunctionResponseTypes`` is an error, not a silent difference."""
    lam = clients.embedded("lambda")
    for lid, resource in resources.items():
        if resource["Type"] != "AWS::Lambda::EventSourceMapping":
            continue
        try:
            mapping = lam.get_event_source_mapping(UUID=resolver.refs[lid])
        except Exception as error:
            raise DeployError(f"{lid}: the local Lambda service does not poll mapping {resolver.refs.get(lid)} ({error})") from None
        wanted = resolver.resolve((resource.get("Properties") or {}).get("FunctionResponseTypes") or [])
        if sorted(mapping.get("FunctionResponseTypes") or []) != sorted(wanted):
            lam.update_event_source_mapping(UUID=mapping["UUID"], FunctionResponseTypes=wanted)
            notes.append(f"{lid} (AWS::Lambda::EventSourceMapping FunctionResponseTypes): set with boto3")


# -- the API -----------------------------------------------------------------------------------------------
def api_routes(translated: dict, resolver: Resolver) -> tuple[dict[str, str], dict | None, str]:
    """``({"GET /jobs/{job_id}": function name}, cors, stage)`` from the RestApi's swagger Body.

    Routes are the ``aws_proxy`` integrations; ``cors`` is read from the ``OPTIONS`` mock
    integrations SAM writes for the template's ``Cors`` (quotes removed)."""
    routes: dict[str, str] = {}
    cors = None
    stage = "prod"
    resources = translated.get("Resources") or {}
    for resource in resources.values():
        if resource["Type"] == "AWS::ApiGateway::Stage":
            stage = resource.get("Properties", {}).get("StageName", stage)
    for lid, resource in resources.items():
        if resource["Type"] != "AWS::ApiGateway::RestApi":
            continue
        body = (resource.get("Properties") or {}).get("Body") or {}
        for path, methods in (body.get("paths") or {}).items():
            for method, spec in methods.items():
                integration = (spec or {}).get("x-amazon-apigateway-integration") or {}
                if integration.get("type") == "aws_proxy":
                    uri = integration.get("uri")
                    text = uri.get("Fn::Sub") if isinstance(uri, dict) else uri
                    text = text[0] if isinstance(text, list) else text
                    match = re.search(r"\$\{(\w+)\.Arn\}", str(text))
                    if not match:
                        raise DeployError(f"{lid} {method.upper()} {path}: cannot tell which function {uri} invokes")
                    verb = "ANY" if method == "x-amazon-apigateway-any-method" else method.upper()
                    routes[f"{verb} {path}"] = resolver.ref(match.group(1))
                elif method == "options" and integration.get("type") == "mock" and cors is None:
                    parameters = (((integration.get("responses") or {}).get("default") or {})
                                  .get("responseParameters") or {})
                    prefix = "method.response.header.Access-Control-"
                    cors = {"Allow" + name[len(prefix) + len("Allow-"):].replace("-", ""): str(value).strip("'")
                            for name, value in parameters.items() if name.startswith(prefix + "Allow-")}
                    if f"{prefix}Max-Age" in parameters:
                        cors["MaxAge"] = str(parameters[f"{prefix}Max-Age"]).strip("'")
    return routes, cors, stage


def _start_api(translated: dict, resolver: Resolver, clients):
    from ..lambda_service.api_gateway import ApiGatewayFront

    routes, cors, stage = api_routes(translated, resolver)
    if not routes:
        return None, None
    from botocore.config import Config
    import boto3

    lambda_client = boto3.client("lambda", endpoint_url=clients.embedded("lambda").meta.endpoint_url,
                                 config=Config(retries={"mode": "standard", "total_max_attempts": 1}, read_timeout=30))
    front = ApiGatewayFront(routes, stage=stage, cors=cors, lambda_client=lambda_client).start()
    return front, cors


# -- the custom model -----------------------------------------------------------------------------------
def upload_model(stack: Stack) -> str:
    """Train the custom model if needed (``cloudlab.pipeline.model.train.ensure_model``, the ml
    helper's trainer: trains on data/moderation only when its cached file is missing or stale)
    and upload it where the custom analyzer loads it (``ModelBucketName`` / ``ModelKey``
    outputs). Returns the ``s3://`` URI."""
    try:
        from .model import train
    except ImportError as error:
        raise DeployError("the custom model's trainer cloudlab.pipeline.model.train cannot be imported "
                          f"({error}); deploy(model=False) deploys without the model") from None
    path = train.ensure_model()
    bucket, key = stack.output("ModelBucketName"), stack.output("ModelKey")
    _clients(_backend()).data("s3").upload_file(str(path), bucket, key)
    return f"s3://{bucket}/{key}"
