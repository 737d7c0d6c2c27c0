"""``python -m cloudlab doctor``: is this machine ready for the course, and if not, what to do.

Introduced in the README's quick start. Prints Python and package versions, which backend
notebooks will use, whether real AWS credentials are visible, whether the grader's sandbox
(bubblewrap) works here, and a fix for each problem.
Exits 1 when a problem would stop the notebooks from running.
"""

from __future__ import annotations

import os
import sys
import time
from importlib import metadata
from pathlib import Path

PACKAGES = ("boto3", "botocore", "moto", "jupyterlab", "ipykernel", "nbclient", "nbval",
            "pandas", "matplotlib", "localstack-client", "pytest")


def _credentials_visible() -> list[str]:
    found = []
    key = os.environ.get("AWS_ACCESS_KEY_ID")
    if key and key != "test":
        found.append("AWS_ACCESS_KEY_ID in the environment")
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN"):
        if os.environ.get(name):
            found.append(f"{name} in the environment")
    if (Path.home() / ".aws" / "credentials").exists():
        found.append("~/.aws/credentials")
    return found


def _sandbox_line() -> str:
    """Whether ``cloudlab grade`` would confine submissions here: it starts Python in the sandbox to find out."""
    from .grading import sandbox

    try:
        found = sandbox.mode(refresh=True)
    except sandbox.SandboxError as error:
        return f"REQUIRED but not working: {error}"
    if found.sandboxed:
        return f"{found.reason} works: graded kernels run without network, other processes or the checkout"
    return (f"none ({found.reason}): grading works but without a sandbox; for one, "
            "install bubblewrap (Debian/Ubuntu: sudo apt-get install bubblewrap)")


def main() -> int:
    problems: list[str] = []
    print(f"Python      {sys.version.split()[0]} ({sys.executable})")
    if sys.version_info < (3, 11):
        problems.append("Python 3.11 or newer is needed: run `make install` with python3.11+")
    for package in PACKAGES:
        try:
            version = metadata.version(package)
        except metadata.PackageNotFoundError:
            version = "MISSING"
            problems.append(f"{package} is not installed: run `make install`")
        print(f"{package:11s} {version}")

    from . import backend as backend_module
    from .backend.guard import REAL_AWS_OPT_IN

    chosen = (os.environ.get("CLOUDLAB_BACKEND") or "embedded").lower()
    served = backend_module.running_server_url()
    where = {"embedded": f"embedded emulator ({'attach to the served one at ' + served if served else 'started inside each kernel'})",
             "localstack": "LocalStack (must already be running)",
             "aws": "REAL AWS"}.get(chosen, chosen)
    print(f"\nbackend     {where}  [CLOUDLAB_BACKEND={os.environ.get('CLOUDLAB_BACKEND', '') or 'unset'}]")

    credentials = _credentials_visible()
    if credentials:
        print("credentials real AWS credentials are visible: " + ", ".join(credentials))
        if chosen != "aws":
            print("            harmless: the course replaces them with dummy ones and refuses non-local requests")
    else:
        print("credentials none visible (good: the course needs none)")
    print(f"opt-in      {REAL_AWS_OPT_IN}={os.environ.get(REAL_AWS_OPT_IN, '') or 'unset'}"
          + ("  (real AWS requests are allowed)" if chosen == "aws" else ""))

    started = time.perf_counter()
    try:
        handle = backend_module.use_backend(chosen)
        import boto3

        boto3.client("s3").list_buckets()
        print(f"check       {handle.name} answered in {(time.perf_counter() - started) * 1000:.0f} ms")
    except Exception as error:  # report, don't crash: this is the diagnosis tool
        problems.append(f"backend {chosen!r} is not usable: {error}")

    print(f"sandbox     {_sandbox_line()}")

    if problems:
        print("\nProblems:")
        for problem in problems:
            print(f"  - {problem}")
        return 1
    print("\nAll good: `make lab` to start.")
    return 0
