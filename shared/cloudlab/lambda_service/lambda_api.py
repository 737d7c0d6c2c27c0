"""The Lambda API (the service's own control and invoke calls) that the local service answers ahead of moto.

Not API Gateway's REST APIs: those are ``api_gateway``.

Introduced in notebook 03. Plain ``boto3.client("lambda")`` against the embedded emulator
reaches this handler first (the ``lambda`` override of ``cloudlab.backend.local_services``).
It answers:

- ``Invoke`` (``RequestResponse``, ``Event``, ``DryRun``; ``LogType="Tail"``) and the old
  ``InvokeAsync``;
- the event source mapping calls (SQS sources);

and looks at, then hands on to moto, the calls that change what runs: ``CreateFunction``
and ``UpdateFunctionCode`` (a zip that does not unzip is refused as AWS refuses it),
``UpdateFunctionConfiguration`` (``DeadLetterConfig`` is kept here; moto drops it),
``DeleteFunction`` (its environments are stopped) and ``PutProvisionedConcurrencyConfig``
(environments are started and initialised at once). Everything else is moto's.

It refuses what AWS refuses, with AWS's error codes and messages (docs/aws-facts.md):

- ``Timeout`` above 900 s or ``MemorySize`` outside 128..10,240 MB (``CreateFunction``,
  ``UpdateFunctionConfiguration``): 400 ``ValidationException``;
- environment variables that Lambda sets itself (``AWS_REGION``, ``_HANDLER``, ...): 400
  ``InvalidParameterValueException`` naming the reserved keys;
- an SQS event source whose queue's visibility timeout is shorter than the function's
  timeout, ``BatchSize`` above 10 or a batching window on a FIFO queue: 400
  ``InvalidParameterValueException``;
- reserved concurrency that would leave less than the unreserved minimum: AWS keeps 100 of
  1,000 unreserved; the local service scales that to its own account limit (10, so 1
  stays unreserved; ``LocalLambdaService.check_reservation``);
- Function URLs: AWS would serve ``https://<id>.lambda-url.<region>.on.aws``, which nothing
  here can serve, so ``CreateFunctionUrlConfig`` is refused with a message pointing at
  ``ApiGatewayFront``, the local HTTP front.

``GetAccountSettings`` is answered here (moto has no such call): the local limits, as JSON.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import re
import time
import zipfile
from urllib.parse import parse_qs, unquote

from ..backend.aws_protocol import signed_region
from .event_sources import EventSourceMappingError
from .service import InvalidParameterValue as _InvalidParameter
from .service import LambdaServiceError


class _Validation(LambdaServiceError):
    code, status = "ValidationException", 400


MAX_TIMEOUT_SECONDS = 900  # functions without a capacity provider (Lambda Managed Instances are not emulated)
MIN_MEMORY_MB, MAX_MEMORY_MB = 128, 10_240
# Set by Lambda in every environment; a function's configuration may not set them (Lambda
# Developer Guide, "Defined runtime environment variables", the reserved ones).
RESERVED_VARIABLES = frozenset({
    "_HANDLER", "_X_AMZN_TRACE_ID", "AWS_DEFAULT_REGION", "AWS_REGION", "AWS_EXECUTION_ENV",
    "AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_INITIALIZATION_TYPE", "AWS_LAMBDA_LOG_GROUP_NAME", "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
    "AWS_LAMBDA_RUNTIME_API", "LAMBDA_TASK_ROOT", "LAMBDA_RUNTIME_DIR"})
FIFO_MAX_BATCH_SIZE = 10
# What an account may store (Lambda quotas); reported by GetAccountSettings, not enforced.
_CODE_STORAGE_BYTES, _ZIPPED_BYTES, _UNZIPPED_BYTES = 80 * 1024 ** 3, 50 * 1024 ** 2, 250 * 1024 ** 2


MAX_SYNC_PAYLOAD = 6 * 1024 * 1024
MAX_ASYNC_PAYLOAD = 1024 * 1024
_FUNCTION = r"/(?P<name>[^/]+)"
_ROUTES = [
    ("POST", re.compile(r"^/2015-03-31/functions/?$"), "create_function"),
    ("POST", re.compile(r"^/2015-03-31/functions" + _FUNCTION + r"/invocations/?$"), "invoke"),
    ("POST", re.compile(r"^/2014-11-13/functions" + _FUNCTION + r"/invoke-async/?$"), "invoke_async"),
    ("PUT", re.compile(r"^/2015-03-31/functions" + _FUNCTION + r"/code/?$"), "update_code"),
    ("PUT", re.compile(r"^/2015-03-31/functions" + _FUNCTION + r"/configuration/?$"), "update_configuration"),
    ("DELETE", re.compile(r"^/2015-03-31/functions" + _FUNCTION + r"/?$"), "delete_function"),
    ("PUT", re.compile(r"^/2019-09-30/functions" + _FUNCTION + r"/provisioned-concurrency/?$"), "put_provisioned"),
    ("GET", re.compile(r"^/2019-09-30/functions" + _FUNCTION + r"/provisioned-concurrency/?$"), "get_provisioned"),
    ("DELETE", re.compile(r"^/2019-09-30/functions" + _FUNCTION + r"/provisioned-concurrency/?$"), "delete_provisioned"),
    ("PUT", re.compile(r"^/2017-10-31/functions" + _FUNCTION + r"/concurrency/?$"), "put_concurrency"),
    ("GET", re.compile(r"^/2016-08-19/account-settings/?$"), "account_settings"),
    ("POST", re.compile(r"^/2021-10-31/functions" + _FUNCTION + r"/url/?$"), "refuse_function_url"),
    ("PUT", re.compile(r"^/2021-10-31/functions" + _FUNCTION + r"/url/?$"), "refuse_function_url"),
    ("POST", re.compile(r"^/2015-03-31/event-source-mappings/?$"), "create_mapping"),
    ("GET", re.compile(r"^/2015-03-31/event-source-mappings/?$"), "list_mappings"),
    ("GET", re.compile(r"^/2015-03-31/event-source-mappings/(?P<uuid>[^/]+)/?$"), "get_mapping"),
    ("PUT", re.compile(r"^/2015-03-31/event-source-mappings/(?P<uuid>[^/]+)/?$"), "update_mapping"),
    ("DELETE", re.compile(r"^/2015-03-31/event-source-mappings/(?P<uuid>[^/]+)/?$"), "delete_mapping"),
]


def error(status: int, code: str, message: str, **fields) -> tuple[int, dict, bytes]:
    """An AWS-shaped Lambda error: ``X-Amzn-ErrorType`` plus a JSON body."""
    key = "Message" if code == "ResourceNotFoundException" else "message"
    body = {"Type": "User", key: message, **fields}
    return status, {"Content-Type": "application/json", "X-Amzn-ErrorType": code}, json.dumps(body).encode()


def _json(status: int, document) -> tuple[int, dict, bytes]:
    return status, {"Content-Type": "application/json"}, json.dumps(document, default=str).encode()


class LambdaApi:
    """``handler(method, path, query, headers, body)`` for ``SERVICE_OVERRIDES``."""

    def __init__(self, service) -> None:
        self.service = service

    def __call__(self, method: str, path: str, query: str, headers, body: bytes):
        refused = _refuse_unparseable(method, path, body)
        if refused:
            return refused
        for route_method, pattern, name in _ROUTES:
            if route_method == method:
                match = pattern.match(path)
                if match:
                    params = {key: unquote(value) for key, value in match.groupdict().items()}
                    region = signed_region(headers)
                    try:
                        return getattr(self, name)(region=region, query=parse_qs(query), headers=headers,
                                                   body=body, **params)
                    except LambdaServiceError as failure:
                        return error(failure.status, failure.code, failure.message, **failure.fields)
                    except EventSourceMappingError as failure:
                        return error(failure.status, failure.code, failure.message)
        return None

    # -- functions: look, then let moto store -------------------------------------------------
    @staticmethod
    def _check_zip(document: dict) -> tuple[int, dict, bytes] | None:
        encoded = document.get("ZipFile")
        if encoded is None:
            return None
        try:
            data = base64.b64decode(encoded, validate=True)
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                if archive.testzip() is not None:
                    raise zipfile.BadZipFile("corrupt member")
        except (binascii.Error, zipfile.BadZipFile, ValueError):
            return error(400, "InvalidParameterValueException",
                         "Could not unzip uploaded file. Please check your file, then try to upload again.")
        return None

    def _remember_dead_letter(self, region: str, name: str, document: dict) -> None:
        if "DeadLetterConfig" in document:
            target = (document.get("DeadLetterConfig") or {}).get("TargetArn")
            if target:
                self.service.dead_letter_configs[(region, name)] = target
            else:
                self.service.dead_letter_configs.pop((region, name), None)

    @staticmethod
    def _check_configuration(document: dict) -> None:
        """Timeout, memory and environment variables, as CreateFunction/UpdateFunctionConfiguration check them."""
        timeout, memory = document.get("Timeout"), document.get("MemorySize")
        if isinstance(timeout, int) and timeout > MAX_TIMEOUT_SECONDS:
            raise _Validation(f"1 validation error detected: Value '{timeout}' at 'timeout' failed to satisfy "
                              f"constraint: Member must have value less than or equal to {MAX_TIMEOUT_SECONDS}")
        if isinstance(memory, int) and not MIN_MEMORY_MB <= memory <= MAX_MEMORY_MB:
            bound = ("greater than or equal to", MIN_MEMORY_MB) if memory < MIN_MEMORY_MB else \
                    ("less than or equal to", MAX_MEMORY_MB)
            raise _Validation(f"1 validation error detected: Value '{memory}' at 'memorySize' failed to satisfy "
                              f"constraint: Member must have value {bound[0]} {bound[1]}")
        variables = ((document.get("Environment") or {}).get("Variables") or {})
        reserved = sorted(RESERVED_VARIABLES.intersection(variables))
        if reserved:
            raise _InvalidParameter(
                "Lambda was unable to configure your environment variables because the environment variables "
                "you have provided contains reserved keys that are currently not supported for modification. "
                f"Reserved keys used in this request: {','.join(reserved)}")

    def create_function(self, region, body, **_):
        try:
            document = json.loads(body or b"{}")
        except ValueError:
            return None
        self._check_configuration(document)
        refused = self._check_zip(document.get("Code") or {})
        if refused:
            return refused
        document.setdefault("DeadLetterConfig", {})  # a new function starts with none, whatever came before
        self._remember_dead_letter(region, _plain_name(document.get("FunctionName", "")), document)
        return None

    def update_code(self, region, body, name, **_):
        try:
            return self._check_zip(json.loads(body or b"{}"))
        except ValueError:
            return None

    def update_configuration(self, region, body, name, **_):
        try:
            document = json.loads(body or b"{}")
        except ValueError:
            return None
        self._check_configuration(document)
        self._remember_dead_letter(region, _plain_name(name), document)
        return None

    def delete_function(self, region, name, query, **_):
        if not query.get("Qualifier"):
            self.service.forget_function(_plain_name(name), region)
        return None

    # -- reserved concurrency and the account's settings ---------------------------------------------
    def put_concurrency(self, region, name, body, **_):
        try:
            reserved = int(json.loads(body or b"{}").get("ReservedConcurrentExecutions"))
        except (ValueError, TypeError):
            return None  # moto answers malformed requests
        self.service.check_reservation(name, reserved, region)
        return None  # moto stores it; invokes read it from there

    def account_settings(self, region, **_):
        from ..backend.moto_compat import DEFAULT_ACCOUNT_ID, lambda_backends

        functions = list(lambda_backends[DEFAULT_ACCOUNT_ID][region].list_functions())
        limit = self.service.concurrency_limit
        return _json(200, {
            "AccountLimit": {"TotalCodeSize": _CODE_STORAGE_BYTES, "CodeSizeUnzipped": _UNZIPPED_BYTES,
                             "CodeSizeZipped": _ZIPPED_BYTES, "ConcurrentExecutions": limit,
                             "UnreservedConcurrentExecutions": limit - self.service.reserved_total(region)},
            "AccountUsage": {"TotalCodeSize": sum(int(getattr(fn, "code_size", 0) or 0) for fn in functions),
                             "FunctionCount": len(functions)}})

    def refuse_function_url(self, name, **_):
        raise _InvalidParameter(
            f"Function URLs are not emulated: AWS would give {_plain_name(name)} an https://<url-id>.lambda-url."
            "<region>.on.aws address, which nothing on this machine serves. For an HTTP endpoint in front of a "
            "function, use cloudlab.lambda_service.ApiGatewayFront (notebook 03).")

    # -- provisioned concurrency (moto has none): pre-warmed environments ----------------------------
    def _provisioned_key(self, region, name, query):
        qualifier = (query.get("Qualifier") or [None])[0]
        if not qualifier or qualifier == "$LATEST":
            raise _InvalidParameter("Provisioned Concurrency Configs cannot be applied to unpublished function versions.")
        fn = self.service.moto_function(name, qualifier, region)
        return (region, fn.function_name, qualifier), fn

    def put_provisioned(self, region, name, query, body, **_):
        key, fn = self._provisioned_key(region, name, query)
        count = int(json.loads(body or b"{}").get("ProvisionedConcurrentExecutions", 0))
        ready = self.service.prewarm(fn.function_name, count, key[2], region)
        config = {"RequestedProvisionedConcurrentExecutions": count, "AvailableProvisionedConcurrentExecutions": ready,
                  "AllocatedProvisionedConcurrentExecutions": ready, "Status": "READY" if ready == count else "FAILED",
                  "LastModified": time.strftime("%Y-%m-%dT%H:%M:%S+0000", time.gmtime())}
        self.service.provisioned[key] = config
        return _json(202, dict(config, Status="IN_PROGRESS"))

    def get_provisioned(self, region, name, query, **_):
        key, _fn = self._provisioned_key(region, name, query)
        if key not in self.service.provisioned:
            return error(404, "ProvisionedConcurrencyConfigNotFoundException", "No Provisioned Concurrency Config found for this function")
        return _json(200, self.service.provisioned[key])

    def delete_provisioned(self, region, name, query, **_):
        key, fn = self._provisioned_key(region, name, query)
        self.service.provisioned.pop(key, None)
        self.service.release_prewarmed(fn.function_name, key[2], region)
        return 204, {}, b""

    # -- invoke -------------------------------------------------------------------------------
    def invoke(self, region, name, query, headers, body, **_):
        invocation_type = headers.get("X-Amz-Invocation-Type") or "RequestResponse"
        qualifier = (query.get("Qualifier") or [None])[0]
        payload = body or b"{}"
        limit = MAX_ASYNC_PAYLOAD if invocation_type == "Event" else MAX_SYNC_PAYLOAD
        if len(payload) > limit:
            return error(413, "RequestTooLargeException",
                         f"Request must be smaller than {limit} bytes for the InvokeFunction operation")
        try:
            json.loads(payload)
        except ValueError as problem:
            return error(400, "InvalidRequestContentException",
                         f"Could not parse request body into json: Could not parse payload into json: {problem}")
        if invocation_type == "Event":
            request_id = self.service.invoke_async(name, payload, qualifier=qualifier, region=region)
            return 202, {"X-Amzn-RequestId": request_id, "Content-Type": "application/json"}, b""
        if invocation_type == "DryRun":
            self.service.moto_function(name, qualifier, region)
            return 204, {}, b""
        if invocation_type != "RequestResponse":
            return error(400, "InvalidParameterValueException", f"Unsupported InvocationType {invocation_type}")
        client_context = headers.get("X-Amz-Client-Context")
        if client_context:
            try:
                client_context = base64.b64decode(client_context).decode()
            except (binascii.Error, UnicodeDecodeError):
                return error(400, "InvalidParameterValueException", "Client context must be a valid Base64-encoded JSON object.")
        outcome = self.service.invoke(name, payload, qualifier=qualifier, region=region, client_context=client_context)
        response_headers = {"Content-Type": "application/json", "X-Amz-Executed-Version": outcome.executed_version,
                            "X-Amzn-RequestId": outcome.request_id}
        if outcome.function_error:
            response_headers["X-Amz-Function-Error"] = outcome.function_error
        if (headers.get("X-Amz-Log-Type") or "").lower() == "tail":
            response_headers["X-Amz-Log-Result"] = base64.b64encode(outcome.log_tail).decode()
        return 200, response_headers, outcome.payload

    def invoke_async(self, region, name, body, **_):
        self.service.invoke_async(name, body or b"{}", region=region)
        return _json(202, {"Status": 202})

    # -- event source mappings ------------------------------------------------------------------
    def _check_sqs_source(self, source: str, function_name: str | None, batch_size, window, region: str) -> None:
        """AWS's rules for an SQS event source: FIFO batches, and (when a function is named) the
        queue's visibility timeout against the function's timeout."""
        if not source.startswith("arn:aws:sqs:"):
            return
        if source.endswith(".fifo"):
            if batch_size is not None and int(batch_size) > FIFO_MAX_BATCH_SIZE:
                raise _InvalidParameter(f"Maximum batch size must be between 1 and {FIFO_MAX_BATCH_SIZE} "
                                        "inclusive for FIFO queues")
            if window:
                raise _InvalidParameter("Batching window is not supported for FIFO queues")
        if not function_name:
            return
        arn = source.split(":")
        try:
            fn = self.service.moto_function(function_name, None, region)
            sqs = self.service.client("sqs", arn[3] or region)
            url = sqs.get_queue_url(QueueName=arn[5], QueueOwnerAWSAccountId=arn[4])["QueueUrl"]
            visibility = int(sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["VisibilityTimeout"])
                             ["Attributes"]["VisibilityTimeout"])
        except Exception:  # no such function or queue: the mapping code answers with AWS's error
            return
        if visibility < int(fn.timeout):
            raise _InvalidParameter(f"Queue visibility timeout: {visibility} seconds is less than "
                                    f"Function timeout: {int(fn.timeout)} seconds")

    def create_mapping(self, region, body, **_):
        request = json.loads(body or b"{}")
        self._check_sqs_source(request.get("EventSourceArn") or "", request.get("FunctionName") or "",
                               request.get("BatchSize"), request.get("MaximumBatchingWindowInSeconds"), region)
        return _json(202, _wire(self.service.event_source_mappings.create(request, region)))

    def list_mappings(self, region, query, **_):
        rows = self.service.event_source_mappings.list((query.get("FunctionName") or [None])[0],
                                                       (query.get("EventSourceArn") or [None])[0], region)
        return _json(200, {"EventSourceMappings": [_wire(row) for row in rows]})

    def get_mapping(self, uuid, **_):
        return _json(200, _wire(self.service.event_source_mappings.get(uuid)))

    def update_mapping(self, uuid, body, region, **_):
        request = json.loads(body or b"{}")
        current = self.service.event_source_mappings.get(uuid)
        self._check_sqs_source(current["EventSourceArn"], request.get("FunctionName"), request.get("BatchSize"),
                               request.get("MaximumBatchingWindowInSeconds"), region)
        return _json(202, _wire(self.service.event_source_mappings.update(uuid, request)))

    def delete_mapping(self, uuid, **_):
        return _json(202, _wire(self.service.event_source_mappings.delete(uuid)))


_INVOKE_PATHS = re.compile(r"^/[0-9-]+/functions/[^/]+/(invocations|invoke-async|response-streaming-invocations)/?$")


def _refuse_unparseable(method: str, path: str, body: bytes) -> tuple[int, dict, bytes] | None:
    """Every Lambda API request body is JSON: one that is not gets AWS's 400, whoever answers
    the call (here or moto, which would fail with a 500). Invoke payloads are checked by ``invoke``."""
    if method not in ("POST", "PUT") or not body or _INVOKE_PATHS.match(path):
        return None
    try:
        json.loads(body)
    except ValueError as problem:
        return error(400, "InvalidRequestContentException", f"Could not parse request body into json: {problem}")
    return None


def _wire(config: dict) -> dict:
    return {key: value for key, value in config.items() if value is not None}


def _plain_name(name: str) -> str:
    if name.startswith("arn:"):
        return name.split(":")[6]
    return name.split(":")[0]
