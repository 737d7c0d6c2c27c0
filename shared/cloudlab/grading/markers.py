"""Read a lab master notebook: its solution regions, solution-only cells and test cells.

The format is described in ``docs/authoring-labs.md``. Everything here is pure text
processing on the notebook's cells; nothing is executed. Every malformed marker raises
:class:`MarkerError`, naming the master file and the cell (1-based, with its first line) so
the author can find it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

DEFAULT_HINT = "write your solution here"
ANSWER_PLACEHOLDER = "_Write your answer here._"

_BEGIN_CODE = re.compile(r"^\s*#{1,3}\s*BEGIN SOLUTION\s*$")
_END_CODE = re.compile(r"^\s*#{1,3}\s*END SOLUTION\s*$")
_HINT = re.compile(r"^\s*#\s*HINT:\s*(.*?)\s*$")
_SOLUTION_LINE = re.compile(r"#\s*SOLUTION\s*$")
# "name = value  # SOLUTION"; the target is everything before the first lone "=".
_SOLUTION_ASSIGNMENT = re.compile(r"^(?P<indent>\s*)(?P<target>[^=#\s][^=#]*?)\s*=(?!=)\s*\S.*?#\s*SOLUTION\s*$")
_SOLUTION_ONLY = re.compile(r"^#\s*SOLUTION ONLY\s*$")
_BEGIN_MARKDOWN = re.compile(r"^\s*<!--\s*BEGIN SOLUTION\s*-->\s*$")
_END_MARKDOWN = re.compile(r"^\s*<!--\s*END SOLUTION\s*-->\s*$")
_TEST_START = re.compile(r"^#\s*TEST\b")
# options after the points, in any order: "hidden", "timeout=<seconds>"
_TEST_HEADER = re.compile(
    r"^#\s*TEST\s+(?P<question>[A-Za-z_][A-Za-z0-9_.-]*)\s+points\s*=\s*(?P<points>\d+(?:\.\d+)?)"
    r"(?P<options>(?:\s+(?:hidden|timeout\s*=\s*\S+?))*)\s*:\s*(?P<description>\S.*?)\s*$")
_TIMEOUT_OPTION = re.compile(r"timeout\s*=\s*(?P<value>\S+)")
MAX_CASE_TIMEOUT = 3600.0  # seconds; a declared limit above an hour is a typo, not a test
_QUESTION_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
_CHECKER_CALL = re.compile(r"""\bchecker\(\s*["']([^"']+)["']\s*\)""")


class MarkerError(ValueError):
    """A master notebook's markers are malformed; the message names the cell."""


@dataclass(frozen=True)
class TestCase:
    """One test cell of a master: a question's case, worth ``points`` when it passes."""

    question: str
    points: float
    hidden: bool
    description: str
    code: str
    cell_number: int  # 1-based position in the master, for error messages only
    timeout: float | None = None  # seconds the grader allows this case (``timeout=`` in its header); None: the default

    def public_dict(self) -> dict:
        """What a public case looks like in ``labs/tests/<lab>.json``."""
        entry = {"description": self.description, "points": _number(self.points), "code": self.code}
        if self.timeout is not None:
            entry["timeout"] = _number(self.timeout)
        return entry


@dataclass
class Question:
    """A question of a lab: the test cases sharing one name, in master order."""

    name: str
    cases: list[TestCase] = field(default_factory=list)

    @property
    def points(self) -> float:
        return sum(case.points for case in self.cases)

    @property
    def public_cases(self) -> list[TestCase]:
        return [case for case in self.cases if not case.hidden]

    @property
    def hidden_cases(self) -> list[TestCase]:
        return [case for case in self.cases if case.hidden]


@dataclass
class Master:
    """A parsed master notebook: the notebook itself, its lab name and its questions."""

    path: Path
    notebook: nbformat.NotebookNode
    lab_name: str
    questions: dict[str, Question]  # in order of first appearance

    @property
    def max_points(self) -> float:
        return sum(question.points for question in self.questions.values())

    def question(self, name: str) -> Question:
        return self.questions[name]


def _number(value: float):
    """Points as an int when whole, so JSON and CSV read ``2`` rather than ``2.0``."""
    return int(value) if float(value).is_integer() else round(float(value), 2)


def cell_label(path: Path | str, number: int, cell) -> str:
    """``solutions/x.ipynb, cell 7 (code: def rename(...)`` — how errors point at a cell."""
    first = next((line.strip() for line in cell.source.splitlines() if line.strip()), "")
    if len(first) > 50:
        first = first[:47] + "..."
    return f"{Path(path).name}, cell {number} ({cell.cell_type}: {first!r})"


def parse_timeout(value, where: str) -> float:
    """A test's declared time limit in seconds: a number above 0 and at most an hour."""
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = float("nan")
    if not 0 < seconds <= MAX_CASE_TIMEOUT:  # also false for nan
        raise MarkerError(f"{where}: timeout={value} is not a number of seconds above 0 and at most "
                          f"{MAX_CASE_TIMEOUT:g} (write it as `timeout=180`)")
    return seconds


def parse_test_header(line: str, where: str) -> tuple[str, float, bool, str, float | None] | None:
    """``(question, points, hidden, description, timeout)`` from a ``# TEST`` line, or None if not one.

    ``timeout`` is the case's own time limit in seconds (``timeout=180`` after the points),
    ``None`` when it declares none. A line that starts like a test header but does not follow
    the format raises :class:`MarkerError` saying what is missing.
    """
    line = line.strip()
    if not _TEST_START.match(line):
        return None
    match = _TEST_HEADER.match(line)
    if match:
        options = re.findall(r"hidden|timeout\s*=\s*\S+?(?=\s|$)", match["options"])
        timeouts = [_TIMEOUT_OPTION.match(option)["value"] for option in options if option.startswith("timeout")]
        if options.count("hidden") > 1 or len(timeouts) > 1:
            raise MarkerError(f"{where}: test header {line!r} repeats an option (`hidden` and `timeout=` at most once each)")
        timeout = parse_timeout(timeouts[0], where) if timeouts else None
        return (match["question"], float(match["points"]), "hidden" in options, match["description"], timeout)
    example = ("write it as `# TEST q1_name points=2: what it checks` (add ` hidden` after the points to hide it, "
               "` timeout=180` to give it its own time limit in seconds)")
    rest = re.sub(r"^#\s*TEST", "", line).strip()
    name = rest.split()[0].split(":")[0] if rest.split() else ""
    if not name or name.startswith("points") or not _QUESTION_NAME.match(name):
        problem = "has no valid question name (letters, digits, _ . -)"
    elif not re.search(r"\bpoints\s*=", line):
        problem = "has no points"
    elif not re.search(r"\bpoints\s*=\s*\d+(?:\.\d+)?(?=[\s:]|$)", line):
        problem = "has points that are not a non-negative number"
    elif ":" not in line:
        problem = "has no ':' followed by a description"
    elif re.search(r"\btimeout\b", line.split(":", 1)[0]):
        problem = "has a time limit not written as `timeout=<seconds>` after the points"
    elif not line.split(":", 1)[1].strip():
        problem = "has no description after ':'"
    else:
        problem = "is malformed"
    raise MarkerError(f"{where}: test header {line!r} {problem}; {example}")


def stub_code(source: str, where: str) -> str:
    """The student version of a master code cell's source.

    Solution regions become ``raise NotImplementedError(<hint>)`` at the region's
    indentation; ``name = value  # SOLUTION`` lines become ``name = ...  # YOUR ANSWER``.
    """
    out: list[str] = []
    region_start: int | None = None
    region_indent = ""
    hints: list[str] = []
    for number, line in enumerate(source.splitlines(), start=1):
        if _BEGIN_CODE.match(line):
            if region_start is not None:
                raise MarkerError(f"{where}: line {number} opens a solution region inside the one opened on "
                                  f"line {region_start}; close it with `### END SOLUTION` first")
            region_start, hints = number, []
            region_indent = line[: len(line) - len(line.lstrip())]
            continue
        if _END_CODE.match(line):
            if region_start is None:
                raise MarkerError(f"{where}: `### END SOLUTION` on line {number} has no `### BEGIN SOLUTION` before it")
            hint = " ".join(hints) or DEFAULT_HINT
            out.append(f"{region_indent}raise NotImplementedError({hint!r})")
            region_start = None
            continue
        if region_start is not None:
            hint = _HINT.match(line)
            if hint and hint.group(1):
                hints.append(hint.group(1))
            continue
        if _SOLUTION_LINE.search(line) and not _SOLUTION_ONLY.match(line.strip()):
            assignment = _SOLUTION_ASSIGNMENT.match(line)
            if not assignment:
                raise MarkerError(f"{where}: line {number} ends in `# SOLUTION` but is not of the form "
                                  f"`name = value  # SOLUTION`: {line.strip()!r}")
            out.append(f"{assignment['indent']}{assignment['target']} = ...  # YOUR ANSWER")
            continue
        out.append(line)
    if region_start is not None:
        raise MarkerError(f"{where}: `### BEGIN SOLUTION` on line {region_start} has no `### END SOLUTION`")
    return "\n".join(out)


def strip_markdown(source: str, where: str) -> str:
    """The student version of a master markdown cell: model answers replaced by a placeholder."""
    out: list[str] = []
    region_start: int | None = None
    for number, line in enumerate(source.splitlines(), start=1):
        if _BEGIN_CODE.match(line) or _END_CODE.match(line):
            raise MarkerError(f"{where}: line {number} uses the code marker {line.strip()!r} in markdown; "
                              "use `<!-- BEGIN SOLUTION -->` / `<!-- END SOLUTION -->`")
        if _BEGIN_MARKDOWN.match(line):
            if region_start is not None:
                raise MarkerError(f"{where}: line {number} opens a solution region inside the one opened on "
                                  f"line {region_start}")
            region_start = number
            continue
        if _END_MARKDOWN.match(line):
            if region_start is None:
                raise MarkerError(f"{where}: `<!-- END SOLUTION -->` on line {number} has no "
                                  "`<!-- BEGIN SOLUTION -->` before it")
            region_start = None
            out.append(ANSWER_PLACEHOLDER)
            continue
        if region_start is None:
            out.append(line)
    if region_start is not None:
        raise MarkerError(f"{where}: `<!-- BEGIN SOLUTION -->` on line {region_start} has no `<!-- END SOLUTION -->`")
    return "\n".join(out)


def _first_line_and_body(source: str) -> tuple[str, str]:
    lines = source.lstrip("\n").splitlines()
    if not lines:
        return "", ""
    return lines[0], "\n".join(lines[1:])


def cell_kind(cell, where: str) -> str:
    """``"test"``, ``"solution-only"``, ``"code"``, ``"markdown"`` or ``"raw"``."""
    if cell.cell_type != "code":
        return cell.cell_type
    first, body = _first_line_and_body(cell.source)
    if _SOLUTION_ONLY.match(first.strip()):
        return "solution-only"
    if parse_test_header(first, where):
        return "test"
    lines = cell.source.splitlines()
    first_number = next((i for i, line in enumerate(lines) if line.strip()), 0)
    for number, line in enumerate(lines[first_number + 1:], start=first_number + 2):
        if _TEST_START.match(line.strip()):
            raise MarkerError(f"{where}: line {number} looks like a test header, but a `# TEST` line "
                              "must be the first line of its own cell")
    return "code"


def parse_test_cell(cell, number: int, where: str) -> TestCase:
    first, body = _first_line_and_body(cell.source)
    question, points, hidden, description, timeout = parse_test_header(first, where)
    if not body.strip():
        raise MarkerError(f"{where}: test {question!r} has no code under its header")
    if _BEGIN_CODE.search(body) or _SOLUTION_LINE.search(body):
        raise MarkerError(f"{where}: a test cell cannot hold solution markers")
    return TestCase(question, points, hidden, description, body.strip("\n") + "\n", number, timeout)


def lab_name_for(path: Path | str) -> str:
    """The lab's name: the master's file name without ``.ipynb``."""
    return Path(path).name.removesuffix(".ipynb")


def parse_master(path: Path | str) -> Master:
    """Read and check a master notebook; raise :class:`MarkerError` on any malformed marker."""
    path = Path(path)
    try:
        notebook = nbformat.read(path, as_version=4)
    except Exception as error:  # nbformat raises several unrelated types for unreadable files
        raise MarkerError(f"{path}: not a readable notebook ({type(error).__name__}: {error})") from None
    lab_name = lab_name_for(path)
    questions: dict[str, Question] = {}
    named_checker = None
    for number, cell in enumerate(notebook.cells, start=1):
        where = cell_label(path, number, cell)
        kind = cell_kind(cell, where)
        if kind == "test":
            case = parse_test_cell(cell, number, where)
            questions.setdefault(case.question, Question(case.question)).cases.append(case)
        elif kind == "code":
            stub_code(cell.source, where)  # raises on malformed solution markers
            match = _CHECKER_CALL.search(cell.source)
            if match and named_checker is None:
                named_checker = (match.group(1), where)
        elif kind == "markdown":
            strip_markdown(cell.source, where)
    if not questions:
        raise MarkerError(f"{path}: has no test cells (`# TEST <question> points=<N>: ...`), so nothing to grade")
    if named_checker is None:
        raise MarkerError(f"{path}: the set-up cell must define `check = checker({lab_name!r})`")
    if named_checker[0] != lab_name:
        raise MarkerError(f"{named_checker[1]}: calls checker({named_checker[0]!r}) but this lab is {lab_name!r}")
    return Master(path, notebook, lab_name, questions)


# ---- written answers ------------------------------------------------------------------------

_HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(?P<title>.+?)\s*#*\s*$")


@dataclass(frozen=True)
class WrittenPrompt:
    """A markdown cell of a master that asks for a written answer (it holds a solution region).

    ``question`` is the graded question it belongs to: the question of the first test cell
    after it, unless a new ``##`` section starts first (then ``None``: a written-only question).
    ``title`` is the nearest heading at or before the prompt, ``prompt`` the student's version
    of the cell (model answer replaced by :data:`ANSWER_PLACEHOLDER`).
    """

    question: str | None
    title: str
    prompt: str
    cell_number: int


def _headings(source: str) -> list[tuple[int, str]]:
    found = []
    for line in source.splitlines():
        match = _HEADING.match(line)
        if match:
            found.append((len(match.group(1)), match.group("title")))
    return found


def written_prompts(master: Master) -> list[WrittenPrompt]:
    """The master's written-answer prompts, in order; see :class:`WrittenPrompt`."""
    cells = master.notebook.cells
    prompts, title = [], master.lab_name
    for number, cell in enumerate(cells, start=1):
        if cell.cell_type != "markdown":
            continue
        where = cell_label(master.path, number, cell)
        if _headings(cell.source):
            title = _headings(cell.source)[-1][1]
        student = strip_markdown(cell.source, where)
        if student == cell.source:  # no solution region: not a prompt
            continue
        question = None
        for later_number, later in enumerate(cells[number:], start=number + 1):
            if later.cell_type == "markdown" and any(level <= 2 for level, _ in _headings(later.source)):
                break
            if later.cell_type == "code" and cell_kind(later, cell_label(master.path, later_number, later)) == "test":
                question = parse_test_header(_first_line_and_body(later.source)[0], where)[0]
                break
        prompts.append(WrittenPrompt(question, title, student, number))
    return prompts
