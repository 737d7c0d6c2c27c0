"""An instructor's batch: collect a folder, grade in parallel with a cache, regrade one question,
late penalties, feedback (Markdown + HTML), the summary report and the class gradebook.

Collection and late rules are plain functions (no kernel). The batch tests share one module
fixture that grades four submissions of the demo lab (``test_lab_build.py``) three times:
from scratch, after a change to one question's tests, and with ``--question``; each later run
must start kernels only for what changed.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import nbformat
import pytest

from cloudlab.__main__ import main as cli
from cloudlab.grading import batch, build
from cloudlab.grading.collect import LateRule, collect, read_roster, read_times, student_id
from test_grader import solved_cells
from test_lab_build import LAB, MASTER_CELLS, MAX_POINTS, make_notebook, write_master

DEADLINE = datetime(2026, 11, 1, 12, 0, tzinfo=timezone.utc)


# ---- collecting submissions (no kernels) -----------------------------------------------------


def test_student_ids_come_from_names():
    assert student_id("Alice.ipynb", LAB) == "alice"
    assert student_id(f"bob_{LAB}.ipynb", LAB) == "bob"
    assert student_id(f"Carol Jones - Nov 30, 2026 1015 AM - {LAB}.ipynb", LAB) == "carol_jones"
    assert student_id("dave", LAB) == "dave"


def test_collect_reports_missing_duplicate_unknown_and_bad_folders(tmp_path):
    notebook = make_notebook(solved_cells())
    for name in ("alice.ipynb", f"Bob_{LAB}.ipynb", "bob.ipynb", "zed.ipynb", "notes.txt"):
        if name.endswith(".ipynb"):
            nbformat.write(notebook, tmp_path / name)
        else:
            (tmp_path / name).write_text("not a submission")
    old, new = tmp_path / "bob.ipynb", tmp_path / f"Bob_{LAB}.ipynb"
    os.utime(old, (1_700_000_000, 1_700_000_000))
    os.utime(new, (1_700_000_500, 1_700_000_500))
    (tmp_path / "carol" / "work").mkdir(parents=True)
    nbformat.write(notebook, tmp_path / "carol" / "work" / f"{LAB}.ipynb")
    nbformat.write(notebook, tmp_path / "carol" / "scratch.ipynb")
    (tmp_path / "erin").mkdir()
    roster = tmp_path.parent / f"{tmp_path.name}-roster.csv"
    roster.write_text("id,name\nalice,Alice\nbob,Bob\ncarol,Carol\ndave,Dave\nerin,Erin\n")

    found = collect(tmp_path, LAB, read_roster(roster))
    by_id = {item.student: item for item in found.submissions}
    assert sorted(by_id) == ["alice", "bob", "carol", "erin", "zed"]
    assert by_id["bob"].path == new, "the latest of two submissions is graded"
    assert found.duplicates == {"bob": [old]}
    assert by_id["carol"].path == tmp_path / "carol" / "work" / f"{LAB}.ipynb", "the lab's notebook wins in a folder"
    assert by_id["erin"].path is None and by_id["erin"].problem == "the folder holds no notebook"
    assert found.missing == ["dave"] and found.unknown == ["zed"]
    report = "\n".join(found.report())
    assert "missing (1): dave" in report and "duplicate submissions for bob" in report and "zed" in report


def test_late_rule_and_times_csv(tmp_path):
    rule = LateRule(DEADLINE, percent_per_day=10, cap=25)
    assert rule.days_late(DEADLINE) == 0 and rule.penalty(DEADLINE - timedelta(days=3)) == 0
    assert rule.days_late(DEADLINE + timedelta(minutes=1)) == 1, "a started day counts"
    assert rule.penalty(DEADLINE + timedelta(days=2)) == 20
    assert rule.penalty(DEADLINE + timedelta(days=9)) == 25, "capped"
    assert rule.apply(6, DEADLINE + timedelta(hours=30)) == 4.8
    times = tmp_path / "times.csv"
    times.write_text("id,submitted\nAlice,2026-11-02T12:00:00Z\nbob,2026-11-01T11:00:00\n")
    assert read_times(times) == {"alice": DEADLINE + timedelta(days=1), "bob": DEADLINE - timedelta(hours=1)}
    (tmp_path / "bad.csv").write_text("who,when\nalice,yesterday\n")
    with pytest.raises(ValueError, match="id and submitted"):
        read_times(tmp_path / "bad.csv")


def test_bad_options_are_clear_errors(tmp_path, capsys):
    master = write_master(tmp_path)
    common = ["grade", str(master), str(master), "--out", str(tmp_path / "g.csv")]
    assert cli(common + ["--question", "q9"]) == 2
    assert "--question q9: not a question of 99_demo_lab (its questions: q1_bucket, q2_object)" in capsys.readouterr().err
    assert cli(common + ["--deadline", "2026-11-01T12:00:00Z"]) == 2
    assert "--deadline needs --late-penalty" in capsys.readouterr().err
    assert cli(common + ["--deadline", "friday", "--late-penalty", "5"]) == 2
    assert "not an ISO 8601 time: 'friday'" in capsys.readouterr().err
    assert cli(common + ["--tests-dir", str(tmp_path)]) == 2
    assert "has no 99_demo_lab.json" in capsys.readouterr().err


# ---- one batch, graded three times ------------------------------------------------------------


def partial_cells():
    """q1 right, q2 wrong: writes the wrong body."""
    return [(kind, source.replace('Body=b"hi"', 'Body=b"bye"')) for kind, source in solved_cells()]


def read_csv(path: Path) -> dict[str, dict]:
    with open(path, newline="") as handle:
        return {row[next(iter(row))]: row for row in csv.DictReader(handle)}


def grade_cli(folder: Path, master: Path, *extra: str) -> tuple[int, dict]:
    code = cli(["grade", str(master), str(folder / "submissions"), "--out", str(folder / "out" / "lab.csv"),
                "--roster", str(folder / "roster.csv"), "--times", str(folder / "times.csv"),
                "--deadline", "2026-11-01T12:00:00Z", "--late-penalty", "10", "--late-cap", "30",
                "--jobs", "2", "--timeout", "60", "--cell-timeout", "20", "--case-timeout", "15", *extra])
    return code, json.loads((folder / "out" / "lab.results.json").read_text())


@pytest.fixture(scope="module")
def batch_runs(tmp_path_factory):
    """Three runs over alice (solved), bob (solved, 2 days late), carol (the untouched lab) and
    dan (partial), with erin on the roster and missing: (folder, master, [results json per run], calls)."""
    folder = tmp_path_factory.mktemp("batch")
    master = write_master(folder)
    submissions = folder / "submissions"
    (submissions / "bob").mkdir(parents=True)
    nbformat.write(make_notebook(solved_cells()), submissions / "alice.ipynb")
    nbformat.write(make_notebook(solved_cells()), submissions / "bob" / f"{LAB}.ipynb")
    nbformat.write(build.build_lab(master)[0], submissions / f"carol_{LAB}.ipynb")
    nbformat.write(make_notebook(partial_cells()), submissions / "dan.ipynb")
    (folder / "roster.csv").write_text("id\nalice\nbob\ncarol\ndan\nerin\n")
    (folder / "times.csv").write_text("id,submitted\nalice,2026-11-01T11:00:00Z\nbob,2026-11-03T10:00:00Z\n"
                                      "carol,2026-11-01T12:00:00Z\ndan,2026-11-01T09:00:00Z\n")
    calls: list[tuple[str, object]] = []
    real = batch.grade_submission

    def counting(master_, path, limits=None, name=None, questions=None):
        calls.append((name, questions))
        return real(master_, path, limits, name, questions=questions)

    runs = []
    saved, batch.grade_submission = batch.grade_submission, counting
    try:
        code, first = grade_cli(folder, master)
        assert code == 0
        runs.append((first, list(calls)))
        calls.clear()
        code, again = grade_cli(folder, master)  # nothing changed: no kernel at all
        runs.append((again, list(calls)))
        calls.clear()
        # the instructor fixes q1's hidden test: only q1 is graded again
        changed = [(kind, source.replace("assert make_bucket(name) == name", "assert make_bucket(name) == name, 'returns the name'"))
                   for kind, source in MASTER_CELLS]
        assert changed != MASTER_CELLS
        master = write_master(folder, changed)
        code, after_edit = grade_cli(folder, master)
        runs.append((after_edit, list(calls)))
        calls.clear()
        code, forced = grade_cli(folder, master, "--question", "q2_object")
        runs.append((forced, list(calls)))
    finally:
        batch.grade_submission = saved
    yield folder, runs


def by_id(results: dict) -> dict[str, dict]:
    return {student["id"]: student for student in results["students"]}


def test_first_run_grades_everyone_with_late_penalty_and_missing_row(batch_runs):
    folder, runs = batch_runs
    results, calls = runs[0]
    assert sorted(name for name, _ in calls) == ["alice", "bob", "carol", "dan"]
    assert all(questions is None for _, questions in calls), "a first run grades whole submissions"
    rows = read_csv(folder / "out" / "lab.csv")
    assert list(rows) == ["alice", "bob", "carol", "dan", "erin"]
    assert list(rows["alice"]) == ["submission", "q1_bucket", "q2_object", "total", "max",
                                   "days_late", "penalty_percent", "final", "notes", "sandbox"]
    assert (rows["alice"]["total"], rows["alice"]["final"]) == (str(MAX_POINTS), str(MAX_POINTS))
    assert (rows["bob"]["total"], rows["bob"]["days_late"], rows["bob"]["penalty_percent"], rows["bob"]["final"]) == \
        ("6", "2", "20", "4.8")
    assert (rows["carol"]["total"], rows["carol"]["days_late"]) == ("0", "0"), "on the deadline is on time"
    assert (rows["dan"]["q1_bucket"], rows["dan"]["q2_object"]) == ("3", "0")
    assert (rows["erin"]["total"], rows["erin"]["notes"]) == ("0", "no submission")
    assert by_id(results)["erin"]["missing"] and not by_id(results)["alice"]["cached"]


def test_rerun_of_an_unchanged_batch_starts_no_kernel(batch_runs):
    folder, runs = batch_runs
    results, calls = runs[1]
    assert calls == []
    assert all(student["cached"] for student in results["students"] if not student["missing"])
    assert {s["id"]: s["total"] for s in results["students"]} == {s["id"]: s["total"] for s in runs[0][0]["students"]}


def test_changed_question_is_the_only_one_regraded(batch_runs):
    _, runs = batch_runs
    results, calls = runs[2]
    assert sorted(calls) == [(name, {"q1_bucket"}) for name in ("alice", "bob", "carol", "dan")]
    assert {s["id"]: s["graded_questions"] for s in results["students"] if not s["missing"]} == \
        dict.fromkeys(["alice", "bob", "carol", "dan"], ["q1_bucket"])
    assert by_id(results)["dan"]["questions"] == {"q1_bucket": 3, "q2_object": 0}, "q2 kept from the cache"


def test_question_option_regrades_one_question_across_the_class(batch_runs):
    _, runs = batch_runs
    results, calls = runs[3]
    assert sorted(calls) == [(name, {"q2_object"}) for name in ("alice", "bob", "carol", "dan")]
    assert by_id(results)["alice"]["questions"] == {"q1_bucket": 3, "q2_object": 3}
    assert by_id(results)["bob"]["final"] == 4.8


def test_feedback_in_markdown_and_html_with_hidden_counts_only(batch_runs):
    folder, _ = batch_runs
    markdown = (folder / "out" / "feedback" / "carol.md").read_text()
    page = (folder / "out" / "feedback" / "carol.html").read_text()
    for text in (markdown, page):
        assert "Hidden tests: 0 of 1 passed (0/1 points)" in text
        assert "make_bucket returns the name" not in text, "a hidden test's description stays hidden"
        assert "not answered yet" in text
    assert page.startswith("<!DOCTYPE html>") and "<span class='fail'>FAIL</span>" in page
    assert "assert name in names" in page, "a failed public test shows its code"
    bob = (folder / "out" / "feedback" / "bob.md").read_text()
    assert "Handed in 2 day(s) after the deadline: 20% off, 4.8 / 6 points." in bob
    assert "> Because S3 is a key-value store." in bob, "written answers are in the feedback"
    assert "Because S3 is a key-value store." in (folder / "out" / "feedback" / "bob.html").read_text()


def test_summary_report_shows_where_the_class_struggled(batch_runs):
    folder, _ = batch_runs
    summary = (folder / "out" / "lab_summary.md").read_text()
    assert "4 submission(s) graded" in summary and "1 missing (erin)" in summary
    assert "**The class struggled most with q2_object** (mean 50% of its points)." in summary
    assert "| q1_bucket | 3 | 75% | 3 | 0 | 1 |" in summary
    assert "2 x put_greeting writes b\"hi\" to hello.txt: expected b'hi' in hello.txt, found b'bye'" not in summary
    assert "1 x put_greeting writes b\"hi\" to hello.txt: expected b'hi' in hello.txt, found b'bye'" in summary
    assert "## Grading time per submission" in summary and "| alice |" in summary
    assert (folder / "out" / "lab_summary.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_class_gradebook_across_labs(batch_runs, tmp_path):
    folder, _ = batch_runs
    lab = json.loads((folder / "out" / "lab.results.json").read_text())
    other = {**lab, "lab": "98_other_lab", "max_points": 4, "questions": [{"name": "q1", "points": 4}],
             "students": [{"id": "alice", "final": 4, "questions": {"q1": 4}, "missing": False},
                          {"id": "frank", "final": 1, "questions": {"q1": 1}, "missing": False}]}
    (tmp_path / "grades").mkdir()
    shutil.copy(folder / "out" / "lab.results.json", tmp_path / "grades" / "lab.results.json")
    (tmp_path / "grades" / "other.results.json").write_text(json.dumps(other))
    assert cli(["gradebook", str(tmp_path / "grades"), "--out", str(tmp_path / "class.csv")]) == 0
    rows = read_csv(tmp_path / "class.csv")
    assert list(rows["alice"]) == ["student", "98_other_lab", LAB, "total", "max"]
    assert rows["(max)"]["total"] == "10"
    assert (rows["alice"]["98_other_lab"], rows["alice"][LAB], rows["alice"]["total"]) == ("4", "6", "10")
    assert (rows["bob"][LAB], rows["bob"]["98_other_lab"]) == ("4.8", ""), "final points; no result: empty"
    assert rows["frank"][LAB] == "" and rows["erin"]["total"] == "0"
    questions = read_csv(tmp_path / "class_questions.csv")
    assert questions["dan"][f"{LAB}:q2_object"] == "0" and questions["(max)"][f"{LAB}:q1_bucket"] == "3"


def test_hidden_tests_from_an_instructor_folder_are_merged(tmp_path):
    from cloudlab.grading.sources import grading_notebook, load_master

    master_path = write_master(tmp_path)
    private = tmp_path / "private"
    private.mkdir()
    (private / f"{LAB}.json").write_text(json.dumps({"questions": [
        {"name": "q1_bucket", "cases": [{"description": "names may have dots", "points": 2,
                                         "code": "assert make_bucket('a.b.c') == 'a.b.c'"}]},
        {"name": "q3_extra", "cases": [{"description": "an extra question", "points": 1, "code": "assert True"}]}]}))
    master = load_master(master_path, private)
    assert list(master.questions) == ["q1_bucket", "q2_object", "q3_extra"]
    added = master.questions["q1_bucket"].cases[-1]
    assert (added.description, added.points, added.hidden) == ("names may have dots", 2, True)
    assert master.max_points == MAX_POINTS + 3
    # the grading copy (what Gradescope gets) carries them as hidden test cells
    copy = tmp_path / "copy" / f"{LAB}.ipynb"
    copy.parent.mkdir()
    nbformat.write(grading_notebook(master), copy)
    again = load_master(copy)
    assert [(c.description, c.hidden) for c in again.questions["q1_bucket"].cases][-1] == ("names may have dots", True)
    assert again.max_points == master.max_points
    (private / f"{LAB}.json").write_text('{"questions": [{"name": "q1_bucket", "cases": [{"points": 1}]}]}')
    with pytest.raises(ValueError, match="has a case without \"description\", \"points\" and \"code\""):
        load_master(master_path, private)
