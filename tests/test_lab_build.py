"""Lab generation: marker parsing, stubbing, the public tests file, ``labs build`` / ``labs check``,
and the student's ``check()``. Nothing here starts a kernel; ``test_grader.py`` does."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
from nbformat import v4

from cloudlab.grading import build, markers
from cloudlab.grading.check import Checker, LabTestsNotFound, checker
from cloudlab.grading.markers import MarkerError

LAB = "99_demo_lab"

SETUP = f"""import boto3
import cloudlab
from cloudlab.grading import checker

backend = cloudlab.use_backend()
check = checker("{LAB}")"""

MAKE_BUCKET = '''import uuid

def make_bucket(name):
    """Create the bucket `name` and return its name."""
    ### BEGIN SOLUTION
    # HINT: use s3.create_bucket
    s3.create_bucket(Bucket=name)
    return name
    ### END SOLUTION'''

Q1_PUBLIC = '''# TEST q1_bucket points=2: make_bucket creates the bucket
name = f"demo-q1-{uuid.uuid4().hex[:8]}"
make_bucket(name)
names = [bucket["Name"] for bucket in s3.list_buckets()["Buckets"]]
assert name in names, f"expected a bucket {name}, found {names}"'''

Q1_HIDDEN = '''# TEST q1_bucket points=1 hidden: make_bucket returns the name
name = f"demo-q1-{uuid.uuid4().hex[:8]}"
assert make_bucket(name) == name'''

PUT_GREETING = '''greeting_key = "hello.txt"  # SOLUTION

def put_greeting(bucket):
    """Write b"hi" to `greeting_key` in `bucket`."""
    ### BEGIN SOLUTION
    s3.put_object(Bucket=bucket, Key=greeting_key, Body=b"hi")
    ### END SOLUTION'''

Q2_PUBLIC = '''# TEST q2_object points=3: put_greeting writes b"hi" to hello.txt
bucket = f"demo-q2-{uuid.uuid4().hex[:8]}"
s3.create_bucket(Bucket=bucket)
put_greeting(bucket)
body = s3.get_object(Bucket=bucket, Key="hello.txt")["Body"].read()
assert body == b"hi", f"expected b'hi' in hello.txt, found {body!r}"'''

MASTER_CELLS = [
    ("markdown", "# Lab 99: a demo lab"),
    ("code", SETUP),
    ("code", 's3 = boto3.client("s3")'),
    ("markdown", "## q1_bucket\nWrite `make_bucket(name)`."),
    ("code", MAKE_BUCKET),
    ("code", Q1_PUBLIC),
    ("code", Q1_HIDDEN),
    ("markdown", "## q2_object\nWhy a key?\n<!-- BEGIN SOLUTION -->\nBecause S3 is a key-value store.\n<!-- END SOLUTION -->"),
    ("code", PUT_GREETING),
    ("code", '# SOLUTION ONLY\nput_greeting(make_bucket("demo-scratch-bucket"))'),
    ("code", Q2_PUBLIC),
]
MAX_POINTS = 6


def make_notebook(cells: list[tuple[str, str]], with_outputs: bool = False) -> nbformat.NotebookNode:
    notebook = v4.new_notebook()
    for kind, source in cells:
        cell = v4.new_code_cell(source) if kind == "code" else v4.new_markdown_cell(source)
        if kind == "code" and with_outputs:
            cell.execution_count = 7
            cell.outputs = [v4.new_output("stream", name="stdout", text="noise\n")]
        notebook.cells.append(cell)
    notebook.metadata["kernelspec"] = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
    return notebook


def write_master(folder: Path, cells=MASTER_CELLS, name: str = LAB, with_outputs: bool = True) -> Path:
    """A small master in ``folder/solutions/``, the layout ``labs build`` expects."""
    path = folder / "solutions" / f"{name}.ipynb"
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(make_notebook(cells, with_outputs), path)
    return path


def error_for(tmp_path: Path, cells) -> str:
    with pytest.raises(MarkerError) as caught:
        markers.parse_master(write_master(tmp_path, cells))
    return str(caught.value)


# ---- markers -------------------------------------------------------------------------------


def test_master_parses_into_questions_and_cases(tmp_path):
    master = markers.parse_master(write_master(tmp_path))
    assert master.lab_name == LAB
    assert list(master.questions) == ["q1_bucket", "q2_object"]
    q1 = master.questions["q1_bucket"]
    assert [(c.points, c.hidden) for c in q1.cases] == [(2, False), (1, True)]
    assert q1.cases[0].description == "make_bucket creates the bucket"
    assert not q1.cases[0].code.startswith("# TEST")
    assert master.max_points == MAX_POINTS


def test_solution_region_becomes_indented_stub_with_hint():
    stub = markers.stub_code(MAKE_BUCKET, "here")
    assert "s3.create_bucket(Bucket=name)" not in stub and "BEGIN SOLUTION" not in stub
    assert "    raise NotImplementedError('use s3.create_bucket')" in stub.splitlines()
    assert stub.splitlines()[2] == "def make_bucket(name):"


def test_default_hint_and_solution_line():
    stub = markers.stub_code("x = 1\n### BEGIN SOLUTION\ny = 2\n### END SOLUTION\n"
                             "    limit: int = compute(a=1)  # SOLUTION", "here")
    assert stub.splitlines() == ["x = 1", f"raise NotImplementedError({markers.DEFAULT_HINT!r})",
                                 "    limit: int = ...  # YOUR ANSWER"]


def test_markdown_solution_is_replaced_by_placeholder():
    text = markers.strip_markdown("Q?\n<!-- BEGIN SOLUTION -->\nsecret\n<!-- END SOLUTION -->\nafter", "here")
    assert text == f"Q?\n{markers.ANSWER_PLACEHOLDER}\nafter"


@pytest.mark.parametrize("source, expected", [
    ("def f():\n    ### BEGIN SOLUTION\n    return 1\n", "has no `### END SOLUTION`"),
    ("### END SOLUTION\n", "has no `### BEGIN SOLUTION` before it"),
    ("### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION\n", "inside the one opened on line 1"),
    ("x == 1  # SOLUTION\n", "not of the form `name = value  # SOLUTION`"),
    ("x = 1\n# TEST q1 points=1: late header\nassert x\n", "must be the first line of its own cell"),
])
def test_malformed_code_markers_name_the_cell(tmp_path, source, expected):
    message = error_for(tmp_path, MASTER_CELLS + [("code", source)])
    assert expected in message
    assert f"cell {len(MASTER_CELLS) + 1} (code" in message and LAB in message


@pytest.mark.parametrize("header, expected", [
    ("# TEST q9: no points here", "has no points"),
    ("# TEST q9 points=two: words", "not a non-negative number"),
    ("# TEST q9 points=1 no colon", "has no ':'"),
    ("# TEST q9 points=1:", "no description"),
    ("# TEST points=1: no name", "no valid question name"),
    ("# TEST q9 points=1 timeout: no seconds", "a time limit not written as `timeout=<seconds>`"),
    ("# TEST q9 points=1 timeout=0: zero", "timeout=0 is not a number of seconds above 0"),
    ("# TEST q9 points=1 timeout=ten: words", "timeout=ten is not a number of seconds"),
    ("# TEST q9 points=1 timeout=5 hidden timeout=6: twice", "repeats an option"),
])
def test_malformed_test_headers(tmp_path, header, expected):
    message = error_for(tmp_path, MASTER_CELLS + [("code", header + "\nassert True")])
    assert expected in message and f"cell {len(MASTER_CELLS) + 1}" in message


def test_other_master_errors(tmp_path):
    assert "has no code under its header" in error_for(tmp_path, MASTER_CELLS + [("code", "# TEST q9 points=1: empty")])
    assert "<!-- END SOLUTION -->" in error_for(tmp_path, MASTER_CELLS + [("markdown", "<!-- BEGIN SOLUTION -->\nx")])
    assert "calls checker('other_lab')" in error_for(tmp_path, [("code", SETUP.replace(LAB, "other_lab"))] + MASTER_CELLS[2:])
    assert "has no test cells" in error_for(tmp_path, [("code", SETUP)])
    (tmp_path / "solutions" / "broken_lab.ipynb").write_text("not json")
    with pytest.raises(MarkerError, match="not a readable notebook"):
        markers.parse_master(tmp_path / "solutions" / "broken_lab.ipynb")


# ---- build ---------------------------------------------------------------------------------


def test_generated_lab_hides_solutions_and_tests(tmp_path):
    lab, tests = build.build_lab(write_master(tmp_path))
    sources = [cell.source for cell in lab.cells]
    text = "\n".join(sources)
    for secret in ("s3.create_bucket(Bucket=name)", "S3 is a key-value store", "SOLUTION", "# TEST",
                   "demo-scratch-bucket", "make_bucket returns the name"):
        assert secret not in text
    assert 'greeting_key = ...  # YOUR ANSWER' in text
    # one check cell per question, where its test cells stood
    assert sources.count('check("q1_bucket")') == 1 and sources.count('check("q2_object")') == 1
    assert sources.index('check("q1_bucket")') == sources.index(markers.stub_code(MAKE_BUCKET, "")) + 1
    assert sources[-1] == 'check("q2_object")'
    for cell in lab.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None
    assert lab.metadata["cloudlab"]["generated_from"] == f"solutions/{LAB}.ipynb"
    assert len({cell.id for cell in lab.cells}) == len(lab.cells)
    nbformat.validate(lab)


def test_public_tests_ship_no_hidden_code(tmp_path):
    _, tests = build.build_lab(write_master(tmp_path))
    q1, q2 = tests["questions"]
    assert (q1["name"], q1["points"], q1["hidden_points"], q1["hidden_cases"]) == ("q1_bucket", 3, 1, 1)
    assert [case["description"] for case in q1["cases"]] == ["make_bucket creates the bucket"]
    assert "make_bucket returns the name" not in json.dumps(tests)
    assert q2["cases"][0]["points"] == 3


SLOW_PUBLIC = "# TEST q3_slow points=1 timeout=90: a case with its own limit\nassert True"
SLOW_HIDDEN = "# TEST q3_slow points=2 hidden timeout=180.5: a hidden case with its own limit\nassert True"


def test_declared_timeout_is_parsed_shipped_and_kept_by_every_source(tmp_path):
    from cloudlab.grading import sources

    master = markers.parse_master(write_master(tmp_path, MASTER_CELLS + [("code", SLOW_PUBLIC), ("code", SLOW_HIDDEN)]))
    assert [case.timeout for case in master.questions["q3_slow"].cases] == [90, 180.5]
    assert all(case.timeout is None for case in master.questions["q1_bucket"].cases)
    cases = build.public_tests(master)["questions"][2]["cases"]
    assert cases == [{"description": "a case with its own limit", "points": 1, "code": "assert True\n", "timeout": 90}]
    assert "timeout" not in build.public_tests(master)["questions"][0]["cases"][0], "no key where none is declared"
    every = tmp_path / "every" / f"{LAB}.json"  # the tests-file and grading-notebook forms keep the limits
    every.parent.mkdir()
    every.write_text(json.dumps(sources.all_tests(master)))
    assert [case.timeout for case in sources.load_master(every).questions["q3_slow"].cases] == [90, 180.5]
    copy = sources._parse_notebook(sources.grading_notebook(master), master.path)
    assert [case.timeout for case in copy.questions["q3_slow"].cases] == [90, 180.5]
    bad = tmp_path / "bad" / f"{LAB}.json"
    bad.parent.mkdir()
    bad.write_text(json.dumps({"questions": [{"name": "q1", "cases": [
        {"description": "d", "points": 1, "code": "assert True", "timeout": -5}]}]}))
    with pytest.raises(MarkerError, match="timeout=-5 is not a number of seconds above 0"):
        sources.load_master(bad)


def test_check_uses_a_declared_limit_longer_than_its_own(tmp_path, monkeypatch):
    from cloudlab.grading import check as check_module

    monkeypatch.setattr(check_module, "CASE_TIMEOUT", 0.2)
    tests = tmp_path / "t.json"
    slow = "import time\ntime.sleep(0.6)"
    tests.write_text(json.dumps({"lab": "x", "questions": [{"name": "q1", "cases": [
        {"description": "declares 30 s", "points": 1, "code": slow, "timeout": 30},
        {"description": "declares nothing", "points": 1, "code": slow}]}]}))
    first, second = Checker("x", tests)("q1", _namespace={}).cases
    assert first.passed, first.message
    assert not second.passed and second.message.startswith("did not finish in 0.2 s"), second.message


def test_build_is_byte_stable(tmp_path):
    master = write_master(tmp_path)
    first = build.notebook_text(build.build_lab(master)[0]), build.tests_text(build.build_lab(master)[1])
    assert write_master(tmp_path) == master  # written again: new random cell ids in the master, same lab
    assert (build.notebook_text(build.build_lab(master)[0]), build.tests_text(build.build_lab(master)[1])) == first


def test_labs_check_detects_missing_stale_and_orphaned_files(tmp_path, capsys):
    master = write_master(tmp_path)
    assert build.check_all(tmp_path) == 1
    assert f"labs/{LAB}.ipynb is missing" in capsys.readouterr().err
    assert build.build_all(tmp_path) == 0
    assert (tmp_path / "labs" / f"{LAB}.ipynb").is_file() and (tmp_path / "labs" / "tests" / f"{LAB}.json").is_file()
    assert build.check_all(tmp_path) == 0

    notebook = nbformat.read(master, as_version=4)
    notebook.cells[0].source += " (edited)"
    nbformat.write(notebook, master)
    capsys.readouterr()
    assert build.check_all(tmp_path) == 1
    err = capsys.readouterr().err
    assert f"labs/{LAB}.ipynb is stale" in err and "python -m cloudlab labs build" in err
    assert build.build_all(tmp_path) == 0 and build.check_all(tmp_path) == 0

    master.rename(master.with_name("98_renamed_lab.ipynb"))  # the checker() name no longer matches
    assert build.check_all(tmp_path) == 1
    assert "calls checker('99_demo_lab')" in capsys.readouterr().err
    master.with_name("98_renamed_lab.ipynb").unlink()
    assert build.check_all(tmp_path) == 1
    assert "has no master in solutions/" in capsys.readouterr().err
    assert build.build_all(tmp_path) == 0 and not (tmp_path / "labs" / f"{LAB}.ipynb").exists()


def test_malformed_master_fails_build(tmp_path, capsys):
    write_master(tmp_path, MASTER_CELLS + [("code", "### BEGIN SOLUTION")])
    assert build.build_all(tmp_path) == 1
    assert "has no `### END SOLUTION`" in capsys.readouterr().err


# ---- check() -------------------------------------------------------------------------------


def test_checker_is_lazy_and_explains_a_missing_tests_file(tmp_path):
    check = checker("00_nowhere_lab")  # what the master's set-up cell does before any build
    assert repr(check) == "Checker('00_nowhere_lab')"
    with pytest.raises(LabTestsNotFound, match="python -m cloudlab labs build"):
        check("q1")


def test_check_reports_each_case(tmp_path):
    tests = tmp_path / "t.json"
    tests.write_text(json.dumps({"lab": "x", "questions": [{
        "name": "q1", "points": 6, "hidden_points": 2, "hidden_cases": 1, "cases": [
            {"description": "double works", "points": 1, "code": "assert double(2) == 4"},
            {"description": "no leak", "points": 1, "code": "leaked = 1\nassert double(0) == 0"},
            {"description": "message shown", "points": 2, "code": "assert double(3) == 7, f'expected 7, found {double(3)}'"},
            {"description": "bare assert", "points": 1, "code": "assert double(1) == 3"},
        ]}, {"name": "q2", "points": 1, "hidden_points": 0, "hidden_cases": 0, "cases": [
            {"description": "missing name", "points": 1, "code": "assert triple(1) == 3"}]},
                                                           {"name": "q3", "points": 1, "hidden_points": 0, "hidden_cases": 0, "cases": [
            {"description": "stub", "points": 1, "code": "stub()"}]}]}))
    check = Checker("x", tests)

    def stub():
        raise NotImplementedError("use the list")
    namespace = {"double": lambda n: 2 * n, "stub": stub}
    result = check("q1", _namespace=namespace)
    assert "leaked" not in namespace
    assert result.points == 2 and not result.passed
    assert repr(result) == "\n".join([
        "q1: 2 of 5 points",
        "  PASS  [1]  double works",
        "  PASS  [1]  no leak",
        "  FAIL  [2]  message shown",
        "          expected 7, found 6",
        "  FAIL  [1]  bare assert",
        "          check failed: assert double(1) == 3",
        "  (1 hidden test worth 2 points more run when the lab is graded)"])
    assert "<table>" in result._repr_html_()
    assert "`triple` is not defined" in repr(check("q2", _namespace=namespace))
    assert "not answered yet (use the list)" in repr(check("q3", _namespace=namespace))
    assert len(check(_namespace=namespace).results) == 3
    with pytest.raises(KeyError, match="its questions are q1, q2, q3"):
        check("q9", _namespace=namespace)


def double(n):
    return 2 * n


def test_check_uses_the_callers_globals_outside_ipython(tmp_path):
    tests = tmp_path / "t.json"
    tests.write_text(json.dumps({"lab": "x", "questions": [{"name": "q1", "cases": [
        {"description": "double", "points": 1, "code": "assert double(2) == 4"}]}]}))
    assert Checker("x", tests)("q1").passed


# ---- the course's own labs -----------------------------------------------------------------

REPO = Path(__file__).resolve().parents[1]
COURSE_MASTERS = sorted((REPO / "solutions").glob("*_lab.ipynb"))


@pytest.mark.parametrize("master", COURSE_MASTERS, ids=[path.stem for path in COURSE_MASTERS])
def test_course_master_builds(master):
    lab, tests = build.build_lab(master)
    assert tests["questions"], "a lab master needs at least one question"
    assert "SOLUTION" not in build.notebook_text(lab)


def test_committed_labs_are_up_to_date():
    assert build.check_all(REPO) == 0, "run: python -m cloudlab labs build"
