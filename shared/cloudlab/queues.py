"""Queue patterns for SQS and SNS: consumers that crash, heartbeats, idempotency, DLQ replay.

Introduced in notebook 04 (SQS semantics and SNS fan-out). Everything here is plain boto3
against whatever backend ``cloudlab.use_backend()`` selected; nothing is simulated except
the faults we inject on purpose (a consumer that dies, a delete lost on the network) and
the clock of the load-buffering run, which counts ticks instead of seconds.

- :func:`create_queue`, :func:`queue_counts`, :func:`drain`, :func:`wait_until` — small
  building blocks;
- :class:`Timeline` — records what consumers and messages did, and plots it;
- :class:`Consumer` — a receive/process/delete loop with crash and lost-delete injection;
- :class:`Heartbeat` — extends a message's visibility while long work runs;
- :func:`replay_dlq` — moves messages from a dead-letter queue back to their queue;
- :func:`poll_for` — short vs long polling, counting empty receives;
- :func:`buffering_run` and :func:`drain_time` — a traffic spike absorbed by queue depth, and
  consumers against drain time;
- :func:`oldest_message_age` — the age of the oldest message, computed from a peek.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

from botocore.exceptions import ClientError

__all__ = [
    "create_queue", "queue_counts", "drain", "wait_until", "topic_policy", "rule_policy", "Timeline", "Consumer",
    "ConsumerCrashed", "Heartbeat", "replay_dlq", "poll_for", "buffering_run", "drain_time",
    "oldest_message_age", "send_batches",
]


# --- building blocks -------------------------------------------------------------------

def create_queue(sqs, name: str, *, dlq_arn: str | None = None, max_receive_count: int = 3,
                 **attributes) -> tuple[str, str]:
    """Create (or reuse) queue ``name`` and return ``(url, arn)``.

    Introduced in notebook 04. Keyword arguments are queue attributes, e.g.
    ``VisibilityTimeout=2`` or ``FifoQueue="true"`` (values are turned into strings as the
    API wants). ``dlq_arn`` adds a RedrivePolicy: after ``max_receive_count`` receives without
    a delete, SQS moves the message to that dead-letter queue.
    """
    attrs = {key: str(value) for key, value in attributes.items()}
    if dlq_arn:
        attrs["RedrivePolicy"] = json.dumps({"deadLetterTargetArn": dlq_arn,
                                             "maxReceiveCount": str(max_receive_count)})
    url = sqs.create_queue(QueueName=name, Attributes=attrs)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return url, arn


def queue_counts(sqs, url: str) -> dict[str, int]:
    """``{"visible": .., "in_flight": .., "delayed": ..}`` from the queue's approximate counts.

    Introduced in notebook 04. These are the three ``ApproximateNumberOfMessages*``
    attributes; on AWS they are approximate (eventually consistent), on the emulator exact.
    """
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
             "ApproximateNumberOfMessagesDelayed"]
    found = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
    return {"visible": int(found.get(names[0], 0)), "in_flight": int(found.get(names[1], 0)),
            "delayed": int(found.get(names[2], 0))}


def drain(sqs, url: str, *, wait_seconds: int = 0, delete: bool = True,
          attributes: bool = False) -> list:
    """Receive every message currently visible on ``url`` (and delete them unless ``delete=False``).

    Introduced in notebook 04. Returns the bodies, or the whole message dicts when
    ``attributes=True``. With ``delete=False`` the messages stay in flight for their
    visibility timeout (a receive is never a read-only peek).
    """
    found = []
    while True:
        answer = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=wait_seconds,
                                     AttributeNames=["All"], MessageAttributeNames=["All"])
        messages = answer.get("Messages", [])
        if not messages:
            return found
        found += messages if attributes else [m["Body"] for m in messages]
        if delete:
            sqs.delete_message_batch(QueueUrl=url, Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)])


def send_batches(sqs, url: str, bodies: Iterable[str], **per_message) -> int:
    """Send ``bodies`` with SendMessageBatch, 10 a call; return the number of calls made.

    Introduced in notebook 04. Extra keyword arguments (e.g. ``DelaySeconds=1``) go on every
    entry. Raises if any entry failed, so a partial batch failure cannot go unnoticed.
    """
    bodies = list(bodies)
    calls = 0
    for start in range(0, len(bodies), 10):
        entries = [{"Id": str(i), "MessageBody": body, **per_message}
                   for i, body in enumerate(bodies[start:start + 10])]
        answer = sqs.send_message_batch(QueueUrl=url, Entries=entries)
        calls += 1
        if answer.get("Failed"):
            raise RuntimeError(f"SendMessageBatch: {len(answer['Failed'])} entries failed: {answer['Failed'][:2]}")
    return calls


def wait_until(check: Callable[[], object], *, timeout: float = 20.0, every: float = 0.1):
    """Call ``check()`` until it returns something truthy and return it; raise after ``timeout`` s.

    Introduced in notebook 04, for waits on asynchronous machinery (a Lambda event source
    mapping, a visibility timeout) without a fixed ``sleep``.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout} s")
        time.sleep(every)


def _send_policy(queue_arn: str, service: str, source_arn: str) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Service": service}, "Action": "sqs:SendMessage",
        "Resource": queue_arn, "Condition": {"ArnEquals": {"aws:SourceArn": source_arn}}}]})


def topic_policy(queue_arn: str, topic_arn: str) -> str:
    """The SQS queue policy that lets SNS topic ``topic_arn`` send to ``queue_arn`` (JSON text).

    Introduced in notebook 04. On AWS a subscription delivers nothing until the queue's
    policy allows ``sqs:SendMessage`` from the topic; the emulator does not check it.
    """
    return _send_policy(queue_arn, "sns.amazonaws.com", topic_arn)


def rule_policy(queue_arn: str, rule_arn: str) -> str:
    """The SQS queue policy that lets EventBridge rule ``rule_arn`` send to ``queue_arn`` (JSON text).

    Introduced in notebook 04 (section 12, EventBridge). On AWS a rule's SQS target receives
    nothing until the queue's policy allows ``sqs:SendMessage`` for the principal
    ``events.amazonaws.com`` from that rule; the emulator does not check it.
    """
    return _send_policy(queue_arn, "events.amazonaws.com", rule_arn)


# --- timeline ----------------------------------------------------------------------------

_MARKERS = {
    "receive": ("o", "tab:blue"), "delete": ("s", "tab:green"), "crash": ("X", "tab:red"),
    "heartbeat": ("|", "tab:purple"), "delete lost": ("D", "tab:orange"), "processed": ("^", "tab:olive"),
    "send": (">", "tab:gray"), "error": ("P", "tab:brown"),
}
# A crash or an error usually happens within milliseconds of its receive: draw receives as
# large hollow rings underneath, and failures as solid markers on top, so both stay visible.
_ZORDER = {"receive": 3, "crash": 6, "error": 6, "delete lost": 5}
_HOLLOW = {"receive"}


@dataclass
class Timeline:
    """Events and spans on named lanes, with times in seconds since the timeline was made.

    Introduced in notebook 04. :class:`Consumer` and :class:`Heartbeat` record into it;
    ``plot()`` draws one lane per consumer and per message: a bar while the message is
    invisible (in flight), markers for receives, deletes, crashes and heartbeats. Use
    ``rows()`` for the events as ``(lane, kind, note)`` without times, which are the same on
    every run.
    """

    start: float = field(default_factory=time.monotonic)
    events: list = field(default_factory=list)
    spans: dict = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def now(self) -> float:
        return time.monotonic() - self.start

    def event(self, lane: str, kind: str, note: str = "") -> None:
        with self._lock:
            self.events.append((self.now(), lane, kind, note))

    def hide(self, lane: str, seconds: float, note: str = "") -> None:
        """Start a span on ``lane``: the message is invisible for ``seconds`` from now."""
        with self._lock:
            now = self.now()
            self.spans.setdefault(lane, []).append([now, now + seconds, note])

    def extend(self, lane: str, seconds: float) -> None:
        """A heartbeat: the current span on ``lane`` now ends ``seconds`` from now."""
        with self._lock:
            if self.spans.get(lane):
                self.spans[lane][-1][1] = self.now() + seconds

    def end(self, lane: str) -> None:
        """The message was deleted: its current span ends now."""
        with self._lock:
            if self.spans.get(lane):
                self.spans[lane][-1][1] = min(self.spans[lane][-1][1], self.now())

    def rows(self) -> list[tuple[str, str, str]]:
        with self._lock:
            return [(lane, kind, note) for _, lane, kind, note in sorted(self.events, key=lambda e: e[0])]

    def plot(self, ax=None, title: str | None = None, visibility_note: str = "invisible (in flight)"):
        """Draw the timeline; returns the matplotlib Axes (call ``plt.show()`` after it)."""
        import matplotlib.pyplot as plt

        lanes: list[str] = []
        for _, lane, _, _ in sorted(self.events, key=lambda e: e[0]):
            if lane not in lanes:
                lanes.append(lane)
        for lane in self.spans:
            if lane not in lanes:
                lanes.append(lane)
        if ax is None:
            _, ax = plt.subplots(figsize=(8.5, 0.6 * len(lanes) + 1.6))
        y = {lane: i for i, lane in enumerate(lanes)}
        labelled = set()
        for lane, spans in self.spans.items():
            for start, end, note in spans:
                ax.barh(y[lane], end - start, left=start, height=0.45, color="tab:blue", alpha=0.18,
                        label=None if "span" in labelled else visibility_note)
                labelled.add("span")
                if note:
                    ax.annotate(note, (start, y[lane] + 0.28), fontsize=8, color="tab:blue")
        for t, lane, kind, note in self.events:
            marker, colour = _MARKERS.get(kind, ("*", "black"))
            style = ({"s": 150, "facecolors": "none", "edgecolors": colour, "linewidths": 1.8}
                     if kind in _HOLLOW else {"s": 70, "color": colour})
            ax.scatter([t], [y[lane]], marker=marker, zorder=_ZORDER.get(kind, 4),
                       label=None if kind in labelled else kind, **style)
            labelled.add(kind)
        times = [t for t, _, _, _ in self.events] + [x for spans in self.spans.values() for span in spans for x in span[:2]]
        if times:  # a margin on both sides, so markers at t = 0 are not cut in half by the axis
            low, high = min(times), max(times)
            pad = 0.04 * max(high - low, 0.5)
            ax.set_xlim(low - pad, high + pad)
        ax.set_yticks(range(len(lanes)), lanes)
        ax.invert_yaxis()
        ax.set_xlabel("seconds since start")
        ax.grid(True, axis="x", alpha=0.3)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
        if title:
            ax.set_title(title)
        return ax


# --- consumer ------------------------------------------------------------------------------

class ConsumerCrashed(Exception):
    """Raised inside :class:`Consumer` when an injected crash fires: the process 'dies'."""


class Consumer:
    """A receive -> process -> delete loop with injected faults, recording a :class:`Timeline`.

    Introduced in notebook 04. ``handler(body)`` does the work. Faults, each a callable
    ``(body, receive_count) -> bool`` or ``None``:

    - ``crash``: the consumer dies after receiving and before finishing the work. Nothing is
      deleted; the message reappears when its visibility timeout ends. The loop stops (a dead
      process polls no more) and ``crashed`` becomes True.
    - ``lose_delete``: the work is done, but the DeleteMessage request is "lost on the
      network" (not sent). The message reappears: a duplicate delivery.

    A handler that raises is a failed attempt: the error is recorded in ``errors``, the message
    is not deleted and comes back after its visibility timeout (and goes to the DLQ after the
    redrive policy's ``maxReceiveCount``); the loop goes on with the next message.

    ``label(body)`` names the message's lane on the timeline (default: the body itself).
    ``heartbeat_every`` (seconds) runs a :class:`Heartbeat` around the handler that keeps
    extending the visibility by ``visibility`` seconds.
    """

    def __init__(self, sqs, queue_url: str, handler: Callable[[str], object], *, name: str = "consumer",
                 timeline: Timeline | None = None, visibility: float | None = None,
                 crash: Callable[[str, int], bool] | None = None,
                 lose_delete: Callable[[str, int], bool] | None = None,
                 heartbeat_every: float | None = None, label: Callable[[str], str] | None = None,
                 wait_seconds: int = 1, batch_size: int = 1) -> None:
        self.sqs, self.url, self.handler, self.name = sqs, queue_url, handler, name
        self.timeline = timeline
        self.crash, self.lose_delete = crash, lose_delete
        self.heartbeat_every = heartbeat_every
        self.label = label or (lambda body: f"message {body}")
        self.wait_seconds, self.batch_size = wait_seconds, batch_size
        if visibility is None:
            visibility = int(sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["VisibilityTimeout"])
                             ["Attributes"]["VisibilityTimeout"])
        self.visibility = visibility
        self.crashed = False
        self.processed: list[str] = []       # bodies whose handler finished, in order (duplicates included)
        self.deleted = 0
        self.errors: list[str] = []          # "Type: message" of each handler exception

    def _mark(self, lane: str, kind: str, note: str = "") -> None:
        if self.timeline is not None:
            self.timeline.event(lane, kind, note)

    def poll_once(self) -> int:
        """One ReceiveMessage and the work on what it returned; returns the messages received."""
        answer = self.sqs.receive_message(QueueUrl=self.url, MaxNumberOfMessages=self.batch_size,
                                          WaitTimeSeconds=self.wait_seconds, AttributeNames=["All"])
        messages = answer.get("Messages", [])
        for message in messages:
            self._handle(message)
        return len(messages)

    def _handle(self, message: dict) -> None:
        body = message["Body"]
        count = int(message.get("Attributes", {}).get("ApproximateReceiveCount", "1"))
        lane = self.label(body)
        self._mark(self.name, "receive", f"{lane} (receive #{count})")
        if self.timeline is not None:
            self.timeline.hide(lane, self.visibility, f"#{count}")
        if self.crash and self.crash(body, count):
            self._mark(self.name, "crash", lane)
            self.crashed = True
            raise ConsumerCrashed(f"{self.name} crashed while holding {lane}")
        try:
            if self.heartbeat_every:
                with Heartbeat(self.sqs, self.url, message["ReceiptHandle"], every=self.heartbeat_every,
                               extend_to=self.visibility, timeline=self.timeline, lane=lane):
                    self.handler(body)
            else:
                self.handler(body)
        except Exception as error:  # a failed message is not deleted: it comes back after the timeout
            self.errors.append(f"{type(error).__name__}: {error}")
            self._mark(self.name, "error", lane)
            return
        self.processed.append(body)
        if self.lose_delete and self.lose_delete(body, count):
            self._mark(self.name, "delete lost", lane)
            return
        try:
            self.sqs.delete_message(QueueUrl=self.url, ReceiptHandle=message["ReceiptHandle"])
        except ClientError as error:
            self.errors.append(error.response["Error"]["Code"])
            self._mark(self.name, "error", lane)
            return
        self.deleted += 1
        self._mark(self.name, "delete", lane)
        if self.timeline is not None:
            self.timeline.end(lane)

    def run(self, *, seconds: float | None = None, until_idle: bool = True,
            until: Callable[[], object] | None = None) -> "Consumer":
        """Poll until an empty receive (``until_idle``) or ``seconds`` have passed, or a crash.

        With ``until``, poll until ``until()`` is truthy (checked after every receive) and raise
        TimeoutError if ``seconds`` pass first: a wait for an outcome (a redelivery, a move to
        the DLQ) that holds however late a backend's timers fire (LocalStack's tick once a
        second), instead of a fixed polling window.
        """
        if until is not None and seconds is None:
            raise ValueError("run(until=...) needs seconds=, the deadline for the condition")
        deadline = None if seconds is None else time.monotonic() + seconds
        while deadline is None or time.monotonic() < deadline:
            try:
                got = self.poll_once()
            except ConsumerCrashed:
                return self
            if until is not None:
                if until():
                    return self
            elif not got and until_idle:
                return self
        if until is not None:
            raise TimeoutError(f"{self.name}: condition not met within {seconds} s")
        return self


class Heartbeat:
    """Keeps one received message invisible while long work runs (a context manager).

    Introduced in notebook 04. Every ``every`` seconds a thread calls ChangeMessageVisibility
    with ``VisibilityTimeout=extend_to``: "still working on this, hide it for another N
    seconds from now". If the process dies, the heartbeats stop and the message reappears
    at most ``extend_to`` seconds later. ``beats`` counts the extensions sent.
    """

    def __init__(self, sqs, queue_url: str, receipt_handle: str, *, every: float, extend_to: float,
                 timeline: Timeline | None = None, lane: str = "message") -> None:
        self.sqs, self.url, self.handle = sqs, queue_url, receipt_handle
        self.every, self.extend_to = every, extend_to
        self.timeline, self.lane = timeline, lane
        self.beats = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            self.sqs.change_message_visibility(QueueUrl=self.url, ReceiptHandle=self.handle,
                                               VisibilityTimeout=int(self.extend_to))
            self.beats += 1
            if self.timeline is not None:
                self.timeline.event(self.lane, "heartbeat")
                self.timeline.extend(self.lane, self.extend_to)

    def __enter__(self) -> "Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


# --- dead-letter queues ----------------------------------------------------------------------

def replay_dlq(sqs, dlq_url: str, target_url: str, *, accept: Callable[[str], bool] | None = None,
               wait_seconds: int = 0) -> dict[str, int]:
    """Move messages from ``dlq_url`` back to ``target_url``; returns ``{"moved": n, "kept": m}``.

    Introduced in notebook 04. Each message is sent to the target (body and message
    attributes) *before* it is deleted from the DLQ, so a crash in between duplicates a
    message rather than losing it (consumers are idempotent anyway). ``accept(body)`` decides
    per message: replay only what the fixed consumer can now handle; the rest stays in the
    DLQ (made visible again at once). Only replay after the fix is deployed: otherwise the
    messages fail again and return to the DLQ after another ``maxReceiveCount`` receives.

    AWS also offers this as a managed "DLQ redrive" (``start_message_move_task``); the
    emulator does not implement it, and it cannot filter messages.
    """
    moved = kept = 0
    held: list[dict] = []
    while True:
        answer = sqs.receive_message(QueueUrl=dlq_url, MaxNumberOfMessages=10, WaitTimeSeconds=wait_seconds,
                                     MessageAttributeNames=["All"], VisibilityTimeout=30)
        messages = answer.get("Messages", [])
        if not messages:
            break
        for message in messages:
            if accept is not None and not accept(message["Body"]):
                held.append(message)
                kept += 1
                continue
            extra = {"MessageAttributes": message["MessageAttributes"]} if message.get("MessageAttributes") else {}
            sqs.send_message(QueueUrl=target_url, MessageBody=message["Body"], **extra)
            sqs.delete_message(QueueUrl=dlq_url, ReceiptHandle=message["ReceiptHandle"])
            moved += 1
    for message in held:  # visible again in the DLQ for the next investigation
        sqs.change_message_visibility(QueueUrl=dlq_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0)
    return {"moved": moved, "kept": kept}


# --- polling ---------------------------------------------------------------------------------

def poll_for(sqs, url: str, seconds: float, *, wait_seconds: int = 0, pause: float = 0.0) -> dict[str, int]:
    """Poll ``url`` for ``seconds`` the way a simple worker does; count receives and empty ones.

    Introduced in notebook 04. ``wait_seconds=0`` is short polling (each call returns at once,
    usually empty on an idle queue; ``pause`` is the worker's sleep after an empty answer);
    ``wait_seconds>0`` is long polling (the call waits for a message). Messages received are
    deleted. Returns ``{"receives": .., "empty": .., "messages": ..}``.
    """
    counts = {"receives": 0, "empty": 0, "messages": 0}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10,
                                       WaitTimeSeconds=wait_seconds).get("Messages", [])
        counts["receives"] += 1
        if not messages:
            counts["empty"] += 1
            if pause:
                time.sleep(pause)
            continue
        counts["messages"] += len(messages)
        sqs.delete_message_batch(QueueUrl=url, Entries=[
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)])
    return counts


# --- load buffering ----------------------------------------------------------------------------

def buffering_run(sqs, url: str, arrivals: list[int], capacity: int):
    """Run a traffic spike through a real queue, one tick at a time; return a DataFrame.

    Introduced in notebook 04. Each tick: the producer sends ``arrivals[t]`` messages
    (batched), then the consumers take at most ``capacity`` messages (received and deleted
    for real), then the queue depth is read from ``ApproximateNumberOfMessages``. A tick
    stands for one unit of time (a second, a minute): the ticks are counted, not timed.
    Columns: ``tick, arrivals, processed, depth, rejected_if_sync`` (what a synchronous
    service with the same capacity would have turned away that tick).
    """
    import pandas as pd

    rows = []
    for tick, count in enumerate(arrivals):
        send_batches(sqs, url, (f"t{tick}-{i}" for i in range(count)))
        processed = 0
        while processed < capacity:
            messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=min(10, capacity - processed),
                                           WaitTimeSeconds=0).get("Messages", [])
            if not messages:
                break
            sqs.delete_message_batch(QueueUrl=url, Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)])
            processed += len(messages)
        depth = queue_counts(sqs, url)["visible"]
        rows.append({"tick": tick, "arrivals": count, "processed": processed, "depth": depth,
                     "rejected_if_sync": max(0, count - capacity)})
    return pd.DataFrame(rows)


def drain_time(sqs_factory: Callable[[], object], url: str, *, backlog: int, consumers: int,
               work_seconds: float) -> float:
    """Seconds for ``consumers`` threads to empty a backlog of ``backlog`` messages.

    Introduced in notebook 04. The backlog is sent first; then each consumer (its own boto3
    client from ``sqs_factory()``) receives one message at a time, "works" ``work_seconds``
    (a sleep standing for I/O-bound processing) and deletes it, until the queue is empty.
    Returns the wall-clock seconds from the start of the consumers (their clients already
    made) to the last delete.
    """
    producer = sqs_factory()
    send_batches(producer, url, (f"job-{i}" for i in range(backlog)))
    done = []
    lock = threading.Lock()

    def work(sqs) -> None:
        while True:
            messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1, WaitTimeSeconds=0).get("Messages", [])
            if not messages:
                return
            time.sleep(work_seconds)
            sqs.delete_message(QueueUrl=url, ReceiptHandle=messages[0]["ReceiptHandle"])
            with lock:
                done.append(time.monotonic())

    # clients are built before the clock starts: building one costs more than many requests
    threads = [threading.Thread(target=work, args=(sqs_factory(),)) for _ in range(consumers)]
    start = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if len(done) != backlog:
        raise RuntimeError(f"drained {len(done)} of {backlog} messages")
    return max(done) - start


# --- health -------------------------------------------------------------------------------------

def oldest_message_age(sqs, url: str) -> float | None:
    """Age in seconds of the oldest message among up to 10 visible ones, or ``None`` if none.

    Introduced in notebook 04. CloudWatch publishes ``ApproximateAgeOfOldestMessage`` for SQS
    on AWS; the emulator publishes no AWS/SQS metrics, so this computes it from a peek: a
    receive with ``VisibilityTimeout=0`` and each message's ``SentTimestamp``. A peek is a
    real receive: it raises each message's ``ApproximateReceiveCount`` (and so counts towards
    a redrive policy's ``maxReceiveCount``) and samples at most 10 messages. Fine for a
    lesson; on AWS read the metric instead.
    """
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0,
                                   AttributeNames=["SentTimestamp"]).get("Messages", [])
    if not messages:
        return None
    oldest = min(int(m["Attributes"]["SentTimestamp"]) for m in messages) / 1000
    return max(0.0, time.time() - oldest)
