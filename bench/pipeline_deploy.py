"""How long the capstone's local deployer takes (cloudlab.pipeline.deploy, issue 9).

Prints, for the embedded backend started in this process (as a notebook kernel does):

1. the first CloudFormation call of the process (moto imports its template parser then);
2. ``deploy()`` of the capstone's template.yaml, without the model upload, ``--runs`` times
   (each one replaces the previous stack): median and max;
3. ``teardown()``;
4. what moto's CloudFormation lacked and the deployer made with boto3 (one line each).

    .venv/bin/python bench/pipeline_deploy.py [--runs 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="deploys to time (default 3)")
    args = parser.parse_args(argv)
    import os

    os.environ["CLOUDLAB_STATE_DIR"] = tempfile.mkdtemp(prefix="bench-deploy-")  # never a served emulator
    import boto3

    import cloudlab
    from cloudlab.pipeline.deploy import deploy, teardown

    cloudlab.use_backend()
    started = time.perf_counter()
    try:
        boto3.client("cloudformation").describe_stacks(StackName="bench-none")
    except Exception:
        pass
    first_call = time.perf_counter() - started
    times, stack = [], None
    for _ in range(max(1, args.runs)):
        stack = deploy("bench", model=False)
        times.append(stack.deploy_seconds)
    started = time.perf_counter()
    teardown("bench")
    torn = time.perf_counter() - started
    print("capstone deploy on the embedded backend (moto CloudFormation + the local deployer)")
    print(f"  first CloudFormation call of the process: {first_call:.1f} s (moto imports its template parser)")
    print(f"  deploy of template.yaml, {len(times)} runs: median {statistics.median(times):.2f} s, max {max(times):.2f} s"
          " (without the model upload; each run replaces the previous stack)")
    print(f"  teardown: {torn:.2f} s")
    print(f"  made by the deployer, not by moto's CloudFormation ({len(stack.created_by_deployer)}):")
    for note in stack.created_by_deployer:
        print(f"    - {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
