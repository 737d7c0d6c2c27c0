"""Run one test case in a notebook's namespace and say, in words a student can act on, why it failed.

Used twice: by ``check("q1")`` in the student's own notebook (``check.py``), and by the
grader inside each submission's kernel (:func:`run_case_for_grader`). Each case runs in a
shallow copy of the namespace, so names a test binds do not leak into the notebook or the
next case.
"""

from __future__ import annotations

import json
import signal
import threading
import traceback
from dataclasses import asdict, dataclass

TEST_FILENAME_PREFIX = "<cloudlab test"


class CaseTimeout(BaseException):
    """Raised by the alarm when a case runs too long (BaseException: ``except Exception`` in student code must not swallow it)."""


@dataclass
class CaseOutcome:
    passed: bool
    message: str  # "" when passed


def user_namespace(fallback: dict | None = None) -> dict:
    """The notebook's namespace: IPython's ``user_ns`` inside a kernel, else ``fallback``."""
    try:
        from IPython import get_ipython
    except ImportError:  # plain Python without IPython installed
        get_ipython = None
    shell = get_ipython() if get_ipython else None
    if shell is not None:
        return shell.user_ns
    return fallback if fallback is not None else {}


def _first_line(text: str, limit: int = 300) -> str:
    line = next((part.strip() for part in str(text).splitlines() if part.strip()), "")
    return line if len(line) <= limit else line[: limit - 3] + "..."


def explain(error: BaseException, code: str, filename: str, timeout: float | None, declared: bool = False) -> str:
    """A one-line reason for a failed case, written for the student (``declared``: the test set its own limit)."""
    frames = traceback.extract_tb(error.__traceback__)
    test_frames = [frame for frame in frames if frame.filename == filename]
    failed_in_test = bool(frames) and frames[-1].filename == filename
    if isinstance(error, CaseTimeout):
        limit = f"its own time limit of {timeout:g} s" if declared else f"{timeout:g} s"
        return f"did not finish in {limit} (an endless loop, or a call that waits forever?)"
    if isinstance(error, NotImplementedError):
        hint = _first_line(error)
        return "not answered yet" + (f" ({hint})" if hint else "")
    if isinstance(error, AssertionError):
        message = _first_line(error)
        if message:
            return message
        if test_frames:
            lines = code.splitlines()
            line_number = test_frames[-1].lineno or 0
            if 0 < line_number <= len(lines):
                return f"check failed: {lines[line_number - 1].strip()}"
        return "check failed"
    if isinstance(error, NameError) and failed_in_test:
        name = getattr(error, "name", None) or _first_line(error)
        return f"`{name}` is not defined — was the cell with your solution deleted or not run?"
    where = ""
    if not failed_in_test and frames:
        where = f" (in `{frames[-1].name}`, line {frames[-1].lineno})"
    return f"{type(error).__name__}: {_first_line(error)}{where}"


def execute_case(code: str, namespace: dict, label: str = "case", timeout: float | None = None,
                 declared: bool = False) -> CaseOutcome:
    """Run a case's code in a copy of ``namespace``; pass when it raises nothing.

    ``timeout`` (seconds) is enforced with SIGALRM when called from the main thread,
    which is where IPython runs cells; ``declared``: it is the test's own (``timeout=``), and
    a failure says so.
    """
    filename = f"{TEST_FILENAME_PREFIX} {label}>"
    scope = dict(namespace)
    use_alarm = bool(timeout) and hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    previous = None
    try:
        compiled = compile(code, filename, "exec")
    except SyntaxError as error:
        return CaseOutcome(False, f"the test itself does not compile: {error}")

    def on_alarm(signum, frame):
        raise CaseTimeout()

    try:
        if use_alarm:
            previous = signal.signal(signal.SIGALRM, on_alarm)
            signal.setitimer(signal.ITIMER_REAL, timeout)
        try:
            exec(compiled, scope)
        finally:
            if use_alarm:
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.signal(signal.SIGALRM, previous)
    except (Exception, CaseTimeout) as error:
        return CaseOutcome(False, explain(error, code, filename, timeout, declared))
    except KeyboardInterrupt:
        raise  # the student (or the grader) stopped the cell: stop the whole check, not just this case
    except SystemExit as error:
        return CaseOutcome(False, f"the code called exit({error.code!r})")
    return CaseOutcome(True, "")


# Results wait here until the grader collects them through the execute reply's
# user_expressions, a channel student output cannot write to.
_results: dict[str, str] = {}


def run_case_for_grader(nonce: str, case_json: str) -> None:
    """Grader entry point inside a submission's kernel: run one case, keep its result for :func:`collect`."""
    case = json.loads(case_json)
    outcome = execute_case(case["code"], user_namespace(), case["label"], case.get("timeout"), bool(case.get("declared")))
    _results[nonce] = json.dumps({"nonce": nonce, **asdict(outcome)})


def collect(nonce: str) -> str:
    """The JSON result stored for ``nonce`` (empty if the case never finished)."""
    return _results.pop(nonce, "")


def grader_code(nonce: str, case: dict) -> tuple[str, dict]:
    """The code and user_expressions the grader sends to run ``case``; it adds no names to the notebook."""
    module = "__import__('cloudlab.grading.runner', fromlist=['runner'])"
    code = f"{module}.run_case_for_grader({nonce!r}, {json.dumps(case)!r})"
    return code, {"result": f"{module}.collect({nonce!r})"}
