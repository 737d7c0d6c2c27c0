"""What the local Lambda service adds to a handler's own time (issue 4 targets).

Prints, for the embedded backend started in this process (as a notebook kernel does):

1. Warm invoke overhead: ``boto3 invoke`` round trip minus the time the handler measured
   itself, p50/p95 (target: p50 <= 2 ms). Also the same through ``service.invoke()`` in
   process (no boto3, no HTTP), which is the service's own share, and a ``DryRun`` invoke
   (boto3 and the HTTP front, no handler) for scale.
2. Cold start overhead: a cold ``boto3 invoke`` minus ``python -c "import app"`` of the same
   handler in the same folder, medians (target: <= 30 ms), with the REPORT line's Init
   Duration for comparison with AWS's ~70-140 ms hello-world init (lambda-perf).
3. Warm throughput with 2 environments: two client threads invoking a no-op handler
   (reserved concurrency 2), invokes per second.

    .venv/bin/python bench/lambda_overhead.py [--warm 400] [--cold 20] [--seconds 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import boto3
from botocore.config import Config

import cloudlab
from cloudlab.lambda_service import get_service, zip_code

HANDLER = """\
import json, os, time

def handler(event, context):
    started = time.perf_counter()
    if event.get("sleep_ms"):
        time.sleep(event["sleep_ms"] / 1000)
    return {"handler_ms": (time.perf_counter() - started) * 1000, "pid": os.getpid()}
"""


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def warm_overhead(lam, name: str, count: int, sleep_ms: float) -> list[float]:
    payload = json.dumps({"sleep_ms": sleep_ms}).encode()
    lam.invoke(FunctionName=name, Payload=payload)["Payload"].read()  # make sure it is warm
    overheads = []
    for _ in range(count):
        started = time.perf_counter()
        answer = lam.invoke(FunctionName=name, Payload=payload)
        body = answer["Payload"].read()
        elapsed = (time.perf_counter() - started) * 1000
        overheads.append(elapsed - json.loads(body)["handler_ms"])
    return overheads


def in_process_overhead(name: str, count: int) -> list[float]:
    service = get_service()
    overheads = []
    for _ in range(count):
        started = time.perf_counter()
        outcome = service.invoke(name, b"{}")
        elapsed = (time.perf_counter() - started) * 1000
        overheads.append(elapsed - json.loads(outcome.payload)["handler_ms"])
    return overheads


def import_baseline(code_dir: Path, count: int) -> list[float]:
    times = []
    for _ in range(count):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import app"], cwd=code_dir, check=True)
        times.append((time.perf_counter() - started) * 1000)
    return times


def cold_starts(lam, name: str, count: int) -> tuple[list[float], list[float]]:
    service = get_service()
    walls, inits = [], []
    for _ in range(count):
        service.reclaim_idle(older_than=0)
        started = time.perf_counter()
        answer = lam.invoke(FunctionName=name, Payload=b"{}")
        json.loads(answer["Payload"].read())
        walls.append((time.perf_counter() - started) * 1000)
        inits.append(service.invocations(name)[-1]["init_ms"])
    return walls, inits


def throughput(name: str, seconds: float, threads: int = 2) -> tuple[float, int]:
    counts = [0] * threads
    stop = time.perf_counter() + seconds
    pids: set = set()

    def loop(slot: int) -> None:
        client = boto3.client("lambda", config=Config(retries={"mode": "standard", "total_max_attempts": 1}))
        while time.perf_counter() < stop:
            pids.add(json.loads(client.invoke(FunctionName=name, Payload=b"{}")["Payload"].read())["pid"])
            counts[slot] += 1

    workers = [threading.Thread(target=loop, args=(i,)) for i in range(threads)]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return sum(counts) / (time.perf_counter() - started), len(pids)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warm", type=int, default=400)
    parser.add_argument("--cold", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()

    cloudlab.use_backend()
    role = boto3.client("iam").create_role(RoleName="bench-lambda", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    lam = boto3.client("lambda", config=Config(retries={"mode": "standard", "total_max_attempts": 1}))
    lam.create_function(FunctionName="bench", Runtime="python3.12", Role=role, Handler="app.handler",
                        Code={"ZipFile": zip_code(HANDLER)}, Timeout=10)
    lam.put_function_concurrency(FunctionName="bench", ReservedConcurrentExecutions=2)

    print("Local Lambda service overhead (embedded backend in this process; 2-core machine)")
    noop = warm_overhead(lam, "bench", args.warm, 0)
    slept = warm_overhead(lam, "bench", max(50, args.warm // 4), 5)
    direct = in_process_overhead("bench", args.warm)
    floor = []
    for _ in range(args.warm):
        started = time.perf_counter()
        lam.invoke(FunctionName="bench", InvocationType="DryRun")
        floor.append((time.perf_counter() - started) * 1000)
    print(f"warm invoke overhead, boto3 round trip - handler time, no-op handler:  "
          f"p50 {percentile(noop, .5):.2f} ms  p95 {percentile(noop, .95):.2f} ms  (target p50 <= 2 ms)")
    print(f"warm invoke overhead, boto3 round trip - handler time, 5 ms handler:   "
          f"p50 {percentile(slept, .5):.2f} ms  p95 {percentile(slept, .95):.2f} ms")
    print(f"warm invoke overhead, service.invoke() in process (no boto3/HTTP):     "
          f"p50 {percentile(direct, .5):.2f} ms  p95 {percentile(direct, .95):.2f} ms")
    print(f"for scale: a DryRun invoke (boto3 + HTTP front, no handler run):            "
          f"p50 {percentile(floor, .5):.2f} ms  p95 {percentile(floor, .95):.2f} ms")

    code_dir = Path(get_service().snapshot(get_service().moto_function("bench")).code_dir)
    with tempfile.TemporaryDirectory() as scratch:  # the baseline runs on a copy, so no .pyc lands in the task root
        copy = Path(scratch)
        (copy / "app.py").write_text((code_dir / "app.py").read_text())
        import_baseline(copy, 3)
        baseline = import_baseline(copy, args.cold)
    walls, inits = cold_starts(lam, "bench", args.cold)
    warm_rt = statistics.median(noop)
    cold_overhead = statistics.median(walls) - statistics.median(baseline)
    print(f"cold start: boto3 invoke median {statistics.median(walls):.1f} ms; "
          f'python -c "import app" median {statistics.median(baseline):.1f} ms; '
          f"overhead {cold_overhead:.1f} ms (target <= 30 ms; includes one warm round trip, ~{warm_rt:.1f} ms)")
    print(f"cold start: REPORT Init Duration median {statistics.median(inits):.1f} ms, "
          f"p95 {percentile(inits, .95):.1f} ms (AWS hello-world Python init: ~70-140 ms, lambda-perf)")

    rate, environments = throughput("bench", args.seconds)
    print(f"warm throughput, 2 client threads, reserved concurrency 2: {rate:.0f} invokes/s "
          f"over {environments} environments")
    assert percentile(noop, .5) > 0 and rate > 0 and environments <= 2  # sanity only


if __name__ == "__main__":
    main()
