"""Collect a class's submissions from a folder, and the late-work rule.

Introduced with the grader (README "For instructors"): ``python -m cloudlab grade MASTER
SUBMISSIONS_DIR`` grades a folder holding one entry per student, either a notebook
(``alice.ipynb``, ``alice_01_storage_models_lab.ipynb``) or a folder (``alice/`` with the
lab's notebook inside). The student id comes from the entry's name, lower-cased, with the
lab's name and anything after `` - `` (as LMS downloads add) removed. Two entries with one id
are duplicates: the latest one is graded and the others are reported. With a roster CSV
(an ``id`` column, else the first column), students without a submission are reported and
get a row with 0 points, and entries not on the roster are reported.

Submission times are the notebook file's modification time, or come from a CSV of
``id,submitted`` (ISO 8601). A :class:`LateRule` takes a percentage off per started day
after the deadline, up to a cap.
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

_SKIPPED = (".ipynb_checkpoints", "__MACOSX")


@dataclass
class Submission:
    student: str
    path: Path | None  # the notebook to grade; None when the entry has no usable notebook
    submitted: datetime | None = None
    problem: str = ""  # why there is no notebook to grade


@dataclass
class Collection:
    submissions: list[Submission]  # one per student, sorted by id
    missing: list[str] = field(default_factory=list)  # on the roster, nothing handed in
    duplicates: dict[str, list[Path]] = field(default_factory=dict)  # id -> the entries NOT graded
    unknown: list[str] = field(default_factory=list)  # handed in, not on the roster

    def report(self) -> list[str]:
        """Lines an instructor reads before the grades."""
        lines = []
        if self.missing:
            lines.append(f"missing ({len(self.missing)}): " + ", ".join(self.missing))
        for student, ignored in self.duplicates.items():
            lines.append(f"duplicate submissions for {student}: graded the latest, ignored "
                         + ", ".join(str(path) for path in ignored))
        if self.unknown:
            lines.append(f"not on the roster ({len(self.unknown)}): " + ", ".join(self.unknown))
        for submission in self.submissions:
            if submission.problem:
                lines.append(f"{submission.student}: {submission.problem}")
        return lines


def student_id(name: str, lab_name: str = "") -> str:
    """``"Alice_01_storage_models_lab.ipynb"`` -> ``"alice"``."""
    stem = name[:-len(".ipynb")] if name.lower().endswith(".ipynb") else name
    stem = stem.split(" - ")[0]
    if lab_name:
        stem = re.sub(re.escape(lab_name), "", stem, flags=re.IGNORECASE)
    stem = re.sub(r"[\s_.\-]+", "_", stem).strip("_").lower()
    return stem or name.lower()


def _notebook_in(folder: Path, lab_name: str) -> tuple[Path | None, str]:
    notebooks = sorted(path for path in folder.rglob("*.ipynb") if not any(part in _SKIPPED for part in path.parts))
    named = [path for path in notebooks if lab_name and path.stem == lab_name]
    if named:
        return named[0], ""
    if len(notebooks) == 1:
        return notebooks[0], ""
    if not notebooks:
        return None, "the folder holds no notebook"
    return None, f"the folder holds {len(notebooks)} notebooks and none is named {lab_name}.ipynb"


def read_roster(path: str | Path) -> list[str]:
    """Student ids from a roster CSV: the ``id`` column, else the first one."""
    with open(path, newline="", encoding="utf-8-sig") as handle:
        rows = list(csv.reader(handle))
    if not rows:
        return []
    header = [cell.strip().lower() for cell in rows[0]]
    column = header.index("id") if "id" in header else 0
    has_header = "id" in header or header[0] in ("student", "name", "email", "login", "username")
    body = rows[1:] if has_header else rows
    return sorted({student_id(row[column].strip()) for row in body if len(row) > column and row[column].strip()})


def parse_time(text: str) -> datetime:
    """An ISO 8601 time; without a zone it is UTC. Raises ValueError with the text."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"not an ISO 8601 time: {text!r} (write e.g. 2026-11-30T23:59:00+00:00)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def read_times(path: str | Path) -> dict[str, datetime]:
    """``id -> submission time`` from a CSV with columns ``id`` and ``submitted``."""
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        fields = {name.strip().lower(): name for name in reader.fieldnames or []}
        if "id" not in fields or "submitted" not in fields:
            raise ValueError(f"{path}: a times CSV needs the columns id and submitted")
        return {student_id(row[fields["id"]].strip()): parse_time(row[fields["submitted"]])
                for row in reader if row[fields["id"]].strip()}


def collect(folder: str | Path, lab_name: str = "", roster: list[str] | None = None,
            times: dict[str, datetime] | None = None) -> Collection:
    """One :class:`Submission` per student found in ``folder``; see the module docstring."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a folder of submissions")
    found: dict[str, list[Submission]] = {}
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith(".") or entry.name in _SKIPPED:
            continue
        if entry.is_dir():
            notebook, problem = _notebook_in(entry, lab_name)
        elif entry.suffix.lower() == ".ipynb":
            notebook, problem = entry, ""
        else:
            continue
        student = student_id(entry.name, lab_name)
        when = (times or {}).get(student)
        if when is None and notebook is not None:
            when = datetime.fromtimestamp(notebook.stat().st_mtime, tz=timezone.utc)
        found.setdefault(student, []).append(Submission(student, notebook, when, problem))
    chosen, duplicates = [], {}
    for student, entries in sorted(found.items()):
        entries.sort(key=lambda s: (s.path is not None, s.submitted or datetime.min.replace(tzinfo=timezone.utc)))
        chosen.append(entries[-1])
        if len(entries) > 1:
            duplicates[student] = [entry.path or Path("?") for entry in entries[:-1]]
    roster_set = set(roster or [])
    missing = sorted(roster_set - set(found)) if roster is not None else []
    unknown = sorted(set(found) - roster_set) if roster is not None else []
    return Collection(chosen, missing, duplicates, unknown)


@dataclass(frozen=True)
class LateRule:
    """``percent_per_day`` off the total per started day after ``deadline``, at most ``cap`` percent."""

    deadline: datetime
    percent_per_day: float
    cap: float = 100.0

    def days_late(self, submitted: datetime | None) -> int:
        if submitted is None or submitted <= self.deadline:
            return 0
        return math.ceil((submitted - self.deadline).total_seconds() / 86400)

    def penalty(self, submitted: datetime | None) -> float:
        """The percentage taken off (0 when on time)."""
        return min(self.cap, self.days_late(submitted) * self.percent_per_day)

    def apply(self, total: float, submitted: datetime | None) -> float:
        return round(total * (1 - self.penalty(submitted) / 100), 2)
