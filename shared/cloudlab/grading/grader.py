"""Grade submitted labs: ``python -m cloudlab grade MASTER SUB.ipynb... --out grades.csv``.

Each submission runs in a fresh Python kernel, in a temporary working directory, with its
own in-kernel emulator (``CLOUDLAB_BACKEND=embedded`` and a private ``CLOUDLAB_STATE_DIR``,
so it can never attach to a shared ``backend serve``). The kernel, and everything it starts,
is confined by ``sandbox.py``: bubblewrap where it works (no network, no view of the checkout,
its own processes only), else rlimits and a throwaway uid; either way with memory, process,
CPU and file-size limits, and the grader stops any cell or case that prints more than
``Limits.output_mb``. The public tests are the only test file the kernel can read; hidden
cases reach it as execute requests in step 3. Steps per submission:

1. the grader's own set-up cell (the one ``docs/authoring-labs.md`` prescribes), so a
   broken or deleted first cell does not sink the rest;
2. every code cell of the submission in order, errors allowed, each under a time limit
   (interrupt, else restart the kernel and replay the cells that worked); a cell that runs
   out of memory or starts too many processes is dropped and the kernel restarted without it;
3. every test case of the master, public and hidden, by question name — never by cell
   position — each in a copy of the notebook's namespace under its own time limit. Results
   come back through the execute reply's ``user_expressions``, which printed output cannot
   forge, and carry a per-case random nonce. A case's limit is the ``timeout=`` its header
   declares, else ``Limits.case``; before each case the kernel must answer a ``kernel_info``
   request (a kernel alive but silent is restarted).

All three steps run within the submission's own limit (``Limits.submission``): when it is up,
the remaining cases are not run, the points earned so far stay, and the kernel and everything
it started are killed.

This module grades ONE submission (:func:`grade_submission`); a bad submission gets the points
it earned and a reason. Batches, caching and the command line are in ``batch.py``; feedback
files in ``feedback.py``; gradebooks and the class summary in ``gradebook.py``.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import json
import os
import queue
import re
import secrets
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from .build import public_tests, tests_text
from .check import TESTS_DIR_VARIABLE, repo_root
from .markers import (ANSWER_PLACEHOLDER, Master, WrittenPrompt, _BEGIN_MARKDOWN, _END_MARKDOWN,
                      _headings, parse_master, written_prompts)
from . import sandbox
from .runner import grader_code

DEFAULT_TIMEOUT = 300.0
MAX_CELL_TIMEOUT = 120.0
MAX_CASE_TIMEOUT = 60.0
INTERRUPT_GRACE = 5.0  # seconds a kernel gets to answer an interrupt before it is restarted
PING_TIMEOUT = 15.0  # an idle kernel answers kernel_info in milliseconds; one silent this long is wedged
SUBMISSION_MARGIN = 120.0  # seconds on top of the cells' and cases' limits, for starting kernels and the set-up
DEFAULT_MEMORY_MB, DEFAULT_PROCESSES, DEFAULT_OUTPUT_MB = 2048, 256, 4.0
MAX_RESTARTS = 8  # each death skips its cell or case, so this bounds adversarial notebooks only
_REMOVED_VARIABLES = ("CLOUDLAB_ENDPOINT", "AWS_ENDPOINT_URL", "CLOUDLAB_ALLOW_REAL_AWS", "AWS_PROFILE",
                      "AWS_DEFAULT_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                      "LOCALSTACK_HOST", "JPY_SESSION_NAME")


def setup_code(lab_name: str) -> str:
    """The grader's preamble: the set-up cell every master starts with."""
    return ("import boto3\nimport cloudlab\nfrom cloudlab.grading import checker\n\n"
            f"backend = cloudlab.use_backend()\ncheck = checker({lab_name!r})\n")


# Run before the set-up cell, adding no names: exit()/quit() in a cell would otherwise shut the
# kernel down after the cell, and the next cell would be blamed for the death.
KERNEL_SETTINGS = ("(lambda shell: setattr(shell, 'ask_exit', lambda: shell.payload_manager.write_payload("
                   "{'source': 'ask_exit', 'keepkernel': True})))(get_ipython())")


@dataclass
class Limits:
    """Time limits in seconds. ``timeout`` bounds running the submission's cells, ``submission`` all of it."""

    timeout: float = DEFAULT_TIMEOUT
    cell_timeout: float | None = None  # default: min(timeout, 120)
    case_timeout: float | None = None  # default: min(cell timeout, 60)
    memory_mb: int | None = DEFAULT_MEMORY_MB  # address space of each of the kernel's processes
    processes: int | None = DEFAULT_PROCESSES  # processes and threads of the kernel together
    output_mb: float | None = DEFAULT_OUTPUT_MB  # output one cell or case may print before it is stopped
    submission_timeout: float | None = None  # the whole grading of one submission; default: see submission()

    @property
    def cell(self) -> float:
        return self.cell_timeout or min(self.timeout, MAX_CELL_TIMEOUT)

    @property
    def case(self) -> float:
        return self.case_timeout or min(self.cell, MAX_CASE_TIMEOUT)

    def case_limit(self, declared: float | None) -> float:
        """A case's limit: the one its ``# TEST`` header declares (``timeout=``), else :attr:`case`."""
        return declared if declared is not None else self.case

    def submission(self, case_limits: list[float]) -> float:
        """Seconds one submission may take in all (cells, cases, restarts), after which it is stopped.

        Default: the notebook's limit plus every case's limit plus ``SUBMISSION_MARGIN``, which is
        what a submission that uses every limit to the full needs, with room for kernel starts.
        """
        return self.submission_timeout or self.timeout + sum(case_limits) + SUBMISSION_MARGIN


@dataclass
class Execution:
    """What happened to one execute request."""

    status: str  # "ok" | "error" | "timeout" | "died" | "output" (stopped: it printed too much)
    error: str = ""
    user_expressions: dict = field(default_factory=dict)
    responsive: bool = True  # False: the kernel must be restarted
    asked_exit: bool = False  # the code called exit() or quit()


_OUTPUT_MESSAGES = {"stream", "display_data", "update_display_data", "execute_result", "error"}
MAX_MESSAGE_BYTES = 64 * 1024 * 1024  # the grader drops the connection on a larger message rather than hold it


def _output_size(content: dict) -> int:
    """About how many bytes of output one iopub message carries."""
    if "text" in content:
        return len(content["text"])
    if "traceback" in content:
        return sum(len(line) for line in content["traceback"])
    return sum(len(str(value)) for value in (content.get("data") or {}).values())


@functools.lru_cache(maxsize=None)
def _manager_class():
    """jupyter_client's KernelManager, starting the kernel through a ``sandbox.Confinement``."""
    from jupyter_client import KernelManager

    class ConfinedKernelManager(KernelManager):
        confinement = None

        def format_kernel_cmd(self, extra_arguments=None):
            command = super().format_kernel_cmd(extra_arguments)
            return self.confinement.command(command) if self.confinement is not None else command

        def write_connection_file(self, **kwargs):
            super().write_connection_file(**kwargs)
            if self.confinement is not None and self.confinement.uid is not None:
                os.chown(self.connection_file, self.confinement.uid, -1)  # 0600: the kernel's uid must read it

    return ConfinedKernelManager


def _first_line(text: str, limit: int = 200) -> str:
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(text))
    line = next((part.strip() for part in text.splitlines() if part.strip()), "")
    return line if len(line) <= limit else line[: limit - 3] + "..."


# Unix socket paths are limited to 107 bytes; ZeroMQ's ipc names add "-<port>" to this prefix.
CHANNEL_PATH_LIMIT = 90


@contextlib.contextmanager
def _channel_folder(preferred: Path):
    """The folder for the kernel's Unix sockets: ``preferred`` when its path is short enough,
    else a fresh one under ``/tmp`` (a long ``TMPDIR``, as macOS's or pytest's, would make every
    socket path too long and no kernel would start). Removed afterwards either way."""
    if len(str(preferred / "kernel")) <= CHANNEL_PATH_LIMIT or not os.path.isdir("/tmp"):
        preferred.mkdir(parents=True)
        yield preferred
        return
    with tempfile.TemporaryDirectory(prefix="cg-", dir="/tmp") as short:
        Path(short).chmod(0o711)
        channel = Path(short) / "channel"
        channel.mkdir()
        yield channel


class Kernel:
    """One fresh python3 kernel (the grader's interpreter) in ``workdir`` with ``env``.

    With a ``confinement`` (``sandbox.py``) the kernel starts through it: inside bubblewrap the
    grader reaches it over Unix sockets in ``channel_dir`` (the sandbox has no network to connect
    to) and interrupts it with a message, not a signal. ``output_limit`` caps the bytes of output
    one request may send before it is stopped.
    """

    def __init__(self, workdir: Path, env: dict[str, str], log_path: Path, confinement=None,
                 channel_dir: Path | None = None, output_limit: int | None = None) -> None:
        self.workdir, self.env, self.log_path = workdir, env, log_path
        self.confinement, self.channel_dir, self.output_limit = confinement, channel_dir, output_limit
        self.manager = self.client = self._log = self._context = None

    def start(self, timeout: float = 60) -> None:
        import zmq

        self.stop()
        self._log = open(self.log_path, "ab")  # kernel chatter goes here, not into the grader's output
        self.manager = _manager_class()(kernel_name="python3", **self._transport())
        self.manager.confinement = self.confinement
        if self.confinement is not None and self.confinement.sandboxed:
            self.manager.connection_file = str(self.channel_dir / "connection.json")
            self.manager.kernel_spec.interrupt_mode = "message"  # a signal from outside would hit bwrap, not the kernel
        self.manager.start_kernel(cwd=str(self.workdir), env=self.env,
                                  stdout=subprocess.DEVNULL, stderr=self._log)
        # one message may not be larger than this: a kernel printing gigabytes at once is cut off, not buffered
        self._context = zmq.Context()
        self._context.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)
        self.client = self.manager.client(context=self._context)
        self.client.start_channels()
        try:
            self.client.wait_for_ready(timeout=timeout)
        except RuntimeError:
            self.stop()
            raise

    def _transport(self) -> dict:
        if self.confinement is None or not self.confinement.sandboxed:
            return {}
        prefix = self.channel_dir / "kernel"
        if len(str(prefix)) > CHANNEL_PATH_LIMIT:
            raise RuntimeError(f"the kernel's channel folder path is too long for Unix sockets: {self.channel_dir}")
        return {"transport": "ipc", "ip": str(prefix)}

    def exit_reason(self) -> str:
        """Why the kernel process ended, in words (empty when unknown or still running)."""
        process = getattr(getattr(self.manager, "provisioner", None), "process", None)
        code = process.poll() if process is not None else None
        if code is None:
            return ""
        number = -code if code < 0 else code - 128 if code > 128 else 0  # bwrap reports a signal as 128 + N
        if number:
            try:
                name = signal.Signals(number).name
            except ValueError:
                name = f"signal {number}"
            return {"SIGXCPU": "it used up its CPU time limit (SIGXCPU)", "SIGKILL": "it was killed (SIGKILL)",
                    "SIGXFSZ": "it wrote a file larger than its limit (SIGXFSZ)"}.get(name, f"it was killed by {name}")
        return f"it exited with code {code}"

    def tasks(self) -> int:
        """Processes and threads the kernel runs now (its uid's, or its process tree's)."""
        from .sandbox import tasks_of_tree, tasks_of_uid

        if self.confinement is not None and self.confinement.uid is not None:
            return tasks_of_uid(self.confinement.uid)
        process = getattr(getattr(self.manager, "provisioner", None), "process", None)
        return tasks_of_tree(process.pid) if process is not None else 0

    @property
    def alive(self) -> bool:
        return self.manager is not None and self.manager.is_alive()

    def stop(self) -> None:
        if self.client is not None:
            self.client.stop_channels()
        if self.manager is not None:
            try:
                self.manager.shutdown_kernel(now=True)
            except Exception:  # already dead: nothing left to stop
                pass
        if self.confinement is not None:
            self.confinement.sweep()  # whatever it started and left behind, in or out of its process group
        if self._context is not None:
            self._context.destroy(linger=0)
        if self._log is not None:
            self._log.close()
        self.manager = self.client = self._log = self._context = None

    def execute(self, code: str, timeout: float, user_expressions: dict | None = None,
                store_history: bool = True) -> Execution:
        """Run ``code``; on timeout interrupt it, and say whether the kernel came back."""
        if not self.alive:
            return Execution("died", responsive=False)
        msg_id = self.client.execute(code, store_history=store_history, user_expressions=user_expressions or {},
                                     allow_stdin=False, stop_on_error=False)
        deadline = time.monotonic() + max(timeout, 0.1)
        error, output = "", 0
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return self._interrupt(msg_id)
            message = self._next_iopub(msg_id, min(0.5, remaining))
            if message is None:
                if not self.alive:
                    return Execution("died", error, responsive=False)
                continue
            if message["msg_type"] == "error":
                content = message["content"]
                error = f"{content.get('ename', 'Error')}: {_first_line(content.get('evalue', ''))}".rstrip(": ")
            elif message["msg_type"] == "status" and message["content"]["execution_state"] == "idle":
                break
            if self.output_limit is not None and message["msg_type"] in _OUTPUT_MESSAGES:
                output += _output_size(message["content"])
                if output > self.output_limit:
                    stopped = self._interrupt(msg_id)
                    return Execution("output", responsive=stopped.responsive)
        reply = self._reply(msg_id, timeout=10)
        if reply is None:  # alive but silent: its channel is wedged, and the kernel must be restarted
            return Execution("died" if not self.alive else "error", error or "no reply from the kernel",
                             responsive=False)
        asked_exit = any(item.get("source") == "ask_exit" for item in reply.get("payload") or [])
        return Execution("error" if error or reply.get("status") == "error" else "ok", error,
                         reply.get("user_expressions") or {}, asked_exit=asked_exit)

    def _next_iopub(self, msg_id: str, timeout: float):
        try:
            message = self.client.get_iopub_msg(timeout=timeout)
        except queue.Empty:
            return None
        return message if message.get("parent_header", {}).get("msg_id") == msg_id else {"msg_type": "other"}

    def _reply(self, msg_id: str, timeout: float):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                message = self.client.get_shell_msg(timeout=0.5)
            except queue.Empty:
                if not self.alive:
                    return None
                continue
            if message.get("parent_header", {}).get("msg_id") == msg_id:
                return message["content"]
        return None

    def responds(self, timeout: float) -> bool:
        """Whether the kernel answers a ``kernel_info`` request on its shell channel within ``timeout``.

        A kernel can be alive and still never answer (a wedged channel); only asking tells.
        """
        if not self.alive:
            return False
        try:
            msg_id = self.client.kernel_info()
        except Exception:  # the channel itself is broken
            return False
        return self._reply(msg_id, timeout=max(timeout, 0.1)) is not None

    def _interrupt(self, msg_id: str) -> Execution:
        try:
            self.manager.interrupt_kernel()
        except Exception:  # a kernel that cannot take the signal is restarted below
            return Execution("timeout", responsive=False)
        deadline = time.monotonic() + INTERRUPT_GRACE
        while time.monotonic() < deadline:
            message = self._next_iopub(msg_id, 0.5)
            if message is None:
                if not self.alive:
                    return Execution("died", responsive=False)
            elif message["msg_type"] == "status" and message["content"]["execution_state"] == "idle":
                self._reply(msg_id, timeout=2)  # drain it, so the next request's reply is not confused
                return Execution("timeout")
        return Execution("timeout", responsive=False)


@dataclass
class CaseGrade:
    question: str
    description: str
    points: float
    hidden: bool
    code: str
    passed: bool = False
    message: str = "not run"
    ran: bool = False  # False: no result (unreadable file, dead kernel), so its code is not worth showing
    timeout: float | None = None  # the case's own time limit (``timeout=`` in its header); None: the grader's

    @property
    def earned(self) -> float:
        return self.points if self.passed else 0.0


@dataclass
class SubmissionGrade:
    """Everything the gradebook and the feedback file say about one submission."""

    path: Path
    name: str  # how the gradebook and the summary name it
    cases: list[CaseGrade]
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0
    written: list[tuple[WrittenPrompt, str | None]] = field(default_factory=list)  # (prompt, the student's text)
    sandbox: str = ""  # "bwrap", or "none" when graded without a sandbox (sandbox.py)

    def question_points(self, question: str) -> float:
        return sum(case.earned for case in self.cases if case.question == question)

    @property
    def total(self) -> float:
        return sum(case.earned for case in self.cases)

    @property
    def max_points(self) -> float:
        return sum(case.points for case in self.cases)


def _did_not_finish(limit: float, declared: bool) -> str:
    """What a case that ran out of time says; a limit the test declared is named as the test's own."""
    return f"did not finish in {'its own time limit of ' if declared else ''}{limit:g} s"


def _cell_name(number: int, source: str) -> str:
    first = _first_line(source, limit=40) or "(empty)"
    return f"code cell {number} (`{first}`)"


def _submission_env(state_dir: Path, tests_dir: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in _REMOVED_VARIABLES}
    env.update({
        "CLOUDLAB_BACKEND": "embedded",
        "CLOUDLAB_STATE_DIR": str(state_dir),  # empty: nothing to attach to, so the kernel starts its own emulator
        TESTS_DIR_VARIABLE: str(tests_dir),
        "MPLBACKEND": "Agg",
        "PYDEVD_DISABLE_FILE_VALIDATION": "1",
    })
    return env


def read_submission(path: Path) -> list[str]:
    """The sources of a submission's code cells, in order; raises ValueError if unreadable."""
    try:
        notebook = nbformat.read(path, as_version=4)
    except FileNotFoundError:
        raise ValueError("file not found") from None
    except Exception as error:  # not JSON, not a notebook, a future format...
        raise ValueError(f"not a readable notebook ({type(error).__name__}: {_first_line(error)})") from None
    cells = notebook.get("cells")
    if not isinstance(cells, list):
        raise ValueError("not a notebook: it has no list of cells")
    sources = [cell.get("source", "") for cell in cells if isinstance(cell, dict) and cell.get("cell_type") == "code"]
    return [source if isinstance(source, str) else "".join(map(str, source)) for source in sources]


def _answer_lines(source: str, prompt_lines: set[str]) -> list[str]:
    """The lines of a markdown cell that are the student's: not the prompt's, not markers."""
    return [line.rstrip() for line in source.splitlines()
            if line.strip() not in prompt_lines and line.strip() != ANSWER_PLACEHOLDER
            and not _BEGIN_MARKDOWN.match(line) and not _END_MARKDOWN.match(line)]


def written_answers(master: Master, path: Path) -> list[tuple[WrittenPrompt, str | None]]:
    """The student's text for each written prompt of the master (``None``: none found).

    The answer cell is found by the id the generated lab gave it (JupyterLab keeps cell ids),
    else by the prompt's first line. The answer is what the student added to that cell, plus
    any markdown cells they inserted right after it (up to the next code cell or the next
    cell of the lab). Never raises: an unreadable submission has no answers.
    """
    from .build import lab_notebook

    prompts = written_prompts(master)
    try:
        cells = [cell for cell in nbformat.read(path, as_version=4).get("cells", []) if isinstance(cell, dict)]
        lab_cells = lab_notebook(master).cells
    except Exception:  # the grade says why the file is unreadable; here it just has no answers
        return [(prompt, None) for prompt in prompts]
    lab_markdown = {cell.source for cell in lab_cells if cell.cell_type == "markdown"}
    found = []
    for prompt in prompts:
        lab_id = next((cell.id for cell in lab_cells if cell.cell_type == "markdown" and cell.source == prompt.prompt), None)
        first = next((line.strip() for line in prompt.prompt.splitlines() if line.strip()), "")
        markdown = [(i, cell) for i, cell in enumerate(cells) if cell.get("cell_type") == "markdown"]
        at = next((i for i, cell in markdown if lab_id and cell.get("id") == lab_id), None)
        if at is None:
            at = next((i for i, cell in markdown
                       if next((l.strip() for l in str(cell.get("source", "")).splitlines() if l.strip()), "") == first), None)
        if at is None:
            found.append((prompt, None))
            continue
        prompt_lines = {line.strip() for line in prompt.prompt.splitlines() if line.strip()}
        lines = _answer_lines(str(cells[at].get("source", "")), prompt_lines)
        for cell in cells[at + 1:]:
            source = str(cell.get("source", ""))
            if cell.get("cell_type") != "markdown" or source in lab_markdown \
                    or any(level <= 2 for level, _ in _headings(source)):
                break
            lines += [""] + _answer_lines(source, prompt_lines)
        text = "\n".join(lines).strip()
        found.append((prompt, text or None))
    return found


class SubmissionRun:
    """Runs one submission in its own kernel and grades it; see the module docstring."""

    def __init__(self, master: Master, path: Path, name: str, limits: Limits) -> None:
        self.master, self.path, self.limits = master, path, limits
        self.grade = SubmissionGrade(path, name, [
            CaseGrade(case.question, case.description, case.points, case.hidden, case.code, timeout=case.timeout)
            for question in master.questions.values() for case in question.cases])
        self.replay: list[str] = []  # cells that ran to the end (errors or not), to rebuild state after a restart
        self.restarts = 0
        self.deadline = float("inf")  # time.monotonic() by which this submission's grading stops; set in run()

    @property
    def allowed(self) -> float:
        """Seconds this submission may take in all (``Limits.submission`` of its cases' limits)."""
        return self.limits.submission([self.limits.case_limit(case.timeout) for case in self.grade.cases])

    def _left(self) -> float:
        return self.deadline - time.monotonic()

    def _out_of_time(self) -> str:
        return f"the submission used up its {self.allowed:g} s"

    def problem(self, text: str) -> None:
        self.grade.problems.append(text)

    def run(self) -> SubmissionGrade:
        started = time.monotonic()
        self.deadline = started + self.allowed
        try:
            sources = read_submission(self.path)
        except ValueError as error:
            self.problem(f"could not grade this file: {error}")
            for case in self.grade.cases:
                case.message = "not graded: the submission could not be read"
            return self.grade
        self.grade.written = written_answers(self.master, self.path)
        found = sandbox.mode()
        sandbox.announce(found)
        self.grade.sandbox = found.label
        with tempfile.TemporaryDirectory(prefix="cloudlab-grade-") as temp, \
                _channel_folder(Path(temp) / "channel") as channel:
            temp = Path(temp)
            temp.chmod(0o711)  # a kernel under a throwaway uid may pass through to its folders, not list them
            workdir, grader_dir, state_dir, home = temp / "labs", temp / "grader", temp / "state", temp / "home"
            for folder in (workdir, grader_dir / "tests", state_dir, home):
                folder.mkdir(parents=True)
            data, links = repo_root() / "data", {}
            if data.is_dir():  # notebooks read ../data/..., as they do from labs/
                (temp / "data").symlink_to(data, target_is_directory=True)
                links[temp / "data"] = data
            (grader_dir / "tests" / f"{self.master.lab_name}.json").write_text(tests_text(public_tests(self.master)))
            # the kernel may write only these; the public tests it reads (hidden ones come as messages)
            confinement = sandbox.Confinement(found.sandboxed, workdir, writable=[workdir, state_dir, home, channel],
                                              readable=[grader_dir / "tests"], links=links,
                                              limits=self._resource_limits())
            env = _submission_env(state_dir, grader_dir / "tests")
            env.update({"HOME": str(home), "USER": "student", "LOGNAME": "student", "PYTHONNOUSERSITE": "1",
                        "JUPYTER_RUNTIME_DIR": str(home / "runtime"), "MALLOC_ARENA_MAX": "2"})
            output = None if self.limits.output_mb is None else int(self.limits.output_mb * 1024 * 1024)
            self.kernel = Kernel(workdir, env, grader_dir / "kernel.log", confinement, channel, output)
            try:
                if self._start():
                    self._run_cells(sources)
                    self._run_tests()
                else:
                    for case in self.grade.cases:
                        case.message = "not run: the kernel could not be started"
            finally:
                self.kernel.stop()
                left = confinement.release()
                if left:
                    self.problem(f"grader problem: {len(left)} process(es) of this submission would not die")
        self.grade.seconds = time.monotonic() - started
        return self.grade

    def _resource_limits(self) -> sandbox.ResourceLimits:
        # CPU: a kernel computing for the whole time the submission is allowed, and a minute more
        cpu = self.allowed + 60
        return sandbox.ResourceLimits(memory_mb=self.limits.memory_mb, cpu_seconds=int(cpu),
                                      processes=self.limits.processes)

    def _start(self) -> bool:
        """A fresh kernel that ran the set-up cell; False when none answers (or no time is left)."""
        if self._left() <= 0:
            return False
        try:
            self.kernel.start(timeout=min(60, max(self._left(), 1)))
        except Exception as error:  # jupyter_client raises RuntimeError, TimeoutError or OSError
            self.problem(f"grader problem: the kernel did not start ({_first_line(error)})")
            return False
        self.kernel.execute(KERNEL_SETTINGS, timeout=min(30, self._left()), store_history=False)
        setup = self.kernel.execute(setup_code(self.master.lab_name), timeout=min(60, self._left()), store_history=False)
        if setup.status != "ok":
            self.problem(f"grader problem: the grader's set-up cell failed ({setup.error or setup.status})")
        # a kernel that did not come back from an interrupt of its set-up is of no use (a wedged channel)
        return setup.status != "died" and setup.responsive

    def _replay_deadline(self) -> float:
        """Until when a restart may replay cells: the notebook's limit from now, within the submission's."""
        return min(time.monotonic() + self.limits.timeout, self.deadline)

    def _restart(self, deadline: float) -> bool:
        """A fresh kernel with the state the cells so far had built; False when out of restarts or time."""
        if self.restarts >= MAX_RESTARTS or self._left() <= 0:
            return False
        self.restarts += 1
        if not self._start():
            return False
        for source in self.replay:
            remaining = deadline - time.monotonic()
            outcome = self.kernel.execute(source, timeout=min(self.limits.cell, max(remaining, 0)))
            if outcome.status in ("timeout", "died"):
                self.problem("replaying the notebook after a restart did not finish; later results may be incomplete")
                if not outcome.responsive:
                    return self._start()
                break
        return True

    def _run_cells(self, sources: list[str]) -> None:
        deadline = min(time.monotonic() + self.limits.timeout, self.deadline)
        previous, previous_name = None, "the set-up"
        for number, source in enumerate(sources, start=1):
            if not source.strip():
                continue
            remaining = deadline - time.monotonic()
            name = _cell_name(number, source)
            if remaining <= 0:
                used_up = (self._out_of_time() if self._left() <= 0 else
                           f"the notebook used up its {self.limits.timeout:g} s time limit")
                self.problem(f"{name} and the cells after it were not run: {used_up}")
                return
            if not self.kernel.alive:  # it died after the previous cell finished
                if self.replay and self.replay[-1] is previous:
                    self.replay.pop()
                self.problem(f"the kernel died after {previous_name} finished")
                if not self._restart(self._replay_deadline()):
                    self.problem("the kernel could not be restarted; the remaining cells were not run")
                    return
            previous, previous_name = source, name
            limit = min(self.limits.cell, remaining)
            outcome = self.kernel.execute(source, timeout=limit)
            if outcome.asked_exit:
                self.problem(f"{name} called exit(); the grader ignored it")
            over = self._over_limit(outcome)
            if not over and outcome.status in ("ok", "error") and outcome.responsive and self.kernel.alive \
                    and not self.kernel.responds(min(PING_TIMEOUT, max(self._left(), 0.1))):
                outcome.responsive = False  # it finished but left the kernel deaf: replaying it would do that again
            if over:  # what it holds (memory, processes) would starve every later cell and test
                self.problem(f"{name} {over}; the grader restarted the kernel without this cell")
                outcome.responsive = False
            elif outcome.status in ("ok", "error") and not outcome.responsive:
                self.problem(f"{name} left the kernel alive but not answering; the grader restarted it without this cell")
            elif outcome.status == "ok":
                self.replay.append(source)
            elif outcome.status == "error":
                self.replay.append(source)
                if outcome.error.startswith("NotImplementedError"):  # a stub: the hint is in the test messages
                    self.problem(f"{name} raised NotImplementedError (a question not answered yet)")
                else:
                    self.problem(f"{name} raised {outcome.error}")
            elif outcome.status == "timeout":
                self.problem(f"{name} did not finish in {limit:g} s and was stopped")
            elif outcome.status == "output":
                self.problem(f"{name} printed more than {self.limits.output_mb:g} MB of output and was stopped")
            else:
                reason = self.kernel.exit_reason()
                self.problem(f"{name} made the kernel die (os._exit or a crash?)" + (f": {reason}" if reason else ""))
            if not outcome.responsive and not self._restart(self._replay_deadline()):
                self.problem("the kernel could not be restarted; the remaining cells were not run")
                return

    def _over_limit(self, outcome: Execution) -> str:
        """Which resource limit a cell ran into, in words ("" for none)."""
        if outcome.status == "error" and outcome.error.startswith("MemoryError"):
            return f"ran out of memory (the limit is {self.limits.memory_mb} MB per process)"
        if outcome.status == "died" or self.limits.processes is None:
            return ""
        if "Resource temporarily unavailable" in outcome.error or self.kernel.tasks() > 0.8 * self.limits.processes:
            return f"started too many processes or threads (the limit is {self.limits.processes})"
        return ""

    def _run_tests(self) -> None:
        """Every case under its own limit, all within the submission's deadline.

        Before each case the kernel must answer a ``kernel_info`` request: a dead or wedged kernel
        is restarted, and when that fails, or the submission's time is up, the remaining cases
        are not run (the points earned so far stay).
        """
        for number, case in enumerate(self.grade.cases, start=1):
            if self._left() <= 0:
                return self._give_up(number, self._out_of_time())
            if not self.kernel.responds(min(PING_TIMEOUT, self._left())):
                if self.kernel.alive:
                    self.problem(f"the kernel stopped answering (no reply in {PING_TIMEOUT:g} s) before test "
                                 f"{number}; the grader restarted it")
                if not self._restart(self._replay_deadline()):
                    why = self._out_of_time() if self._left() <= 0 else "the kernel died or stopped answering and could not be restarted"
                    return self._give_up(number, why)
            limit = self.limits.case_limit(case.timeout)
            nonce = secrets.token_hex(16)
            code, expressions = grader_code(nonce, {"code": case.code, "label": f"{case.question} #{number}",
                                                    "timeout": limit, "declared": case.timeout is not None})
            outcome = self.kernel.execute(code, timeout=min(limit + 10, self._left()), user_expressions=expressions,
                                          store_history=False)
            case.ran = outcome.status != "died"
            if outcome.status == "ok":
                case.passed, case.message = self._result(nonce, outcome.user_expressions.get("result"))
            elif outcome.status == "timeout" and self._left() <= 0:
                case.message = f"stopped: {self._out_of_time()}"
            elif outcome.status == "timeout":
                case.message = _did_not_finish(limit, case.timeout is not None)
            elif outcome.status == "output":
                case.message = f"printed more than {self.limits.output_mb:g} MB of output and was stopped"
            elif outcome.status == "died":
                reason = self.kernel.exit_reason()
                case.message = ("the kernel died while running this test (os._exit or a crash in your code?)"
                                + (f": {reason}" if reason else ""))
            else:
                case.message = f"grader problem: {outcome.error}"
            if not outcome.responsive and self._left() > 0 and not self._restart(self._replay_deadline()):
                return self._give_up(number + 1, "the kernel died or stopped answering and could not be restarted")

    def _give_up(self, number: int, why: str) -> None:
        """Cases ``number`` and after are not run, because of ``why``; the kernel is stopped in ``run``."""
        left = self.grade.cases[number - 1:]
        for case in left:
            case.message = f"not run: {why}"
        if left:
            self.problem(f"{len(left)} test case(s) were not run: {why}")


    @staticmethod
    def _result(nonce: str, expression: dict | None) -> tuple[bool, str]:
        try:
            text = ast.literal_eval(expression["data"]["text/plain"])
            result = json.loads(text)
        except (TypeError, KeyError, ValueError, SyntaxError):
            return False, "the grader got no result for this test"
        if result.get("nonce") != nonce:
            return False, "the grader got no valid result for this test"
        return bool(result["passed"]), str(result.get("message", ""))


def grade_submission(master: Master, path: str | Path, limits: Limits | None = None, name: str | None = None,
                     questions: set[str] | None = None) -> SubmissionGrade:
    """Grade one submission against a parsed master; ``questions``: run only these questions' cases."""
    path = Path(path)
    run = SubmissionRun(master, path, name or str(path), limits or Limits())
    if questions is not None:  # a regrade of some questions: the others come from the cache
        run.grade.cases = [case for case in run.grade.cases if case.question in questions]
    try:
        return run.run()
    except Exception as error:  # a grader bug must cost this submission a reason, not the whole batch
        run.problem(f"grader problem: {type(error).__name__}: {_first_line(error)}; grade this one by hand")
        return run.grade


# Batch-level code (grading many submissions, feedback, gradebooks) lives in its own modules;
# these names stay importable from here for code written before the split.
_MOVED = {"grade_all": "batch", "main": "batch", "feedback_markdown": "feedback", "notes": "feedback",
          "write_gradebook": "gradebook", "summary_table": "gradebook"}


def __getattr__(name: str):
    if name in _MOVED:
        import importlib

        return getattr(importlib.import_module(f".{_MOVED[name]}", __package__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["Limits", "SubmissionGrade", "CaseGrade", "grade_submission", "grade_all", "main", "setup_code"]
