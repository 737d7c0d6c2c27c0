"""Structured JSON log lines with ``job_id`` on every line, and a job's timeline from them.

Part of the pipeline's Lambda layer (notebook 06, the capstone). Every function logs through
:func:`log`; each line is one JSON object on stdout, which Lambda ships to CloudWatch Logs::

    {"level": "INFO", "message": "job claimed", "job_id": "9f1c...", "stage": "analyzing",
     "at": 1764504000.123, "function": "moderation-DispatcherFunction-...", "request_id": "...",
     "service": "dispatcher", "timestamp": "..."}

Lines that carry a ``stage`` are the job's milestones; :func:`timeline_from_logs` rebuilds a
job's timeline from any set of log lines (CloudWatch Logs events, a test's captured output),
which is what CloudWatch Logs Insights would do with ``filter job_id = ...``.

aws-lambda-powertools' ``Logger`` formats the lines when it is importable (it is in the
course's environment; on AWS add it to the layer or use its public layer); otherwise a small
stdlib formatter writes the same keys.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import sys
import time

_invocation: contextvars.ContextVar[dict] = contextvars.ContextVar("moderation_invocation", default={})
_loggers: dict[str, object] = {}


def _powertools_logger(service: str):
    try:
        from aws_lambda_powertools import Logger
    except ImportError:
        return None
    return Logger(service=service, level=os.environ.get("LOG_LEVEL", "INFO"), log_uncaught_exceptions=False)


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {"level": record.levelname, "message": record.getMessage(), "service": record.name.split(".", 1)[-1],
                "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"}
        line.update(getattr(record, "fields", {}))
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def _stdlib_logger(service: str) -> logging.Logger:
    logger = logging.getLogger(f"moderation.{service}")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(_JsonFormatter())
        logger.addHandler(handler)
        logger.propagate = False
        logger.setLevel(os.environ.get("LOG_LEVEL", "INFO"))
    return logger


def logger_for(service: str):
    """The logger of one function (``service``: upload, dispatcher, ...), made once."""
    if service not in _loggers:
        _loggers[service] = _powertools_logger(service) or _stdlib_logger(service)
    return _loggers[service]


def start_invocation(service: str, context=None) -> None:
    """Remember which function and request the following lines belong to (call first in a handler)."""
    _invocation.set({"service": service,
                     "function": getattr(context, "function_name", None) or os.environ.get("AWS_LAMBDA_FUNCTION_NAME"),
                     "request_id": getattr(context, "aws_request_id", None)})


def request_id() -> str | None:
    """The current invocation's request id (``context.aws_request_id``), if a handler set it."""
    return _invocation.get().get("request_id")


def log(message: str, job_id: str | None, *, stage: str | None = None, level: str = "INFO", **fields) -> dict:
    """Write one JSON line about ``job_id``; with ``stage``, it is a timeline milestone. Returns the fields."""
    invocation = _invocation.get()
    line = {"job_id": job_id, "function": invocation.get("function"), "request_id": invocation.get("request_id")}
    if stage is not None:
        line["stage"] = stage
        line["at"] = round(time.time(), 6)
    line.update(fields)
    logger = logger_for(invocation.get("service") or "pipeline")
    method = getattr(logger, level.lower())
    if isinstance(logger, logging.Logger):
        method(message, extra={"fields": line})
    else:  # powertools: extra keys become top-level keys of the JSON line
        method(message, extra=line)
    return line


def parse_lines(lines) -> list[dict]:
    """The JSON objects among ``lines`` (strings or CloudWatch Logs events); other lines are skipped."""
    parsed = []
    for line in lines:
        text = line.get("message", "") if isinstance(line, dict) else line
        text = text.strip()
        if not text.startswith("{"):
            continue
        try:
            value = json.loads(text)
        except ValueError:
            continue
        if isinstance(value, dict):
            parsed.append(value)
    return parsed


def timeline_from_logs(lines, job_id: str) -> list[dict]:
    """``[{"stage", "at", "by"}, ...]`` for ``job_id``, in time order, from structured log lines."""
    events = []
    for entry in parse_lines(lines):
        if entry.get("job_id") == job_id and entry.get("stage"):
            events.append({"stage": entry["stage"], "at": float(entry["at"]),
                           "by": entry.get("service") or entry.get("function")})
    return sorted(events, key=lambda event: event["at"])
