"""Grade a class: ``python -m cloudlab grade MASTER SUBMISSIONS... --out grades/lab01.csv``.

Introduced with the grader (README "For instructors"). Each submission is graded by
:func:`cloudlab.grading.grader.grade_submission` (its own kernel and emulator); this module

- collects submissions from a folder (``collect.py``: ids, missing, duplicates, late work);
- grades them in parallel, one worker per core by default;
- caches each result per submission content (SHA-256 of the notebook) and per question
  version (the question's test cases, the time limits and a fingerprint of the grading code),
  so a re-run grades only what changed; ``regrade`` forces every question, ``questions``
  forces some (the others' cached results are kept, and only the forced questions' tests run);
- writes the gradebook CSV, a results JSON (for the class gradebook), feedback per student
  (Markdown and HTML) and the summary report (``gradebook.py``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from .collect import LateRule, collect, parse_time, read_roster, read_times, student_id
from .feedback import _points, _slugs, feedback_html, feedback_markdown
from .gradebook import summary_table, write_gradebook, write_results, write_summary
from .grader import DEFAULT_MEMORY_MB, DEFAULT_TIMEOUT, CaseGrade, Limits, SubmissionGrade, grade_submission, written_answers
from .markers import Master, MarkerError

# Bump when grading changes in a way the code fingerprint below cannot see (e.g. a dependency).
GRADER_VERSION = 1
_GRADING_CODE = ("grader.py", "runner.py", "sandbox.py", "check.py")
CACHE_FOLDER = ".grading-cache"


def grader_fingerprint() -> str:
    """Hash of the code that runs a submission: a change to it invalidates every cached result."""
    digest = hashlib.sha256(f"version {GRADER_VERSION}".encode())
    for name in _GRADING_CODE:
        path = Path(__file__).with_name(name)
        if path.is_file():
            digest.update(name.encode() + path.read_bytes())
    return digest.hexdigest()


def question_versions(master: Master, limits: Limits) -> dict[str, str]:
    """Per question, a hash of everything its result depends on besides the submission."""
    settings = json.dumps({**dataclasses.asdict(limits), "cell": limits.cell, "case": limits.case}, sort_keys=True,
                          default=str)  # every limit: a result under other limits may differ
    base = f"{grader_fingerprint()}|{master.lab_name}|{settings}"
    versions = {}
    for name, question in master.questions.items():
        cases = [[case.description, case.points, case.hidden, case.code, case.timeout] for case in question.cases]
        versions[name] = hashlib.sha256(f"{base}|{json.dumps(cases)}".encode()).hexdigest()
    return versions


def content_hash(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


_RUN_FIELDS_SKIPPED = {"path", "name", "cases", "written"}


class ResultCache:
    """``folder/<lab>/<content hash>.json``: per question its version and cases, and the last run's notes."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder

    def _path(self, lab: str, digest: str) -> Path:
        return self.folder / lab / f"{digest}.json"

    def load(self, lab: str, digest: str | None) -> dict:
        if self.folder is None or digest is None:
            return {}
        try:
            return json.loads(self._path(lab, digest).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

    def save(self, lab: str, digest: str | None, entry: dict) -> None:
        if self.folder is None or digest is None:
            return
        path = self._path(lab, digest)
        # one temporary file per thread (two students may hand in the same bytes), then an atomic
        # rename, so a parallel worker never reads half a file
        temporary = path.with_suffix(f".{os.getpid()}-{threading.get_ident()}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary.write_text(json.dumps(entry), encoding="utf-8")
            temporary.replace(path)
        except OSError as error:  # a cache that cannot be written costs a regrade later, not this batch
            print(f"warning: could not cache a result in {path.parent}: {error}", file=sys.stderr)


def _run_fields(grade: SubmissionGrade) -> dict:
    """The grade's per-run fields (problems, seconds, and any the grader adds) that JSON can hold."""
    found = {}
    for item in dataclasses.fields(grade):
        if item.name not in _RUN_FIELDS_SKIPPED:
            value = getattr(grade, item.name)
            try:
                json.dumps(value)
            except TypeError:
                continue
            found[item.name] = value
    return found


@dataclass
class Graded:
    """One row of a batch: the student's grade and how it was obtained."""

    student: str
    grade: SubmissionGrade
    slug: str
    graded_questions: list[str]  # graded in this run; the rest came from the cache
    submitted: datetime | None = None
    missing: bool = False

    @property
    def cached(self) -> bool:
        return not self.graded_questions and not self.missing


class Batch:
    """Grades submissions of one lab with a cache; see the module docstring."""

    def __init__(self, master: Master, limits: Limits | None = None, cache_dir: Path | None = None,
                 regrade: bool = False, questions: list[str] | None = None) -> None:
        self.master, self.limits = master, limits or Limits()
        unknown = [name for name in questions or [] if name not in master.questions]
        if unknown:
            raise MarkerError(f"--question {', '.join(unknown)}: not a question of {master.lab_name} "
                              f"(its questions: {', '.join(master.questions)})")
        self.cache, self.regrade, self.forced = ResultCache(cache_dir), regrade, set(questions or [])
        self.versions = question_versions(master, self.limits)

    def grade(self, path: Path, name: str) -> tuple[SubmissionGrade, list[str]]:
        """The submission's grade, and the questions actually graded (empty: all from the cache)."""
        lab = self.master.lab_name
        digest = content_hash(path)
        entry = {} if self.regrade else self.cache.load(lab, digest)
        cached = {question: value for question, value in entry.get("questions", {}).items()
                  if value.get("version") == self.versions.get(question)}
        todo = [question for question in self.master.questions if question not in cached or question in self.forced]
        if not todo:
            cases = [CaseGrade(**case) for question in self.master.questions for case in cached[question]["cases"]]
            known = {item.name for item in dataclasses.fields(SubmissionGrade)}
            run = {key: value for key, value in entry.get("run", {}).items() if key in known}
            return SubmissionGrade(path, name, cases, written=written_answers(self.master, path), **run), []
        only = None if len(todo) == len(self.master.questions) else set(todo)
        fresh = grade_submission(self.master, path, self.limits, name, questions=only)
        by_question = {question: [case for case in fresh.cases if case.question == question] for question in todo}
        for question, value in cached.items():
            by_question.setdefault(question, [CaseGrade(**case) for case in value["cases"]])
        merged = [case for question in self.master.questions for case in by_question[question]]
        grade = dataclasses.replace(fresh, cases=merged)
        if not any(problem.startswith("grader problem") for problem in grade.problems):
            questions = {question: {"version": self.versions[question],
                                    "cases": [dataclasses.asdict(case) for case in by_question[question]]}
                         for question in self.master.questions}
            self.cache.save(lab, digest, {"questions": questions, "run": _run_fields(grade)})
        return grade, todo


def missing_grade(master: Master, student: str) -> SubmissionGrade:
    cases = [CaseGrade(case.question, case.description, case.points, case.hidden, case.code, message="no submission")
             for question in master.questions.values() for case in question.cases]
    return SubmissionGrade(Path(), student, cases, problems=["no submission"])


def late_note(rule: LateRule | None, graded: Graded) -> str:
    if rule is None or not rule.days_late(graded.submitted):
        return ""
    days, penalty = rule.days_late(graded.submitted), rule.penalty(graded.submitted)
    return (f"Handed in {days} day(s) after the deadline: {penalty:g}% off, "
            f"{_points(rule.apply(graded.grade.total, graded.submitted))} / {_points(graded.grade.max_points)} points.")


def grade_batch(master: Master, submissions: list[tuple[str, Path, datetime | None]], out: str | Path,
                feedback_dir: str | Path | None = None, limits: Limits | None = None, jobs: int | None = None,
                cache_dir: str | Path | None = "default", regrade: bool = False, questions: list[str] | None = None,
                late_rule: LateRule | None = None, missing: list[str] = (), log=sys.stderr) -> list[Graded]:
    """Grade ``(name, notebook, submission time)`` triples ``jobs`` at a time; write every output.

    ``cache_dir``: ``"default"`` is ``.grading-cache`` next to ``out``; ``None`` disables it.
    Students in ``missing`` get a row with 0 points. The outputs keep the order given.
    """
    out = Path(out)
    feedback_dir = Path(feedback_dir) if feedback_dir else out.parent / "feedback"
    feedback_dir.mkdir(parents=True, exist_ok=True)
    cache = out.parent / CACHE_FOLDER if cache_dir == "default" else (Path(cache_dir) if cache_dir else None)
    batch = Batch(master, limits, cache, regrade, questions)
    slugs = _slugs([Path(name) for name, _, _ in submissions])

    def grade_one(item, slug: str) -> Graded:
        name, path, submitted = item
        grade, graded_questions = batch.grade(Path(path), name)
        print(f"graded {name}" + ("" if graded_questions else " (cached)"), file=log, flush=True)
        graded = Graded(name, grade, slug, graded_questions, submitted)
        note = late_note(late_rule, graded)
        (feedback_dir / f"{slug}.md").write_text(feedback_markdown(master, grade, note), encoding="utf-8")
        (feedback_dir / f"{slug}.html").write_text(feedback_html(master, grade, note), encoding="utf-8")
        return graded

    with ThreadPoolExecutor(max_workers=max(1, jobs or os.cpu_count() or 1)) as pool:
        results = list(pool.map(grade_one, submissions, slugs))
    results += [Graded(student, missing_grade(master, student), "", [], missing=True) for student in missing]
    write_gradebook(master, [item.grade for item in results], out,
                    late=[late_rule and (late_rule.days_late(item.submitted), late_rule.penalty(item.submitted),
                                         late_rule.apply(item.grade.total, item.submitted)) for item in results]
                    if late_rule else None)
    write_results(master, results, results_path(out), late_rule)
    write_summary(results_path(out), out.with_name(f"{out.stem}_summary"))
    return results


def results_path(out: Path) -> Path:
    """The results JSON written next to a gradebook CSV (what ``python -m cloudlab gradebook`` reads)."""
    return out.with_name(f"{out.stem}.results.json")


def grade_all(master: Master | str | Path, submissions: list[str | Path], out: str | Path,
              feedback_dir: str | Path | None = None, limits: Limits | None = None,
              jobs: int | None = None, **options) -> list[SubmissionGrade]:
    """Grade notebooks named by path (the gradebook names them by path); see :func:`grade_batch`.

    Raises ``MarkerError`` if the master is unusable; never fails because of a submission.
    """
    from .sources import load_master

    master = master if isinstance(master, Master) else load_master(master)
    items = [(str(path), Path(path), None) for path in submissions]
    return [item.grade for item in grade_batch(master, items, out, feedback_dir, limits, jobs, **options)]


def _late_rule(args) -> LateRule | None:
    if getattr(args, "deadline", None) is None:
        if getattr(args, "late_penalty", None) is not None:
            raise ValueError("--late-penalty needs --deadline")
        return None
    penalty = getattr(args, "late_penalty", None)
    if penalty is None or penalty < 0:
        raise ValueError("--deadline needs --late-penalty PERCENT (per started day late, >= 0)")
    return LateRule(parse_time(args.deadline), float(penalty), float(getattr(args, "late_cap", None) or 100))


def main(args) -> int:
    """``python -m cloudlab grade``: 0 when every submission was graded, 2 on bad input (master, options)."""
    from .sources import load_master

    limits = Limits(timeout=float(getattr(args, "timeout", None) or DEFAULT_TIMEOUT),
                    cell_timeout=getattr(args, "cell_timeout", None),
                    case_timeout=getattr(args, "case_timeout", None),
                    memory_mb=getattr(args, "memory_mb", None) or DEFAULT_MEMORY_MB,
                    submission_timeout=getattr(args, "submission_timeout", None))
    if limits.submission_timeout is not None and not limits.submission_timeout > 0:
        print("error: --submission-timeout must be a number of seconds above 0", file=sys.stderr)
        return 2
    started = time.monotonic()
    out = Path(args.out)
    try:
        master = load_master(args.master, getattr(args, "tests_dir", None))
        rule = _late_rule(args)
        times = read_times(args.times) if getattr(args, "times", None) else {}
        roster = read_roster(args.roster) if getattr(args, "roster", None) else None
        missing: list[str] = []
        if len(args.submissions) == 1 and Path(args.submissions[0]).is_dir():
            collection = collect(args.submissions[0], master.lab_name, roster, times)
            for line in collection.report():
                print(line, file=sys.stderr)
            items = [(s.student, s.path or Path(args.submissions[0]) / s.student, s.submitted)
                     for s in collection.submissions]
            missing = collection.missing
        else:
            items = []
            for name in args.submissions:
                path = Path(name)
                when = times.get(student_id(path.name, master.lab_name))
                if when is None and rule is not None and path.is_file():
                    when = datetime.fromtimestamp(path.stat().st_mtime).astimezone()
                items.append((name, path, when))
        cache_dir = None if getattr(args, "no_cache", False) else (getattr(args, "cache_dir", None) or "default")
        results = grade_batch(master, items, out, args.feedback_dir, limits, getattr(args, "jobs", None),
                              cache_dir=cache_dir, regrade=bool(getattr(args, "regrade", False)),
                              questions=getattr(args, "question", None), late_rule=rule, missing=missing)
    except MarkerError as error:
        print(f"error: the master cannot be used: {error}", file=sys.stderr)
        return 2
    except (ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(summary_table(master, [item.grade for item in results]))
    feedback_dir = args.feedback_dir or out.parent / "feedback"
    cached = sum(item.cached for item in results)
    print(f"\n{len(results)} submission(s) in {time.monotonic() - started:.1f} s ({cached} from the cache); "
          f"gradebook {out}, feedback in {feedback_dir}/, summary {out.with_name(out.stem + '_summary.md')}")
    return 0
