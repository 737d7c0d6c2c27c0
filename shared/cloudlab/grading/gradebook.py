"""Gradebooks and the class summary: what an instructor reads after grading.

- per lab: the CSV gradebook, the results JSON and a summary report (Markdown + PNG plot:
  per-question score distribution, commonest failures, grading time per submission);
- across labs: ``python -m cloudlab gradebook grades/ --out class.csv`` joins every lab's
  results JSON into one row per student and one column per lab, and per-question columns
  in ``class_questions.csv``.

Introduced with the grader (``python -m cloudlab grade``, README "For instructors").
"""

from __future__ import annotations

import csv
import json
import statistics
import sys
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

from .feedback import _points, notes
from .grader import SubmissionGrade
from .markers import Master


def write_gradebook(master: Master, grades: list[SubmissionGrade], out: Path,
                    late: list[tuple[int, float, float]] | None = None) -> None:
    """One row per submission; with ``late`` (days late, percent off, final points) three more columns."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        late_header = ["days_late", "penalty_percent", "final"] if late is not None else []
        writer.writerow(["submission", *master.questions, "total", "max", *late_header, "notes", "sandbox"])
        for number, grade in enumerate(grades):
            late_cells = [str(late[number][0]), f"{late[number][1]:g}", _points(late[number][2])] if late is not None else []
            writer.writerow([grade.name, *(_points(grade.question_points(q)) for q in master.questions),
                             _points(grade.total), _points(grade.max_points), *late_cells, notes(grade),
                             getattr(grade, "sandbox", "")])  # "none": graded without a sandbox (sandbox.py)


def summary_table(master: Master, grades: list[SubmissionGrade]) -> str:
    header = ["submission", *master.questions, "total", "time", "problems"]
    rows = [[grade.name, *(_points(grade.question_points(q)) for q in master.questions),
             f"{_points(grade.total)}/{_points(grade.max_points)}", f"{grade.seconds:.1f}s", str(len(grade.problems))]
            for grade in grades]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip()
                     for row in [header, *rows])


def _failure(case) -> str:
    prefix = "(hidden) " if case.hidden else ""
    return f"{prefix}{case.description}: {case.message}" if case.message else f"{prefix}{case.description}"


def write_results(master: Master, results, path: Path, late_rule=None) -> None:
    """Everything the summary and the class gradebook need, as JSON (``results``: ``batch.Graded`` rows)."""
    students = []
    for item in results:
        grade = item.grade
        final = late_rule.apply(grade.total, item.submitted) if late_rule else grade.total
        students.append({
            "id": item.student, "missing": item.missing, "cached": item.cached,
            "graded_questions": item.graded_questions, "seconds": round(grade.seconds, 2),
            "questions": {q: grade.question_points(q) for q in master.questions},
            "total": grade.total, "max": grade.max_points, "final": final,
            "days_late": late_rule.days_late(item.submitted) if late_rule else 0,
            "submitted": item.submitted.isoformat() if item.submitted else None,
            "problems": grade.problems, "sandbox": getattr(grade, "sandbox", ""),
            "failures": {q: [_failure(case) for case in grade.cases if case.question == q and not case.passed]
                         for q in master.questions} if not item.missing else {},
        })
    data = {"lab": master.lab_name, "max_points": master.max_points,
            "questions": [{"name": q.name, "points": q.points} for q in master.questions.values()],
            "written_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "students": students}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1), encoding="utf-8")


def question_stats(data: dict) -> list[dict]:
    """Per question: mean share of its points, and the shares of the class at full, partial and zero."""
    graded = [student for student in data["students"] if not student["missing"]]
    found = []
    for question in data["questions"]:
        name, points = question["name"], question["points"] or 1
        shares = [student["questions"].get(name, 0) / points for student in graded]
        failures = Counter(message for student in graded for message in student["failures"].get(name, []))
        found.append({"name": name, "points": question["points"],
                      "mean": statistics.fmean(shares) if shares else 0.0,
                      "full": sum(share >= 0.999 for share in shares), "zero": sum(share <= 0.001 for share in shares),
                      "partial": sum(0.001 < share < 0.999 for share in shares), "count": len(shares),
                      "commonest_failures": failures.most_common(3)})
    return found


def plot_distribution(stats: list[dict], lab: str, path: Path) -> None:
    """Per question, the share of the class with full, partial and zero points (PNG, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [item["name"] for item in stats][::-1]
    count = max(1, max((item["count"] for item in stats), default=1))
    figure, axes = plt.subplots(figsize=(8, 1 + 0.5 * len(stats)))
    left = [0.0] * len(stats)
    for key, colour in (("full", "#2da44e"), ("partial", "#d4a72c"), ("zero", "#cf222e")):
        widths = [item[key] / count * 100 for item in stats][::-1]
        axes.barh(names, widths, left=left, color=colour, label=f"{key} points")
        left = [a + b for a, b in zip(left, widths)]
    for y, item in enumerate(stats[::-1]):
        axes.text(101, y, f"mean {item['mean'] * 100:.0f}%", va="center", fontsize=8)
    axes.set_xlim(0, 115)
    axes.set_xlabel("share of the class (%)")
    axes.set_title(f"{lab}: score distribution per question", pad=24)
    axes.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=3, fontsize=8, frameon=False)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def write_summary(results: Path, stem: Path) -> Path:
    """``<stem>.md`` and ``<stem>.png`` from a results JSON; returns the Markdown file's path."""
    data = json.loads(Path(results).read_text(encoding="utf-8"))
    stats = question_stats(data)
    graded = [student for student in data["students"] if not student["missing"]]
    missing = [student["id"] for student in data["students"] if student["missing"]]
    plot_distribution(stats, data["lab"], stem.with_suffix(".png"))
    totals = [student["total"] for student in graded]
    lines = [f"# Summary: {data['lab']}", "",
             f"{len(graded)} submission(s) graded ({sum(s['cached'] for s in graded)} from the cache)"
             + (f", {len(missing)} missing ({', '.join(missing)})" if missing else "") + "."]
    if totals:
        lines.append(f"Total: mean {statistics.fmean(totals):.1f}, median {statistics.median(totals):g} "
                     f"of {_points(data['max_points'])} points.")
    unsandboxed = [student["id"] for student in graded if student.get("sandbox") == "none"]
    if unsandboxed:
        lines.append(f"**Graded without a sandbox** (bubblewrap missing or disabled): {len(unsandboxed)} submission(s).")
    hardest = min(stats, key=lambda item: item["mean"], default=None)
    if hardest and graded:
        lines += ["", f"**The class struggled most with {hardest['name']}** (mean {hardest['mean'] * 100:.0f}% of its points)."]
    lines += ["", f"![score distribution per question]({stem.with_suffix('.png').name})", "",
              "| question | points | mean | full | partial | zero |", "|---|---|---|---|---|---|"]
    lines += [f"| {item['name']} | {_points(item['points'])} | {item['mean'] * 100:.0f}% | {item['full']} | "
              f"{item['partial']} | {item['zero']} |" for item in stats]
    lines += ["", "## Commonest failures per question", ""]
    for item in stats:
        lines.append(f"- **{item['name']}**" + ("" if item["commonest_failures"] else ": none"))
        lines += [f"  - {count} x {message}" for message, count in item["commonest_failures"]]
    seconds = [student["seconds"] for student in graded if not student["cached"]]
    lines += ["", "## Grading time per submission", ""]
    if seconds:
        lines.append(f"Graded this run: {len(seconds)}, median {statistics.median(seconds):.1f} s, "
                     f"max {max(seconds):.1f} s (each in its own kernel and emulator).")
    lines += ["", "| student | seconds | from cache | problems |", "|---|---|---|---|"]
    lines += [f"| {s['id']} | {s['seconds']:.1f} | {'yes' if s['cached'] else 'no'} | {len(s['problems'])} |"
              for s in graded]
    path = stem.with_suffix(".md")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def class_gradebook(results: list[Path], out: Path) -> tuple[Path, Path]:
    """One row per student across labs (``out``), and per-question columns (``<out stem>_questions.csv``).

    A lab column holds the final points (after any late penalty); a student with no result
    for a lab gets an empty cell there.
    """
    labs = sorted((json.loads(Path(path).read_text(encoding="utf-8")) for path in results), key=lambda d: d["lab"])
    if not labs:
        raise ValueError("no results files (*.results.json) to join; grade a lab first")
    names = [lab["lab"] for lab in labs]
    if len(set(names)) != len(names):
        raise ValueError(f"two results files for one lab: {sorted(n for n in names if names.count(n) > 1)}")
    students = sorted({student["id"] for lab in labs for student in lab["students"]})
    by_lab = {lab["lab"]: {student["id"]: student for student in lab["students"]} for lab in labs}
    out.parent.mkdir(parents=True, exist_ok=True)
    questions_out = out.with_name(f"{out.stem}_questions.csv")
    with open(out, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["student", *names, "total", "max"])
        most = _points(sum(lab["max_points"] for lab in labs))
        writer.writerow(["(max)", *(_points(lab["max_points"]) for lab in labs), most, most])
        for student in students:
            cells = [by_lab[name].get(student, {}).get("final") for name in names]
            writer.writerow([student, *("" if cell is None else _points(cell) for cell in cells),
                             _points(sum(cell or 0 for cell in cells)), _points(sum(lab["max_points"] for lab in labs))])
    with open(questions_out, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        columns = [(lab["lab"], question["name"]) for lab in labs for question in lab["questions"]]
        writer.writerow(["student", *(f"{lab}:{question}" for lab, question in columns)])
        writer.writerow(["(max)", *(_points(question["points"]) for lab in labs for question in lab["questions"])])
        for student in students:
            row = []
            for lab, question in columns:
                value = by_lab[lab].get(student, {}).get("questions", {}).get(question)
                row.append("" if value is None else _points(value))
            writer.writerow([student, *row])
    return out, questions_out


def main(args) -> int:
    """``python -m cloudlab gradebook RESULTS_OR_FOLDERS... --out class.csv``."""
    paths = []
    for name in args.results:
        path = Path(name)
        paths += sorted(path.rglob("*.results.json")) if path.is_dir() else [path]
    try:
        out, questions = class_gradebook(paths, Path(args.out))
    except (OSError, ValueError, KeyError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"class gradebook {out} ({len(paths)} lab(s)); per question {questions}")
    return 0
