"""Where a lab's tests come from when grading: a master, a tests file, or an instructor's folder.

Introduced with the grader (README "For instructors"). ``python -m cloudlab grade`` takes, as
its first argument, any of:

- a master notebook ``solutions/NN_topic_lab.ipynb`` (solutions, public and hidden tests);
- a tests file ``NN_topic_lab.json``: the public tests ``labs/tests/NN_topic_lab.json`` (what
  a GitHub Classroom repository has), or a full tests file in the same format whose cases may
  carry ``"hidden": true``;
- a *grading notebook* (:func:`grading_notebook`): the master with its solutions stubbed but
  every test kept, which is what the Gradescope autograder ships.

``--tests-dir DIR`` adds the cases of ``DIR/NN_topic_lab.json`` (same format; every case in it
counts as hidden) to whatever the first argument gave, so hidden tests can live outside the
repository entirely.
"""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
from nbformat import v4

from .build import public_tests
from .markers import (ANSWER_PLACEHOLDER, Master, MarkerError, Question, TestCase, _number, cell_kind, cell_label,
                      lab_name_for, parse_master, parse_timeout, stub_code)


def _case_header(question: str, points: float, hidden: bool, description: str, timeout: float | None = None) -> str:
    options = (" hidden" if hidden else "") + (f" timeout={_number(timeout)}" if timeout is not None else "")
    return f"# TEST {question} points={_number(points)}{options}: {description}"


def _setup_source(lab_name: str) -> str:
    return ("import boto3\nimport cloudlab\nfrom cloudlab.grading import checker\n\n"
            f"backend = cloudlab.use_backend()\ncheck = checker({lab_name!r})\n")


def read_tests_file(path: Path) -> dict:
    """A tests file's content, checked enough that a bad file gets a clear error."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise MarkerError(f"{path}: not a readable tests file ({error})") from None
    questions = data.get("questions") if isinstance(data, dict) else None
    if not isinstance(questions, list):
        raise MarkerError(f"{path}: a tests file needs a list of \"questions\" (see labs/tests/*.json)")
    for question in questions:
        if not isinstance(question, dict) or not isinstance(question.get("name"), str) \
                or not isinstance(question.get("cases", []), list):
            raise MarkerError(f"{path}: every question needs a \"name\" and a list of \"cases\"")
        for case in question.get("cases", []):
            if not isinstance(case, dict) or not {"description", "points", "code"} <= set(case):
                raise MarkerError(f"{path}: question {question['name']!r} has a case without "
                                  "\"description\", \"points\" and \"code\"")
            if case.get("timeout") is not None:
                parse_timeout(case["timeout"], f"{path}: question {question['name']!r}, case {case['description']!r}")
    return data


def master_from_tests(path: str | Path) -> Master:
    """A master built from a tests file: a set-up cell, then every case as a test cell.

    It has no written prompts and no solutions; a public tests file grades out of the public
    points only.
    """
    path = Path(path)
    data = read_tests_file(path)
    lab_name = str(data.get("lab") or lab_name_for(path).removesuffix(".json"))
    cells = [v4.new_code_cell(_setup_source(lab_name))]
    for question in data["questions"]:
        for case in question.get("cases", []):
            header = _case_header(question["name"], float(case["points"]), bool(case.get("hidden")),
                                  str(case["description"]), case.get("timeout"))
            cells.append(v4.new_code_cell(f"{header}\n{case['code']}"))
    notebook = v4.new_notebook(cells=cells)
    synthetic = path.with_name(f"{lab_name}.ipynb")
    nbformat.validate(notebook)
    return _parse_notebook(notebook, synthetic)


def _parse_notebook(notebook: nbformat.NotebookNode, path: Path) -> Master:
    """parse_master for a notebook held in memory (it is written to a temporary file)."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="cloudlab-master-") as temp:
        temporary = Path(temp) / path.name
        nbformat.write(notebook, temporary)
        master = parse_master(temporary)
    master.path = path
    return master


def merge_tests_dir(master: Master, tests_dir: str | Path) -> Master:
    """Add the cases of ``tests_dir/<lab>.json`` to ``master`` as hidden cases (in place)."""
    path = Path(tests_dir) / f"{master.lab_name}.json"
    if not path.is_file():
        raise MarkerError(f"--tests-dir {tests_dir}: has no {master.lab_name}.json for this lab")
    for question in read_tests_file(path)["questions"]:
        target = master.questions.setdefault(question["name"], Question(question["name"]))
        for case in question.get("cases", []):
            timeout = None if case.get("timeout") is None else float(case["timeout"])
            target.cases.append(TestCase(question["name"], float(case["points"]), True, str(case["description"]),
                                         str(case["code"]).strip("\n") + "\n", 0, timeout))
    return master


def load_master(path: str | Path, tests_dir: str | Path | None = None) -> Master:
    """The master to grade with, from a notebook or a tests file, plus ``tests_dir``'s hidden cases."""
    path = Path(path)
    master = master_from_tests(path) if path.suffix == ".json" else parse_master(path)
    return merge_tests_dir(master, tests_dir) if tests_dir else master


def all_tests(master: Master) -> dict:
    """Every case of ``master`` (hidden ones with their code) in the tests-file format."""
    data = public_tests(master)
    for entry, question in zip(data["questions"], master.questions.values()):
        entry["cases"] = [{**case.public_dict(), "hidden": case.hidden} for case in question.cases]
    data["note"] = "Every test case, hidden ones included: for the grader only, never for students."
    return data


def grading_notebook(master: Master) -> nbformat.NotebookNode:
    """The master without its solutions, every test kept: what a grading machine needs.

    Code solutions are stubbed as in the lab, ``# SOLUTION ONLY`` cells dropped and model
    answers emptied (their markers stay, so written prompts are still found). Hidden cases
    added by ``--tests-dir`` are appended as test cells at the end.
    """
    cells = []
    in_notebook = set()
    for number, cell in enumerate(master.notebook.cells, start=1):
        where = cell_label(master.path, number, cell)
        kind = cell_kind(cell, where)
        if kind == "solution-only":
            continue
        if kind == "code":
            cells.append(v4.new_code_cell(stub_code(cell.source, where)))
        elif kind == "test":
            in_notebook.add(number)
            cells.append(v4.new_code_cell(cell.source))
        elif kind == "markdown":
            cells.append(v4.new_markdown_cell(_empty_model_answers(cell.source)))
        else:
            cells.append(v4.new_raw_cell(cell.source))
    for question in master.questions.values():
        for case in question.cases:
            if case.cell_number not in in_notebook:
                header = _case_header(question.name, case.points, case.hidden, case.description, case.timeout)
                cells.append(v4.new_code_cell(f"{header}\n{case.code}"))
    notebook = v4.new_notebook(cells=cells)
    notebook.metadata = {"kernelspec": dict(master.notebook.metadata.get("kernelspec") or
                                            {"display_name": "Python 3", "language": "python", "name": "python3"}),
                         "cloudlab": {"lab": master.lab_name, "grading_copy": True}}
    return notebook


def _empty_model_answers(source: str) -> str:
    from .markers import _BEGIN_MARKDOWN, _END_MARKDOWN

    out, inside = [], False
    for line in source.splitlines():
        if _BEGIN_MARKDOWN.match(line):
            inside = True
            out += [line, ANSWER_PLACEHOLDER]
        elif _END_MARKDOWN.match(line):
            inside = False
            out.append(line)
        elif not inside:
            out.append(line)
    return "\n".join(out)
