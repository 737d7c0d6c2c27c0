"""Request rate of the embedded backend against moto's stock ThreadedMotoServer.

Both servers run in this process, one after the other, with the same client loop
(SQS send + receive + delete, one thread, as in ``../shared/reference/emulators.md``).
Prints calls per second for each and their ratio. Target: ratio >= 2.

    make bench        # or: .venv/bin/python bench/backend_rate.py [--seconds 3]
"""

from __future__ import annotations

import argparse
import time

import boto3

from cloudlab.backend.embedded import EmbeddedServer, StockMotoServer


def calls_per_second(endpoint: str, seconds: float) -> float:
    sqs = boto3.client("sqs", endpoint_url=endpoint, region_name="us-east-1",
                       aws_access_key_id="test", aws_secret_access_key="test")
    queue_url = sqs.create_queue(QueueName=f"bench-{int(time.time() * 1000)}")["QueueUrl"]
    for _ in range(20):  # warm up connections and moto's lazy imports
        sqs.send_message(QueueUrl=queue_url, MessageBody="warm-up")
        for message in sqs.receive_message(QueueUrl=queue_url).get("Messages", []):
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        sqs.send_message(QueueUrl=queue_url, MessageBody="x" * 100)
        messages = sqs.receive_message(QueueUrl=queue_url).get("Messages", [])
        for message in messages:
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
        calls += 2 + len(messages)
    return calls / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="measuring time per server and round")
    parser.add_argument("--rounds", type=int, default=2, help="alternate the servers this many times")
    args = parser.parse_args()

    rates = {"stock ThreadedMotoServer": [], "cloudlab embedded": []}
    for _ in range(args.rounds):  # alternate so drift on a noisy machine hits both
        for name, server_class in (("stock ThreadedMotoServer", StockMotoServer), ("cloudlab embedded", EmbeddedServer)):
            started = time.perf_counter()
            server = server_class().start()
            startup = time.perf_counter() - started
            try:
                rates[name].append(calls_per_second(server.url, args.seconds))
            finally:
                server.stop()
            print(f"{name:26s} start {startup * 1000:6.0f} ms   {rates[name][-1]:7.1f} calls/s")
    stock = max(rates["stock ThreadedMotoServer"])
    ours = max(rates["cloudlab embedded"])
    print(f"\nbest of {args.rounds}: stock {stock:.1f} calls/s, embedded {ours:.1f} calls/s")
    print(f"embedded / stock request-rate ratio: {ours / stock:.2f}x (target >= 2x)")


if __name__ == "__main__":
    main()
