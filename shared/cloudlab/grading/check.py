"""The student's self-check: ``check = checker("NN_topic_lab")`` then ``check("q1")``.

Introduced in notebook 01 (its lab's set-up cell). ``check("q1")`` runs the public test
cases of question ``q1`` from ``labs/tests/NN_topic_lab.json`` against the names defined in
the notebook and shows one PASS/FAIL line per case. Hidden cases are not shipped; the
result says how many points they are worth. The tests file is read when ``check`` is
called, not when the checker is made, so the master notebook (whose tests file may not be
built yet) can create a checker without failing.
"""

from __future__ import annotations

import html
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .runner import execute_case, user_namespace

# The grader points this at the tests built from the master it grades with.
TESTS_DIR_VARIABLE = "CLOUDLAB_LAB_TESTS_DIR"
CASE_TIMEOUT = 120  # seconds; a self-check that hangs should say so rather than spin forever


def repo_root() -> Path:
    """The course repository: the folder holding ``shared/cloudlab``."""
    import cloudlab

    return Path(cloudlab.__file__).resolve().parents[2]


def tests_file_candidates(lab_name: str) -> list[Path]:
    """Where ``check`` looks for ``<lab_name>.json``, first match wins."""
    folders = []
    if os.environ.get(TESTS_DIR_VARIABLE):
        folders.append(Path(os.environ[TESTS_DIR_VARIABLE]))
    folders += [repo_root() / "labs" / "tests", Path.cwd() / "tests", Path.cwd().parent / "labs" / "tests"]
    return [folder / f"{lab_name}.json" for folder in folders]


def _points(value) -> str:
    value = float(value)
    text = f"{value:g}"
    return f"{text} point" + ("" if value == 1 else "s")


@dataclass
class CaseResult:
    description: str
    points: float
    passed: bool
    message: str


@dataclass
class CheckResult:
    """The outcome of ``check("q")``: shown as a table in Jupyter, as stable plain text elsewhere."""

    question: str
    cases: list[CaseResult] = field(default_factory=list)
    hidden_points: float = 0
    hidden_cases: int = 0

    @property
    def points(self) -> float:
        return sum(case.points for case in self.cases if case.passed)

    @property
    def public_points(self) -> float:
        return sum(case.points for case in self.cases)

    @property
    def passed(self) -> bool:
        return all(case.passed for case in self.cases)

    def __bool__(self) -> bool:
        return self.passed

    def _hidden_note(self) -> str:
        if not self.hidden_cases:
            return ""
        tests = "test" if self.hidden_cases == 1 else "tests"
        return f"{self.hidden_cases} hidden {tests} worth {_points(self.hidden_points)} more run when the lab is graded"

    def __repr__(self) -> str:
        if not self.cases:
            lines = [f"{self.question}: no public tests"]
        else:
            lines = [f"{self.question}: {self.points:g} of {_points(self.public_points)}"
                     + (" - all public tests pass" if self.passed else "")]
        for case in self.cases:
            lines.append(f"  {'PASS' if case.passed else 'FAIL'}  [{case.points:g}]  {case.description}")
            if case.message:
                lines.append(f"          {case.message}")
        if self._hidden_note():
            lines.append(f"  ({self._hidden_note()})")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        rows = []
        for case in self.cases:
            colour = "#1a7f37" if case.passed else "#cf222e"
            verdict = "PASS" if case.passed else "FAIL"
            rows.append(
                f"<tr><td style='color:{colour};font-weight:bold'>{verdict}</td>"
                f"<td>{case.points:g}</td><td style='text-align:left'>{html.escape(case.description)}</td>"
                f"<td style='text-align:left'>{html.escape(case.message)}</td></tr>")
        summary = (f"{self.points:g} of {_points(self.public_points)}" if self.cases else "no public tests")
        parts = [f"<p><b>{html.escape(self.question)}</b>: {summary}</p>"]
        if rows:
            parts.append("<table><tr><th></th><th>points</th><th style='text-align:left'>test</th>"
                         "<th style='text-align:left'>message</th></tr>" + "".join(rows) + "</table>")
        if self._hidden_note():
            parts.append(f"<p><i>{html.escape(self._hidden_note())}</i></p>")
        return "\n".join(parts)


@dataclass
class CheckReport:
    """``check()`` with no question: every question's result."""

    results: list[CheckResult]

    def __repr__(self) -> str:
        return "\n\n".join(repr(result) for result in self.results)

    def _repr_html_(self) -> str:
        return "\n".join(result._repr_html_() for result in self.results)

    def __bool__(self) -> bool:
        return all(self.results)


class LabTestsNotFound(FileNotFoundError):
    """The public tests file of a lab is missing."""


class Checker:
    """``check(question)``: run a question's public tests against the notebook's names."""

    def __init__(self, lab_name: str, tests_path: str | Path | None = None) -> None:
        self.lab_name = lab_name
        self.tests_path = Path(tests_path) if tests_path else None

    def __repr__(self) -> str:
        return f"Checker({self.lab_name!r})"

    def _load(self) -> dict:
        candidates = [self.tests_path] if self.tests_path else tests_file_candidates(self.lab_name)
        for path in candidates:
            if path.is_file():
                return json.loads(path.read_text(encoding="utf-8"))
        looked = "\n  ".join(str(path) for path in candidates)
        raise LabTestsNotFound(
            f"No tests file for lab {self.lab_name!r}. Looked in:\n  {looked}\n"
            "In the course repository, run: python -m cloudlab labs build")

    def __call__(self, question: str | None = None, _namespace: dict | None = None):
        namespace = _namespace if _namespace is not None else user_namespace(sys._getframe(1).f_globals)
        tests = self._load()
        questions = {entry["name"]: entry for entry in tests["questions"]}
        if question is None:
            return CheckReport([self._run(entry, namespace) for entry in questions.values()])
        if question not in questions:
            raise KeyError(f"lab {self.lab_name!r} has no question {question!r}; "
                           f"its questions are {', '.join(questions)}")
        return self._run(questions[question], namespace)

    def _run(self, entry: dict, namespace: dict) -> CheckResult:
        result = CheckResult(entry["name"], hidden_points=entry.get("hidden_points", 0),
                             hidden_cases=entry.get("hidden_cases", 0))
        for number, case in enumerate(entry["cases"], start=1):
            limit = max(CASE_TIMEOUT, float(case.get("timeout") or 0))  # a case may declare a longer limit
            outcome = execute_case(case["code"], namespace, f"{entry['name']} #{number}", limit)
            result.cases.append(CaseResult(case["description"], case["points"], outcome.passed, outcome.message))
        return result


def checker(lab_name: str, tests_path: str | Path | None = None) -> Checker:
    """Make the lab's ``check`` function. Introduced in notebook 01's lab.

    ``check = checker("01_storage_models_lab")`` in the set-up cell; then ``check("q1")``
    after a question runs its public tests, and ``check()`` runs them all.
    """
    return Checker(lab_name, tests_path)
