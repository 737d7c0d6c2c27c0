"""A local Lambda service that runs handlers the way AWS does, without Docker.

Introduced in notebook 03 (cold starts). Neither moto nor LocalStack can run Lambda code
without Docker. This package does: after ``cloudlab.use_backend()``, plain boto3 drives it::

    lam = boto3.client("lambda")
    lam.create_function(FunctionName="hello", Runtime="python3.12", Role=role_arn,
                        Handler="app.handler", Code={"ZipFile": zip_bytes})
    lam.invoke(FunctionName="hello", Payload=b"{}", LogType="Tail")

Pieces (each module's docstring says more):

- ``runtime_api``: the Runtime API the AWS runtime client polls, answered by cloudlab;
- ``environment``: execution environments, one ``python -m awslambdaric`` process each;
- ``service``: environments per function, cold/warm reuse, concurrency and throttling,
  idle reclaim, REPORT lines, CloudWatch Logs copies;
- ``async_invoke``: ``Event`` invokes with retries, destinations and dead-letter queues;
- ``event_sources``: the SQS poller behind ``create_event_source_mapping`` (and behind the
  mappings CloudFormation creates in moto, notebook 06);
- ``schedules``: a local scheduler firing EventBridge schedule rules that target functions;
- ``lambda_api``: the Lambda API calls answered here (the rest stays moto's);
- ``api_gateway``: ``ApiGatewayFront``, a REST API proxy in front of functions.

How it plugs in: importing this package (``import cloudlab`` does) registers ``install`` and
``uninstall`` as server hooks of ``cloudlab.backend.local_services``. Whenever an embedded
emulator starts (in a kernel, in ``python -m cloudlab backend serve``, in a grader's kernel),
``install(url)`` sets the Lambda API handler as the ``lambda`` override and makes moto's own
event sources (S3 notifications, SNS subscriptions) queue async invokes here. The backend
never imports this package.
"""

from __future__ import annotations

import io
import os
import threading
import zipfile
from pathlib import Path

from ..backend import local_services, moto_compat
from .api_gateway import ApiGatewayFront
from .environment import ExecutionEnvironment, FunctionSnapshot, InvokeOutcome, model_duration_ms
from .service import FunctionNotFound, LambdaServiceError, LocalLambdaService, Throttled

_state: dict[str, object] = {"service": None}
_install_lock = threading.Lock()
_servers: list[str] = []  # URLs of the running embedded servers of this process


def install(endpoint_url: str) -> LocalLambdaService:
    """Serve Lambda from this process for the embedded emulator at ``endpoint_url``.

    Called by ``EmbeddedServer.start()``. Servers in one process share moto's state, so they
    share one service too; handlers reach the most recently started server still running.
    """
    from .lambda_api import LambdaApi

    with _install_lock:
        service = _state["service"]
        if service is None:
            service = LocalLambdaService(endpoint_url)
            _state["service"] = service
            _hook_moto_event_sources()
            service.scheduler.start()
        _servers.append(endpoint_url)
        service.endpoint_url = endpoint_url
        local_services.set_override("lambda", LambdaApi(service))
        return service


def uninstall(endpoint_url: str | None = None) -> None:
    """A server stopped: stop the service (environments, pollers, queues) once none is left."""
    with _install_lock:
        service = _state["service"]
        if service is None:
            return
        if endpoint_url is not None:
            if endpoint_url in _servers:
                _servers.remove(endpoint_url)
            if _servers:
                service.endpoint_url = _servers[-1]
                return
        _servers.clear()
        _state["service"] = None
        local_services.set_override("lambda", None)
    service.shutdown()


def get_service() -> LocalLambdaService:
    """The service running in this process (notebook 03 uses it to look at environments).

    Raises ``RuntimeError`` when this process is not serving the emulator, e.g. when the
    notebook attached to ``python -m cloudlab backend serve``: then only boto3 reaches it.
    """
    service = _state["service"]
    if service is None:
        raise RuntimeError("no local Lambda service in this process: the emulator runs elsewhere "
                           "(python -m cloudlab backend serve?) and is reached through boto3 only")
    return service


def _hook_moto_event_sources() -> None:
    """Make moto's internal Lambda invokes (S3 notifications, SNS) async invokes of ours.

    moto builds the S3 event (``Records[0].s3.bucket/object``, URL-encoded key, as on AWS)
    and the SNS event, then calls ``LambdaFunction.invoke`` inside the PutObject/Publish
    request, which needs Docker. Here that call queues an ``Event`` invoke instead, so the
    upload returns at once and the function runs shortly after, as on AWS.
    """
    def invoke(self, body, request_headers, response_headers):
        service = _state["service"]
        if service is None:
            return b""
        qualifier = None if str(self.version) == "$LATEST" else str(self.version)
        payload = body.encode() if isinstance(body, str) else (body or b"{}")
        service.async_invoker.submit(self, payload, qualifier)
        return b""

    moto_compat.replace_lambda_invoke(invoke)  # once per process

    # SQS mappings CloudFormation creates in moto are polled here, as the Lambda API's are.
    def mapping_created(configuration: dict, region: str) -> None:
        service = _state["service"]
        if service is not None:
            service.event_source_mappings.adopt(configuration, region)

    def mapping_deleted(uuid: str) -> None:
        service = _state["service"]
        if service is not None:
            service.event_source_mappings.forget(uuid)

    moto_compat.replace_event_source_mappings(mapping_created, mapping_deleted)


def zip_code(source: str | os.PathLike | dict[str, str], module: str = "app") -> bytes:
    """Zip bytes for ``create_function(Code={"ZipFile": ...})`` (notebook 03).

    ``source`` is a folder (zipped with its subfolders), a ``{"path/in/zip.py": text}`` dict,
    or the source text of one module, stored as ``<module>.py``.
    """
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        if isinstance(source, dict):
            for name, text in source.items():
                archive.writestr(name, text)
        elif isinstance(source, os.PathLike) or (isinstance(source, str) and "\n" not in source and Path(source).is_dir()):
            folder = Path(source)
            for path in sorted(folder.rglob("*")):
                if path.is_file() and "__pycache__" not in path.parts:
                    archive.write(path, path.relative_to(folder).as_posix())
        else:
            archive.writestr(f"{module}.py", source)
    return buffer.getvalue()


local_services.add_server_hooks(install, uninstall)

__all__ = ["ApiGatewayFront", "install", "uninstall", "get_service", "zip_code", "LocalLambdaService", "ExecutionEnvironment",
           "FunctionSnapshot", "InvokeOutcome", "FunctionNotFound", "Throttled", "LambdaServiceError",
           "model_duration_ms"]
