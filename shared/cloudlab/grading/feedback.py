"""Feedback files, one per student: points and cases per question, and their written answers.

Introduced with the grader (``python -m cloudlab grade``, README "For instructors").
"""

from __future__ import annotations

import html
import os
import re
from dataclasses import dataclass
from pathlib import Path

from .grader import CaseGrade, SubmissionGrade
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


@dataclass
class QuestionFeedback:
    """One question as the student sees it: public cases in full, hidden ones only counted."""

    name: str
    earned: float
    points: float
    public: list[CaseGrade]
    hidden_passed: int
    hidden_count: int
    hidden_earned: float
    hidden_points: float
    written: list[str | None]  # the student's answers to this question's written prompts


def question_feedback(master: Master, grade: SubmissionGrade) -> list[QuestionFeedback]:
    found = []
    for question in master.questions.values():
        cases = [case for case in grade.cases if case.question == question.name]
        hidden = [case for case in cases if case.hidden]
        found.append(QuestionFeedback(
            question.name, sum(case.earned for case in cases), sum(case.points for case in cases),
            [case for case in cases if not case.hidden], sum(case.passed for case in hidden), len(hidden),
            sum(case.earned for case in hidden), sum(case.points for case in hidden),
            [text for prompt, text in grade.written if prompt.question == question.name]))
    return found


def _hidden_line(question: QuestionFeedback) -> str:
    return (f"Hidden tests: {question.hidden_passed} of {question.hidden_count} passed "
            f"({_points(question.hidden_earned)}/{_points(question.hidden_points)} points)")


def feedback_markdown(master: Master, grade: SubmissionGrade, late: str = "") -> str:
    """The student's feedback as Markdown. ``late``: a line on the late penalty, if any."""
    lines = [f"# Feedback: {grade.name}", "",
             f"Lab `{master.lab_name}`: **{_points(grade.total)} / {_points(grade.max_points)} points**", ""]
    if late:
        lines += [late, ""]
    if grade.problems:
        lines += ["## Problems running your notebook", ""]
        lines += [f"- {problem}" for problem in grade.problems]
        lines.append("")
    for question in question_feedback(master, grade):
        lines += [f"## {question.name}: {_points(question.earned)} / {_points(question.points)} points", ""]
        for case in question.public:
            verdict = "PASS" if case.passed else "FAIL"
            lines.append(f"- **{verdict}** [{_points(case.earned)}/{_points(case.points)}] {case.description}")
            if case.message:
                lines.append(f"  - {case.message}")
            if case.ran and not case.passed:
                lines += ["", "  ```python"] + [f"  {line}".rstrip() for line in case.code.splitlines()] + ["  ```"]
        if question.hidden_count:
            lines.append(f"- {_hidden_line(question)}")
        lines.append("")
        for text in question.written:
            lines += _written_lines(text)
    for prompt, text in grade.written:
        if prompt.question not in master.questions:  # a written-only question: its own section
            lines += [f"## {prompt.title} (written)", ""] + _written_lines(text)
    return "\n".join(lines).rstrip("\n") + "\n"


_STYLE = """body{font-family:system-ui,sans-serif;max-width:52rem;margin:2rem auto;padding:0 1rem;line-height:1.45}
.pass{color:#1a7f37;font-weight:bold}.fail{color:#cf222e;font-weight:bold}
pre{background:#f6f8fa;padding:.6rem;overflow-x:auto}blockquote{border-left:4px solid #d0d7de;margin:0;padding:0 1rem;color:#333}
.problems{background:#fff8c5;padding:.5rem 1rem}.hidden{color:#555}"""


def _written_html(text: str | None) -> str:
    if text is None:
        return "<p><b>Your written answer:</b> none found (the answer cell is unchanged, empty or deleted).</p>"
    return ("<p><b>Your written answer</b> (read by the instructor, not autograded):</p>"
            f"<blockquote>{'<br>'.join(html.escape(line) for line in text.splitlines())}</blockquote>")


def feedback_html(master: Master, grade: SubmissionGrade, late: str = "") -> str:
    """The same feedback as :func:`feedback_markdown`, as a standalone HTML page."""
    e = html.escape
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>Feedback: {e(grade.name)}</title>"
             f"<style>{_STYLE}</style></head><body>",
             f"<h1>Feedback: {e(grade.name)}</h1>",
             f"<p>Lab <code>{e(master.lab_name)}</code>: <b>{_points(grade.total)} / {_points(grade.max_points)} points</b></p>"]
    if late:
        parts.append(f"<p>{e(late)}</p>")
    if grade.problems:
        parts.append("<div class='problems'><h2>Problems running your notebook</h2><ul>"
                     + "".join(f"<li>{e(problem)}</li>" for problem in grade.problems) + "</ul></div>")
    for question in question_feedback(master, grade):
        parts.append(f"<h2>{e(question.name)}: {_points(question.earned)} / {_points(question.points)} points</h2><ul>")
        for case in question.public:
            verdict = "<span class='pass'>PASS</span>" if case.passed else "<span class='fail'>FAIL</span>"
            item = f"<li>{verdict} [{_points(case.earned)}/{_points(case.points)}] {e(case.description)}"
            if case.message:
                item += f"<br>{e(case.message)}"
            if case.ran and not case.passed:
                item += f"<pre><code>{e(case.code)}</code></pre>"
            parts.append(item + "</li>")
        if question.hidden_count:
            parts.append(f"<li class='hidden'>{e(_hidden_line(question))}</li>")
        parts.append("</ul>")
        parts += [_written_html(text) for text in question.written]
    for prompt, text in grade.written:
        if prompt.question not in master.questions:
            parts += [f"<h2>{e(prompt.title)} (written)</h2>", _written_html(text)]
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
