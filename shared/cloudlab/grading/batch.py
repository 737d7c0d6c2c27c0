"""Grade a batch: ``python -m cloudlab grade MASTER SUB.ipynb... --out grades.csv``.

Each submission is graded by :func:`cloudlab.grading.grader.grade_submission` (its own kernel
and emulator); this module runs many at once and writes the gradebook and feedback files.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from .feedback import _slugs, feedback_markdown
from .gradebook import summary_table, write_gradebook
from .grader import DEFAULT_TIMEOUT, Limits, SubmissionGrade, grade_submission
from .markers import Master, MarkerError, parse_master


def grade_all(master: Master | str | Path, submissions: list[str | Path], out: str | Path,
              feedback_dir: str | Path | None = None, limits: Limits | None = None,
              jobs: int = 1) -> list[SubmissionGrade]:
    """Grade every submission, ``jobs`` at a time (each in its own kernel and emulator).

    One job per core is the most that helps: kernels are CPU-bound. The gradebook keeps the
    order of ``submissions`` whatever order they finish in. Raises ``MarkerError`` if the
    master is unusable; never fails because of a submission.
    """
    from concurrent.futures import ThreadPoolExecutor

    master = master if isinstance(master, Master) else parse_master(master)
    out = Path(out)
    feedback_dir = Path(feedback_dir) if feedback_dir else out.parent / "feedback"
    feedback_dir.mkdir(parents=True, exist_ok=True)
    paths = [Path(path) for path in submissions]

    def grade_one(path: Path, slug: str) -> SubmissionGrade:
        print(f"grading {path} ...", file=sys.stderr, flush=True)
        grade = grade_submission(master, path, limits)
        (feedback_dir / f"{slug}.md").write_text(feedback_markdown(master, grade), encoding="utf-8")
        return grade

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        grades = list(pool.map(grade_one, paths, _slugs(paths)))
    write_gradebook(master, grades, out)
    return grades


def main(args) -> int:
    """``python -m cloudlab grade``: 0 when every submission was graded, 2 if the master is unusable."""
    limits = Limits(timeout=float(getattr(args, "timeout", None) or DEFAULT_TIMEOUT),
                    cell_timeout=getattr(args, "cell_timeout", None),
                    case_timeout=getattr(args, "case_timeout", None))
    started = time.monotonic()
    try:
        master = parse_master(args.master)
        grades = grade_all(master, args.submissions, args.out, args.feedback_dir, limits,
                           jobs=int(getattr(args, "jobs", None) or 1))
    except MarkerError as error:
        print(f"error: the master cannot be used: {error}", file=sys.stderr)
        return 2
    print(summary_table(master, grades))
    feedback_dir = args.feedback_dir or Path(args.out).parent / "feedback"
    print(f"\n{len(grades)} submission(s) graded in {time.monotonic() - started:.1f} s; "
          f"gradebook {args.out}, feedback in {feedback_dir}/")
    return 0
