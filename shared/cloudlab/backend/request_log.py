"""Server-side count of the API calls the embedded backend answers, and what AWS would bill for them.

Introduced with the capstone (notebook 06, ``python -m cloudlab pipeline run``). The kernel's
:class:`cloudlab.ledger.Ledger` sees only the kernel's own boto3 calls; a serverless
application's calls come from Lambda execution environments (other processes) and from the
Lambda service itself (SQS pollers, async-invoke DLQ sends). They all arrive here, so this is
where they are counted: per caller (the access key id a request is signed with), service and
operation, with the billing units and USD from the same price table and rules as the ledger
(``cloudlab.ledger.estimate``; DynamoDB units from the request and response bodies).

Off unless started::

    POST   <endpoint>/_cloudlab/requests   -> start counting (from zero)
    GET    <endpoint>/_cloudlab/requests   -> {"calls": [{"caller", "service", "operation", "calls", "errors",
                                               "units", "cost_usd", "seconds"}]}
    DELETE <endpoint>/_cloudlab/requests   -> stop counting and forget

Under ``CLOUDLAB_BACKEND=localstack`` only the services the embedded emulator serves there
(DynamoDB, Lambda, IAM, Logs) are counted; S3, SQS and SNS calls go to LocalStack.
"""

from __future__ import annotations

import json
import threading
from collections import defaultdict

PATH = "/_cloudlab/requests"


class RequestLog:
    def __init__(self) -> None:
        self.active = False
        self._lock = threading.Lock()
        self._rows: dict[tuple[str, str, str], dict] = {}

    def start(self) -> None:
        with self._lock:
            self._rows.clear()
            self.active = True

    def stop(self) -> None:
        with self._lock:
            self._rows.clear()
            self.active = False

    def record(self, caller: str, service: str, operation: str, status: int, request: bytes, response: bytes,
               seconds: float = 0.0) -> None:
        from ..ledger import estimate

        details = {"request_body": request, "bytes_out": len(request), "bytes_in": len(response),
                   "request": {}, "response": {}, "response_headers": {}, "latency_ms": 0.0}
        if service == "dynamodb":
            try:
                details["request"] = json.loads(request or b"{}")
                details["response"] = json.loads(response or b"{}")
            except ValueError:
                pass
        units, cost = estimate(service, operation, **details) if status < 400 or service == "dynamodb" else ({}, 0.0)
        with self._lock:
            row = self._rows.get((caller, service, operation))
            if row is None:
                row = self._rows[(caller, service, operation)] = {
                    "caller": caller, "service": service, "operation": operation, "calls": 0, "errors": 0,
                    "units": defaultdict(float), "cost_usd": 0.0, "seconds": 0.0}
            row["calls"] += 1
            row["errors"] += status >= 400
            for name, amount in units.items():
                row["units"][name] += amount
            row["cost_usd"] += cost
            row["seconds"] += seconds  # CPU seconds the emulator spent answering (for the benchmark)

    def report(self) -> list[dict]:
        with self._lock:
            return [dict(row, units=dict(row["units"])) for row in self._rows.values()]


LOG = RequestLog()


def http_answer(method: str) -> tuple[int, dict, bytes]:
    headers = {"Content-Type": "application/json"}
    if method == "POST":
        LOG.start()
    elif method == "DELETE":
        LOG.stop()
    elif method != "GET":
        return 405, headers, b'{"message": "GET, POST or DELETE"}'
    return 200, headers, json.dumps({"active": LOG.active, "calls": LOG.report()}).encode()


def fetch(endpoint: str, method: str = "GET") -> list[dict]:
    """Start (POST), read (GET) or stop (DELETE) the count of the embedded backend at ``endpoint``."""
    import urllib.request

    request = urllib.request.Request(endpoint.rstrip("/") + PATH, method=method, data=b"" if method != "GET" else None)
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)["calls"]
