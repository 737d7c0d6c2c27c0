"""Looking at the deployed pipeline: its source, its jobs, its logs as timelines (notebook 06).

Notebook 06 introduces every helper here. They read what a practitioner reads on AWS:

- the package's own files (the template and each function, shown as they are, never retyped):
  :func:`source`, :func:`show_source`, :func:`template_resources`;
- the HTTP API (``GET /jobs/{id}`` polled to a deadline): :func:`wait_for_job`;
- the notifications queue (the SNS topic's SQS subscriber): :func:`collect_notifications`;
- the functions' CloudWatch Logs (the JSON lines of ``moderation.joblog``, one ``job_id`` per
  line): :func:`log_lines`, :func:`job_invocations`, :func:`failure_counts`;
- a job's stages as a Gantt chart: :func:`gantt`.

Nothing here changes the pipeline; the functions never import this module.
"""

from __future__ import annotations

import ast
import json
import re
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

PIPELINE_DIR = Path(__file__).resolve().parent
TERMINAL = ("decided", "failed")
# Lanes of the Gantt chart, top to bottom, in the order a job meets them.
LANES = ("upload", "jobs queue (SQS)", "dispatcher", "moderation_analyzer", "custom_analyzer", "sweeper")


# -- the package's files -----------------------------------------------------------------------------
def source(path: str, name: str | None = None) -> str:
    """The text of ``path`` (relative to ``cloudlab/pipeline``), or only its top-level function or
    class ``name`` (found with ``ast``, so the text is the file's own, comments included)."""
    file = (PIPELINE_DIR / path).resolve()
    if PIPELINE_DIR not in file.parents or not file.is_file():
        raise FileNotFoundError(f"no file {path!r} in {PIPELINE_DIR}")
    text = file.read_text()
    if name is None:
        return text
    for node in ast.parse(text).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == name:
            start = min([node.lineno] + [d.lineno for d in node.decorator_list])
            return "\n".join(text.splitlines()[start - 1:node.end_lineno])
    raise LookupError(f"{path} has no top-level function or class {name!r}")


def show_source(path: str, name: str | None = None) -> None:
    """Display :func:`source` as a highlighted code block headed by its path in the repository."""
    from IPython.display import Markdown, display

    language = "yaml" if path.endswith((".yaml", ".yml")) else "python"
    title = f"`shared/cloudlab/pipeline/{path}`" + (f", `{name}`" if name else "")
    display(Markdown(f"{title}\n```{language}\n{source(path, name)}\n```"))


def template_resources(template: dict):
    """One row per resource of a SAM template (as ``deploy.load_template`` reads it): logical id,
    type, and what connects it (a function's events, a queue's redrive, a subscription's endpoint)."""
    import pandas as pd

    rows = []
    for logical_id, resource in (template.get("Resources") or {}).items():
        properties = resource.get("Properties") or {}
        kind = resource["Type"]
        notes = []
        if kind == "AWS::Serverless::Function":
            notes.append(f"code {properties.get('CodeUri')}")
            for event in (properties.get("Events") or {}).values():
                spec = event.get("Properties") or {}
                if event["Type"] == "Api":
                    notes.append(f"{spec.get('Method', '').upper()} {spec.get('Path')}")
                elif event["Type"] == "SQS":
                    notes.append(f"SQS {_name(spec.get('Queue'))}")
                else:
                    notes.append(event["Type"])
            if properties.get("EventInvokeConfig"):
                notes.append(f"async failures -> {_name(properties['EventInvokeConfig']['DestinationConfig']['OnFailure']['Destination'])}")
        elif kind == "AWS::SQS::Queue" and properties.get("RedrivePolicy"):
            policy = properties["RedrivePolicy"]
            notes.append(f"redrive to {_name(policy['deadLetterTargetArn'])} after {policy['maxReceiveCount']} receives")
        elif kind == "AWS::SNS::Subscription":
            notes.append(f"{properties.get('Protocol')} -> {_name(properties.get('Endpoint'))}")
        rows.append({"resource": logical_id, "type": kind, "connects": "; ".join(notes)})
    return pd.DataFrame(rows).set_index("resource")


def _name(reference) -> str:
    """``QueueName`` for ``{"Fn::GetAtt": ["Queue", "Arn"]}`` or ``{"Ref": "Queue"}``."""
    if isinstance(reference, dict):
        value = next(iter(reference.values()))
        return value[0] if isinstance(value, list) else str(value).split(".")[0]
    return str(reference)


# -- jobs through the API ----------------------------------------------------------------------------
def wait_for_job(api_url: str, job_id: str, timeout: float = 60.0, interval: float = 0.25,
                 notified: bool = False) -> dict:
    """``GET /jobs/{job_id}`` until the job is terminal (``decided`` or ``failed``), and with
    ``notified`` until its notification is marked sent (``notified_at``), to a deadline; the last
    document. ``TimeoutError`` names the status it was still in."""
    import requests

    deadline = time.monotonic() + timeout
    while True:
        document = requests.get(f"{api_url}/jobs/{job_id}", timeout=30).json()
        if document.get("status") in TERMINAL and (not notified or document.get("notified_at")):
            return document
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {job_id} still {document.get('status')!r} after {timeout:.0f} s")
        time.sleep(interval)  # between polls of the status API, to the deadline


def collect_notifications(sqs, queue_url: str, job_ids, timeout: float = 60.0, quiet_polls: int = 2) -> dict[str, list]:
    """Read the notifications queue until every job in ``job_ids`` has a notification and then
    ``quiet_polls`` long polls in a row bring nothing more (a second copy would show up there),
    or ``timeout`` seconds pass; ``{job_id: [message, ...]}`` for those jobs. Messages are deleted."""
    wanted = set(job_ids)
    found: dict[str, list] = {job_id: [] for job_id in wanted}
    deadline = time.monotonic() + timeout
    quiet = 0
    while time.monotonic() < deadline:
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
        for message in messages:
            body = json.loads(message["Body"])
            notification = json.loads(body["Message"]) if body.get("Type") == "Notification" else body
            if notification.get("job_id") in wanted:
                found[notification["job_id"]].append(notification)
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
        quiet = 0 if messages else quiet + 1
        if all(found.values()) and quiet >= quiet_polls:
            break
    return found


# -- logs --------------------------------------------------------------------------------------------
def log_lines(logs, function_names, since_ms: int = 0) -> list[dict]:
    """Every line the functions wrote to CloudWatch Logs since ``since_ms``, as dicts: the JSON
    lines parsed, anything else (the runtime's ``START``/``REPORT`` lines, tracebacks) as
    ``{"text": ...}``; each with ``group`` (the function's name)."""
    lines = []
    for name in function_names:
        arguments = {"logGroupName": f"/aws/lambda/{name}", "startTime": since_ms}
        while True:
            try:
                page = logs.filter_log_events(**arguments)
            except logs.exceptions.ResourceNotFoundException:
                break
            for event in page.get("events", []):
                text = event["message"].strip()
                try:
                    line = json.loads(text) if text.startswith("{") else {"text": text}
                except ValueError:
                    line = {"text": text}
                line["group"] = name
                line["ingested_ms"] = event["timestamp"]
                lines.append(line)
            if not page.get("nextToken") or not page.get("events"):
                break
            arguments["nextToken"] = page["nextToken"]
    return lines


def wait_for_log_lines(logs, function_names, since_ms: int, until, timeout: float = 30.0) -> list[dict]:
    """:func:`log_lines` read again until ``until(lines)`` is true (logs ship asynchronously), to a deadline."""
    deadline = time.monotonic() + timeout
    while True:
        lines = log_lines(logs, function_names, since_ms)
        if until(lines) or time.monotonic() > deadline:
            return lines
        time.sleep(0.3)  # logs are shipped in batches; poll to the deadline


def line_time(line: dict) -> float | None:
    """Epoch seconds of a JSON log line: its ``at`` (stage lines), else its ``timestamp``
    (powertools ``2026-11-30 12:43:35,658+0000`` or ISO ``2026-11-30T12:43:35.658Z``)."""
    if line.get("at") is not None:
        return float(line["at"])
    stamp = line.get("timestamp")
    if not stamp:
        return None
    for pattern in ("%Y-%m-%d %H:%M:%S,%f%z", "%Y-%m-%dT%H:%M:%S.%fZ"):
        try:
            parsed = datetime.strptime(stamp, pattern)
        except ValueError:
            continue
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=timezone.utc)
        return parsed.timestamp()
    return None


def job_invocations(lines, job_id: str, skip: tuple[str, ...] = ("status",)) -> list[dict]:
    """The invocations that worked on ``job_id``, from the functions' log lines (:func:`log_lines`):
    one dict per request id with ``service``, ``start``, ``end`` and its ``stages`` ``[(stage, at)]``,
    in time order. ``end`` is its last JSON line; ``start`` is ``end`` minus the ``Duration`` of its
    ``REPORT`` line when that is earlier than its first line (the upload function logs only at its
    end). Services in ``skip`` are left out (by default the status reads of a polling client)."""
    durations = {}
    for line in lines:
        text = line.get("text", "")
        if text.startswith("REPORT RequestId:"):
            request_id = text.split()[2]
            try:
                durations[request_id] = float(text.split("Duration:", 1)[1].split("ms", 1)[0]) / 1000
            except (IndexError, ValueError):
                pass
    invocations: dict[str, dict] = {}
    for line in lines:
        if line.get("job_id") != job_id or "service" not in line or line["service"] in skip:
            continue
        at = line_time(line)
        if at is None:
            continue
        key = line.get("request_id") or f"{line['service']}-{at}"
        entry = invocations.setdefault(key, {"service": line["service"], "request_id": line.get("request_id"),
                                             "start": at, "end": at, "stages": []})
        entry["start"], entry["end"] = min(entry["start"], at), max(entry["end"], at)
        if line.get("stage"):
            entry["stages"].append((line["stage"], at))
    for entry in invocations.values():
        duration = durations.get(entry["request_id"])
        if duration is not None:
            entry["start"] = min(entry["start"], entry["end"] - duration)
    return sorted(invocations.values(), key=lambda entry: entry["start"])


def stage_table(invocations):
    """The job's milestones from :func:`job_invocations`, in seconds after its upload (a pandas table)."""
    import pandas as pd

    rows = [{"stage": stage, "at": at, "by": entry["service"]}
            for entry in invocations for stage, at in entry["stages"]]
    table = pd.DataFrame(rows).sort_values("at", kind="stable")
    origin = _origin(invocations)
    table["seconds after the upload began"] = (table["at"] - origin).round(3)
    return table.drop(columns="at").reset_index(drop=True)


def _origin(invocations) -> float:
    """Time zero of a job's chart: the start of its upload invocation (else its first invocation)."""
    uploads = [entry["start"] for entry in invocations if entry["service"] == "upload"]
    return min(uploads) if uploads else min(entry["start"] for entry in invocations)


def gantt(invocations, ax=None, title: str | None = None):
    """A Gantt chart of one job from :func:`job_invocations`: one lane per function (plus the
    jobs queue, from ``uploaded`` to the first ``dispatched``), a bar per invocation from its first
    to its last log line, and each milestone marked and named. Returns the axes."""
    import matplotlib.pyplot as plt

    if not invocations:
        raise ValueError("no invocations to draw: no log line names this job")
    if ax is None:
        _, ax = plt.subplots(figsize=(10, 3.2))
    origin = _origin(invocations)
    stages = {stage: at for entry in invocations for stage, at in entry["stages"]}
    bars = [(entry["service"], entry["start"], entry["end"], entry["stages"]) for entry in invocations]
    if "uploaded" in stages and "dispatched" in stages:
        first_dispatch = min(at for e in invocations for s, at in e["stages"] if s == "dispatched")
        bars.append(("jobs queue (SQS)", min(stages["uploaded"], first_dispatch), first_dispatch, []))
    lanes = [lane for lane in LANES if any(bar[0] == lane for bar in bars)]
    lanes += sorted({bar[0] for bar in bars} - set(lanes))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for lane_index, lane in enumerate(lanes):
        y = len(lanes) - 1 - lane_index
        for _, start, end, marks in (bar for bar in bars if bar[0] == lane):
            width = max(end - start, 0.004)
            ax.barh(y, width, left=start - origin, height=0.5, color=colours[lane_index % len(colours)], alpha=0.8)
            for number, (stage, at) in enumerate(marks):
                ax.plot([at - origin], [y], marker="|", color="black", markersize=14)
                ax.annotate(stage, (at - origin, y), xytext=(2, (9, -15, 17)[number % 3]),
                            textcoords="offset points", fontsize=7)
    ax.set_yticks(range(len(lanes)), list(reversed(lanes)))
    ax.set_ylim(-0.7, len(lanes) - 0.3)
    ax.set_xlim(0, 1.12 * max(end - origin for _, _, end, _ in bars))  # room for the last label
    ax.set_xlabel("seconds after the upload request reached the upload function")
    ax.set_title(title or "one job, from its log lines")
    ax.grid(axis="x", alpha=0.3)
    return ax


def failure_counts(lines) -> Counter:
    """What went wrong, from log lines: JSON lines at ``ERROR``/``WARNING`` counted by
    ``(service, message, error code)``, and the runtime's unhandled-error lines by their first line."""
    counts: Counter = Counter()
    for line in lines:
        if "text" in line:
            text = line["text"]
            if text.startswith("[ERROR]") or '"errorType"' in text:
                counts[(_service_of(line.get("group", "")), "unhandled exception", _error_code(text.splitlines()[0]))] += 1
            continue
        if line.get("level") in ("ERROR", "WARNING"):
            counts[(line.get("service"), line.get("message"), _error_code(line.get("error")))] += 1
    return counts


def _service_of(function_name: str) -> str:
    """``custom_analyzer`` for ``nb06-moderation-CustomAnalyzerFunction-1A2B3C`` (CloudFormation's naming)."""
    parts = function_name.split("-")
    logical = parts[-2] if len(parts) >= 3 else function_name
    logical = logical[:-len("Function")] if logical.endswith("Function") else logical
    return re.sub(r"(?<!^)(?=[A-Z])", "_", logical).lower()


def _error_code(error) -> str | None:
    """``ChaosAnalyzerCrash`` from ``"ClientError('An error occurred (ChaosAnalyzerCrash) when ...')"``."""
    if not isinstance(error, str):
        return error
    if "An error occurred (" in error:
        return error.split("An error occurred (", 1)[1].split(")", 1)[0]
    return error.split("(", 1)[0] if "(" in error else error
