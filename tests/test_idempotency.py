"""cloudlab.idempotency (notebook 04) against the embedded backend: process once under
concurrent duplicates, release on failure, keys from logical identity."""

from __future__ import annotations

import threading
import time
import uuid

import boto3
import pytest

import cloudlab
from cloudlab import idempotency


@pytest.fixture
def dynamodb():
    cloudlab.use_backend()
    return boto3.client("dynamodb")


def name(prefix: str) -> str:
    return f"ti-{prefix}-{uuid.uuid4().hex[:8]}"


def test_idempotency_store_runs_once_under_concurrent_duplicates(dynamodb):
    table = idempotency.create_key_table(dynamodb, name("idem"))
    store = idempotency.IdempotencyStore(dynamodb, table)
    runs = []
    lock = threading.Lock()

    def charge():
        with lock:
            runs.append(1)
        time.sleep(0.05)
        return {"charged": 10}

    outcomes = []

    def deliver():
        client = boto3.client("dynamodb")
        try:
            outcomes.append(idempotency.IdempotencyStore(client, table).run_once("order-1", charge))
        except idempotency.AlreadyInProgress:
            outcomes.append("in progress")

    threads = [threading.Thread(target=deliver) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(runs) == 1
    assert outcomes.count(({"charged": 10}, False)) == 1
    assert store.run_once("order-1", charge) == ({"charged": 10}, True)
    assert len(runs) == 1


def test_idempotency_store_releases_the_key_when_the_work_fails(dynamodb):
    store = idempotency.IdempotencyStore(dynamodb, idempotency.create_key_table(dynamodb, name("idem")))

    def boom():
        raise ValueError("downstream down")

    with pytest.raises(ValueError):
        store.run_once("k", boom)
    assert store.run_once("k", lambda: 7) == (7, False)


def test_idempotency_key_is_logical_identity():
    a = idempotency.idempotency_key("charge", order_id="o-1", amount=10)
    assert a == idempotency.idempotency_key("charge", amount=10, order_id="o-1")
    assert a != idempotency.idempotency_key("charge", order_id="o-1", amount=11)
    assert a != idempotency.idempotency_key("refund", order_id="o-1", amount=10)
