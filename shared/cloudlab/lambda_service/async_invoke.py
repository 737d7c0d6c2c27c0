"""Asynchronous invokes (``InvocationType="Event"``): queue, retries, destinations, DLQ.

Introduced in notebook 03 (event shapes from S3; async retries). As on AWS:

- the caller gets ``202`` at once; the event waits in an internal queue;
- a function error is retried twice (``MaximumRetryAttempts`` of
  ``put_function_event_invoke_config``, 0-2, default 2); a throttle is retried until the
  event is older than ``MaximumEventAgeInSeconds`` (default 6 hours);
- when retries or age run out the event goes to the ``OnFailure`` destination (an invocation
  record) and/or the function's ``DeadLetterConfig`` target (the original event, with
  ``RequestID``/``ErrorCode``/``ErrorMessage`` attributes). SQS queues, SNS topics and other
  functions are supported targets; ``OnSuccess`` works the same way.

The waits before the retries are a scaled MODEL: AWS waits about 1 and then 2 minutes; here
``service.async_retry_delays`` (default 1 and 2 SECONDS) so a notebook cell can watch it.
"""

from __future__ import annotations

import heapq
import itertools
import json
import logging
import threading
import time

from .environment import new_request_id

_log = logging.getLogger("cloudlab.lambda_service")
DEFAULT_MAX_EVENT_AGE = 6 * 3600
THROTTLE_RETRY_SECONDS = 0.5


class AsyncInvoker:
    """A delay queue of events and a few worker threads that invoke them."""

    def __init__(self, service, workers: int = 4) -> None:
        self.service = service
        self.workers = workers
        self._queue: list = []
        self._sequence = itertools.count()
        self._condition = threading.Condition()
        self._threads: list[threading.Thread] = []
        self._stopped = False
        self.delivered: list[dict] = []  # what went to destinations/DLQs, for notebooks and tests

    def submit(self, fn, payload: bytes, qualifier: str | None = None) -> str:
        request_id = new_request_id()
        item = {"function": fn.function_name, "region": fn.region, "qualifier": qualifier,
                "payload": payload, "request_id": request_id, "attempts": 0,
                "first_seen": time.time(), "throttles": 0}
        self._push(time.monotonic(), item)
        return request_id

    def _push(self, due: float, item: dict) -> None:
        with self._condition:
            heapq.heappush(self._queue, (due, next(self._sequence), item))
            alive = [t for t in self._threads if t.is_alive()]
            if len(alive) < self.workers and not self._stopped:
                thread = threading.Thread(target=self._work, name="cloudlab-lambda-async", daemon=True)
                alive.append(thread)
                thread.start()
            self._threads = alive
            self._condition.notify()

    def pending(self) -> int:
        with self._condition:
            return len(self._queue)

    def stop(self) -> None:
        with self._condition:
            self._stopped = True
            self._queue.clear()
            self._condition.notify_all()

    def _work(self) -> None:
        while True:
            with self._condition:
                while True:
                    if self._stopped:
                        return
                    if self._queue and self._queue[0][0] <= time.monotonic():
                        _, _, item = heapq.heappop(self._queue)
                        break
                    timeout = (self._queue[0][0] - time.monotonic()) if self._queue else 5.0
                    self._condition.wait(max(0.001, timeout))
            try:
                self._run(item)
            except Exception:
                _log.exception("async invoke failed")

    def _config(self, fn) -> dict:
        configs = getattr(fn, "event_invoke_config", None) or []
        return dict(configs[0].config) if configs else {}

    def _run(self, item: dict) -> None:
        from .service import FunctionNotFound, LambdaServiceError, Throttled

        service = self.service
        try:
            fn = service.moto_function(item["function"], item["qualifier"], item["region"])
        except FunctionNotFound:
            return  # deleted meanwhile: AWS drops the event
        config = self._config(fn)
        max_age = int(config.get("MaximumEventAgeInSeconds", DEFAULT_MAX_EVENT_AGE))
        max_retries = int(config.get("MaximumRetryAttempts", 2))
        if time.time() - item["first_seen"] > max_age:
            self._fail(fn, config, item, None, "EventAgeExceeded")
            return
        try:
            outcome = service.invoke(item["function"], item["payload"], qualifier=item["qualifier"],
                                     region=item["region"], request_id=item["request_id"])
        except Throttled:
            item["throttles"] += 1
            self._push(time.monotonic() + min(5.0, THROTTLE_RETRY_SECONDS * item["throttles"]), item)
            return
        except LambdaServiceError as error:
            self._fail(fn, config, item, None, "RetriesExhausted", error_message=error.message)
            return
        item["attempts"] += 1
        if outcome.function_error is None:
            self._deliver(fn, config, item, outcome, "Success")
            return
        if item["attempts"] <= max_retries:
            delays = service.async_retry_delays or (1.0, 2.0)
            delay = delays[min(item["attempts"] - 1, len(delays) - 1)]
            self._push(time.monotonic() + delay, item)
            return
        self._fail(fn, config, item, outcome, "RetriesExhausted")

    # -- destinations -------------------------------------------------------------------------
    def _record(self, fn, item: dict, outcome, condition: str) -> dict:
        try:
            request_payload = json.loads(item["payload"])
        except ValueError:
            request_payload = item["payload"].decode("utf-8", "replace")
        record = {
            "version": "1.0",
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + ".000Z",
            "requestContext": {"requestId": item["request_id"],
                               "functionArn": f"arn:aws:lambda:{fn.region}:{fn.account_id}:function:{fn.function_name}:{item['qualifier'] or '$LATEST'}",
                               "condition": condition, "approximateInvokeCount": item["attempts"]},
            "requestPayload": request_payload,
        }
        if outcome is not None:
            context = {"statusCode": 200, "executedVersion": outcome.executed_version}
            if outcome.function_error:
                context["functionError"] = outcome.function_error
            record["responseContext"] = context
            try:
                record["responsePayload"] = json.loads(outcome.payload) if outcome.payload else None
            except ValueError:
                record["responsePayload"] = outcome.payload.decode("utf-8", "replace")
        return record

    def _deliver(self, fn, config: dict, item: dict, outcome, condition: str) -> None:
        target = (config.get("DestinationConfig") or {}).get("OnSuccess", {}).get("Destination")
        if target:
            self._send(target, json.dumps(self._record(fn, item, outcome, condition)), fn.region)

    def _fail(self, fn, config: dict, item: dict, outcome, condition: str, error_message: str | None = None) -> None:
        target = (config.get("DestinationConfig") or {}).get("OnFailure", {}).get("Destination")
        if target:
            self._send(target, json.dumps(self._record(fn, item, outcome, condition)), fn.region)
        dead_letter = self.service.dead_letter_configs.get((fn.region, fn.function_name))
        if dead_letter:
            message = error_message
            if message is None and outcome is not None:
                try:
                    message = json.loads(outcome.payload).get("errorMessage")
                except (ValueError, AttributeError):
                    message = outcome.payload.decode("utf-8", "replace")
            attributes = {"RequestID": item["request_id"], "ErrorCode": "200", "ErrorMessage": (message or condition)[:1000]}
            self._send(dead_letter, item["payload"].decode("utf-8", "replace"), fn.region, attributes)

    def _send(self, arn: str, body: str, region: str, attributes: dict | None = None) -> None:
        parts = arn.split(":")
        service_name, target_region, account = parts[2], parts[3] or region, parts[4]
        message_attributes = {name: {"DataType": "String", "StringValue": value} for name, value in (attributes or {}).items()}
        try:
            if service_name == "sqs":
                sqs = self.service.client("sqs", target_region)
                url = sqs.get_queue_url(QueueName=parts[5], QueueOwnerAWSAccountId=account)["QueueUrl"]
                sqs.send_message(QueueUrl=url, MessageBody=body, MessageAttributes=message_attributes)
            elif service_name == "sns":
                self.service.client("sns", target_region).publish(TopicArn=arn, Message=body,
                                                                  MessageAttributes=message_attributes)
            elif service_name == "lambda":
                self.service.invoke_async(arn, body.encode(), region=target_region)
            elif service_name == "events":
                self.service.client("events", target_region).put_events(Entries=[{
                    "Source": "lambda", "DetailType": "Lambda Function Invocation Result", "Detail": body,
                    "EventBusName": arn}])
            self.delivered.append({"target": arn, "body": body, "attributes": attributes or {}})
        except Exception:
            _log.exception("could not deliver to %s", arn)
