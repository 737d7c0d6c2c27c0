"""Feedback files, one per student: points and cases per question, and their written answers.

Introduced with the grader (``python -m cloudlab grade``, README "For instructors").
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .grader import SubmissionGrade
from .markers import Master, _number


def _points(value: float) -> str:
    return f"{_number(value)}"


def _slugs(paths: list[Path]) -> list[str]:
    """File names for feedback: the notebook's name, with its folders when names repeat."""
    stems = [path.stem for path in paths]
    if len(set(stems)) == len(stems):
        chosen = stems
    else:
        resolved = [path.resolve() for path in paths]
        common = Path(os.path.commonpath([str(path.parent) for path in resolved]))
        chosen = [str(path.relative_to(common).with_suffix("")) for path in resolved]
    slugs, seen = [], set()
    for text in chosen:
        slug = re.sub(r"[^\w.-]+", "_", text).strip("_") or "submission"
        base, count = slug, 1
        while slug in seen:
            count += 1
            slug = f"{base}_{count}"
        seen.add(slug)
        slugs.append(slug)
    return slugs


def notes(grade: SubmissionGrade, limit: int = 3) -> str:
    """The gradebook's short account of a submission's problems (the feedback has all of them)."""
    shown = grade.problems[:limit]
    if len(grade.problems) > limit:
        shown.append(f"{len(grade.problems) - limit} more problem(s), see feedback")
    return "; ".join(shown)


def _written_lines(text: str | None) -> list[str]:
    if text is None:
        return ["**Your written answer:** none found (the answer cell is unchanged, empty or deleted).", ""]
    return ["**Your written answer** (read by the instructor, not autograded):", ""] + \
        [f"> {line}".rstrip() for line in text.splitlines()] + [""]


def feedback_markdown(master: Master, grade: SubmissionGrade) -> str:
    lines = [f"# Feedback: {grade.name}", "",
             f"Lab `{master.lab_name}`: **{_points(grade.total)} / {_points(grade.max_points)} points**", ""]
    if grade.problems:
        lines += ["## Problems running your notebook", ""]
        lines += [f"- {problem}" for problem in grade.problems]
        lines.append("")
    for question in master.questions.values():
        cases = [case for case in grade.cases if case.question == question.name]
        earned = sum(case.earned for case in cases)
        lines += [f"## {question.name}: {_points(earned)} / {_points(question.points)} points", ""]
        for case in cases:
            verdict = "PASS" if case.passed else "FAIL"
            hidden = " (hidden test)" if case.hidden else ""
            lines.append(f"- **{verdict}** [{_points(case.earned)}/{_points(case.points)}] {case.description}{hidden}")
            if case.message:
                lines.append(f"  - {case.message}")
            if case.ran and not case.passed and not case.hidden:
                lines += ["", "  ```python"] + [f"  {line}".rstrip() for line in case.code.splitlines()] + ["  ```"]
        lines.append("")
        for prompt, text in grade.written:
            if prompt.question == question.name:
                lines += _written_lines(text)
    for prompt, text in grade.written:
        if prompt.question not in master.questions:  # a written-only question: its own section
            lines += [f"## {prompt.title} (written)", ""] + _written_lines(text)
    return "\n".join(lines).rstrip("\n") + "\n"
