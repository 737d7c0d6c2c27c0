"""Grading at class scale: 40 submissions of lab 01 with 2 workers against 1.

Usage: ``python bench/grading_scale.py [--submissions 40] [--lab 01_storage_models_lab]``
(``make bench`` runs it). The submissions cycle through the master, the generated lab (nothing
answered) and partially correct versions (the master with one solution stubbed, as the lab
has it). Every run grades from scratch (no cache).

It prints the wall time of the whole batch with 1 and 2 workers, and splits the time per
submission into the grader's fixed overhead (starting the kernel, the emulator and, where it
is used, the sandbox; measured by grading an empty notebook against a one-case master) and
the rest: the student's code and the lab's tests.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbformat import v4

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "shared"))

from cloudlab.grading import batch, build  # noqa: E402
from cloudlab.grading.grader import Limits, grade_submission  # noqa: E402
from cloudlab.grading.markers import _BEGIN_CODE, cell_kind, cell_label, parse_master, stub_code  # noqa: E402


def variants(master_path: Path) -> list[tuple[str, nbformat.NotebookNode]]:
    """The master, the generated lab, and partly solved labs: the master's solutions without its
    test and solution-only cells (what a student who solved everything hands in), with one
    solution cell stubbed as the lab has it, in turn."""
    master = parse_master(master_path)
    found = [("master", nbformat.read(master_path, as_version=4)), ("lab", build.lab_notebook(master))]
    kinds = [cell_kind(cell, cell_label(master_path, number, cell))
             for number, cell in enumerate(master.notebook.cells, start=1)]
    for number, cell in enumerate(master.notebook.cells, start=1):
        where = cell_label(master_path, number, cell)
        if kinds[number - 1] == "code" and any(_BEGIN_CODE.match(line) for line in cell.source.splitlines()):
            partial = nbformat.read(master_path, as_version=4)
            partial.cells[number - 1].source = stub_code(cell.source, where)
            partial.cells = [c for c, kind in zip(partial.cells, kinds) if kind not in ("test", "solution-only")]
            found.append((f"partial-{number}", partial))
    return found


def overhead_seconds(folder: Path, repeats: int = 3) -> float:
    """Median time to grade an empty notebook against a one-case master: the grader's own cost."""
    lab = "00_overhead_lab"
    master_path = folder / f"{lab}.ipynb"
    nbformat.write(v4.new_notebook(cells=[
        v4.new_code_cell("import boto3\nimport cloudlab\nfrom cloudlab.grading import checker\n\n"
                         f"backend = cloudlab.use_backend()\ncheck = checker({lab!r})"),
        v4.new_code_cell("# TEST q points=1: nothing\npass")]), master_path)
    empty = folder / "empty.ipynb"
    nbformat.write(v4.new_notebook(), empty)
    master = parse_master(master_path)
    times = []
    for _ in range(repeats):
        started = time.monotonic()
        grade = grade_submission(master, empty, Limits(timeout=120))
        times.append(time.monotonic() - started)
        assert grade.total == 1, grade.problems
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--submissions", type=int, default=40)
    parser.add_argument("--lab", default="01_storage_models_lab")
    args = parser.parse_args()
    master_path = REPO / "solutions" / f"{args.lab}.ipynb"
    master = parse_master(master_path)
    with tempfile.TemporaryDirectory(prefix="cloudlab-bench-") as temp:
        folder = Path(temp)
        kinds = variants(master_path)
        paths = []
        for number in range(args.submissions):
            name, notebook = kinds[number % len(kinds)]
            path = folder / "submissions" / f"s{number:02d}_{name}.ipynb"
            path.parent.mkdir(exist_ok=True)
            nbformat.write(notebook, path)
            paths.append(path)
        overhead = overhead_seconds(folder)
        print(f"grading {args.submissions} submissions of {args.lab} ({len(kinds)} variants: master, lab, "
              f"{len(kinds) - 2} partial); overhead per submission (kernel + emulator start, one trivial test, "
              f"teardown): {overhead:.1f} s")
        walls = {}
        for jobs in (1, 2):
            items = [(str(path), path, None) for path in paths]
            started = time.monotonic()
            results = batch.grade_batch(master, items, folder / f"out{jobs}" / "grades.csv", limits=Limits(),
                                        jobs=jobs, cache_dir=None, log=io.StringIO())
            walls[jobs] = time.monotonic() - started
            seconds = [item.grade.seconds for item in results]
            by_variant: dict[str, set] = {}
            for item in results:
                by_variant.setdefault(Path(item.student).stem.split("_", 1)[1], set()).add(f"{item.grade.total:g}")
            totals = ", ".join(f"{name} {'/'.join(sorted(values))}" for name, values in by_variant.items())
            mean = statistics.fmean(seconds)
            print(f"  {jobs} worker(s): {walls[jobs]:.0f} s wall, {walls[jobs] / len(paths):.2f} s per submission; "
                  f"each submission {mean:.1f} s on average (median {statistics.median(seconds):.1f}, "
                  f"max {max(seconds):.1f}) = {overhead:.1f} s overhead + {max(mean - overhead, 0):.1f} s student "
                  f"code and tests; points by variant (of {master.max_points:g}): {totals}")
        print(f"speed-up with 2 workers: {walls[1] / walls[2]:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
