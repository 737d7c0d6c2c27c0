"""A ledger of every AWS call the kernel makes, and what it would cost on AWS.

Introduced in notebook 02 (comparing S3 key designs in requests and dollars); reused by
later topics (SQS batching and polling styles, the pipeline's calls per job).

It listens to botocore's own events (``request-created`` and ``response-received``) on every
session made after ``import cloudlab``, so student code is never wrapped or changed::

    with Ledger() as ledger:
        s3.list_objects_v2(Bucket="photos", Prefix="uploads/u1/")
    ledger.summary()          # calls, bytes, latency and estimated USD per operation
    ledger.cost()             # total estimated USD

Prices come from one table, ``cloudlab/data/aws_prices.csv`` (source and date per row). Estimates
are list prices for us-east-1 with no free tier; request payload sizes are measured on the
wire, so API envelope bytes count towards SQS/SNS 64 KB chunks (a slight overestimate).
Calls made by other processes (Lambda execution environments, subprocesses) are not seen.
"""

from __future__ import annotations

import base64
import csv
import json
import math
import re
import threading
import time
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

PRICES_CSV = Path(__file__).resolve().parent / "data" / "aws_prices.csv"  # package data
CHUNK = 64 * 1024

_active: list["Ledger"] = []
_active_lock = threading.Lock()
_installed = {"done": False}


@lru_cache(maxsize=1)
def prices() -> dict[tuple[str, str], float]:
    """USD per single unit, keyed by (service, item), from ``cloudlab/data/aws_prices.csv``."""
    with open(PRICES_CSV, newline="") as handle:
        return {(row["service"], row["item"]): float(row["usd"]) / float(row["per"]) for row in csv.DictReader(handle)}


@dataclass
class CallRecord:
    """One HTTP attempt of one AWS API call (retries are separate records, as AWS bills them)."""

    service: str
    operation: str
    status: int | None
    bytes_out: int
    bytes_in: int
    latency_ms: float
    units: dict[str, float] = field(default_factory=dict)
    cost_usd: float = 0.0
    error: str | None = None


# --- what AWS bills for one call ------------------------------------------------------

_S3_FREE = ("Delete", "AbortMultipartUpload")
_S3_TIER1 = ("Put", "Copy", "Post", "List", "Create", "Complete", "Upload", "Restore")


def _s3_units(operation: str, **_) -> dict[str, float]:
    if operation.startswith(_S3_FREE):
        return {"free_request": 1}
    return {"tier1_request": 1} if operation.startswith(_S3_TIER1) else {"tier2_request": 1}


def _chunks(payload_bytes: int) -> int:
    return max(1, math.ceil(payload_bytes / CHUNK))


def _sqs_units(operation: str, request_body: bytes, bytes_out: int, bytes_in: int, **_) -> dict[str, float]:
    kind = "fifo_request" if b".fifo" in request_body else "standard_request"
    payload = bytes_in if operation == "ReceiveMessage" else bytes_out
    return {kind: _chunks(payload)}


def _sns_units(operation: str, bytes_out: int, **_) -> dict[str, float]:
    return {"publish_request": _chunks(bytes_out) if operation.startswith("Publish") else 1}


def dynamodb_item_size(item: dict) -> int:
    """Approximate DynamoDB item size in bytes (attribute names plus values), per the
    DynamoDB developer guide's sizing rules."""
    return sum(len(name.encode()) + _attribute_size(value) for name, value in item.items())


def _attribute_size(value: dict) -> int:
    (kind, data), = value.items()
    if kind == "S":
        return len(data.encode())
    if kind == "N":
        return (len(data.strip("-").replace(".", "")) + 1) // 2 + 1
    if kind == "B":
        return len(base64.b64decode(data)) if isinstance(data, str) else len(data)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(s.encode()) for s in data)
    if kind == "NS":
        return sum((len(n.strip("-").replace(".", "")) + 1) // 2 + 1 for n in data)
    if kind == "BS":
        return sum(len(base64.b64decode(b)) if isinstance(b, str) else len(b) for b in data)
    if kind == "L":
        return 3 + sum(_attribute_size(v) + 1 for v in data)
    if kind == "M":
        return 3 + sum(len(k.encode()) + _attribute_size(v) + 1 for k, v in data.items())
    return 0


def _dynamodb_units(operation: str, request: dict, response: dict, **_) -> dict[str, float]:
    def writes(size: int) -> float:
        return max(1, math.ceil(size / 1024))

    def reads(size: int, consistent: bool) -> float:
        return max(1, math.ceil(size / 4096)) * (1 if consistent else 0.5)

    if operation == "PutItem":
        return {"write_request_unit": writes(dynamodb_item_size(request.get("Item", {})))}
    if operation in ("UpdateItem", "DeleteItem"):
        # A failed condition still consumes write capacity; size: the larger of old and new.
        sizes = [dynamodb_item_size(request.get("Key", {}))]
        for key in ("Attributes",):
            if isinstance(response.get(key), dict):
                sizes.append(dynamodb_item_size(response[key]))
        return {"write_request_unit": writes(max(sizes))}
    if operation == "BatchWriteItem":
        total = 0.0
        for entries in request.get("RequestItems", {}).values():
            for entry in entries:
                item = entry.get("PutRequest", {}).get("Item") or entry.get("DeleteRequest", {}).get("Key", {})
                total += writes(dynamodb_item_size(item))
        return {"write_request_unit": total}
    if operation == "TransactWriteItems":
        total = 0.0
        for entry in request.get("TransactItems", []):
            (action, body), = entry.items()
            total += 2 * writes(dynamodb_item_size(body.get("Item") or body.get("Key") or {}))
        return {"write_request_unit": total}
    if operation == "GetItem":
        return {"read_request_unit": reads(dynamodb_item_size(response.get("Item", {})), request.get("ConsistentRead", False))}
    if operation in ("Query", "Scan"):
        size = sum(dynamodb_item_size(item) for item in response.get("Items", []))
        return {"read_request_unit": reads(size, request.get("ConsistentRead", False))}
    if operation == "BatchGetItem":
        total = 0.0
        for table, items in response.get("Responses", {}).items():
            consistent = request.get("RequestItems", {}).get(table, {}).get("ConsistentRead", False)
            total += sum(reads(dynamodb_item_size(item), consistent) for item in items)
        return {"read_request_unit": total}
    if operation == "TransactGetItems":
        return {"read_request_unit": sum(2 * reads(dynamodb_item_size(r.get("Item", {})), True)
                                         for r in response.get("Responses", []))}
    return {}


_REPORT = re.compile(r"Billed Duration: (\d+) ms\s+Memory Size: (\d+) MB")


def _lambda_units(operation: str, response_headers: dict, latency_ms: float, **_) -> dict[str, float]:
    if operation != "Invoke":
        return {}
    units = {"request": 1}
    log = response_headers.get("x-amz-log-result")
    match = _REPORT.search(base64.b64decode(log).decode("utf-8", "replace")) if log else None
    if match:
        billed_ms, memory_mb = int(match.group(1)), int(match.group(2))
    else:  # no REPORT line asked for: bound it by the client-side latency at 128 MB
        billed_ms, memory_mb = math.ceil(latency_ms), 128
    units["gb_second_x86"] = billed_ms / 1000 * memory_mb / 1024
    return units


def _rekognition_units(operation: str, **_) -> dict[str, float]:
    return {"image": 1} if operation.startswith("Detect") or operation in ("RecognizeCelebrities", "CompareFaces") else {}


_UNITS = {"s3": _s3_units, "sqs": _sqs_units, "sns": _sns_units, "dynamodb": _dynamodb_units, "lambda": _lambda_units,
          "rekognition": _rekognition_units}


def estimate(service: str, operation: str, **details) -> tuple[dict[str, float], float]:
    """The billing units and USD AWS would charge for one call."""
    rule = _UNITS.get(service)
    units = rule(operation, **details) if rule else {}
    table = prices()
    return units, sum(amount * table.get((service, item), 0.0) for item, amount in units.items())


# --- botocore hooks -------------------------------------------------------------------

def _body_bytes(body) -> bytes:
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode()
    return b""


def _body_length(request) -> int:
    length = request.headers.get("Content-Length")
    if length:
        return int(length)
    body = request.body
    if isinstance(body, (bytes, str)):
        return len(body)
    try:
        position = body.tell()
        body.seek(0, 2)
        size = body.tell() - position
        body.seek(position)
        return size
    except Exception:
        return 0


def _on_request_created(request, operation_name=None, **_) -> None:
    if not _active:
        return
    context = getattr(request, "context", None)
    if context is not None:
        context["cloudlab_ledger"] = (time.perf_counter(), _body_length(request), _body_bytes(request.body))


def _on_response_received(event_name, response_dict=None, parsed_response=None, context=None, exception=None, **kwargs) -> None:
    if not _active or context is None or "cloudlab_ledger" not in context:
        return
    started, bytes_out, request_body = context.pop("cloudlab_ledger")
    latency_ms = (time.perf_counter() - started) * 1000
    _, service, operation = event_name.split(".", 2)
    headers = {k.lower(): v for k, v in (response_dict or {}).get("headers", {}).items()}
    body = (response_dict or {}).get("body", b"")
    bytes_in = int(headers.get("content-length") or (len(body) if isinstance(body, (bytes, str)) else 0))
    request_json, response_json = {}, parsed_response or {}
    if service == "dynamodb":
        try:
            request_json = json.loads(request_body or b"{}")
        except ValueError:
            request_json = {}
    units, cost = estimate(service, operation, request_body=request_body, bytes_out=bytes_out, bytes_in=bytes_in,
                           request=request_json, response=response_json, response_headers=headers,
                           latency_ms=latency_ms)
    error = None
    if exception is not None:
        error = type(exception).__name__
    elif isinstance(response_json, dict) and "Error" in response_json:
        error = response_json["Error"].get("Code")
    record = CallRecord(service, operation, (response_dict or {}).get("status_code"), bytes_out, bytes_in,
                        latency_ms, units, cost, error)
    with _active_lock:
        for ledger in _active:
            ledger.records.append(record)


def install() -> None:
    """Add the hooks to every botocore session made from now on (done by ``import cloudlab``)."""
    if _installed["done"]:
        return
    from botocore import handlers

    handlers.BUILTIN_HANDLERS.append(("request-created", _on_request_created))
    handlers.BUILTIN_HANDLERS.append(("response-received", _on_response_received))
    import boto3

    if boto3.DEFAULT_SESSION is not None:
        boto3.DEFAULT_SESSION.events.register("request-created", _on_request_created)
        boto3.DEFAULT_SESSION.events.register("response-received", _on_response_received)
    _installed["done"] = True


class Ledger:
    """Records the AWS calls made while it is active (introduced in notebook 02)."""

    def __init__(self) -> None:
        install()
        self.records: list[CallRecord] = []

    def start(self) -> "Ledger":
        with _active_lock:
            _active.append(self)
        return self

    def stop(self) -> "Ledger":
        with _active_lock:
            if self in _active:
                _active.remove(self)
        return self

    def __enter__(self) -> "Ledger":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def count(self, service: str | None = None, operation: str | None = None) -> int:
        return sum(1 for r in self.records
                   if (service is None or r.service == service) and (operation is None or r.operation == operation))

    def cost(self) -> float:
        """Estimated USD for all recorded calls."""
        return sum(r.cost_usd for r in self.records)

    def frame(self):
        """One row per call, as a pandas DataFrame."""
        import pandas as pd

        return pd.DataFrame([asdict(r) for r in self.records])

    def summary(self):
        """Calls, bytes, mean latency and estimated USD per service and operation."""
        import pandas as pd

        columns = ["service", "operation", "calls", "errors", "bytes_out", "bytes_in", "mean_latency_ms", "cost_usd"]
        if not self.records:
            return pd.DataFrame(columns=columns)
        frame = self.frame()
        grouped = frame.groupby(["service", "operation"], sort=True).agg(
            calls=("operation", "size"), errors=("error", lambda e: int(e.notna().sum())),
            bytes_out=("bytes_out", "sum"), bytes_in=("bytes_in", "sum"),
            mean_latency_ms=("latency_ms", "mean"), cost_usd=("cost_usd", "sum"))
        return grouped.reset_index()[columns]

    def cost_per_million(self, jobs: int = 1) -> float:
        """Estimated USD per million repetitions of what was recorded, divided over ``jobs``."""
        return self.cost() / jobs * 1_000_000
