"""What leaves the instructor's machine: the student release (no solution, no hidden test), the
Gradescope autograder (run in a fake /autograder layout, results.json checked against the
specification's schema) and the GitHub Classroom workflow (parsed, and its grading step run)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import jsonschema
import nbformat
import pytest
import yaml

from cloudlab.__main__ import main as cli
from cloudlab.grading import release
from cloudlab.grading.markers import parse_master
from test_grader import solved_cells
from test_lab_build import LAB, MAX_POINTS, make_notebook, write_master

REPO = Path(__file__).resolve().parents[1]
MASTERS = sorted((REPO / "solutions").glob("*_lab.ipynb"))
SCHEMA = json.loads((Path(__file__).with_name("gradescope_results.schema.json")).read_text())
pytestmark = pytest.mark.skipif(not MASTERS, reason="a student release has no masters to release from")


@pytest.fixture(scope="module")
def masters():
    return [parse_master(path) for path in MASTERS]


@pytest.fixture(scope="module")
def student_release(tmp_path_factory):
    out = tmp_path_factory.mktemp("release") / "student"
    assert cli(["release", "--out", str(out)]) == 0
    return out


def test_every_master_has_secrets_to_look_for(masters):
    for master in masters:
        kinds = {what.split(" ")[0] for what, _ in release.secrets_of(master)}
        assert "solution" in kinds, f"{master.lab_name}: the scan would look for no solution"
        if any(question.hidden_cases for question in master.questions.values()):
            assert "hidden" in kinds, f"{master.lab_name}: the scan would look for no hidden test"


def test_release_has_labs_and_no_solution_or_hidden_test(student_release, masters):
    names = {path.relative_to(student_release).as_posix() for path in student_release.rglob("*") if path.is_file()}
    for master in masters:
        assert f"labs/{master.lab_name}.ipynb" in names and f"labs/tests/{master.lab_name}.json" in names
    assert "README.md" in names and "pyproject.toml" in names and "shared/cloudlab/grading/check.py" in names
    assert any(name.startswith("notebooks/") for name in names)
    assert not any(name.startswith(("solutions/", "bench/")) for name in names)
    assert [name for name in names if name.startswith("tests/")] == ["tests/nbval_sanitize.cfg"], \
        "the unit tests know the answers; only what `make test` needs for nbval goes"
    assert "docs/authoring-labs.md" not in names
    assert release.check_release(student_release, masters) == []


def test_scan_finds_a_leaked_master_or_solution_body(student_release, masters, tmp_path):
    leaky = tmp_path / "leaky"
    leaky.mkdir()
    master = masters[0]
    nbformat.write(master.notebook, leaky / "copy.ipynb")
    problems = release.check_release(leaky, masters)
    assert any("hidden-test header" in problem for problem in problems)
    assert any(f"holds the hidden test" in problem and master.lab_name in problem for problem in problems)
    # one solution body, re-indented, pasted in a module: still found
    what, body = next(item for item in release.secrets_of(master) if item[0].startswith("solution in"))
    (leaky / "copy.ipynb").unlink()
    (leaky / "helper.py").write_text("def f():\n" + "\n".join(f"        {line}" for line in body.splitlines()))
    assert release.check_release(leaky, masters) == [f"helper.py: holds the {what} of {master.lab_name}"]


def test_zip_release_holds_the_same_files(student_release, tmp_path):
    out = tmp_path / "student.zip"
    assert cli(["release", "--zip", "--out", str(out)]) == 0
    with zipfile.ZipFile(out) as archive:
        zipped = {name for name in archive.namelist() if not name.endswith("/")}
    assert zipped == {path.relative_to(student_release).as_posix() for path in student_release.rglob("*") if path.is_file()}


# ---- Gradescope ------------------------------------------------------------------------------


def run_autograder(folder: Path, zip_path: Path, submission: nbformat.NotebookNode | None, name: str) -> dict:
    """Unpack the autograder as Gradescope does (source/, run_autograder copied to the root) and run it."""
    root = folder / "autograder"
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(root / "source")
    for name_ in ("run_autograder", "setup.sh"):
        (root / "source" / name_).chmod(0o755)  # zipfile drops the mode; Gradescope's unzip keeps it
    (root / "run_autograder").write_bytes((root / "source" / "run_autograder").read_bytes())
    (root / "run_autograder").chmod(0o755)
    (root / "submission").mkdir()
    if submission is not None:
        nbformat.write(submission, root / "submission" / name)
    env = {**os.environ, "CLOUDLAB_AUTOGRADER_ROOT": str(root), "CLOUDLAB_AUTOGRADER_PYTHON": sys.executable}
    done = subprocess.run([str(root / "run_autograder")], cwd=root, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads((root / "results" / "results.json").read_text())
    assert not list((root / "source" / "grading").iterdir()), "the tests are deleted before student code runs"
    jsonschema.validate(results, SCHEMA)
    return results


def test_gradescope_autograder_grades_a_submission(tmp_path):
    master_path = write_master(tmp_path / "course")
    zip_path = tmp_path / "autograder.zip"
    assert cli(["release", "--gradescope", str(master_path), "--out", str(zip_path)]) == 0
    with zipfile.ZipFile(zip_path) as archive:
        names = set(archive.namelist())
        grading = archive.read(f"grading/{LAB}.ipynb").decode()
    assert {"setup.sh", "run_autograder", f"grading/{LAB}.ipynb", f"course/labs/tests/{LAB}.json",
            "course/pyproject.toml", "course/shared/cloudlab/grading/grader.py"} <= names
    master = parse_master(master_path)
    assert "# TEST q1_bucket points=1 hidden" in grading, "the autograder holds the hidden tests"
    cells = release._normalize("\n".join(cell.source for cell in nbformat.reads(grading, as_version=4).cells))
    assert [what for what, text in release.secrets_of(master) if not what.startswith("hidden") and text in cells] == [], \
        "but no solution"

    results = run_autograder(tmp_path / "solved", zip_path, make_notebook(solved_cells()), "my_lab.ipynb")
    assert results["score"] == MAX_POINTS
    assert [test["name"] for test in results["tests"]] == [
        "q1_bucket: make_bucket creates the bucket", "q1_bucket: hidden tests",
        'q2_object: put_greeting writes b"hi" to hello.txt']
    hidden = results["tests"][1]
    assert (hidden["score"], hidden["max_score"], hidden["output"]) == (1, 1, "1 of 1 hidden test(s) passed")

    empty = run_autograder(tmp_path / "empty", zip_path, None, "")
    assert empty["score"] == 0 and empty["tests"] == []
    assert f"no notebook was submitted: upload {LAB}.ipynb" in empty["output"]


# ---- GitHub Classroom --------------------------------------------------------------------------


def test_classroom_workflow_parses_and_its_grading_step_runs(tmp_path):
    lab = MASTERS[0].stem
    repository = tmp_path / "classroom"
    assert cli(["release", "--classroom", lab, "--out", str(repository)]) == 0
    assert sorted(path.name for path in (repository / "labs").glob("*.ipynb")) == [f"{lab}.ipynb"]
    workflow = yaml.safe_load((repository / ".github" / "workflows" / "autograde.yml").read_text())
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` key as True
    assert "push" in triggers
    steps = workflow["jobs"]["grade"]["steps"]
    assert any(step.get("uses", "").startswith("actions/checkout@") for step in steps)
    grade = next(step for step in steps if step.get("id") == "grade")
    summary = tmp_path / "step-summary.md"
    env = {**os.environ, **grade["env"], "GITHUB_STEP_SUMMARY": str(summary),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(["bash", "-eo", "pipefail", "-c", grade["run"]], cwd=repository, env=env,
                          capture_output=True, text=True, timeout=280)
    assert done.returncode == 0, done.stderr[-2000:]
    with open(repository / "grades" / f"{lab}.csv", newline="") as handle:
        row = next(iter(csv.DictReader(handle)))
    assert row["total"] == "0", "the untouched lab earns nothing"
    assert f"# Feedback: labs/{lab}.ipynb" in summary.read_text()
