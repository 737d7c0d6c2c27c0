"""Request rate of the embedded backend against moto's stock ThreadedMotoServer.

Each server runs in a process of its own (so moto's stock server is measured as shipped,
without cloudlab's caches), one after the other, alternating, with the same client loop in
this process (SQS send + receive + delete, one thread, as in
``docs/emulators.md``). Prints calls per second and the ratio (target: >= 2), and the CPU
time each server spends per call, read from /proc, which a busy machine hardly changes.

    make bench        # or: .venv/bin/python bench/backend_rate.py [--seconds 3]
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time

import boto3

from cloudlab.backend.embedded import wait_until_healthy

STOCK_SERVER = """
import logging, signal, sys
from moto.server import ThreadedMotoServer
logging.getLogger("werkzeug").setLevel(logging.ERROR)
server = ThreadedMotoServer(ip_address="127.0.0.1", port=int(sys.argv[1]), verbose=False)
server.start()
signal.pause()
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(kind: str) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    if kind == "stock":
        command = [sys.executable, "-c", STOCK_SERVER, str(port)]
    else:
        command = [sys.executable, "-m", "cloudlab", "backend", "serve", "--port", str(port)]
    env = dict(os.environ, CLOUDLAB_STATE_DIR=tempfile.mkdtemp())
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process, url
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"{kind} server did not start")


def cpu_seconds(pid: int) -> float | None:
    """CPU time (user + system) a process has used so far, from /proc; None off Linux."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def calls_per_second(endpoint: str, seconds: float, server_pid: int) -> tuple[float, float | None]:
    """(calls per second, server CPU microseconds per call). On a busy machine the rate drops
    for both servers; the CPU each server spends per call hardly does."""
    sqs = boto3.client("sqs", endpoint_url=endpoint, region_name="us-east-1",
                       aws_access_key_id="test", aws_secret_access_key="test")
    queue_url = sqs.create_queue(QueueName=f"bench-{int(time.time() * 1000)}")["QueueUrl"]
    for _ in range(20):  # warm up connections and moto's lazy imports
        sqs.send_message(QueueUrl=queue_url, MessageBody="warm-up")
        for message in sqs.receive_message(QueueUrl=queue_url).get("Messages", []):
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    calls, start, cpu_before = 0, time.perf_counter(), cpu_seconds(server_pid)
    while time.perf_counter() - start < seconds:
        sqs.send_message(QueueUrl=queue_url, MessageBody="x" * 100)
        messages = sqs.receive_message(QueueUrl=queue_url).get("Messages", [])
        for message in messages:
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
        calls += 2 + len(messages)
    rate = calls / (time.perf_counter() - start)
    cpu_after = cpu_seconds(server_pid)
    cpu_per_call = None if cpu_before is None or cpu_after is None else (cpu_after - cpu_before) / calls * 1e6
    return rate, cpu_per_call


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="measuring time per server and round")
    parser.add_argument("--rounds", type=int, default=3, help="alternate the servers this many times")
    args = parser.parse_args()

    names = {"stock": "stock ThreadedMotoServer", "embedded": "cloudlab embedded"}
    rates: dict[str, list[float]] = {kind: [] for kind in names}
    cpu: dict[str, list[float]] = {kind: [] for kind in names}
    for _ in range(args.rounds):  # alternate so drift on a noisy machine hits both
        for kind in names:
            process, url = start_server(kind)
            try:
                rate, cpu_per_call = calls_per_second(url, args.seconds, process.pid)
                rates[kind].append(rate)
                if cpu_per_call is not None:
                    cpu[kind].append(cpu_per_call)
            finally:
                process.terminate()
                process.wait(timeout=10)
            server_cpu = f", server CPU {cpu[kind][-1]:6.0f} us/call" if cpu[kind] else ""
            print(f"{names[kind]:26s} {rates[kind][-1]:7.1f} calls/s{server_cpu}")
    stock, ours = (sorted(rates[k])[len(rates[k]) // 2] for k in ("stock", "embedded"))
    print(f"\nmedian of {args.rounds} rounds: stock {stock:.1f} calls/s, embedded {ours:.1f} calls/s")
    print(f"embedded / stock request-rate ratio: {ours / stock:.2f}x (target >= 2x)")
    if all(len(cpu[k]) == args.rounds for k in names):
        stock_cpu, our_cpu = (sorted(cpu[k])[len(cpu[k]) // 2] for k in ("stock", "embedded"))
        print(f"server CPU per call (median; hardly moved by other load): stock {stock_cpu:.0f} us, "
              f"embedded {our_cpu:.0f} us, stock / embedded {stock_cpu / our_cpu:.2f}x")
    startup = []
    for _ in range(5):
        started = time.perf_counter()
        from cloudlab.backend.embedded import EmbeddedServer

        server = EmbeddedServer().start()
        ready = wait_until_healthy(server.url, timeout=5)
        startup.append(time.perf_counter() - started)
        server.stop()
        assert ready
    print(f"embedded server start, moto already imported: median {sorted(startup)[2] * 1000:.1f} ms")
    fresh = ("import time; t = time.perf_counter(); import boto3, cloudlab; cloudlab.use_backend(); "
             "boto3.client('s3').list_buckets(); print(time.perf_counter() - t)")
    env = dict(os.environ, CLOUDLAB_STATE_DIR=tempfile.mkdtemp())
    env.pop("CLOUDLAB_ENDPOINT", None)
    cold = sorted(float(subprocess.run([sys.executable, "-c", fresh], env=env, capture_output=True, text=True,
                                       check=True).stdout) for _ in range(3))
    print(f"fresh process: import cloudlab + use_backend() + first S3 call: median {cold[1] * 1000:.0f} ms (target < 1 s)")


if __name__ == "__main__":
    main()
