"""What the grading sandbox adds to starting one submission's kernel (issue 11).

For each way the grader can start a kernel, the median over ``--runs`` starts of:

- ``start``: launch until the kernel answers ``kernel_info`` (what the sandbox itself adds);
- ``setup``: the grader's set-up cell, which imports cloudlab and starts the in-kernel emulator;
- ``stop``: shutting the kernel down and sweeping its processes.

Ways: ``plain`` (no confinement: the grader before issue 11), ``fallback`` (rlimits and, as
root, a throwaway uid: ``CLOUDLAB_SANDBOX=none``) and ``bwrap`` (the sandbox; skipped where
it does not work here).

    .venv/bin/python bench/sandbox_overhead.py [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from cloudlab.grading import grader, sandbox


def one_start(confined: bool | None) -> tuple[float, float, float]:
    with tempfile.TemporaryDirectory(prefix="cloudlab-bench-") as temp:
        temp = Path(temp)
        work, state, home, channel = (temp / name for name in ("work", "state", "home", "channel"))
        for folder in (work, state, home, channel):
            folder.mkdir()
        box = None if confined is None else sandbox.Confinement(confined, work, [work, state, home, channel])
        env = grader._submission_env(state, temp)
        env.update({"HOME": str(home), "JUPYTER_RUNTIME_DIR": str(home / "runtime")})
        kernel = grader.Kernel(work, env, temp / "kernel.log", box, channel, output_limit=4 << 20)
        started = time.perf_counter()
        kernel.start()
        ready = time.perf_counter()
        outcome = kernel.execute(grader.setup_code("bench_lab"), timeout=120, store_history=False)
        set_up = time.perf_counter()
        kernel.stop()
        if box is not None:
            box.release()
        stopped = time.perf_counter()
        if outcome.status == "died":
            raise RuntimeError(f"the kernel died in its set-up cell: {(temp / 'kernel.log').read_text()[-500:]}")
        return ready - started, set_up - ready, stopped - set_up


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    ways = {"plain": None, "fallback": False}
    found = sandbox.mode()
    if found.sandboxed:
        ways["bwrap"] = True
    else:
        print(f"bwrap: skipped ({found.reason})")
    one_start(None)  # warm the disk cache so the first way measured is not penalised
    print(f"kernel start, median of {args.runs} (seconds); root: {sandbox.running_as_root()}")
    print(f"{'way':9s} {'start':>7s} {'setup':>7s} {'stop':>7s} {'total':>7s}")
    for name, confined in ways.items():
        runs = [one_start(confined) for _ in range(args.runs)]
        medians = [statistics.median(run[i] for run in runs) for i in range(3)]
        print(f"{name:9s} " + " ".join(f"{value:7.2f}" for value in medians) + f" {sum(medians):7.2f}")


if __name__ == "__main__":
    main()
