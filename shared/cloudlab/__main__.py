"""Command line: ``python -m cloudlab doctor | backend serve | backend wait | labs build | labs check | grade |
gradebook | release | conformance | pipeline``."""

from __future__ import annotations

import argparse
import sys


def _doctor(args) -> int:
    from . import doctor

    return doctor.main()


def _serve(args) -> int:
    from .backend import serve

    return serve.main(port=args.port)


def _wait(args) -> int:
    from .backend import serve

    return serve.wait_main(args.timeout, args.pid)


def _labs(args) -> int:
    from .grading import build

    return build.build_all() if args.action == "build" else build.check_all()


def _grade(args) -> int:
    from .grading import batch

    return batch.main(args)


def _gradebook(args) -> int:
    from .grading import gradebook

    return gradebook.main(args)


def _release(args) -> int:
    from .grading import release

    return release.main(args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cloudlab", description="Cloud Patterns course tools")
    commands = parser.add_subparsers(dest="command", required=True)

    commands.add_parser("doctor", help="check Python, packages, backend and credentials").set_defaults(run=_doctor)

    backend = commands.add_parser("backend", help="the embedded emulator")
    backend_actions = backend.add_subparsers(dest="action", required=True)
    serve = backend_actions.add_parser("serve", help="keep one emulator up for a whole JupyterLab session")
    serve.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    serve.set_defaults(run=_serve)
    wait = backend_actions.add_parser("wait", help="wait until a served emulator answers; print its URL")
    wait.add_argument("--timeout", type=float, default=60, help="seconds to wait (default 60)")
    wait.add_argument("--pid", type=int, default=None, help="the serving process: stop waiting if it exits")
    wait.set_defaults(run=_wait)

    labs = commands.add_parser("labs", help="generate student labs from the masters in solutions/")
    labs.add_argument("action", choices=["build", "check"], help="build: write labs/; check: fail if labs/ is stale")
    labs.set_defaults(run=_labs)

    grade = commands.add_parser("grade", help="grade submitted lab notebooks")
    grade.add_argument("master", help="the lab master, e.g. solutions/01_storage_models_lab.ipynb, "
                       "or a tests file such as labs/tests/01_storage_models_lab.json")
    grade.add_argument("submissions", nargs="+", help="submitted notebooks, or ONE folder with a notebook or folder per student")
    grade.add_argument("--out", default="grades.csv", help="CSV gradebook to write (default grades.csv)")
    grade.add_argument("--feedback-dir", default=None, help="where per-student feedback goes (default: next to --out)")
    grade.add_argument("--timeout", type=float, default=300, help="seconds allowed for a submission's cells (default 300)")
    grade.add_argument("--cell-timeout", type=float, default=None, help="seconds allowed per cell (default min(timeout, 120))")
    grade.add_argument("--jobs", type=int, default=None, help="submissions graded at once (default: one per core)")
    grade.add_argument("--case-timeout", type=float, default=None,
                       help="seconds allowed per test case that declares no timeout= of its own (default 60)")
    grade.add_argument("--submission-timeout", type=float, default=None,
                       help="seconds allowed for ALL of one submission (cells, tests, restarts); then its remaining "
                       "tests are not run and its processes killed (default: --timeout + every case's limit + 120)")
    grade.add_argument("--tests-dir", default=None, help="instructor folder with hidden tests, DIR/<lab>.json")
    grade.add_argument("--regrade", action="store_true", help="grade everything again, ignoring cached results")
    grade.add_argument("--question", action="append", default=None, metavar="Q",
                       help="regrade question Q for every submission, reusing cached results of the others (repeatable)")
    grade.add_argument("--cache-dir", default=None, help="where results are cached (default: .grading-cache next to --out)")
    grade.add_argument("--no-cache", action="store_true", help="neither read nor write cached results")
    grade.add_argument("--roster", default=None, help="CSV of student ids (an id column): report missing students")
    grade.add_argument("--times", default=None, help="CSV with columns id,submitted (ISO 8601); default: file times")
    grade.add_argument("--deadline", default=None, help="ISO 8601 deadline, e.g. 2026-12-01T23:59:00+00:00")
    grade.add_argument("--late-penalty", type=float, default=None, help="percent off per started day late")
    grade.add_argument("--late-cap", type=float, default=100, help="at most this many percent off (default 100)")
    grade.add_argument("--memory-mb", type=int, default=None, help="address space per kernel process, MB (default 2048)")
    grade.set_defaults(run=_grade)

    gradebook = commands.add_parser("gradebook", help="join every lab's results into one class gradebook")
    gradebook.add_argument("results", nargs="+", help="*.results.json files written by grade, or folders holding them")
    gradebook.add_argument("--out", default="class.csv", help="class gradebook CSV (default class.csv); "
                           "per-question columns go to <out>_questions.csv")
    gradebook.set_defaults(run=_gradebook)

    release = commands.add_parser("release", help="what students get (no solutions, no hidden tests), "
                                  "or a Gradescope autograder / GitHub Classroom lab repository")
    release.add_argument("--out", default=None, help="folder (or .zip) to write (default build/student, "
                         "build/student.zip, build/gradescope/<lab>.zip or build/classroom/<lab>)")
    release.add_argument("--zip", action="store_true", help="write a zip instead of a folder")
    release.add_argument("--gradescope", metavar="LAB", default=None, help="write LAB's Gradescope autograder zip")
    release.add_argument("--classroom", metavar="LAB", default=None,
                         help="write a GitHub Classroom repository for LAB, with its grading workflow")
    release.add_argument("--tests-dir", default=None, help="instructor folder with hidden tests (Gradescope only)")
    release.set_defaults(run=_release)

    from .conformance import cli as conformance

    conformance.add_parser(commands)

    from .pipeline import cli as pipeline

    pipeline.add_parser(commands)

    args = parser.parse_args(argv)
    return args.run(args) or 0


if __name__ == "__main__":
    sys.exit(main())
