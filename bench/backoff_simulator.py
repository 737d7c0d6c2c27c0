"""How fast cloudlab.resilience.simulate_backoff is (notebook 05's claim: "a sweep takes seconds").

Prints the CPU time of the two sweeps notebook 05 runs: 1, 10, 20, ..., 100 clients x 5
strategies x 30 runs (the plots), and 10/50/100 clients x 5 strategies x 100 runs (the closing
table), plus simulated writes per CPU second. CPU time, not wall time, so a busy machine does
not distort it (target: each sweep under 10 s of CPU).

    .venv/bin/python bench/backoff_simulator.py
"""

from __future__ import annotations

import time

from cloudlab.resilience import STRATEGIES, simulate_backoff


def sweep(client_counts, runs):
    started = time.process_time()
    writes = sum(simulate_backoff(n, s, runs=runs, seed=1)["calls"] * runs for n in client_counts for s in STRATEGIES)
    return time.process_time() - started, writes


if __name__ == "__main__":
    for label, counts, runs in (("plots: 1..100 clients, 30 runs", [1] + list(range(10, 101, 10)), 30),
                                ("closing table: 10/50/100 clients, 100 runs", [10, 50, 100], 100)):
        seconds, writes = sweep(counts, runs)
        print(f"{label:45} {seconds:5.2f} s CPU, {writes:,.0f} simulated writes ({writes / seconds:,.0f} per CPU second)")
