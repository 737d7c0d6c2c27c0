"""What leaves the instructor's machine: ``python -m cloudlab release``.

Introduced with the grader (README "For instructors").

- ``release [--out DIR | --zip]``: the course as students get it (labs with their public
  tests, notebooks, data, the package, docs, a short README) with no solution and no hidden
  test; :func:`check_release` scans the output for both and the release fails if it finds any.
- ``release --gradescope LAB``: a Gradescope autograder zip (``setup.sh``, ``run_autograder``,
  the grading notebook with every test, the package); see ``gradescope.py``.
- ``release --classroom LAB``: a GitHub Classroom repository for one lab, with a workflow
  that grades the student's notebook against the public tests on every push.
"""

from __future__ import annotations

import json
import re
import shutil
import stat
import sys
import tempfile
import zipfile
from pathlib import Path

from .build import notebook_text, public_tests, tests_text
from .check import repo_root
from .markers import (_BEGIN_CODE, _BEGIN_MARKDOWN, _END_CODE, _END_MARKDOWN, _HINT, _SOLUTION_LINE,
                      Master, MarkerError, cell_kind, cell_label, parse_master)

# What students get, relative to the repository; everything else (solutions/, the unit tests,
# which know the answers, bench/, .ci/, instructor docs) stays behind. `make test` still runs
# the notebooks through nbval in the release, with its sanitize file.
STUDENT_PATHS = ("labs", "notebooks", "data", "shared", "docs", "pyproject.toml", "environment.yml", "Makefile",
                 ".gitignore", "tests/nbval_sanitize.cfg")
INSTRUCTOR_ONLY = ("docs/authoring-labs.md",)
_SKIPPED_PARTS = {"__pycache__", ".ipynb_checkpoints", ".pytest_cache", "build"}
_HIDDEN_HEADER = re.compile(r"^\s*#\s*TEST\s+\S+\s+points\s*=\s*[\d.]+\s+hidden\b", re.MULTILINE)
_MIN_SECRET = 12  # characters: shorter normalized snippets are too common to mean a leak

STUDENT_README = """# Cloud Patterns: student copy

A runnable course on AWS patterns with boto3, against an emulator that runs on your machine.

```bash
make install   # creates .venv (Python 3.11+)
make lab       # opens JupyterLab with one shared emulator
```

- `notebooks/`: the lectures, run in order.
- `labs/`: your labs. Run `check("q1")` after each question: it runs the public tests and
  shows PASS/FAIL with a message. Hidden tests, run only by the grader, are counted there too.
- Hand in your lab notebook as your instructor says (file upload, Gradescope or GitHub).
- `docs/`: reference notes the notebooks cite.
"""

CLASSROOM_WORKFLOW = """# Grades {lab} on every push with the public tests (labs/tests/{lab}.json), as
# `check()` does in the notebook, and shows the feedback in the run's summary.
name: Autograde {lab}
on:
  push:
  workflow_dispatch:
permissions:
  contents: read
jobs:
  grade:
    runs-on: ubuntu-24.04
    timeout-minutes: 30
    steps:
      - uses: actions/checkout@v4
      - uses: actions/setup-python@v5
        with:
          python-version: "3.12"
      - name: Install the course package
        run: python -m pip install -e .
      - name: Grade
        id: grade
        env:
          LAB: {lab}
        run: |
          python -m cloudlab grade "labs/tests/$LAB.json" "labs/$LAB.ipynb" --out "grades/$LAB.csv" --jobs 1 --no-cache
          cat "grades/feedback/$LAB.md" >> "$GITHUB_STEP_SUMMARY"
      - uses: actions/upload-artifact@v4
        if: always()
        with:
          name: feedback
          path: grades/
"""


def _files(root: Path, paths=STUDENT_PATHS) -> list[Path]:
    found = []
    for name in paths:
        path = root / name
        if path.is_file():
            found.append(path)
        elif path.is_dir():
            found += [item for item in sorted(path.rglob("*")) if item.is_file()
                      and not _SKIPPED_PARTS & set(item.relative_to(root).parts)
                      and not any(part.endswith(".egg-info") for part in item.parts)]
    return [path for path in found if path.relative_to(root).as_posix() not in INSTRUCTOR_ONLY]


def _copy(root: Path, files: list[Path], target: Path) -> None:
    for path in files:
        destination = target / path.relative_to(root)
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, destination)


def _normalize(text: str) -> str:
    """Lines stripped, blank lines dropped: so re-indented or re-wrapped copies still match."""
    return "\n".join(line.strip() for line in text.splitlines() if line.strip())


def _readable_text(path: Path) -> str | None:
    """The text a person could read in ``path``: cell sources, JSON strings, or the file itself."""
    try:
        raw = path.read_bytes()
        if b"\0" in raw[:4096]:
            return None
        text = raw.decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    if path.suffix in (".ipynb", ".json"):
        try:
            data = json.loads(text)
        except ValueError:
            return text
        strings: list[str] = []

        def walk(value):
            if isinstance(value, str):
                strings.append(value)
            elif isinstance(value, list):
                if value and all(isinstance(item, str) for item in value):  # a notebook's multi-line source
                    strings.append("".join(value))
                else:
                    for item in value:
                        walk(item)
            elif isinstance(value, dict):
                for item in value.values():
                    walk(item)

        walk(data)
        return "\n".join(strings)
    return text


def secrets_of(master: Master) -> list[tuple[str, str]]:
    """``(what, normalized text)`` for every hidden test and every solution body of a master."""
    found = []
    for question in master.questions.values():
        for case in question.hidden_cases:
            found.append((f"hidden test {question.name!r} ({case.description})", _normalize(case.code)))
    for number, cell in enumerate(master.notebook.cells, start=1):
        where = cell_label(master.path, number, cell)
        kind = cell_kind(cell, where)
        if kind == "solution-only":
            found.append((f"solution-only cell ({where})", _normalize(cell.source.split("\n", 1)[-1])))
        elif kind in ("code", "markdown"):
            begin, end = (_BEGIN_CODE, _END_CODE) if kind == "code" else (_BEGIN_MARKDOWN, _END_MARKDOWN)
            region: list[str] | None = None
            for line in cell.source.splitlines():
                if begin.match(line):
                    region = []
                elif end.match(line) and region is not None:
                    found.append((f"solution in {where}", _normalize("\n".join(region))))
                    region = None
                elif region is not None:
                    if not (kind == "code" and _HINT.match(line)):
                        region.append(line)
                elif kind == "code" and _SOLUTION_LINE.search(line):
                    found.append((f"`# SOLUTION` line in {where}", _normalize(_SOLUTION_LINE.sub("", line))))
    return [(what, text) for what, text in found if len(text) >= _MIN_SECRET]


def _is_grading_copy(path: Path) -> bool:
    try:
        metadata = json.loads(path.read_text(encoding="utf-8")).get("metadata", {})
    except (OSError, ValueError, AttributeError):
        return False
    return bool(isinstance(metadata, dict) and (metadata.get("cloudlab") or {}).get("grading_copy"))


def check_release(folder: str | Path, masters: list[Master]) -> list[str]:
    """Every leak found in ``folder``: a solutions/ folder, a hidden-test header, a master's
    hidden test code or solution body anywhere in a readable file. Empty when clean."""
    folder = Path(folder)
    problems = []
    if (folder / "solutions").exists():
        problems.append("solutions/ is in the release")
    secrets = [(master.lab_name, what, text) for master in masters for what, text in secrets_of(master)]
    for path in sorted(item for item in folder.rglob("*") if item.is_file()):
        text = _readable_text(path)
        if text is None:
            continue
        shown = path.relative_to(folder).as_posix()
        if path.suffix == ".ipynb" and _is_grading_copy(path):
            problems.append(f"{shown}: a grading copy of a master (it holds hidden tests)")
        if _HIDDEN_HEADER.search(text):
            problems.append(f"{shown}: has a hidden-test header (`# TEST ... hidden:`)")
        normalized = _normalize(text)
        for lab, what, secret in secrets:
            if secret in normalized:
                problems.append(f"{shown}: holds the {what} of {lab}")
    return problems


def _masters(root: Path) -> list[Master]:
    return [parse_master(path) for path in sorted((root / "solutions").glob("*_lab.ipynb"))]


def build_student_release(target: Path, root: Path | None = None) -> list[Path]:
    """Copy what students get into ``target`` (emptied first); returns the files written."""
    root = root or repo_root()
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    files = _files(root)
    _copy(root, files, target)
    (target / "README.md").write_text(STUDENT_README, encoding="utf-8")
    return sorted(path for path in target.rglob("*") if path.is_file())


def _zip_folder(folder: Path, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                info = zipfile.ZipInfo.from_file(path, path.relative_to(folder).as_posix())
                info.compress_type = zipfile.ZIP_DEFLATED
                archive.writestr(info, path.read_bytes())  # keeps the executable bit of scripts


def release_students(out: Path | None, as_zip: bool, root: Path | None = None) -> tuple[Path, list[str]]:
    """Build and check the student release; ``(where it is, leaks found)``."""
    root = root or repo_root()
    masters = _masters(root)
    if as_zip:
        out = out or root / "build" / "student.zip"
        with tempfile.TemporaryDirectory(prefix="cloudlab-release-") as temp:
            folder = Path(temp) / "student"
            build_student_release(folder, root)
            problems = check_release(folder, masters)
            if not problems:
                _zip_folder(folder, out)
        return out, problems
    out = out or root / "build" / "student"
    build_student_release(out, root)
    return out, check_release(out, masters)


def _lab_master(root: Path, lab: str, tests_dir: str | None) -> Master:
    from .sources import load_master

    if Path(lab).suffix in (".ipynb", ".json") and Path(lab).is_file():  # a master (or tests file) by path
        return load_master(lab, tests_dir)
    name = lab.removesuffix(".ipynb")
    candidates = sorted((root / "solutions").glob(f"{name}*.ipynb"))
    if not candidates:
        labs = ", ".join(path.stem for path in sorted((root / "solutions").glob("*_lab.ipynb")))
        raise MarkerError(f"no master solutions/{name}.ipynb (labs: {labs})")
    exact = [path for path in candidates if path.stem == name]
    if len(candidates) > 1 and not exact:
        raise MarkerError(f"{lab!r} names more than one lab: {', '.join(path.stem for path in candidates)}")
    return load_master((exact or candidates)[0], tests_dir)


def _write_script(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8", newline="\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def gradescope_autograder(lab: str, out: Path | None = None, tests_dir: str | None = None,
                          root: Path | None = None) -> Path:
    """Write the Gradescope autograder zip for ``lab``; returns its path."""
    from .gradescope import RUN_AUTOGRADER, SETUP_SH
    from .sources import grading_notebook

    root = root or repo_root()
    master = _lab_master(root, lab, tests_dir)
    out = out or root / "build" / "gradescope" / f"{master.lab_name}.zip"
    with tempfile.TemporaryDirectory(prefix="cloudlab-gradescope-") as temp:
        folder = Path(temp)
        _copy(root, _files(root, ("shared", "data", "pyproject.toml")), folder / "course")
        tests = folder / "course" / "labs" / "tests"
        tests.mkdir(parents=True)
        (tests / f"{master.lab_name}.json").write_text(tests_text(public_tests(master)), encoding="utf-8")
        (folder / "grading").mkdir()
        (folder / "grading" / f"{master.lab_name}.ipynb").write_text(notebook_text(grading_notebook(master)),
                                                                    encoding="utf-8")
        _write_script(folder / "setup.sh", SETUP_SH)
        _write_script(folder / "run_autograder", RUN_AUTOGRADER.replace("@LAB@", master.lab_name))
        _zip_folder(folder, out)
    return out


def classroom_repository(lab: str, out: Path | None = None, root: Path | None = None) -> Path:
    """A GitHub Classroom template repository for ``lab``: the student release with only this
    lab, and ``.github/workflows/autograde.yml``."""
    root = root or repo_root()
    master = _lab_master(root, lab, None)
    out = out or root / "build" / "classroom" / master.lab_name
    build_student_release(out, root)
    for path in list((out / "labs").glob("*_lab.ipynb")) + list((out / "labs" / "tests").glob("*_lab.json")):
        if path.stem != master.lab_name:
            path.unlink()
    workflow = out / ".github" / "workflows" / "autograde.yml"
    workflow.parent.mkdir(parents=True)
    workflow.write_text(CLASSROOM_WORKFLOW.format(lab=master.lab_name), encoding="utf-8")
    problems = check_release(out, _masters(root))
    if problems:
        raise MarkerError("the classroom repository would leak: " + "; ".join(problems))
    return out


def main(args) -> int:
    """``python -m cloudlab release``: 0 when written and clean, 1 on a leak, 2 on bad input."""
    out = Path(args.out) if args.out else None
    try:
        if args.gradescope:
            path = gradescope_autograder(args.gradescope, out, args.tests_dir)
            print(f"Gradescope autograder: {path} (upload it as the assignment's autograder; "
                  "choose an Ubuntu 22.04 or 24.04 base image)")
            return 0
        if args.classroom:
            path = classroom_repository(args.classroom, out)
            print(f"GitHub Classroom repository: {path} (push it and make it the assignment's template)")
            return 0
        if args.tests_dir:
            raise MarkerError("--tests-dir is for --gradescope (student releases never hold hidden tests)")
        path, problems = release_students(out, args.zip or (out is not None and out.suffix == ".zip"))
    except (MarkerError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if problems:
        print("error: the release would leak solutions or hidden tests; nothing was handed out:\n  "
              + "\n  ".join(problems), file=sys.stderr)
        return 1
    print(f"{path} is ready to hand out: labs, public tests, notebooks, data, the package; "
          "no solutions, no hidden tests (checked)")
    return 0


__all__ = ["release_students", "check_release", "gradescope_autograder", "classroom_repository", "main",
           "secrets_of"]
