"""Confine one submission's kernel: bubblewrap where it works, rlimits and a throwaway uid where not.

Used by the grader (``python -m cloudlab grade``, ``grader.Kernel``); ``python -m cloudlab doctor``
reports which of the two a grading run here would get. README "Grading" says how to get bubblewrap.

**With bubblewrap** (``bwrap``, Debian package ``bubblewrap``) the kernel and everything it
starts run in new PID, network, IPC and UTS namespaces: they cannot see or signal any process
outside, and their network has loopback only (the submission's own in-kernel emulator listens
there). The filesystem is a fresh tmpfs holding read-only binds of the system (``/usr``,
``/etc``), of Python and the course's venv, of the ``cloudlab`` package and ``data/``; writable
binds of the submission's working folder, its emulator state folder, a home and the channel
folder; and a private ``/tmp`` of bounded size. Nothing else of the checkout is there: not
``solutions/``, not ``tests/``, not the master, not other submissions. The grader reaches the
kernel only through Jupyter's messages over Unix sockets in the channel folder (TCP from outside
cannot enter the private network namespace).

**Without it** (no ``bwrap``, a host that forbids namespaces, or ``CLOUDLAB_SANDBOX=none``)
the grader says so once and marks every gradebook row; the kernel then has only the rlimits
below and its own session. When the grader runs as root, both paths start the kernel as a uid
that no other process on the machine has (``2000000000`` and up), so ``kill(-1)`` reaches
only the submission's own processes and every one of them can be swept with SIGKILL at the end.
Without bubblewrap, where Python, the course package or the grading folders are closed to other
users (a Python under ``/root``), that uid keeps one capability, reading any file
(``CAP_DAC_READ_SEARCH``): it can then read, but not write, what root can read, hidden test
folders included. Where they are open to others (``/usr``, ``/opt``), it keeps nothing.

**Resource limits** (both paths), set on the kernel by :func:`apply_limits` before it starts:
address space (``RLIMIT_AS``), CPU seconds, processes (``RLIMIT_NPROC``: per uid, so it counts
only when the uid is the throwaway one), file size and no core files. Output size is capped by
the grader, which stops a cell that prints more than its limit.

This file runs as a script too (``python sandbox.py LIMITS_JSON -- COMMAND...``): the small
step between the sandbox and the kernel that sets the limits, drops root and execs the kernel.
It imports only the standard library for that reason.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

SANDBOX_VARIABLE = "CLOUDLAB_SANDBOX"  # "auto" (default), "bwrap" (required), "none" (force the fallback)
UID_BASE = 2_000_000_000  # throwaway uids: no account, no file and no process of the machine has them
UID_SLOTS = 4096
CAP_DAC_READ_SEARCH = 2


class SandboxError(RuntimeError):
    """The sandbox was required (``CLOUDLAB_SANDBOX=bwrap``) but cannot be made here."""


@dataclass
class ResourceLimits:
    """What one submission's kernel may use; ``None`` leaves a limit off."""

    memory_mb: int | None = 2048  # address space per process: a numpy-free lab kernel peaks well below
    cpu_seconds: int | None = 900  # per process; wall-clock limits per cell and per case come first
    processes: int | None = 256  # tasks (threads count) of the kernel's uid
    file_mb: int | None = 512  # the largest file it may write
    tmp_mb: int = 256  # size of the sandbox's private /tmp (a tmpfs, so it is memory)


@dataclass(frozen=True)
class Mode:
    """How kernels will be confined in this process: ``sandboxed`` or not, and why."""

    sandboxed: bool
    reason: str

    @property
    def label(self) -> str:
        return "bwrap" if self.sandboxed else "none"


_mode_lock = threading.Lock()
_mode_cache: dict[str, Mode] = {}
_warned = {"done": False}


def bwrap_path() -> str | None:
    return shutil.which("bwrap")


def running_as_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def mode(refresh: bool = False) -> Mode:
    """Whether kernels get bubblewrap here, decided once per process (``refresh`` re-tries).

    Honours ``CLOUDLAB_SANDBOX``: ``none`` forces the fallback, ``bwrap`` makes a missing or
    broken bubblewrap an error (:class:`SandboxError`), anything else tries bubblewrap.
    """
    wanted = (os.environ.get(SANDBOX_VARIABLE) or "auto").strip().lower()
    with _mode_lock:
        if refresh or wanted not in _mode_cache:
            if wanted == "none":
                found = Mode(False, f"{SANDBOX_VARIABLE}=none")
            else:
                found = probe()
            _mode_cache[wanted] = found
        found = _mode_cache[wanted]
    if wanted == "bwrap" and not found.sandboxed:
        raise SandboxError(f"{SANDBOX_VARIABLE}=bwrap but the sandbox does not work here: {found.reason}")
    return found


def announce(found: Mode) -> None:
    """Say once per process that grading runs without a sandbox, and what that means."""
    if found.sandboxed or _warned["done"]:
        return
    _warned["done"] = True
    who = "an unprivileged throwaway uid, " if running_as_root() else ""
    print(f"warning: grading WITHOUT a sandbox ({found.reason}); each kernel gets only {who}rlimits and its "
          "own process group, can read the checkout and use the network, and the gradebook marks it "
          "(column sandbox = none). Install bubblewrap (apt-get install bubblewrap) for the sandbox.",
          file=sys.stderr, flush=True)


def probe() -> Mode:
    """Try the real thing: start Python in the sandbox the grader would build and import socket."""
    if sys.platform != "linux":
        return Mode(False, f"bubblewrap needs Linux (this is {sys.platform})")
    if not bwrap_path():
        return Mode(False, "bubblewrap (bwrap) is not installed")
    with tempfile.TemporaryDirectory(prefix="cloudlab-probe-") as temp:
        work = Path(temp) / "work"
        work.mkdir()
        box = Confinement(True, work, writable=[work], limits=ResourceLimits())
        try:
            command = box.command([sys.executable, "-c", "import socket, cloudlab; print('sandbox ok')"])
            result = subprocess.run(command, cwd=work, capture_output=True, text=True, timeout=60,
                                    env={**os.environ, "HOME": str(work)})
        except (OSError, subprocess.TimeoutExpired) as error:
            return Mode(False, f"bwrap could not run: {error}")
        finally:
            box.release()
    if result.returncode != 0 or "sandbox ok" not in result.stdout:
        detail = next((line.strip() for line in (result.stderr or "").splitlines() if line.strip()), "")
        return Mode(False, f"bwrap is installed but cannot make the sandbox here (exit {result.returncode}: {detail})")
    return Mode(True, "bubblewrap " + _bwrap_version())


def _bwrap_version() -> str:
    try:
        text = subprocess.run([bwrap_path(), "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return text.split()[-1] if text.split() else ""


# ---- throwaway uids -----------------------------------------------------------------------------------

_uids_lock = threading.Lock()
_uids_taken: set[int] = set()


def _process_table() -> dict[int, dict[str, int]]:
    """Every process's real uid, parent and thread count, from /proc (empty where there is none)."""
    table = {}
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else []:
        if not entry.name.isdigit():
            continue
        try:
            fields = dict(line.split(":", 1) for line in (entry / "status").read_text().splitlines() if ":" in line)
            table[int(entry.name)] = {"uid": int(fields["Uid"].split()[0]), "ppid": int(fields["PPid"]),
                                      "threads": int(fields["Threads"]), "zombie": fields["State"].split()[0] == "Z"}
        except (OSError, KeyError, ValueError, IndexError):  # it ended while we read
            continue
    return table


def processes_of(uid: int) -> list[int]:
    """Pids of live processes whose real uid is ``uid`` (zombies are dead: only their reaper can clear them)."""
    return [pid for pid, row in _process_table().items() if row["uid"] == uid and not row["zombie"]]


def tasks_of_uid(uid: int) -> int:
    """Threads of every process of ``uid``: what RLIMIT_NPROC counts."""
    return sum(row["threads"] for row in _process_table().values() if row["uid"] == uid)


def tasks_of_tree(root: int) -> int:
    """Threads of ``root`` and every process below it."""
    table = _process_table()
    children: dict[int, list[int]] = {}
    for pid, row in table.items():
        children.setdefault(row["ppid"], []).append(pid)
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        total += table.get(pid, {}).get("threads", 0)
        stack += children.get(pid, [])
    return total


UID_LOCKS = Path("/tmp/cloudlab-uid-locks")  # one flock per uid in use, across grader processes


def others_can_reach(path: Path) -> bool:
    """Whether a user who owns nothing and is in no group can open ``path`` (mode bits only)."""
    import stat

    path = Path(path).resolve()
    try:
        for folder in [*reversed(path.parents), path] if path.is_dir() else reversed(path.parents):
            if not os.stat(folder).st_mode & stat.S_IXOTH:
                return False
        return bool(os.stat(path).st_mode & stat.S_IROTH)
    except OSError:
        return False


def _allocate_uid() -> tuple[int, int]:
    """A throwaway uid no process has and no other grader holds, and the lock that holds it."""
    import fcntl

    UID_LOCKS.mkdir(mode=0o700, exist_ok=True)
    with _uids_lock:
        for slot in range(UID_SLOTS):
            uid = UID_BASE + (os.getpid() * 7 + slot) % UID_SLOTS  # spread across grader processes
            if uid in _uids_taken:
                continue
            lock = os.open(UID_LOCKS / str(uid), os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released by the kernel if this process dies
            except OSError:
                os.close(lock)
                continue
            if any(row["uid"] == uid for row in _process_table().values()):  # zombies too: RLIMIT_NPROC counts them
                os.close(lock)
                continue
            _uids_taken.add(uid)
            return uid, lock
    raise RuntimeError("no free throwaway uid for a kernel (every one has processes)")


# Run as the uid, kill(-1) signals every process of that uid but itself in one system call, and a
# process with SIGKILL pending cannot fork: a fork bomb is stopped at once, where killing pid by pid
# races it. (-I -S: the standard library only, nothing the uid could have written.)
_KILL_ALL_OF_UID = ("import os, signal, sys\nuid = int(sys.argv[1])\nos.setgroups([])\nos.setresgid(uid, uid, uid)\n"
                    "os.setresuid(uid, uid, uid)\ntry:\n    os.kill(-1, signal.SIGKILL)\nexcept OSError:\n    pass\n")


def _kill_all_as(uid: int) -> None:
    """SIGKILL every process of ``uid`` from a short-lived process that is that uid (root only)."""
    if not running_as_root():
        return
    try:
        subprocess.run([sys.executable, "-I", "-S", "-c", _KILL_ALL_OF_UID, str(uid)], timeout=30,
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):  # the pid-by-pid loop in sweep() still runs
        pass


def sweep(uid: int, timeout: float = 30) -> list[int]:
    """SIGKILL every process of ``uid`` until none is left; returns the pids that would not die."""
    deadline = time.monotonic() + timeout
    if processes_of(uid):
        _kill_all_as(uid)
    while True:
        left = processes_of(uid)
        if not left or time.monotonic() > deadline:
            return left
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:  # gone already
                pass
        time.sleep(0.02)  # let the kernel reap them; polled to the deadline above


# ---- the sandbox command ------------------------------------------------------------------------------


class Confinement:
    """How to start one submission's kernel: the command prefix, the folders it may write, its uid.

    ``writable`` folders are bound read-write (and handed to the throwaway uid), ``readable``
    ones read-only, ``links`` become symlinks inside. :meth:`release` kills whatever the uid
    left running and frees it.
    """

    def __init__(self, sandboxed: bool, workdir: Path, writable: list[Path], readable: list[Path] = (),
                 links: dict[Path, Path] | None = None, limits: ResourceLimits | None = None) -> None:
        self.sandboxed, self.workdir = sandboxed, Path(workdir)
        self.writable, self.readable = [Path(p) for p in writable], [Path(p) for p in readable]
        self.links = dict(links or {})
        self.limits = limits or ResourceLimits()
        self.uid, self._uid_lock = _allocate_uid() if running_as_root() else (None, None)
        for folder in self.writable:
            if self.uid is not None:
                os.chown(folder, self.uid, self.uid)
                os.chmod(folder, 0o700)
        # without a sandbox the throwaway uid sees the real filesystem: it needs the capability to
        # read everything only where what the kernel needs is not open to other users
        needed = self._course_paths() + self.readable + [Path(sys.executable)] + [p.parent for p in self.writable]
        self.read_everything = self.uid is not None and not self.sandboxed and not all(map(others_can_reach, needed))

    def command(self, argv: list[str]) -> list[str]:
        """``argv`` run through the limits step, inside bubblewrap when sandboxed."""
        settings = {"limits": asdict(self.limits), "uid": self.uid, "sandboxed": self.sandboxed,
                    "read_everything": self.read_everything}
        # -I -S: the step reads no PYTHON* variables, no site-packages and no current folder (stdlib only)
        step = [sys.executable, "-I", "-S", str(Path(__file__).resolve()), json.dumps(settings), "--", *argv]
        return self._bwrap() + ["--", *step] if self.sandboxed else step

    def _bwrap(self) -> list[str]:
        args = [bwrap_path(), "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
                "--unshare-cgroup-try", "--die-with-parent", "--new-session"]
        if self.uid is not None:  # privileged bwrap keeps these two for the step that drops to self.uid
            args += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
        else:
            args += ["--unshare-user"]
        args += ["--ro-bind", "/usr", "/usr"]
        for name in ("bin", "sbin", "lib", "lib32", "lib64"):
            path = Path("/") / name
            if path.is_symlink():
                args += ["--symlink", os.readlink(path), str(path)]
            elif path.is_dir():
                args += ["--ro-bind", str(path), str(path)]
        args += ["--ro-bind", "/etc", "/etc", "--proc", "/proc", "--dev", "/dev",
                 "--perms", "1777", "--size", str(self.limits.tmp_mb * 1024 * 1024), "--tmpfs", "/tmp"]
        made = {Path("/"), Path("/usr"), Path("/etc"), Path("/proc"), Path("/dev"), Path("/tmp")}
        bound: list[Path] = [Path("/usr"), Path("/etc")]

        def ancestors(path: Path) -> list[str]:
            out = []
            for parent in reversed(path.parents):
                if parent not in made:
                    made.add(parent)
                    out += ["--perms", "0755", "--dir", str(parent)]  # bwrap would copy the host's mode (0700 for /root)
            return out

        def bind(option: str, path: Path) -> list[str]:
            path = path.resolve()
            if not path.exists() or any(path == b or b in path.parents for b in bound):
                return []
            bound.append(path)
            made.add(path)
            return ancestors(path) + [option, str(path), str(path)]

        for path in self._course_paths() + self.readable:
            args += bind("--ro-bind", path)
        for path in self.writable:
            args += bind("--bind", path)
        for link, target in self.links.items():
            args += ancestors(Path(link)) + ["--symlink", str(Path(target).resolve()), str(link)]
            made.add(Path(link))
        return args + ["--chdir", str(self.workdir)]

    @staticmethod
    def _course_paths() -> list[Path]:
        """Python, the venv and the ``cloudlab`` package: what the kernel needs to run, read-only."""
        import cloudlab

        package = Path(cloudlab.__file__).resolve().parent
        paths = [Path(sys.base_prefix), Path(sys.prefix), Path(sys.executable).resolve().parent.parent, package]
        data = package.parents[1] / "data"
        return paths + ([data] if data.is_dir() else [])

    def sweep(self) -> list[int]:
        """Kill every process of the kernel's uid (none to do without one); returns pids that survived."""
        return sweep(self.uid) if self.uid is not None else []

    def release(self) -> list[int]:
        """:meth:`sweep`, then free the uid for another kernel."""
        left = self.sweep()
        if self.uid is not None and not left and self._uid_lock is not None:
            with _uids_lock:
                _uids_taken.discard(self.uid)
                os.close(self._uid_lock)
                self._uid_lock = None
        return left


# ---- the step between the sandbox and the kernel (runs as a script) -----------------------------------


def apply_limits(limits: dict, uid: int | None) -> None:
    """Set the kernel's rlimits (before dropping root, so it cannot raise them again)."""
    import resource

    def cap(name: str, value: int | None, hard_extra: int = 0) -> None:
        if value is None or not hasattr(resource, name):
            return
        try:
            resource.setrlimit(getattr(resource, name), (value, value + hard_extra))
        except (ValueError, OSError) as error:  # e.g. macOS refuses RLIMIT_AS: grade without that one
            print(f"cloudlab sandbox: could not set {name}: {error}", file=sys.stderr)

    megabyte = 1024 * 1024
    cap("RLIMIT_AS", limits["memory_mb"] and limits["memory_mb"] * megabyte)
    cap("RLIMIT_CPU", limits["cpu_seconds"], hard_extra=5)  # SIGXCPU first, SIGKILL 5 s later
    cap("RLIMIT_FSIZE", limits["file_mb"] and limits["file_mb"] * megabyte)
    cap("RLIMIT_CORE", 0)
    if limits["processes"] is not None:
        # counted per uid: exact for a throwaway uid; for a shared one, on top of what it runs now
        cap("RLIMIT_NPROC", limits["processes"] + (0 if uid is not None else tasks_of_uid(os.getuid())))


def drop_root(uid: int, read_everything: bool) -> None:
    """Become ``uid`` for good; with ``read_everything`` keep only CAP_DAC_READ_SEARCH (see the module doc)."""
    import ctypes

    if sys.platform != "linux":  # no prctl or capabilities: a plain change of uid
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if read_everything:
        libc.prctl(8, 1, 0, 0, 0)  # PR_SET_KEEPCAPS: keep permitted capabilities across setuid
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)
    if read_everything:
        class Header(ctypes.Structure):
            _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

        class Data(ctypes.Structure):
            _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]

        header, data = Header(0x20080522, 0), (Data * 2)()  # _LINUX_CAPABILITY_VERSION_3
        bit = 1 << CAP_DAC_READ_SEARCH
        data[0].effective = data[0].permitted = data[0].inheritable = bit
        if libc.capset(ctypes.byref(header), data) != 0:
            raise OSError(ctypes.get_errno(), "capset failed")
        if libc.prctl(47, 2, CAP_DAC_READ_SEARCH, 0, 0) != 0:  # PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE
            raise OSError(ctypes.get_errno(), "could not keep CAP_DAC_READ_SEARCH across exec")
    libc.prctl(38, 1, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS: no setuid program can give root back
    if os.getuid() != uid or os.geteuid() != uid:
        raise OSError("the uid did not change")


def _step_main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        print("usage: sandbox.py SETTINGS_JSON -- COMMAND...", file=sys.stderr)
        return 2
    settings, command = json.loads(argv[0]), argv[2:]
    if settings["sandboxed"]:  # the kernel's parent is the sandbox's pid 1, which ipykernel takes for "orphaned"
        os.environ.pop("JPY_PARENT_PID", None)
    apply_limits(settings["limits"], settings["uid"])
    if settings["uid"] is not None:
        drop_root(settings["uid"], settings["read_everything"])
    os.execv(command[0], command)
    return 127  # not reached


if __name__ == "__main__":
    sys.exit(_step_main(sys.argv[1:]))
