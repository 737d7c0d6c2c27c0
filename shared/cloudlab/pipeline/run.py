"""``python -m cloudlab pipeline run``: the capstone's main job, end to end (notebook 06).

1. start or attach to the backend (``cloudlab.use_backend``) and deploy ``template.yaml``
   (``cloudlab.pipeline.deploy.deploy``);
2. push ``data/moderation``'s images through the HTTP upload API (real HTTP, through the API
   front, several clients at once); ``--count N`` repeats the set to N uploads;
3. collect the notifications from the stack's ``NotificationsQueue`` (the SNS subscriber) and
   wait for every job, with a progress bar, to a deadline;
4. print the decisions against the ground truth (a confusion table), upload-to-notification
   latency p50/p95, API calls per job and the estimated AWS cost per 1,000 images
   (``--json``: the same summary as JSON).

How calls and cost are counted, honestly: the functions run in other processes, so the
kernel's ledger cannot see their calls. The embedded backend counts every request it answers
(``cloudlab.backend.request_log``), per caller; this driver signs its own calls with a key of
its own (:data:`RUNNER_KEY`) so they are left out. Lambda's requests and GB-seconds come from
the functions' ``REPORT`` lines in CloudWatch Logs (what you would query on AWS), API
Gateway's from the uploads sent. Prices: ``cloudlab/data/aws_prices.csv``. Under
``CLOUDLAB_BACKEND=localstack`` S3, SQS and SNS calls go to LocalStack and are not counted.

``--chaos`` adds faults (``cloudlab.backend.chaos``: server-side rules on the embedded
backend, and duplicate deliveries in the local Lambda service's SQS pollers) and two poison
messages, and prints the pass criteria: every valid job in exactly one terminal state,
exactly one notification per job, the poison in a DLQ, nothing stuck past the sweeper's
deadline. ``python -m cloudlab pipeline replay-dlq`` moves dead-lettered messages back.
"""

from __future__ import annotations

import base64
import csv
import http.client
import json
import math
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

DATA_DIR = Path(__file__).resolve().parents[3] / "data" / "moderation"
RUNNER_KEY = "pipeline-runner"  # this driver's own calls, left out of the server-side count
DECISIONS = ("approve", "warn", "reject", "manual_review")
TERMINAL = ("decided", "failed")
# Timings for --chaos: a crashed analyzer's job is failed by the sweeper soon after its retries,
# and a poison message reaches the DLQ after three short visibility timeouts.
CHAOS_PARAMETERS = {"StuckAfterSeconds": "20", "SweepSchedule": "rate(2 seconds)",
                    "JobsVisibilityTimeout": "4", "DispatcherTimeout": "4"}


def chaos_rules() -> list[dict]:
    """The faults ``--chaos`` injects (see ``cloudlab.backend.chaos`` for what each one does)."""
    return [
        # both analyzers finish at the same moment: their result writes are released together
        {"name": "both analyzers finish together", "fault": "barrier", "service": "dynamodb",
         "operation": "UpdateItem", "match": ["_result = :result"], "groups": 6, "parties": 2, "timeout": 5},
        # an analyzer crash: the custom analyzer's write fails on every attempt for two jobs
        {"name": "custom analyzer crashes", "fault": "error", "service": "dynamodb", "operation": "UpdateItem",
         "match": ["SET custom_result"], "groups": 2, "code": "ChaosAnalyzerCrash"},
        # lost DynamoDB responses: the write is applied, its answer dropped, the SDK retries
        {"name": "lost response: finalize/result writes", "fault": "lost_response", "service": "dynamodb",
         "operation": "UpdateItem", "match": ["finalized_by = :by"], "probability": 0.25},
        {"name": "lost response: notify claim", "fault": "lost_response", "service": "dynamodb",
         "operation": "UpdateItem", "match": ["notify_claimed_by = :by"], "probability": 0.25},
        {"name": "lost response: job created", "fault": "lost_response", "service": "dynamodb",
         "operation": "PutItem", "probability": 0.1},
        # throttling on every DynamoDB operation
        {"name": "DynamoDB throttling", "fault": "throttle", "service": "dynamodb", "operation": "*",
         "probability": 0.05},
        # duplicated SQS deliveries to the dispatcher
        {"name": "duplicate SQS delivery", "fault": "duplicate", "service": "sqs", "operation": "ReceiveMessage",
         "probability": 0.5},
    ]


@dataclass
class Image:
    filename: str
    truth: str
    data: bytes


@dataclass
class Job:
    image: Image
    sent_at: float
    job_id: str | None = None
    status_code: int | None = None
    attempts: int = 0
    notified_at: list[float] = field(default_factory=list)
    item: dict | None = None


def load_images(count: int | None = None, data_dir: Path = DATA_DIR) -> list[Image]:
    """The data set's images with their ground truth, repeated (in order) to ``count`` uploads."""
    labels = Path(data_dir) / "labels.csv"
    if not labels.is_file():
        raise FileNotFoundError(f"{labels} is missing: the image set comes with the repository (data/moderation)")
    with open(labels, newline="") as handle:
        rows = list(csv.DictReader(handle))
    images = [Image(row["filename"], row["truth"], (Path(data_dir) / row["filename"]).read_bytes()) for row in rows]
    if count is None:
        return images
    if count < 1:
        raise ValueError(f"--count must be at least 1, got {count}")
    return [images[i % len(images)] for i in range(count)]


def percentile(values: list[float], share: float) -> float | None:
    """The nearest-rank percentile (``share`` in 0-1) of ``values``; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


class Uploader:
    """POSTs uploads to the API front over keep-alive HTTP/1.1, one connection per thread."""

    def __init__(self, api_url: str) -> None:
        parts = urlsplit(api_url)
        self.host, self.port, self.prefix = parts.hostname, parts.port or 80, parts.path.rstrip("/")
        self._local = threading.local()
        self.requests = 0
        self._lock = threading.Lock()

    def _connection(self) -> http.client.HTTPConnection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._local.connection = http.client.HTTPConnection(self.host, self.port, timeout=60)
        return connection

    def request(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        payload = json.dumps(body).encode() if body is not None else None
        with self._lock:
            self.requests += 1
        for attempt in range(2):
            connection = self._connection()
            try:
                connection.request(method, self.prefix + path, body=payload,
                                   headers={"Content-Type": "application/json"} if payload else {})
                response = connection.getresponse()
                text = response.read()
                try:
                    return response.status, json.loads(text or b"{}")
                except ValueError:
                    return response.status, {"raw": text.decode("utf-8", "replace")}
            except (OSError, http.client.HTTPException):
                connection.close()
                self._local.connection = None
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def upload(self, job: Job, user_id: str = "runner", attempts: int = 5) -> Job:
        """One upload; 429 and 5xx are retried with backoff (a 5xx upload stores nothing)."""
        body = {"user_id": user_id, "filename": job.image.filename, "image": base64.b64encode(job.image.data).decode()}
        for attempt in range(attempts):
            job.attempts = attempt + 1
            status, answer = self.request("POST", "/uploads", body)
            job.status_code = status
            if status == 202:
                job.job_id = answer["job_id"]
                return job
            if status not in (429, 500, 502, 503, 504):
                return job
            time.sleep(min(2.0, 0.1 * 2 ** attempt))  # backoff between retries of a refused upload
        return job


class NotificationCollector:
    """Reads the notifications queue (the SNS topic's SQS subscriber) until stopped."""

    def __init__(self, sqs, queue_url: str) -> None:
        self.sqs, self.queue_url = sqs, queue_url
        self.arrivals: dict[str, list[float]] = defaultdict(list)
        self.messages = 0
        self.empty_polls = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="pipeline-notifications", daemon=True)
        self._lock = threading.Lock()

    def start(self) -> "NotificationCollector":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                got = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10,
                                               WaitTimeSeconds=1).get("Messages", [])
            except Exception:
                if self._stop.is_set():
                    return
                self._stop.wait(0.2)
                continue
            now = time.time()
            with self._lock:
                self.empty_polls = 0 if got else self.empty_polls + 1
                for message in got:
                    job_id = notification_job_id(message["Body"])
                    self.messages += 1
                    if job_id:
                        self.arrivals[job_id].append(now)
            if got:
                self.sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)])

    def quiet(self, polls: int = 2) -> bool:
        """True after ``polls`` long polls in a row found the queue empty."""
        with self._lock:
            return self.empty_polls >= polls

    def reset_quiet(self) -> None:
        with self._lock:
            self.empty_polls = 0


def notification_job_id(body: str) -> str | None:
    """The job id of a notification, in the SNS envelope or raw."""
    try:
        message = json.loads(body)
        if isinstance(message, dict) and message.get("Type") == "Notification":
            message = json.loads(message["Message"])
        return message.get("job_id") if isinstance(message, dict) else None
    except (ValueError, TypeError, KeyError):
        return None


class Progress:
    """A progress bar on stderr: redrawn in place on a terminal, one line every 5 s in a log."""

    def __init__(self, total: int, enabled: bool = True, width: int = 30) -> None:
        self.total, self.enabled, self.width = total, enabled, width
        self.started = time.monotonic()
        self.terminal = sys.stderr.isatty()
        self._last, self._printed_at = "", -5.0

    def show(self, done: int, note: str = "") -> None:
        if not self.enabled:
            return
        filled = int(self.width * done / self.total) if self.total else self.width
        elapsed = time.monotonic() - self.started
        line = (f"[{'#' * filled}{'.' * (self.width - filled)}] {done}/{self.total} jobs notified "
                f"{elapsed:5.1f} s {note}")
        if self.terminal and line != self._last:
            sys.stderr.write("\r" + line + "\x1b[K")
            sys.stderr.flush()
        elif not self.terminal and elapsed - self._printed_at >= 5.0:
            sys.stderr.write(line + "\n")
            self._printed_at = elapsed
            self._written = line
        self._last = line

    def close(self) -> None:
        if self.enabled and self.terminal:
            sys.stderr.write("\r" + self._last + "\x1b[K\n")
        elif self.enabled and self._last != getattr(self, "_written", None):
            sys.stderr.write(self._last + "\n")
        sys.stderr.flush()


def _runner_session():
    """boto3 session signed with :data:`RUNNER_KEY` (endpoints from the environment use_backend set)."""
    import boto3

    return boto3.session.Session(aws_access_key_id=RUNNER_KEY, aws_secret_access_key="test")


def _embedded_endpoint(backend) -> str | None:
    """The embedded emulator's URL (also under localstack, where it serves DynamoDB and Lambda)."""
    if backend.name == "embedded":
        return backend.endpoint
    return backend.lambda_endpoint


def queue_depth(sqs, url: str) -> int:
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
        "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    return sum(int(value) for value in attributes.values())


def peek(sqs, url: str, limit: int = 100) -> list[dict]:
    """Up to ``limit`` messages of a queue, made visible again at once (for counting what is in a DLQ)."""
    seen, handles = {}, []
    for _ in range(20):
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0,
                                  VisibilityTimeout=30, MessageAttributeNames=["All"]).get("Messages", [])
        if not got:
            break
        for message in got:
            seen[message["MessageId"]] = message
            handles.append(message["ReceiptHandle"])
        if len(seen) >= limit:
            break
    for start in range(0, len(handles), 10):
        sqs.change_message_visibility_batch(QueueUrl=url, Entries=[
            {"Id": str(i), "ReceiptHandle": handle, "VisibilityTimeout": 0}
            for i, handle in enumerate(handles[start:start + 10])])
    return list(seen.values())


def read_jobs(table_name: str, job_ids: list[str]) -> dict[str, dict]:
    """The job items, strongly consistent, by id."""
    dynamodb = _runner_session().resource("dynamodb")
    items = {}
    for start in range(0, len(job_ids), 100):
        keys = [{"job_id": job_id} for job_id in job_ids[start:start + 100]]
        request = {table_name: {"Keys": keys, "ConsistentRead": True}}
        while request:
            answer = dynamodb.batch_get_item(RequestItems=request)
            for item in answer["Responses"].get(table_name, []):
                items[item["job_id"]] = item
            request = answer.get("UnprocessedKeys") or None
    return items


def terminal_writers(item: dict) -> set[str]:
    """Who wrote a terminal event into the job's timeline (more than one would be a double finalize)."""
    return {str(event.get("by")) for event in item.get("timeline") or [] if event.get("stage") in TERMINAL}


def report_lines(logs, function_names: list[str], since_ms: int, pattern_prefix: str = "REPORT") -> list[str]:
    """Lines of the functions' CloudWatch log groups since ``since_ms`` starting with ``pattern_prefix``."""
    lines = []
    for name in function_names:
        token = None
        while True:
            kwargs = {"logGroupName": f"/aws/lambda/{name}", "startTime": since_ms}
            if token:
                kwargs["nextToken"] = token
            try:
                page = logs.filter_log_events(**kwargs)
            except logs.exceptions.ResourceNotFoundException:
                break
            lines += [event["message"] for event in page.get("events", [])
                      if event["message"].startswith(pattern_prefix)]
            token = page.get("nextToken")
            if not token or not page.get("events"):
                break
    return lines


def function_log_lines(logs, function_names: list[str], since_ms: int) -> list[str]:
    """Every JSON log line the functions wrote since ``since_ms`` (for timelines and race counts)."""
    return report_lines(logs, function_names, since_ms, pattern_prefix="{")


def job_timeline(function_names: list[str], job_id: str, since_ms: int = 0) -> list[dict]:
    """A job's timeline assembled from its functions' structured logs in CloudWatch Logs
    (``[{"stage", "at", "by"}]``, time order): the log-side twin of the item's ``timeline``."""
    from ..backend import use_backend
    from .layer import layer_module

    logs = _runner_session().client("logs", endpoint_url=_embedded_endpoint(use_backend()))
    lines = function_log_lines(logs, function_names, since_ms)
    return layer_module("joblog").timeline_from_logs(lines, job_id)


def lambda_usage(report: list[str]) -> dict:
    """Invocations and GB-seconds from REPORT lines, with their estimated USD."""
    from ..ledger import prices

    import re

    pattern = re.compile(r"Billed Duration: (\d+) ms\s+Memory Size: (\d+) MB")
    gb_seconds, invocations = 0.0, 0
    for line in report:
        match = pattern.search(line)
        if match:
            invocations += 1
            gb_seconds += int(match.group(1)) / 1000 * int(match.group(2)) / 1024
    table = prices()
    cost = invocations * table[("lambda", "request")] + gb_seconds * table[("lambda", "gb_second_x86")]
    return {"invocations": invocations, "gb_seconds": round(gb_seconds, 4), "cost_usd": cost}


def _wait_stable(read, timeout: float = 15.0, settle_reads: int = 3):
    """``read()`` until it gives the same length ``settle_reads`` times in a row (logs ship asynchronously)."""
    deadline = time.monotonic() + timeout
    value, same, last = read(), 0, None
    while time.monotonic() < deadline:
        if last is not None and len(value) == len(last):
            same += 1
            if same >= settle_reads:
                break
        else:
            same = 0
        last = value
        time.sleep(0.3)  # between reads of an eventually-complete log, to a deadline
        value = read()
    return value


def run(count: int | None = None, chaos: bool = False, clients: int = 8, timeout: float = 300.0,
        stack_name: str = "moderation", progress: bool = True, parameters: dict | None = None,
        stack=None, teardown: bool = False, rate: float | None = None) -> dict:
    """Deploy (unless ``stack`` is given), upload, wait, and return the summary (see module docstring).

    ``rate``: offer uploads at this many per second (open loop: upload i is sent at start + i/rate,
    whatever the pipeline's pace) instead of as fast as the clients go; latency under a steady
    load, rather than the time a burst takes to drain."""
    from ..backend import chaos as chaos_rules_module
    from ..backend import request_log, use_backend
    from . import deploy as deployer

    backend = use_backend()
    images = load_images(count)
    if stack is None:
        stack = deployer.deploy(stack_name, parameters={**(CHAOS_PARAMETERS if chaos else {}), **(parameters or {})})
    if not stack.api_url:
        raise RuntimeError("the stack has no API front (deploy(api=True) serves one)")
    session = _runner_session()
    embedded = _embedded_endpoint(backend)
    # CloudWatch Logs is where the local Lambda service ships the functions' logs: the embedded backend's
    sqs, logs = session.client("sqs"), session.client("logs", endpoint_url=embedded)
    functions = list(stack.function_names.values())
    stuck_after = float(stack.outputs.get("StuckAfterSeconds") or (parameters or {}).get("StuckAfterSeconds")
                        or (CHAOS_PARAMETERS if chaos else deployer.LOCAL_PARAMETERS)["StuckAfterSeconds"])
    rules = chaos_rules_module.ChaosClient(embedded) if (chaos and embedded) else None
    collector = NotificationCollector(sqs, stack.output("NotificationsQueueUrl")).start()
    uploader = Uploader(stack.api_url)
    started_ms = int(time.time() * 1000) - 1000
    if embedded:
        request_log.fetch(embedded, "POST")
    poison_bodies: list[str] = []
    bar = Progress(len(images), enabled=progress)
    try:
        if rules is not None:
            rules.clear()
            rules.add(chaos_rules(), seed=7)
            poison_bodies = ["this is not JSON: a poison message", json.dumps({"job_id": f"poison-{uuid.uuid4()}"})]
            for body in poison_bodies:
                sqs.send_message(QueueUrl=stack.output("JobsQueueUrl"), MessageBody=body)
        run_started = time.time()
        jobs = [Job(image, 0.0) for image in images]

        def send(index: int, job: Job) -> Job:
            if rate:
                wait = run_started + index / rate - time.time()
                if wait > 0:
                    time.sleep(wait)  # open-loop pacing: this upload's slot in the offered load
            job.sent_at = time.time()
            return uploader.upload(job)

        with ThreadPoolExecutor(max_workers=max(1, clients)) as pool:
            futures = [pool.submit(send, index, job) for index, job in enumerate(jobs)]
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                done = sum(1 for job in jobs if job.job_id and collector.arrivals.get(job.job_id))
                bar.show(done, f"({sum(f.done() for f in futures)}/{len(jobs)} uploaded)")
                if all(f.done() for f in futures) and all(
                        collector.arrivals.get(job.job_id) for job in jobs if job.job_id):
                    break
                time.sleep(0.1)  # progress refresh; the deadline bounds the wait
            for future in futures:
                future.result(timeout=max(0.1, deadline - time.monotonic()))
        accepted = [job for job in jobs if job.job_id]
        # Let the stragglers settle: poison reaching its DLQ, duplicates that might still publish.
        settle_deadline = time.monotonic() + (max(30.0, 6 * stuck_after) if chaos else 15.0)
        jobs_dlq = stack.output("JobsDeadLetterQueueUrl")
        while time.monotonic() < settle_deadline:
            items = read_jobs(stack.output("JobsTableName"), [job.job_id for job in accepted])
            open_jobs = [item for item in items.values() if item.get("status") not in TERMINAL]
            unnotified = [job for job in accepted if not collector.arrivals.get(job.job_id)]
            poison_parked = (not poison_bodies) or queue_depth(sqs, jobs_dlq) >= len(poison_bodies)
            bar.show(len(accepted) - len(unnotified), f"settling: {len(open_jobs)} jobs open"
                     + (f", poison in the DLQ: {poison_parked}" if poison_bodies else ""))
            if not open_jobs and not unnotified and poison_parked and queue_depth(sqs, stack.output("JobsQueueUrl")) == 0:
                collector.reset_quiet()
                while not collector.quiet(2) and time.monotonic() < settle_deadline:
                    time.sleep(0.1)  # until two long polls in a row found no further notification
                break
            time.sleep(0.25)  # re-check the job states, to the settle deadline
        finished = time.time()
    finally:
        bar.close()
        collector.stop()
        chaos_report = rules.report() if rules is not None else []
        if rules is not None:
            rules.clear()
    calls = request_log.fetch(embedded) if embedded else []
    if embedded:
        request_log.fetch(embedded, "DELETE")
    items = read_jobs(stack.output("JobsTableName"), [job.job_id for job in accepted])
    for job in accepted:
        job.item = items.get(job.job_id)
        job.notified_at = collector.arrivals.get(job.job_id, [])
    report = _wait_stable(lambda: report_lines(logs, functions, started_ms))
    log_lines = function_log_lines(logs, functions, started_ms) if chaos else []
    dlq_messages = {"jobs": peek(sqs, jobs_dlq), "analyzer": peek(sqs, stack.output("AnalyzerDeadLetterQueueUrl"))}
    summary = summarize(jobs, accepted, calls, report, uploader.requests, run_started, finished, stuck_after,
                        dlq_messages, poison_bodies, chaos_report, log_lines, backend.name, stack.name)
    if teardown:
        stack.teardown()
    return summary


def summarize(jobs, accepted, calls, report, api_requests, started, finished, stuck_after, dlq_messages,
              poison_bodies, chaos_report, log_lines, backend_name, stack_name) -> dict:
    """The run's figures (what ``--json`` prints)."""
    from ..ledger import prices

    statuses = Counter((job.item or {}).get("status", "missing") for job in accepted)
    decisions = Counter((job.item or {}).get("decision") for job in accepted if (job.item or {}).get("status") == "decided")
    confusion: dict[str, Counter] = defaultdict(Counter)
    for job in accepted:
        item = job.item or {}
        column = item.get("decision") if item.get("status") == "decided" else item.get("status", "missing")
        confusion[job.image.truth][column] += 1
    latencies = [job.notified_at[0] - job.sent_at for job in accepted if job.notified_at]
    notifications = sum(len(job.notified_at) for job in accepted)
    per_job = Counter(len(job.notified_at) for job in accepted)
    service_calls = [row for row in calls if row["caller"] != RUNNER_KEY]
    counted = sum(row["calls"] for row in service_calls)
    by_service = Counter()
    for row in service_calls:
        by_service[row["service"]] += row["calls"]
    lambda_cost = lambda_usage(report)
    table = prices()
    data_cost = sum(row["cost_usd"] for row in service_calls if row["service"] != "lambda")  # Lambda: from REPORT lines
    api_cost = api_requests * table[("apigateway", "rest_request")]
    total_cost = data_cost + lambda_cost["cost_usd"] + api_cost
    n = max(1, len(accepted))
    terminal_once = all(item_terminal_once(job.item) for job in accepted)
    poison_in_dlq = all(any(m["Body"] == body for m in dlq_messages["jobs"]) for body in poison_bodies)
    stuck = [job.job_id for job in accepted if (job.item or {}).get("status") not in TERMINAL]
    summary = {
        "backend": backend_name, "stack": stack_name,
        "uploads": len(jobs), "jobs": len(accepted),
        "refused": Counter(str(job.status_code) for job in jobs if not job.job_id),
        "upload_attempts": sum(job.attempts for job in jobs),
        "completed": sum(statuses[s] for s in TERMINAL),
        "statuses": dict(statuses),
        "decisions": {decision: decisions.get(decision, 0) for decision in DECISIONS},
        "confusion": {truth: dict(row) for truth, row in sorted(confusion.items())},
        "notifications": notifications,
        "notifications_per_job": {str(k): v for k, v in sorted(per_job.items())},
        "dlq_depth": {name: len(messages) for name, messages in dlq_messages.items()},
        "stuck": len(stuck),
        "latency_s": {"p50": _round(percentile(latencies, 0.5)), "p95": _round(percentile(latencies, 0.95)),
                      "max": _round(max(latencies) if latencies else None)},
        "seconds": round(finished - started, 3),
        "jobs_per_second": round(len(accepted) / max(1e-9, max((j.notified_at[0] for j in accepted if j.notified_at),
                                                             default=finished) - started), 2),
        "api_calls_per_job": round(counted / n, 2),
        "api_calls_by_service": {service: round(count / n, 2) for service, count in sorted(by_service.items())},
        "lambda": lambda_cost,
        "emulator_seconds": round(sum(row.get("seconds", 0.0) for row in calls), 3),
        "cost_per_1000_images_usd": round(total_cost / n * 1000, 4),
        "cost_breakdown_per_1000_usd": {
            **{service: round(sum(r["cost_usd"] for r in service_calls if r["service"] == service) / n * 1000, 4)
               for service in sorted(by_service) if service != "lambda"},
            "lambda": round(lambda_cost["cost_usd"] / n * 1000, 4), "apigateway": round(api_cost / n * 1000, 4)},
        "calls_counted": "server-side by the embedded backend (per caller, this driver's own left out); "
                         "Lambda from REPORT lines; API Gateway from the uploads sent",
    }
    if poison_bodies or chaos_report:
        races = sum(1 for line in log_lines if "finalize race lost" in line)
        summary["chaos"] = {
            "rules": [{"name": rule["name"], "fired": rule["fired"]} for rule in chaos_report],
            "finalize_races_lost": races,
            "criteria": {
                "every valid job ends in exactly one terminal state": terminal_once and not stuck,
                "exactly one notification per job": per_job == Counter({1: len(accepted)}),
                "poison ends in a DLQ": poison_in_dlq,
                f"nothing stuck past the sweeper's deadline ({stuck_after:g} s)": not stuck,
            },
        }
        summary["chaos"]["passed"] = all(summary["chaos"]["criteria"].values())
    return summary


def item_terminal_once(item: dict | None) -> bool:
    return bool(item) and item.get("status") in TERMINAL and len(terminal_writers(item)) == 1


def _round(value):
    return None if value is None else round(value, 3)


def format_summary(summary: dict) -> str:
    """The human-readable summary ``make pipeline`` prints."""
    lines = [f"pipeline run on {summary['backend']} (stack {summary['stack']}): {summary['jobs']} jobs accepted "
             f"of {summary['uploads']} uploads, {summary['completed']} completed, {summary['stuck']} stuck, "
             f"in {summary['seconds']:.1f} s ({summary['jobs_per_second']} jobs/s)"]
    columns = list(DECISIONS) + sorted({c for row in summary["confusion"].values() for c in row} - set(DECISIONS))
    lines.append("")
    lines.append("decision vs ground truth (rows: truth)")
    lines.append(f"{'':12}" + "".join(f"{column:>15}" for column in columns))
    for truth, row in summary["confusion"].items():
        lines.append(f"{truth:12}" + "".join(f"{row.get(column, 0):>15}" for column in columns))
    latency = summary["latency_s"]
    lines += ["",
              f"upload -> notification latency: p50 {latency['p50']} s, p95 {latency['p95']} s, max {latency['max']} s",
              f"notifications: {summary['notifications']} (per job: {summary['notifications_per_job']}), "
              f"DLQ depth: {summary['dlq_depth']}",
              f"API calls per job: {summary['api_calls_per_job']} {summary['api_calls_by_service']}; "
              f"Lambda: {summary['lambda']['invocations']} invocations, {summary['lambda']['gb_seconds']} GB-s",
              f"estimated AWS cost per 1,000 images: ${summary['cost_per_1000_images_usd']:.4f} "
              f"{summary['cost_breakdown_per_1000_usd']}",
              f"  (calls counted {summary['calls_counted']})"]
    if "chaos" in summary:
        chaos = summary["chaos"]
        lines += ["", "chaos: " + ", ".join(f"{rule['name']} x{rule['fired']}" for rule in chaos["rules"]),
                  f"  finalize races lost (both branches tried, one won): {chaos['finalize_races_lost']}"]
        for criterion, ok in chaos["criteria"].items():
            lines.append(f"  [{'PASS' if ok else 'FAIL'}] {criterion}")
        lines.append(f"chaos criteria: {'all passed' if chaos['passed'] else 'FAILED'}")
    return "\n".join(lines)


def stack_outputs(stack_name: str) -> dict[str, str]:
    """A deployed stack's outputs, from CloudFormation on the embedded backend (where the deployer creates it)."""
    from ..backend import use_backend

    backend = use_backend()
    cloudformation = _runner_session().client("cloudformation", endpoint_url=_embedded_endpoint(backend))
    try:
        stack = cloudformation.describe_stacks(StackName=stack_name)["Stacks"][0]
    except cloudformation.exceptions.ClientError:
        raise LookupError(f"no stack {stack_name!r} on this backend: deploy it first (the emulator must keep "
                          "running between commands: python -m cloudlab backend serve)") from None
    return {output["OutputKey"]: output["OutputValue"] for output in stack.get("Outputs", [])}


def replay_dlq(stack_name: str = "moderation", which: tuple[str, ...] = ("jobs", "analyzer"),
               outputs: dict[str, str] | None = None) -> dict[str, int]:
    """Move dead-lettered messages back: the jobs DLQ's messages to the jobs queue, the analyzer
    DLQ's failed invokes (OnFailure records) to their function as new async invokes.

    A replayed job that was failed meanwhile stays failed (its writes are conditional on
    ``analyzing``); poison comes back to the DLQ after its receives."""
    outputs = outputs or stack_outputs(stack_name)
    session = _runner_session()
    sqs, lam = session.client("sqs"), session.client("lambda")
    moved = {"jobs": 0, "analyzer": 0}
    sources = {"jobs": outputs["JobsDeadLetterQueueUrl"], "analyzer": outputs["AnalyzerDeadLetterQueueUrl"]}
    for name in which:
        url = sources[name]
        while True:
            got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
            if not got:
                break
            for message in got:
                if name == "jobs":
                    sqs.send_message(QueueUrl=outputs["JobsQueueUrl"], MessageBody=message["Body"])
                else:
                    record = json.loads(message["Body"])
                    function = record["requestContext"]["functionArn"].rsplit(":", 1)[0]
                    lam.invoke(FunctionName=function, InvocationType="Event",
                               Payload=json.dumps(record["requestPayload"]).encode())
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
                moved[name] += 1
    return moved


# -- command line (registered by cli.py) --------------------------------------------------------------
def _run_command(args) -> int:
    summary = run(count=args.count, chaos=args.chaos, clients=args.clients, timeout=args.timeout, rate=args.rate,
                  stack_name=args.stack, progress=not args.json and not args.no_progress)
    print(json.dumps(summary, indent=2, default=str) if args.json else format_summary(summary))
    if "chaos" in summary and not summary["chaos"]["passed"]:
        return 1
    return 0 if summary["completed"] == summary["jobs"] and summary["jobs"] else 1


def _replay_command(args) -> int:
    try:
        moved = replay_dlq(args.stack, tuple(args.queue or ("jobs", "analyzer")))
    except LookupError as error:
        print(error, file=sys.stderr)
        return 1
    print(f"moved back: {moved['jobs']} from the jobs DLQ to the jobs queue, "
          f"{moved['analyzer']} analyzer events re-invoked")
    return 0


def add_parsers(actions) -> None:
    """``pipeline run`` and ``pipeline replay-dlq`` on the ``pipeline`` command's subparsers."""
    command = actions.add_parser("run", help="deploy, push the image set through the API, wait, print the summary")
    command.add_argument("--count", type=int, default=None, help="uploads (the image set repeated; default: the set once)")
    command.add_argument("--chaos", action="store_true", help="inject faults and print the pass criteria")
    command.add_argument("--json", action="store_true", help="print the summary as JSON")
    command.add_argument("--clients", type=int, default=8, help="parallel upload clients (default 8)")
    command.add_argument("--rate", type=float, default=None, help="offer uploads at this many per second (default: as fast as the clients go)")
    command.add_argument("--timeout", type=float, default=300, help="seconds to wait for every job (default 300)")
    command.add_argument("--stack", default="moderation", help="stack name (default moderation)")
    command.add_argument("--no-progress", action="store_true", help="no progress bar")
    command.set_defaults(run=_run_command)
    replay = actions.add_parser("replay-dlq", help="move dead-lettered messages back (needs a served backend)")
    replay.add_argument("--stack", default="moderation", help="stack name (default moderation)")
    replay.add_argument("--queue", action="append", choices=["jobs", "analyzer"], help="which DLQ (default both)")
    replay.set_defaults(run=_replay_command)
