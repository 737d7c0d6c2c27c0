"""Grade on Gradescope's fleet: the autograder's ``run_autograder`` and its ``results.json``.

Introduced with the grader (README "For instructors"); the zip is written by
``python -m cloudlab release --gradescope LAB`` (``release.py``). Gradescope unpacks the zip
into ``/autograder/source``, runs ``setup.sh`` once per image, then ``run_autograder`` once per
submission with the student's files in ``/autograder/submission``; the results go to
``/autograder/results/results.json`` in the format of Gradescope's autograder specification
(https://gradescope-autograders.readthedocs.io/en/latest/specs/): top-level ``score``,
``execution_time``, ``output`` and ``tests``, each test with ``name``, ``score``,
``max_score``, ``status``, ``visibility`` and ``output``.

Public test cases become one visible test each; a question's hidden cases become ONE test
("q1: hidden tests") whose output only counts them, as in the feedback files. The root
``/autograder`` can be moved with ``CLOUDLAB_AUTOGRADER_ROOT`` (tests use a temporary folder).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from .feedback import _points, question_feedback
from .grader import Limits, SubmissionGrade, grade_submission
from .markers import Master

ROOT_VARIABLE = "CLOUDLAB_AUTOGRADER_ROOT"

SETUP_SH = """#!/usr/bin/env bash
# Gradescope runs this once when it builds the autograder image (Ubuntu base image).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends python3 python3-venv python3-pip bubblewrap
PYTHON=python3
if ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    # Ubuntu 22.04 ships Python 3.10; the course needs 3.11+
    apt-get install -y --no-install-recommends python3.11 python3.11-venv
    PYTHON=python3.11
fi
"$PYTHON" -m venv /autograder/venv
/autograder/venv/bin/python -m pip install --upgrade pip
/autograder/venv/bin/python -m pip install -e /autograder/source/course
# The hidden tests: root (the grader) only; run_autograder also deletes them once read
chmod -R go-rwx /autograder/source/grading
"""

RUN_AUTOGRADER = """#!/usr/bin/env bash
# Gradescope runs this for every submission; it writes $ROOT/results/results.json.
set -u
ROOT="${CLOUDLAB_AUTOGRADER_ROOT:-/autograder}"
PYTHON="${CLOUDLAB_AUTOGRADER_PYTHON:-$ROOT/venv/bin/python}"
exec "$PYTHON" -m cloudlab.grading.gradescope --root "$ROOT" --master "$ROOT/source/grading/@LAB@.ipynb" --forget-tests
"""


def find_notebook(folder: Path, lab_name: str) -> tuple[Path | None, str]:
    """The submitted notebook: the one named like the lab, else the only one; else why not."""
    notebooks = sorted(path for path in folder.rglob("*.ipynb") if ".ipynb_checkpoints" not in path.parts)
    named = [path for path in notebooks if path.stem == lab_name]
    if named:
        return named[0], ""
    if len(notebooks) == 1:
        return notebooks[0], ""
    if not notebooks:
        return None, f"no notebook was submitted: upload {lab_name}.ipynb"
    return None, (f"{len(notebooks)} notebooks were submitted and none is named {lab_name}.ipynb: "
                  "submit only your lab notebook")


def results_json(master: Master, grade: SubmissionGrade | None, problem: str = "", seconds: float = 0.0) -> dict:
    """Gradescope's results.json for a graded submission (or for none, with ``problem``)."""
    tests = []
    if grade is not None:
        for question in question_feedback(master, grade):
            for case in question.public:
                tests.append({"name": f"{question.name}: {case.description}", "score": case.earned,
                              "max_score": case.points, "status": "passed" if case.passed else "failed",
                              "visibility": "visible", "output": case.message or "passed"})
            if question.hidden_count:
                tests.append({"name": f"{question.name}: hidden tests", "score": question.hidden_earned,
                              "max_score": question.hidden_points,
                              "status": "passed" if question.hidden_passed == question.hidden_count else "failed",
                              "visibility": "visible",
                              "output": f"{question.hidden_passed} of {question.hidden_count} hidden test(s) passed"})
    lines = [problem] if problem else []
    if grade is not None:
        lines.append(f"{_points(grade.total)} / {_points(grade.max_points)} points")
        lines += [f"- {item}" for item in grade.problems]
    score = grade.total if grade is not None else 0.0
    return {"score": score, "execution_time": max(0, round(seconds)), "output": "\n".join(lines),
            "visibility": "visible", "stdout_visibility": "hidden", "tests": tests}


def run(root: Path, master_path: Path, limits: Limits | None = None, forget_tests: bool = False) -> dict:
    """Grade ``root/submission`` and write ``root/results/results.json``; returns what it wrote.

    ``forget_tests``: delete the grading notebook once it is read, before any student code runs.
    Gradescope starts a fresh container per submission, so nothing needs it again, and a
    submission graded without bubblewrap (whose uid may read any file) finds no tests on disk.
    """
    from .sources import load_master

    started = time.monotonic()
    master = load_master(master_path)
    if forget_tests:
        master_path.unlink()
    notebook, problem = find_notebook(root / "submission", master.lab_name)
    grade = grade_submission(master, notebook, limits, name=notebook.name) if notebook else None
    results = results_json(master, grade, problem, time.monotonic() - started)
    (root / "results").mkdir(parents=True, exist_ok=True)
    (root / "results" / "results.json").write_text(json.dumps(results, indent=1), encoding="utf-8")
    print(f"{master.lab_name}: {results['score']:g} points; {len(results['tests'])} test(s) in results.json")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cloudlab.grading.gradescope",
                                     description="run_autograder's grading step (see the module docstring)")
    parser.add_argument("--root", default=None, help=f"the /autograder folder (default ${ROOT_VARIABLE} or /autograder)")
    parser.add_argument("--master", required=True, help="the grading notebook (or tests file) of the lab")
    parser.add_argument("--timeout", type=float, default=300, help="seconds for the whole notebook (default 300)")
    parser.add_argument("--forget-tests", action="store_true",
                        help="delete the grading notebook once read (run_autograder does: one container per submission)")
    args = parser.parse_args(argv)
    root = Path(args.root or os.environ.get(ROOT_VARIABLE) or "/autograder")
    try:
        run(root, Path(args.master), Limits(timeout=args.timeout), args.forget_tests)
    except Exception as error:  # the autograder itself is broken: say so in results.json, not only in stdout
        (root / "results").mkdir(parents=True, exist_ok=True)
        (root / "results" / "results.json").write_text(json.dumps({
            "score": 0, "output": f"autograder problem, tell your instructor: {type(error).__name__}: {error}",
            "tests": []}), encoding="utf-8")
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
