"""A local scheduler for EventBridge schedule rules that target functions (notebook 06).

On AWS a rule such as ``rate(5 minutes)`` (what a SAM ``Schedule`` event becomes) invokes its
target function asynchronously with a "Scheduled Event". moto stores rules but never fires
them; this scheduler does, for rules that target Lambda functions: every enabled rule with a
``rate(...)`` expression, read in-process from moto (``moto_compat.schedule_rules``), fires
one period after it is first seen, then every period, as an ``Event`` invoke (so retries and
destinations apply as on AWS).

AWS's shortest rate is one minute (docs/aws-facts.md, row "EventBridge schedule rate"), and
moto refuses anything shorter too. A course run cannot wait minutes, so a rule may carry the
tag ``cloudlab:local-schedule`` with a rate in seconds (``rate(5 seconds)``); this scheduler
then uses it instead of the rule's expression. The capstone's deployer (``cloudlab.pipeline.deploy``) sets that tag when the template's
``SweepSchedule`` parameter is given in seconds. ``cron(...)`` expressions are not fired
(they are listed in :attr:`Scheduler.skipped`).
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import uuid

from ..backend import moto_compat

_log = logging.getLogger("cloudlab.lambda_service")
LOCAL_SCHEDULE_TAG = "cloudlab:local-schedule"
_RATE = re.compile(r"^rate\(\s*(\d+)\s+(second|seconds|minute|minutes|hour|hours|day|days)\s*\)$")
_UNIT_SECONDS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}


def rate_seconds(expression: str) -> float | None:
    """Seconds between firings of ``rate(N unit)``; ``None`` for anything else (cron)."""
    match = _RATE.match((expression or "").strip())
    if not match:
        return None
    count, unit = int(match.group(1)), match.group(2).rstrip("s")
    return float(count * _UNIT_SECONDS[unit]) if count > 0 else None


def scheduled_event(rule: dict) -> dict:
    """The event EventBridge sends a scheduled rule's target (detail-type "Scheduled Event")."""
    return {"version": "0", "id": str(uuid.uuid4()), "detail-type": "Scheduled Event", "source": "aws.events",
            "account": rule["account"], "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "region": rule["region"], "resources": [rule["arn"]], "detail": {}}


class Scheduler:
    """Fires due schedule rules every ``tick`` seconds on a daemon thread (see the module docstring)."""

    def __init__(self, service, tick: float = 0.5) -> None:
        self.service = service
        self.tick = tick
        self._due: dict[tuple[str, str], float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.fired: list[dict] = []  # {"rule", "target", "at"}: what fired, for notebooks and tests
        self.skipped: dict[str, str] = {}  # rule arn -> why it is not fired

    def start(self) -> "Scheduler":
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="cloudlab-scheduler", daemon=True)
                self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.wait(self.tick):
            try:
                self.run_due()
            except Exception:  # moto's dicts changing under the read, a stopping emulator: next tick
                _log.debug("scheduler tick failed", exc_info=True)

    def run_due(self, now: float | None = None) -> int:
        """Fire every rule whose period has passed; how many targets were invoked."""
        now = time.monotonic() if now is None else now
        fired = 0
        seen = set()
        for rule in moto_compat.schedule_rules():
            expression = rule["tags"].get(LOCAL_SCHEDULE_TAG) or rule["expression"]
            period = rate_seconds(expression)
            if period is None:
                self.skipped[rule["arn"]] = f"{expression}: only rate(...) expressions are fired locally"
                continue
            key = (rule["arn"], expression)
            seen.add(key)
            due = self._due.get(key)
            if due is None:
                self._due[key] = now + period
                continue
            if now < due:
                continue
            self._due[key] = now + period
            fired += self.fire(rule)
        for key in [k for k in self._due if k not in seen]:
            del self._due[key]
        return fired

    def fire(self, rule: dict) -> int:
        """Invoke the rule's Lambda targets asynchronously now (with the target's ``Input`` if set)."""
        count = 0
        for target in rule["targets"]:
            arn = target.get("Arn", "")
            if ":lambda:" not in arn:
                continue
            payload = target.get("Input") or json.dumps(scheduled_event(rule))
            try:
                self.service.invoke_async(arn, payload)
            except Exception as error:  # the function was deleted meanwhile: EventBridge drops it too
                self.skipped[rule["arn"]] = f"target {arn}: {error}"
                continue
            self.fired.append({"rule": rule["name"], "target": arn, "at": time.time()})
            count += 1
        return count
