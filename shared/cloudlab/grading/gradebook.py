"""Gradebooks: the per-lab CSV and the summary table printed after a batch.

Introduced with the grader (``python -m cloudlab grade``, README "For instructors").
"""

from __future__ import annotations

import csv
from pathlib import Path

from .feedback import _points, notes
from .grader import SubmissionGrade
from .markers import Master


def write_gradebook(master: Master, grades: list[SubmissionGrade], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["submission", *master.questions, "total", "max", "notes"])
        for grade in grades:
            writer.writerow([grade.name, *(_points(grade.question_points(q)) for q in master.questions),
                             _points(grade.total), _points(grade.max_points), notes(grade)])


def summary_table(master: Master, grades: list[SubmissionGrade]) -> str:
    header = ["submission", *master.questions, "total", "time", "problems"]
    rows = [[grade.name, *(_points(grade.question_points(q)) for q in master.questions),
             f"{_points(grade.total)}/{_points(grade.max_points)}", f"{grade.seconds:.1f}s", str(len(grade.problems))]
            for grade in grades]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip()
                     for row in [header, *rows])
