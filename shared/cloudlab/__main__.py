"""Command line: ``python -m cloudlab doctor | backend serve | backend wait | labs build | labs check | grade |
conformance``."""

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
    grade.add_argument("master", help="the lab master, e.g. solutions/01_storage_models_lab.ipynb")
    grade.add_argument("submissions", nargs="+", help="submitted notebooks")
    grade.add_argument("--out", default="grades.csv", help="CSV gradebook to write (default grades.csv)")
    grade.add_argument("--feedback-dir", default=None, help="where per-student feedback goes (default: next to --out)")
    grade.add_argument("--timeout", type=float, default=300, help="seconds allowed per submission (default 300)")
    grade.add_argument("--cell-timeout", type=float, default=None, help="seconds allowed per cell (default min(timeout, 120))")
    grade.add_argument("--jobs", type=int, default=1, help="submissions graded at once (at most one per core helps)")
    grade.add_argument("--case-timeout", type=float, default=None, help="seconds allowed per test case (default 60)")
    grade.set_defaults(run=_grade)

    from .conformance import cli as conformance

    conformance.add_parser(commands)

    args = parser.parse_args(argv)
    return args.run(args) or 0


if __name__ == "__main__":
    sys.exit(main())
