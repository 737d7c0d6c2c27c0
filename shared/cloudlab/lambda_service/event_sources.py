"""Event source mappings: the SQS poller that feeds a function batches of messages.

Introduced in notebook 03 (event shapes from SQS; the partial-batch-failure lab). As on AWS,
``create_event_source_mapping(EventSourceArn=queue_arn, FunctionName=..., BatchSize=...,
MaximumBatchingWindowInSeconds=..., FunctionResponseTypes=["ReportBatchItemFailures"])``
starts a poller that:

- long-polls the queue and gathers up to ``BatchSize`` messages, waiting at most the batching
  window (with no window, it invokes with whatever one poll returned);
- invokes the function synchronously with ``{"Records": [...]}`` in the SQS event shape;
- on success deletes the batch, except the messages named in ``batchItemFailures`` when the
  mapping reports batch item failures (an unparseable answer fails the whole batch);
- on a function error or throttle deletes nothing: the messages reappear when their
  visibility timeout expires, and a queue's redrive policy moves them to its DLQ after
  ``maxReceiveCount`` receives.

Scaling, as on AWS but smaller: a mapping polls with one batch at a time while the queue is
quiet. When a receive comes back full (a backlog), another concurrent batch is started, up to
:data:`MAX_CONCURRENT_BATCHES` (AWS starts with five and keeps adding; a mapping's
``ScalingConfig.MaximumConcurrency`` caps it lower). An extra batch stops at its first empty
receive or throttle, so a burst drains in parallel and a quiet queue costs one long poll.
FIFO queues keep one batch at a time (their order is per message group). Only SQS sources are
polled; DynamoDB/Kinesis streams, Kafka and ``FilterCriteria`` are not emulated and are
refused with ``InvalidParameterValueException``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid

from ..backend import chaos
from ..backend.aws_protocol import DEFAULT_REGION

_log = logging.getLogger("cloudlab.lambda_service")
# Concurrent batches of one standard-queue mapping under a backlog (AWS starts with five; docs/aws-facts.md).
MAX_CONCURRENT_BATCHES = 5


class EventSourceMappingError(Exception):
    def __init__(self, code: str, status: int, message: str) -> None:
        super().__init__(message)
        self.code, self.status, self.message = code, status, message


class SqsPoller:
    """One mapping from an SQS queue to a function."""

    def __init__(self, mappings: "EventSourceMappings", config: dict, region: str) -> None:
        self.mappings = mappings
        self.config = config
        self.region = region
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"cloudlab-sqs-poller-{config['UUID'][:8]}", daemon=True)
        self.batches = 0
        self._extra_lock = threading.Lock()
        self.extra_pollers = 0  # concurrent batches running beside the main loop (a backlog)

    def start(self) -> "SqsPoller":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    @property
    def queue_url(self) -> str:
        arn = self.config["EventSourceArn"].split(":")
        sqs = self.mappings.service.client("sqs", arn[3] or self.region)
        return sqs.get_queue_url(QueueName=arn[5], QueueOwnerAWSAccountId=arn[4])["QueueUrl"]

    def _loop(self) -> None:
        url = None
        while not self._stop.is_set():
            if self.config.get("State") != "Enabled":
                self._stop.wait(0.2)
                continue
            try:
                if url is None:
                    url = self.queue_url
                messages = self._gather(url)
                if messages and not self._stop.is_set():
                    self._scale_out(url, messages)
                    self._handle(url, messages)
            except Exception as error:  # a deleted queue, a stopping emulator: retry calmly
                if self._stop.is_set():
                    return
                self.config["LastProcessingResult"] = f"PROBLEM: {type(error).__name__}: {error}"
                url = None
                self._stop.wait(1.0)

    def _concurrency_cap(self) -> int:
        if self.config["EventSourceArn"].endswith(".fifo"):
            return 1
        cap = MAX_CONCURRENT_BATCHES
        maximum = (self.config.get("ScalingConfig") or {}).get("MaximumConcurrency")
        if maximum:
            cap = min(cap, int(maximum))
        return max(1, cap)

    def _scale_out(self, url: str, messages: list[dict]) -> None:
        """A full receive means a backlog: start one more concurrent batch if the cap allows."""
        if len(messages) < min(10, int(self.config.get("BatchSize") or 10)):
            return
        with self._extra_lock:
            if 1 + self.extra_pollers >= self._concurrency_cap():
                return
            self.extra_pollers += 1
        threading.Thread(target=self._extra_loop, args=(url,), daemon=True,
                         name=f"cloudlab-sqs-poller-{self.config['UUID'][:8]}-extra").start()

    def _extra_loop(self, url: str) -> None:
        """A concurrent batch loop: runs while receives find messages, then stops."""
        try:
            while not self._stop.is_set() and self.config.get("State") == "Enabled":
                messages = self._gather(url, wait_seconds=0)
                if not messages or self._stop.is_set():
                    return
                self._scale_out(url, messages)
                if not self._handle(url, messages):
                    return  # throttled: the backlog waits for the main loop
        except Exception as error:
            _log.info("extra SQS batch loop stopped: %s", error)
        finally:
            with self._extra_lock:
                self.extra_pollers -= 1

    def _gather(self, url: str, wait_seconds: int = 1) -> list[dict]:
        sqs = self.mappings.service.client("sqs", self.region)
        batch_size = int(self.config.get("BatchSize") or 10)
        window = float(self.config.get("MaximumBatchingWindowInSeconds") or 0)
        messages: list[dict] = []
        window_ends = None
        while len(messages) < batch_size and not self._stop.is_set():
            wait = wait_seconds if window_ends is None else max(0, min(1, window_ends - time.monotonic()))
            answer = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=min(10, batch_size - len(messages)),
                                         WaitTimeSeconds=int(round(wait)), AttributeNames=["All"],
                                         MessageAttributeNames=["All"], MessageSystemAttributeNames=["All"])
            got = answer.get("Messages", [])
            messages += got
            if messages and window_ends is None:
                window_ends = time.monotonic() + window
            if messages and (window <= 0 or time.monotonic() >= window_ends):
                break
            if not got and window_ends is not None and time.monotonic() >= window_ends:
                break
            if not messages and not wait_seconds:  # a short poll found nothing: no backlog left
                break
        return messages

    def _record(self, message: dict) -> dict:
        attributes = {}
        for name, value in (message.get("MessageAttributes") or {}).items():
            entry = {"stringListValues": [], "binaryListValues": [], "dataType": value.get("DataType")}
            if "StringValue" in value:
                entry["stringValue"] = value["StringValue"]
            if "BinaryValue" in value:
                import base64

                entry["binaryValue"] = base64.b64encode(value["BinaryValue"]).decode()
            attributes[name] = entry
        return {
            "messageId": message["MessageId"],
            "receiptHandle": message["ReceiptHandle"],
            "body": message.get("Body", ""),
            "attributes": dict(message.get("Attributes") or {}),
            "messageAttributes": attributes,
            "md5OfBody": message.get("MD5OfBody"),
            "eventSource": "aws:sqs",
            "eventSourceARN": self.config["EventSourceArn"],
            "awsRegion": self.config["EventSourceArn"].split(":")[3] or self.region,
        }

    def _handle(self, url: str, messages: list[dict]) -> bool:
        """Invoke the function with one batch; False if the invoke was refused (throttled)."""
        from .service import LambdaServiceError

        service = self.mappings.service
        event = {"Records": [self._record(message) for message in messages]}
        with self._extra_lock:
            self.batches += 1
        payload = json.dumps(event).encode()
        if chaos.duplicate_delivery(self.config["EventSourceArn"], payload.decode()):
            # SQS is at-least-once: deliver this batch a second time, concurrently (chaos rule)
            threading.Thread(target=self._deliver_again, args=(payload,), daemon=True).start()
        try:
            outcome = service.invoke(self.config["FunctionArn"], payload, region=self.region)
        except LambdaServiceError as error:  # throttled or gone: the messages come back by themselves
            self.config["LastProcessingResult"] = f"PROBLEM: {error.message}"
            self._stop.wait(0.5)
            return False
        if outcome.function_error:
            self.config["LastProcessingResult"] = "PROBLEM: Function call failed"
            return True
        failed = set()
        if "ReportBatchItemFailures" in (self.config.get("FunctionResponseTypes") or []):
            failed = self._batch_item_failures(outcome.payload, messages)
        done = [m for m in messages if m["MessageId"] not in failed]
        sqs = service.client("sqs", self.region)
        for start in range(0, len(done), 10):
            chunk = done[start:start + 10]
            sqs.delete_message_batch(QueueUrl=url, Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)])
        self.config["LastProcessingResult"] = "OK"
        return True

    def _deliver_again(self, payload: bytes) -> None:
        """A duplicate delivery: the function sees the batch again; its answer changes nothing here."""
        try:
            self.mappings.service.invoke(self.config["FunctionArn"], payload, region=self.region)
        except Exception as error:
            _log.info("duplicate delivery not invoked: %s", error)

    @staticmethod
    def _batch_item_failures(payload: bytes, messages: list[dict]) -> set[str]:
        """The message ids to keep; every id when the answer is malformed (as AWS does)."""
        every = {m["MessageId"] for m in messages}
        try:
            answer = json.loads(payload) if payload else None
        except ValueError:
            return every
        if answer is None or (isinstance(answer, dict) and not answer.get("batchItemFailures")):
            return set()  # null, {} or an empty list: the whole batch succeeded
        if not isinstance(answer, dict) or not isinstance(answer.get("batchItemFailures"), list):
            return every
        failed = set()
        for entry in answer["batchItemFailures"]:
            identifier = entry.get("itemIdentifier") if isinstance(entry, dict) else None
            if not identifier or identifier not in every:
                return every
            failed.add(identifier)
        return failed


class EventSourceMappings:
    """The mappings this service runs (kept here, not in moto, whose SQS mappings need Docker)."""

    def __init__(self, service) -> None:
        self.service = service
        self._pollers: dict[str, SqsPoller] = {}
        self._lock = threading.Lock()

    def create(self, request: dict, region: str) -> dict:
        source = request.get("EventSourceArn") or ""
        if not source.startswith("arn:aws:sqs:"):
            raise EventSourceMappingError(
                "InvalidParameterValueException", 400,
                "The local Lambda service polls SQS queues only; stream and Kafka sources are not emulated.")
        if request.get("FilterCriteria"):
            raise EventSourceMappingError("InvalidParameterValueException", 400,
                                          "FilterCriteria is not emulated by the local Lambda service.")
        from .service import FunctionNotFound

        try:
            fn = self.service.moto_function(request.get("FunctionName", ""), None, region)
        except FunctionNotFound as error:
            raise EventSourceMappingError("ResourceNotFoundException", 404, error.message) from None
        batch_size = int(request.get("BatchSize") or 10)
        window = int(request.get("MaximumBatchingWindowInSeconds") or 0)
        if not 1 <= batch_size <= 10000:
            raise EventSourceMappingError("InvalidParameterValueException", 400, "BatchSize must be between 1 and 10000.")
        if batch_size > 10 and window < 1:
            raise EventSourceMappingError(
                "InvalidParameterValueException", 400,
                "Maximum batch window in seconds must be greater than 0 if maximum batch size is greater than 10")
        arn = source.split(":")
        try:
            self.service.client("sqs", arn[3] or region).get_queue_url(QueueName=arn[5], QueueOwnerAWSAccountId=arn[4])
        except Exception:
            raise EventSourceMappingError(
                "InvalidParameterValueException", 400,
                "Error occurred while ReceiveMessage. SQS Error Code: AWS.SimpleQueueService.NonExistentQueue.") from None
        function_arn = f"arn:aws:lambda:{fn.region}:{fn.account_id}:function:{fn.function_name}"
        config = {
            "UUID": str(uuid.uuid4()),
            "BatchSize": batch_size,
            "MaximumBatchingWindowInSeconds": window,
            "EventSourceArn": source,
            "FunctionArn": function_arn,
            "LastModified": time.time(),
            "State": "Enabled" if request.get("Enabled", True) else "Disabled",
            "StateTransitionReason": "USER_INITIATED",
            "FunctionResponseTypes": list(request.get("FunctionResponseTypes") or []),
            "LastProcessingResult": "No records processed",
        }
        if request.get("ScalingConfig"):
            config["ScalingConfig"] = request["ScalingConfig"]
        poller = SqsPoller(self, config, region)
        with self._lock:
            self._pollers[config["UUID"]] = poller
        poller.start()
        return dict(config, State="Creating" if config["State"] == "Enabled" else config["State"])

    def adopt(self, moto_configuration: dict, region: str) -> dict:
        """Poll a mapping moto created (CloudFormation's ``AWS::Lambda::EventSourceMapping``,
        notebook 06), under moto's UUID, with its ``BatchSize``, batching window and
        ``FunctionResponseTypes``; ``moto_compat.replace_event_source_mappings`` calls this."""
        config = {
            "UUID": moto_configuration["UUID"],
            "BatchSize": int(moto_configuration.get("BatchSize") or 10),
            "MaximumBatchingWindowInSeconds": int(moto_configuration.get("MaximumBatchingWindowInSeconds") or 0),
            "EventSourceArn": moto_configuration["EventSourceArn"],
            "FunctionArn": moto_configuration["FunctionArn"],
            "LastModified": time.time(),
            "State": moto_configuration.get("State", "Enabled"),
            "StateTransitionReason": "USER_INITIATED",
            "FunctionResponseTypes": list(moto_configuration.get("FunctionResponseTypes") or []),
            "LastProcessingResult": "No records processed",
        }
        poller = SqsPoller(self, config, region)
        with self._lock:
            old = self._pollers.pop(config["UUID"], None)
            self._pollers[config["UUID"]] = poller
        if old is not None:
            old.stop()
        poller.start()
        return dict(config)

    def forget(self, uuid_: str) -> None:
        """Stop polling a mapping moto deleted (its stack was deleted); unknown ids are ignored."""
        with self._lock:
            poller = self._pollers.pop(uuid_, None)
        if poller is not None:
            poller.stop()

    def get(self, uuid_: str) -> dict:
        poller = self._pollers.get(uuid_)
        if poller is None:
            raise EventSourceMappingError("ResourceNotFoundException", 404,
                                          f"The resource you requested does not exist. (Service: Lambda, Status Code: 404, UUID: {uuid_})")
        return dict(poller.config)

    def list(self, function_name: str | None = None, source: str | None = None, region: str = DEFAULT_REGION) -> list[dict]:
        rows = []
        for poller in list(self._pollers.values()):
            config = poller.config
            if source and config["EventSourceArn"] != source:
                continue
            if function_name:
                name = function_name.split(":")[6] if function_name.startswith("arn:") else function_name.split(":")[0]
                if config["FunctionArn"].split(":")[6] != name:
                    continue
            rows.append(dict(config))
        return rows

    def update(self, uuid_: str, request: dict) -> dict:
        config = self.get(uuid_)
        poller = self._pollers[uuid_]
        for field in ("BatchSize", "MaximumBatchingWindowInSeconds", "FunctionResponseTypes", "ScalingConfig"):
            if field in request:
                poller.config[field] = request[field]
        if "Enabled" in request:
            poller.config["State"] = "Enabled" if request["Enabled"] else "Disabled"
        if "FunctionName" in request:
            fn = self.service.moto_function(request["FunctionName"], None, poller.region)
            poller.config["FunctionArn"] = f"arn:aws:lambda:{fn.region}:{fn.account_id}:function:{fn.function_name}"
        poller.config["LastModified"] = time.time()
        del config
        return dict(poller.config, State="Updating")

    def delete(self, uuid_: str) -> dict:
        config = self.get(uuid_)
        with self._lock:
            poller = self._pollers.pop(uuid_)
        poller.stop()
        return dict(config, State="Deleting")

    def forget_function(self, name: str, region: str) -> None:
        for uuid_, poller in list(self._pollers.items()):
            parts = poller.config["FunctionArn"].split(":")
            if parts[6] == name and parts[3] == region:
                self.delete(uuid_)

    def stop_all(self) -> None:
        with self._lock:
            pollers = list(self._pollers.values())
            self._pollers.clear()
        for poller in pollers:
            poller.stop()
