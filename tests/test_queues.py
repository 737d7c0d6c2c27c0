"""cloudlab.queues (notebook 04) against the embedded backend. No timing assertions beyond
"the message came back": waits poll for an outcome with a generous limit."""

from __future__ import annotations

import json
import time
import uuid

import boto3
import pytest

import cloudlab
from cloudlab import queues


@pytest.fixture
def aws():
    cloudlab.use_backend()
    return boto3.client("sqs"), boto3.client("dynamodb")


def name(prefix: str) -> str:
    return f"tq-{prefix}-{uuid.uuid4().hex[:8]}"


def test_message_reaches_the_dlq_after_max_receive_count_and_is_replayed(aws):
    sqs, _ = aws
    dlq, dlq_arn = queues.create_queue(sqs, name("dlq"))
    main, _ = queues.create_queue(sqs, name("main"), VisibilityTimeout=1, dlq_arn=dlq_arn, max_receive_count=2)
    sqs.send_message(QueueUrl=main, MessageBody="poison",
                     MessageAttributes={"kind": {"DataType": "String", "StringValue": "order"}})
    counts = []
    for _ in range(2):  # two receives without a delete: a consumer that fails each time
        message = queues.wait_until(lambda: sqs.receive_message(QueueUrl=main, AttributeNames=["All"],
                                                                WaitTimeSeconds=1).get("Messages"), timeout=10)[0]
        counts.append(int(message["Attributes"]["ApproximateReceiveCount"]))
    assert counts == [1, 2]
    # the third attempt finds nothing: on that receive the message moves to the DLQ instead
    time.sleep(1.1)
    assert sqs.receive_message(QueueUrl=main, WaitTimeSeconds=1).get("Messages") is None
    dead = queues.wait_until(lambda: sqs.receive_message(QueueUrl=dlq, VisibilityTimeout=0,
                                                         WaitTimeSeconds=1).get("Messages"), timeout=10)
    assert [m["Body"] for m in dead] == ["poison"]
    assert queues.queue_counts(sqs, main) == {"visible": 0, "in_flight": 0, "delayed": 0}

    assert queues.replay_dlq(sqs, dlq, main) == {"moved": 1, "kept": 0}
    assert queues.queue_counts(sqs, dlq)["visible"] + queues.queue_counts(sqs, dlq)["in_flight"] == 0
    back = sqs.receive_message(QueueUrl=main, AttributeNames=["All"], MessageAttributeNames=["All"],
                               WaitTimeSeconds=1)["Messages"][0]
    assert back["Body"] == "poison" and back["Attributes"]["ApproximateReceiveCount"] == "1"
    assert back["MessageAttributes"]["kind"]["StringValue"] == "order"


def test_replay_keeps_what_the_fix_cannot_handle_visible_in_the_dlq(aws):
    sqs, _ = aws
    dlq, _ = queues.create_queue(sqs, name("dlq"))
    main, _ = queues.create_queue(sqs, name("main"))
    for body in ("ok-1", "still-bad", "ok-2"):
        sqs.send_message(QueueUrl=dlq, MessageBody=body)
    result = queues.replay_dlq(sqs, dlq, main, accept=lambda body: body.startswith("ok"))
    assert result == {"moved": 2, "kept": 1}
    assert sorted(queues.drain(sqs, main)) == ["ok-1", "ok-2"]
    assert queues.drain(sqs, dlq) == ["still-bad"]  # visible again at once, not hidden for 30 s


def test_crashed_consumer_leaves_the_message_for_the_next_one(aws):
    sqs, _ = aws
    url, _ = queues.create_queue(sqs, name("crash"), VisibilityTimeout=1)
    sqs.send_message(QueueUrl=url, MessageBody="job-1")
    timeline = queues.Timeline()
    done = []
    first = queues.Consumer(sqs, url, done.append, name="A", timeline=timeline, crash=lambda body, n: True).run()
    assert first.crashed and done == []
    second = queues.Consumer(sqs, url, done.append, name="B", timeline=timeline).run(seconds=5, until_idle=False)
    assert done == ["job-1"] and second.deleted == 1
    kinds = [(lane, kind) for lane, kind, _ in timeline.rows()]
    assert kinds == [("A", "receive"), ("A", "crash"), ("B", "receive"), ("B", "delete")]
    assert "receive #2" in timeline.rows()[2][2]


def test_lost_delete_means_a_duplicate_delivery(aws):
    sqs, _ = aws
    url, _ = queues.create_queue(sqs, name("lost"), VisibilityTimeout=1)
    sqs.send_message(QueueUrl=url, MessageBody="email-1")
    done = []
    consumer = queues.Consumer(sqs, url, done.append, lose_delete=lambda body, n: n == 1)
    consumer.run(seconds=4, until_idle=False)
    assert done == ["email-1", "email-1"] and consumer.deleted == 1


def test_run_until_stops_when_the_condition_holds_and_raises_at_the_deadline(aws):
    sqs, _ = aws
    url, _ = queues.create_queue(sqs, name("until"), VisibilityTimeout=1)
    sqs.send_message(QueueUrl=url, MessageBody="email-2")
    done = []
    consumer = queues.Consumer(sqs, url, done.append, lose_delete=lambda body, n: n == 1)
    started = time.monotonic()
    consumer.run(seconds=10, until=lambda: consumer.deleted == 1)
    assert done == ["email-2", "email-2"] and time.monotonic() - started < 8
    with pytest.raises(TimeoutError):
        consumer.run(seconds=1.5, until=lambda: consumer.deleted == 2)
    with pytest.raises(ValueError):
        consumer.run(until=lambda: True)


def _received_while(sqs, url, seconds: float) -> list[str]:
    """Bodies received from ``url`` by another consumer polling it for ``seconds`` (without deleting)."""
    seen, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        seen += [m["Body"] for m in sqs.receive_message(QueueUrl=url, VisibilityTimeout=0).get("Messages", [])]
        time.sleep(0.1)
    return seen


def test_heartbeat_keeps_a_long_job_invisible(aws):
    """Received with a 1 s visibility timeout, the message stays hidden for 4 s: past the 1 s and past
    the first extension's 3 s, so later beats did it. A beat would have to be 2.7 s late for the
    message to show (a busy machine delays a thread by far less)."""
    sqs, _ = aws
    url, _ = queues.create_queue(sqs, name("hb"))
    sqs.send_message(QueueUrl=url, MessageBody="long")
    message = sqs.receive_message(QueueUrl=url, VisibilityTimeout=1)["Messages"][0]
    with queues.Heartbeat(sqs, url, message["ReceiptHandle"], every=0.3, extend_to=3) as beat:
        assert _received_while(sqs, url, 4.0) == []
    assert beat.beats >= 2
    sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    assert queues.queue_counts(sqs, url) == {"visible": 0, "in_flight": 0, "delayed": 0}


def test_control_without_a_heartbeat_the_message_shows_again(aws):
    """The test above can fail: the same watch sees the message once nothing extends it."""
    sqs, _ = aws
    url, _ = queues.create_queue(sqs, name("hb-control"))
    sqs.send_message(QueueUrl=url, MessageBody="long")
    sqs.receive_message(QueueUrl=url, VisibilityTimeout=1)
    assert "long" in queues.wait_until(lambda: _received_while(sqs, url, 0.5), timeout=30)


def test_buffering_run_absorbs_a_spike_and_drains(aws):
    sqs, _ = aws
    url, _ = queues.create_queue(sqs, name("buf"))
    frame = queues.buffering_run(sqs, url, [10, 50, 50, 10, 10, 10, 10, 10, 10, 10], capacity=20)
    assert list(frame["depth"]) == [0, 30, 60, 50, 40, 30, 20, 10, 0, 0]
    assert list(frame["rejected_if_sync"])[:3] == [0, 30, 30]
    assert frame["processed"].sum() == frame["arrivals"].sum()


def test_drain_time_counts_every_message(aws):
    url, _ = queues.create_queue(aws[0], name("drain"))
    seconds = queues.drain_time(lambda: boto3.client("sqs"), url, backlog=12, consumers=3, work_seconds=0.01)
    assert seconds > 0 and queues.queue_counts(aws[0], url)["visible"] == 0


class CountingSqs:
    """An SQS client that counts receive_message calls and the empty answers among them."""

    def __init__(self, sqs) -> None:
        self.sqs, self.receives, self.empty = sqs, 0, 0

    def receive_message(self, **kwargs):
        answer = self.sqs.receive_message(**kwargs)
        self.receives += 1
        self.empty += not answer.get("Messages")
        return answer

    def __getattr__(self, name):
        return getattr(self.sqs, name)


def test_poll_for_counts_every_receive_and_deletes_what_it_gets(aws):
    sqs, _ = aws
    url, _ = queues.create_queue(sqs, name("poll"))
    for number in range(3):
        sqs.send_message(QueueUrl=url, MessageBody=f"m{number}")
    counting = CountingSqs(sqs)
    counts = queues.poll_for(counting, url, 2.0, pause=0.05)
    assert counts == {"receives": counting.receives, "empty": counting.empty, "messages": 3}
    assert counting.empty >= 1  # the queue was emptied well before 2 s, and polled again
    assert queues.queue_counts(sqs, url) == {"visible": 0, "in_flight": 0, "delayed": 0}


def test_oldest_message_age_and_topic_policy(aws):
    sqs, _ = aws
    url, arn = queues.create_queue(sqs, name("age"))
    assert queues.oldest_message_age(sqs, url) is None
    sqs.send_message(QueueUrl=url, MessageBody="x")
    time.sleep(0.3)
    assert 0.2 <= queues.oldest_message_age(sqs, url) < 30
    policy = json.loads(queues.topic_policy(arn, "arn:aws:sns:us-east-1:123456789012:t"))
    assert policy["Statement"][0]["Resource"] == arn


def test_rule_policy_names_eventbridge_and_the_rule(aws):
    sqs, _ = aws
    _, arn = queues.create_queue(sqs, name("rulepol"))
    rule_arn = "arn:aws:events:us-east-1:123456789012:rule/r"
    statement = json.loads(queues.rule_policy(arn, rule_arn))["Statement"][0]
    assert statement["Principal"] == {"Service": "events.amazonaws.com"}
    assert statement["Action"] == "sqs:SendMessage" and statement["Resource"] == arn
    assert statement["Condition"] == {"ArnEquals": {"aws:SourceArn": rule_arn}}


def test_eventbridge_rule_delivers_only_matching_events_to_its_queue(aws):
    """What notebook 04 relies on: moto's EventBridge matches the pattern and sends to SQS."""
    sqs, _ = aws
    events = boto3.client("events")
    url, arn = queues.create_queue(sqs, name("rule"))
    rule = name("rule")
    rule_arn = events.put_rule(Name=rule, EventPattern=json.dumps({
        "source": ["shop.orders"], "detail": {"total": [{"numeric": [">=", 100]}]}}))["RuleArn"]
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"Policy": queues.rule_policy(arn, rule_arn)})
    events.put_targets(Rule=rule, Targets=[{"Id": "queue", "Arn": arn}])
    try:
        answer = events.put_events(Entries=[
            {"Source": "shop.orders", "DetailType": "OrderPlaced", "Detail": json.dumps({"id": "big", "total": 250})},
            {"Source": "shop.orders", "DetailType": "OrderPlaced", "Detail": json.dumps({"id": "small", "total": 20})},
            {"Source": "shop.returns", "DetailType": "OrderPlaced", "Detail": json.dumps({"id": "other", "total": 500})},
        ])
        assert answer["FailedEntryCount"] == 0
        delivered = [json.loads(body) for body in queues.drain(sqs, url)]
        assert [event["detail"]["id"] for event in delivered] == ["big"]
        assert delivered[0]["source"] == "shop.orders" and delivered[0]["detail-type"] == "OrderPlaced"
    finally:
        events.remove_targets(Rule=rule, Ids=["queue"])
        events.delete_rule(Name=rule)


def test_timeline_plot_keeps_markers_at_zero_inside_and_failures_on_top():
    import matplotlib
    matplotlib.use("Agg")
    timeline = queues.Timeline(start=time.monotonic())
    timeline.events += [(0.0, "A", "receive", ""), (0.0, "A", "crash", ""), (1.0, "B", "receive", ""),
                        (1.0, "B", "error", ""), (1.2, "B", "delete", "")]
    timeline.spans["m"] = [[0.0, 1.0, "#1"]]
    ax = timeline.plot()
    low, high = ax.get_xlim()
    assert low < 0 < 1.2 < high
    zorders = {collection.get_label(): collection.get_zorder() for collection in ax.collections if collection.get_label()}
    assert zorders["crash"] > zorders["receive"] and zorders["error"] > zorders["receive"]
