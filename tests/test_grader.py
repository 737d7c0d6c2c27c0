"""The grader, end to end: real kernels, each submission with its own in-kernel emulator.

One batch of synthetic submissions of the demo lab from ``test_lab_build.py`` is graded once
(module fixture); each test then reads the gradebook and feedback it produced. No timing
assertions: the time limits below are met only by the endless submissions. Every other cell
finishes in well under a second, so the limits leave a tenfold margin for a busy machine
(two kernels grading at once on two cores shared with other work).
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import tempfile
from pathlib import Path

import nbformat
import pytest

from cloudlab.__main__ import main as cli
from cloudlab.grading import build, grader
from test_lab_build import (MAKE_BUCKET, MASTER_CELLS, MAX_POINTS, PUT_GREETING, SETUP, make_notebook,
                            write_master)

REPO = Path(__file__).resolve().parents[1]
COURSE_MASTERS = sorted((REPO / "solutions").glob("*_lab.ipynb"))
CELL_LIMIT, CASE_LIMIT, NOTEBOOK_LIMIT = 10, 8, 60  # seconds; the two endless cells cost CELL_LIMIT each


def solved_cells():
    """What a student who solved everything hands in: the lab with the master's solutions."""
    cells = []
    for kind, source in MASTER_CELLS:
        if source.startswith("# TEST q1_bucket points=1 hidden"):
            cells.append(("code", 'check("q1_bucket")'))
        elif source.startswith("# TEST q2_object"):
            cells.append(("code", 'check("q2_object")'))
        elif not source.startswith(("# TEST", "# SOLUTION ONLY")):
            cells.append((kind, source))
    return cells


def broken_cells():
    """First cell raises, an endless loop, and q2's solution cell deleted."""
    cells = [(kind, 'raise ValueError("boom")' if source == SETUP else source)
             for kind, source in solved_cells() if source != PUT_GREETING]
    cells.insert(3, ("code", "while True:\n    pass"))
    return cells


def reordered_cells():
    """Markdown gone, q2 and the check cells first, the set-up cell later."""
    code = [source for kind, source in solved_cells() if kind == "code"]
    checks = [source for source in code if source.startswith("check(")]
    rest = [source for source in code if source not in checks]
    return [("code", source) for source in [PUT_GREETING, *checks, *[s for s in rest if s != PUT_GREETING]]]


def forged_cells(lab: nbformat.NotebookNode):
    """The unanswered lab plus output that looks like passing results."""
    cells = [(cell.cell_type, cell.source) for cell in lab.cells]
    cells.append(("code", "import json\n"
                          "for nonce in ['0' * 32, 'x']:\n"
                          "    print('CLOUDLAB-RESULT', nonce, json.dumps({'nonce': nonce, 'passed': True, 'message': ''}))\n"
                          "result = json.dumps({'nonce': 'x', 'passed': True, 'message': ''})\n"
                          "result"))
    return cells


def crash_cells():
    """The kernel dies in a cell (os._exit); the grader restarts it and replays the cells before.
    Then exit(), which would shut the kernel down after the cell: ignored."""
    cells = solved_cells()
    at = cells.index(("code", MAKE_BUCKET)) + 1
    cells[at:at] = [("code", "import os\nos._exit(1)"), ("code", "exit()")]
    return cells


def crash_in_test_cells():
    """make_bucket kills the kernel whenever it is called, in check() and in grading."""
    dying = MAKE_BUCKET.replace("s3.create_bucket(Bucket=name)", "import os\n    os._exit(3)")
    return [(kind, dying if source == MAKE_BUCKET else source) for kind, source in solved_cells()]


def endless_cells():
    """put_greeting never returns: stopped in its check() cell, and by the per-case limit when graded."""
    endless = PUT_GREETING.replace("s3.put_object(Bucket=bucket, Key=greeting_key, Body=b\"hi\")", "while True:\n        pass")
    assert endless != PUT_GREETING
    return [(kind, endless if source == PUT_GREETING else source) for kind, source in solved_cells()]


def wedging_cells():
    """make_bucket leaves the kernel alive but deaf: it stops answering requests once a call returns.
    No check() cells, so only the test phase calls it; each later case needs a restarted kernel."""
    wedging = MAKE_BUCKET.replace("    return name\n", "    deafen()\n    return name\n", 1)
    assert wedging != MAKE_BUCKET
    deafen = ("def deafen():\n"
              "    kernel = get_ipython().kernel\n"
              "    for request in list(kernel.shell_handlers):\n"
              "        kernel.shell_handlers[request] = lambda *args: None  # never replies")
    return [("code", deafen)] + [(kind, wedging if source == MAKE_BUCKET else source)
                                 for kind, source in solved_cells() if not source.startswith("check(")]


def _kernel_children() -> list[str]:
    """Command lines of this process's child kernels."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "stat").read_text().split(") ")[1].split()[1] == str(os.getpid()):
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                if "ipykernel" in command:
                    found.append(command)
        except (OSError, IndexError):
            continue
    return found


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """Grade every synthetic submission once; yields (folder, gradebook rows by name, exit code)."""
    folder = tmp_path_factory.mktemp("grading")
    master = write_master(folder)
    lab, _ = build.build_lab(master)
    submissions = folder / "submissions"
    submissions.mkdir()
    notebooks = {
        "master": nbformat.read(master, as_version=4),
        "lab": lab,
        "solved": make_notebook(solved_cells()),
        "broken": make_notebook(broken_cells()),
        "reordered": make_notebook(reordered_cells()),
        "forged": make_notebook(forged_cells(lab)),
        "crash": make_notebook(crash_cells()),
        "crash_in_test": make_notebook(crash_in_test_cells()),
        "endless": make_notebook(endless_cells()),
        "wedged": make_notebook(wedging_cells()),
    }
    paths = []
    for name, notebook in notebooks.items():
        nbformat.write(notebook, submissions / f"{name}.ipynb")
        paths.append(submissions / f"{name}.ipynb")
    (submissions / "not_json.ipynb").write_text("this is not a notebook")
    (submissions / "not_notebook.ipynb").write_text('{"hello": "world"}')
    paths += [submissions / "not_json.ipynb", submissions / "not_notebook.ipynb"]

    # The grader's temporary folders go here, so the test can see they are removed; a short path,
    # so their channel folders stay inside it (under tmp_path, with pytest-xdist's popen-gwN level,
    # the grader would move them to /tmp: test_a_long_temporary_folder_path_still_grades).
    # folder / "tmp" links to it.
    temp = Path(tempfile.mkdtemp(prefix="grading-"))
    (folder / "tmp").symlink_to(temp, target_is_directory=True)
    saved, tempfile.tempdir = tempfile.tempdir, str(temp)
    try:
        args = argparse.Namespace(master=str(master), submissions=[str(path) for path in paths],
                                  out=str(folder / "out" / "grades.csv"), feedback_dir=None,
                                  timeout=NOTEBOOK_LIMIT, cell_timeout=CELL_LIMIT, case_timeout=CASE_LIMIT,
                                  jobs=2)  # two at once, as on 2 cores
        code = grader.main(args)
    finally:
        tempfile.tempdir = saved
    try:
        with open(folder / "out" / "grades.csv", newline="") as handle:
            rows = {Path(row["submission"]).stem: row for row in csv.DictReader(handle)}
        assert list(rows) == [path.stem for path in paths], "the gradebook must keep the submissions' order"
        yield folder, rows, code
    finally:
        shutil.rmtree(temp, ignore_errors=True)


def feedback(folder: Path, name: str) -> str:
    return (folder / "out" / "feedback" / f"{name}.md").read_text()


def scores(row) -> tuple[str, str, str, str]:
    return row["q1_bucket"], row["q2_object"], row["total"], row["max"]


def test_batch_completes_and_cleans_up(graded):
    folder, rows, code = graded
    assert code == 0
    assert set(rows) == {"master", "lab", "solved", "broken", "reordered", "forged", "crash", "crash_in_test",
                         "endless", "wedged", "not_json", "not_notebook"}
    assert list(next(iter(rows.values()))) == ["submission", "q1_bucket", "q2_object", "total", "max", "notes", "sandbox"]
    assert not list((folder / "tmp").iterdir()), "temporary grading folders were left behind"
    assert _kernel_children() == []


def test_master_and_solved_lab_get_full_marks(graded):
    _, rows, _ = graded
    for name in ("master", "solved"):
        assert scores(rows[name]) == ("3", "3", str(MAX_POINTS), str(MAX_POINTS)), rows[name]
        assert rows[name]["notes"] == ""


def test_generated_lab_scores_zero(graded):
    folder, rows, _ = graded
    assert scores(rows["lab"]) == ("0", "0", "0", str(MAX_POINTS))
    text = feedback(folder, "lab")
    assert "not answered yet (use s3.create_bucket)" in text
    assert "Hidden tests: 0 of 1 passed (0/1 points)" in text  # hidden tests are only counted
    assert "make_bucket returns the name" not in text and "assert make_bucket(name) == name" not in text
    assert "assert name in names" in text  # public code is shown


def test_broken_submission_gets_what_it_earned(graded):
    folder, rows, _ = graded
    row = rows["broken"]
    assert scores(row) == ("3", "0", "3", str(MAX_POINTS))
    assert "code cell 1 (`raise ValueError(\"boom\")`) raised ValueError: boom" in row["notes"]
    assert f"code cell 3 (`while True:`) did not finish in {CELL_LIMIT} s" in row["notes"]
    text = feedback(folder, "broken")
    assert "`put_greeting` is not defined — was the cell with your solution deleted or not run?" in text
    assert "## Problems running your notebook" in text


def test_reordered_cells_grade_by_name(graded):
    _, rows, _ = graded
    assert scores(rows["reordered"])[:3] == ("3", "3", str(MAX_POINTS))


def test_forged_output_does_not_count(graded):
    _, rows, _ = graded
    assert scores(rows["forged"])[:3] == ("0", "0", "0")


def test_kernel_crash_in_a_cell_is_recovered(graded):
    folder, rows, _ = graded
    assert scores(rows["crash"])[:3] == ("3", "3", str(MAX_POINTS))
    assert "code cell 4 (`import os`) made the kernel die" in rows["crash"]["notes"]
    assert "code cell 5 (`exit()`) called exit(); the grader ignored it" in rows["crash"]["notes"]


def test_kernel_crash_inside_a_test_loses_only_that_question(graded):
    folder, rows, _ = graded
    assert scores(rows["crash_in_test"])[:3] == ("0", "3", "3")
    assert "the kernel died while running this test" in feedback(folder, "crash_in_test")


def test_unreadable_files_get_zero_and_a_reason(graded):
    folder, rows, _ = graded
    for name in ("not_json", "not_notebook"):
        assert scores(rows[name]) == ("0", "0", "0", str(MAX_POINTS))
        assert "could not grade this file: not a readable notebook" in rows[name]["notes"]
        assert "could not grade this file" in feedback(folder, name)


def test_unusable_master_exits_nonzero(tmp_path, capsys):
    broken = write_master(tmp_path, MASTER_CELLS + [("code", "### BEGIN SOLUTION")])
    assert cli(["grade", str(broken), str(broken), "--out", str(tmp_path / "g.csv")]) == 2
    assert "the master cannot be used" in capsys.readouterr().err
    assert cli(["grade", str(tmp_path / "missing_lab.ipynb"), str(broken), "--out", str(tmp_path / "g.csv")]) == 2


# ---- the course's own labs -----------------------------------------------------------------


@pytest.mark.parametrize("master", COURSE_MASTERS, ids=[path.stem for path in COURSE_MASTERS])
def test_course_lab_master_full_marks_and_generated_lab_zero(master, tmp_path):
    generated = REPO / "labs" / master.name
    if not generated.is_file():  # not built yet: grade what `labs build` would write
        generated = tmp_path / "generated" / master.name
        generated.parent.mkdir()
        generated.write_text(build.notebook_text(build.build_lab(master)[0]))
    grades = grader.grade_all(master, [master, generated], tmp_path / "grades.csv")
    solved, unanswered = grades
    failures = [f"{case.question}: {case.description}: {case.message}" for case in solved.cases if not case.passed]
    assert solved.total == solved.max_points, "the master does not pass its own tests:\n" + "\n".join(failures)
    earned = {case.question: case.earned for case in unanswered.cases if case.passed}
    assert not earned, f"the generated lab earns points without an answer: {earned}"


def test_endless_function_is_stopped_per_case(graded):
    folder, rows, _ = graded
    assert scores(rows["endless"])[:3] == ("3", "0", "3")
    assert f'code cell 6 (`check("q2_object")`) did not finish in {CELL_LIMIT} s' in rows["endless"]["notes"]
    assert f"did not finish in {CASE_LIMIT} s" in feedback(folder, "endless")


def test_kernel_that_stops_answering_is_restarted_before_the_next_case(graded):
    _, rows, _ = graded
    assert scores(rows["wedged"]) == ("3", "3", str(MAX_POINTS), str(MAX_POINTS)), rows["wedged"]
    assert f"the kernel stopped answering (no reply in {grader.PING_TIMEOUT:g} s) before test 2" in rows["wedged"]["notes"]


# ---- a test's own time limit, and the submission's -------------------------------------------

SLOW_CASES = [  # the default case limit is CASE_LIMIT (8 s)
    ("code", "# TEST q3_slow points=1 timeout=40: needs longer than the default case limit\n"
             "import time\ntime.sleep(CASE_LIMIT + 3)".replace("CASE_LIMIT", str(CASE_LIMIT))),
    ("code", "# TEST q3_slow points=1 timeout=2: runs past its own limit\nwhile True:\n    pass"),
]


def solved_submission(folder: Path) -> Path:
    """The demo lab solved (q1, q2); the master's extra questions are the grader's alone."""
    path = folder / "solved.ipynb"
    nbformat.write(make_notebook(solved_cells()), path)
    return path


def test_declared_case_limit_replaces_the_default(tmp_path):
    master = write_master(tmp_path, MASTER_CELLS + SLOW_CASES)
    limits = grader.Limits(timeout=NOTEBOOK_LIMIT, cell_timeout=CELL_LIMIT, case_timeout=CASE_LIMIT)
    [grade] = grader.grade_all(master, [solved_submission(tmp_path)], tmp_path / "out" / "grades.csv", limits=limits)
    longer, over = [case for case in grade.cases if case.question == "q3_slow"]
    assert longer.passed, longer.message
    assert not over.passed
    assert over.message.startswith("did not finish in its own time limit of 2 s"), over.message
    assert "did not finish in its own time limit of 2 s" in feedback(tmp_path, "solved")
    assert grade.total == MAX_POINTS + 1


DEADLINE_CASES = [
    ("code", "# TEST q3_endless points=1 timeout=600: an endless case stopped by the submission's limit\n"
             "while True:\n    pass"),
    ("code", "# TEST q3_endless points=1: a case after the limit\nassert True"),
]
SUBMISSION_LIMIT = 60  # room for starting the kernel and q1, q2 on a busy machine; the endless case takes the rest


def test_submission_limit_stops_grading_and_keeps_the_points_earned(tmp_path):
    master = write_master(tmp_path, MASTER_CELLS + DEADLINE_CASES)
    limits = grader.Limits(timeout=NOTEBOOK_LIMIT, cell_timeout=CELL_LIMIT, case_timeout=CASE_LIMIT,
                           submission_timeout=SUBMISSION_LIMIT)
    [grade] = grader.grade_all(master, [solved_submission(tmp_path)], tmp_path / "out" / "grades.csv", limits=limits)
    endless, after = [case for case in grade.cases if case.question == "q3_endless"]
    used_up = f"the submission used up its {SUBMISSION_LIMIT} s"
    assert endless.message == f"stopped: {used_up}" and after.message == f"not run: {used_up}"
    assert grade.total == MAX_POINTS, [case.message for case in grade.cases]  # q1 and q2 ran first and count
    assert f"1 test case(s) were not run: {used_up}" in grade.problems
    assert grade.seconds < SUBMISSION_LIMIT + 30, grade.seconds  # not the endless case's 600 s
    assert _kernel_children() == []


def test_submission_limit_default_and_bad_value(tmp_path, capsys):
    limits = grader.Limits(timeout=100, case_timeout=10)
    assert limits.submission([10, 10, 180]) == 100 + 200 + grader.SUBMISSION_MARGIN
    assert grader.Limits(submission_timeout=50).submission([10]) == 50
    master = write_master(tmp_path)
    assert cli(["grade", str(master), str(master), "--out", str(tmp_path / "g.csv"), "--submission-timeout", "0"]) == 2
    assert "--submission-timeout must be a number of seconds above 0" in capsys.readouterr().err


def test_a_long_temporary_folder_path_still_grades(tmp_path):
    """A TMPDIR as long as macOS's (or pytest-xdist's) would make the kernel's Unix socket paths too
    long; the grader then makes its channel folder under /tmp instead, and removes it."""
    master = write_master(tmp_path)
    deep = tmp_path / ("long-temporary-folder-" * 3) / "T"
    deep.mkdir(parents=True)
    assert len(str(deep / "cloudlab-grade-xxxxxxxx" / "channel" / "kernel")) > grader.CHANNEL_PATH_LIMIT
    before = set(Path("/tmp").glob("cg-*"))
    saved, tempfile.tempdir = tempfile.tempdir, str(deep)
    try:
        limits = grader.Limits(timeout=NOTEBOOK_LIMIT, cell_timeout=CELL_LIMIT, case_timeout=CASE_LIMIT)
        [grade] = grader.grade_all(master, [solved_submission(tmp_path)], tmp_path / "out" / "grades.csv",
                                   limits=limits)
    finally:
        tempfile.tempdir = saved
    assert grade.total == MAX_POINTS, (grade.problems, [case.message for case in grade.cases])
    assert set(Path("/tmp").glob("cg-*")) <= before, "the short channel folder is removed"
    assert list(deep.iterdir()) == []


# ---- written answers in the feedback ---------------------------------------------------------


def test_feedback_shows_written_answers_from_the_batch(graded):
    folder, _, _ = graded
    solved = feedback(folder, "solved")
    q2_section = solved.split("## q2_object")[1]
    assert "**Your written answer**" in q2_section and "> Because S3 is a key-value store." in q2_section
    assert "Your written answer" not in solved.split("## q2_object")[0], "the q2 answer belongs under q2 only"
    assert "**Your written answer:** none found" in feedback(folder, "lab")


def test_written_answers_found_by_cell_id_and_in_added_cells(tmp_path):
    cells = MASTER_CELLS + [("markdown", "## Essay\nExplain prefixes.\n<!-- BEGIN SOLUTION -->\nmodel essay\n<!-- END SOLUTION -->")]
    master = grader.parse_master(write_master(tmp_path, cells))
    student = build.lab_notebook(master)
    prompts = [i for i, cell in enumerate(student.cells) if "_Write your answer here._" in cell.source]
    assert len(prompts) == 2
    q2_at, essay_at = prompts
    # the student rewrites the prompt's first line (so only the cell id can find it) and adds a cell below
    student.cells[q2_at].source = "## q2 (my notes)\nWhy a key?\nKeys name objects."
    student.cells.insert(q2_at + 1, nbformat.v4.new_markdown_cell("Also: the namespace is flat."))
    student.cells[essay_at + 1].source = student.cells[essay_at + 1].source.replace("_Write your answer here._", "")
    path = tmp_path / "student.ipynb"
    nbformat.write(student, path)

    answers = {prompt.question or prompt.title: text for prompt, text in grader.written_answers(master, path)}
    assert answers == {"q2_object": "## q2 (my notes)\nKeys name objects.\n\nAlso: the namespace is flat.", "Essay": None}

    grade = grader.SubmissionGrade(path, "student", [grader.CaseGrade(c.question, c.description, c.points, c.hidden, c.code)
                                                     for q in master.questions.values() for c in q.cases],
                                   written=grader.written_answers(master, path))
    text = grader.feedback_markdown(master, grade)
    q2_section = text.split("## q2_object")[1]
    assert "> Keys name objects." in q2_section and "> Also: the namespace is flat." in q2_section
    assert "## Essay (written)" in text and text.split("## Essay (written)")[1].count("none found") == 1
