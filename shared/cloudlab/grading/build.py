"""Generate student labs from the masters: ``python -m cloudlab labs build | check``.

``solutions/NN_topic_lab.ipynb`` (the master, see ``docs/authoring-labs.md``) becomes
``labs/NN_topic_lab.ipynb`` (solutions stubbed, tests replaced by ``check("q")`` cells, no
outputs) and ``labs/tests/NN_topic_lab.json`` (the public test cases). The output depends
only on the master's content: cell ids are derived from cell content, JSON is written with
sorted keys, so ``labs check`` can compare bytes.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import nbformat
from nbformat import v4

from .check import repo_root
from .markers import Master, _number, cell_kind, cell_label, parse_master, parse_test_cell, strip_markdown, stub_code

FORMAT_VERSION = 1
BUILD_COMMAND = "python -m cloudlab labs build"
GENERATED_NOTE = f"Generated from the master by `{BUILD_COMMAND}`; edit the master, not this file."
_KEPT_CELL_METADATA = ("tags",)


def _cell_id(cell_type: str, source: str, seen: set[str]) -> str:
    """A stable id from the cell's content; a repeated cell gets a numbered suffix."""
    base = hashlib.sha1(f"{cell_type}\n{source}".encode()).hexdigest()[:12]
    cell_id, count = base, 1
    while cell_id in seen:
        count += 1
        cell_id = f"{base}-{count}"
    seen.add(cell_id)
    return cell_id


def _generated_from(master: Master) -> str:
    return f"{master.path.parent.name}/{master.path.name}"


def check_cell_source(question: str) -> str:
    return f'check("{question}")'


def lab_notebook(master: Master) -> nbformat.NotebookNode:
    """The student version of a parsed master."""
    last_test_cell = {name: max(case.cell_number for case in question.cases)
                      for name, question in master.questions.items()}
    cells = []
    for number, cell in enumerate(master.notebook.cells, start=1):
        where = cell_label(master.path, number, cell)
        kind = cell_kind(cell, where)
        metadata = {key: cell.metadata[key] for key in _KEPT_CELL_METADATA if key in cell.metadata}
        if kind == "test":
            question = parse_test_cell(cell, number, where).question
            if last_test_cell[question] == number:  # after the last case, so every case's set-up ran
                cells.append(v4.new_code_cell(check_cell_source(question),
                                              metadata={"deletable": False, "editable": False, "tags": ["check"]}))
        elif kind == "solution-only":
            continue
        elif kind == "code":
            cells.append(v4.new_code_cell(stub_code(cell.source, where), metadata=metadata))
        elif kind == "markdown":
            new = v4.new_markdown_cell(strip_markdown(cell.source, where), metadata=metadata)
            if cell.get("attachments"):
                new.attachments = cell.attachments
            cells.append(new)
        else:
            cells.append(v4.new_raw_cell(cell.source, metadata=metadata))
    seen: set[str] = set()
    for cell in cells:
        cell.id = _cell_id(cell.cell_type, cell.source, seen)
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    notebook = v4.new_notebook(cells=cells)
    notebook.nbformat, notebook.nbformat_minor = 4, 5
    notebook.metadata = {
        "kernelspec": dict(master.notebook.metadata.get("kernelspec")
                           or {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}),
        "language_info": {"name": "python"},
        "cloudlab": {"lab": master.lab_name, "generated_from": _generated_from(master), "note": GENERATED_NOTE},
    }
    return notebook


def public_tests(master: Master) -> dict:
    """The content of ``labs/tests/<lab>.json``: public cases only, hidden ones counted."""
    questions = []
    for question in master.questions.values():
        questions.append({
            "name": question.name,
            "points": _number(question.points),
            "hidden_points": _number(sum(case.points for case in question.hidden_cases)),
            "hidden_cases": len(question.hidden_cases),
            "cases": [case.public_dict() for case in question.public_cases],
        })
    return {"format": FORMAT_VERSION, "lab": master.lab_name, "generated_from": _generated_from(master),
            "note": GENERATED_NOTE, "questions": questions}


def build_lab(master_path: str | Path) -> tuple[nbformat.NotebookNode, dict]:
    """``(lab notebook, public tests dict)`` for one master; raises ``MarkerError`` if malformed."""
    master = parse_master(master_path)
    return lab_notebook(master), public_tests(master)


def notebook_text(notebook: nbformat.NotebookNode) -> str:
    text = nbformat.writes(notebook, version=4)
    return text if text.endswith("\n") else text + "\n"


def tests_text(tests: dict) -> str:
    return json.dumps(tests, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def expected_files(root: Path) -> tuple[dict[Path, str], list[str]]:
    """Every generated file's expected text, and the errors of masters that did not build."""
    files: dict[Path, str] = {}
    errors: list[str] = []
    for master_path in sorted((root / "solutions").glob("*_lab.ipynb")):
        try:
            notebook, tests = build_lab(master_path)
        except ValueError as error:  # MarkerError, or JSON the notebook reader rejected
            errors.append(str(error))
            continue
        files[root / "labs" / master_path.name] = notebook_text(notebook)
        files[root / "labs" / "tests" / f"{master_path.stem}.json"] = tests_text(tests)
    return files, errors


def _orphans(root: Path, expected: dict[Path, str]) -> list[Path]:
    """Generated files whose master is gone (only files that say they were generated)."""
    found = []
    for path in sorted((root / "labs").glob("*_lab.ipynb")) + sorted((root / "labs" / "tests").glob("*_lab.json")):
        if path in expected:
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        marker = data.get("metadata", {}).get("cloudlab") if path.suffix == ".ipynb" else data
        if isinstance(marker, dict) and "generated_from" in marker:
            found.append(path)
    return found


def _shown(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def build_all(root: str | Path | None = None) -> int:
    """Write ``labs/`` from every ``solutions/*_lab.ipynb``; 1 if any master is malformed."""
    root = Path(root) if root else repo_root()
    files, errors = expected_files(root)
    for path, text in files.items():
        if path.is_file() and path.read_bytes() == text.encode("utf-8"):
            continue  # leave unchanged files alone so their timestamps stay put
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8", newline="\n")
        print(f"wrote {_shown(path, root)}")
    if not errors:  # a master that failed to parse must not lose its last good lab
        for path in _orphans(root, files):
            path.unlink()
            print(f"removed {_shown(path, root)} (its master is gone)")
    labs = len(files) // 2
    for error in errors:
        print(f"error: {error}", file=sys.stderr)
    print(f"{labs} lab{'s' if labs != 1 else ''} built" + (f", {len(errors)} master(s) failed" if errors else ""))
    return 1 if errors else 0


def check_all(root: str | Path | None = None) -> int:
    """0 if ``labs/`` matches what ``labs build`` would write; else 1, naming each stale file."""
    root = Path(root) if root else repo_root()
    files, errors = expected_files(root)
    problems = [f"error: {error}" for error in errors]
    for path, text in files.items():
        if not path.is_file():
            problems.append(f"{_shown(path, root)} is missing")
        elif path.read_bytes() != text.encode("utf-8"):
            problems.append(f"{_shown(path, root)} is stale (differs from what its master builds)")
    problems += [f"{_shown(path, root)} has no master in solutions/" for path in _orphans(root, files)]
    if problems:
        print("labs/ is out of date:\n  " + "\n  ".join(problems), file=sys.stderr)
        print(f"Run: {BUILD_COMMAND}", file=sys.stderr)
        return 1
    print(f"labs/ is up to date ({len(files) // 2} labs)")
    return 0
