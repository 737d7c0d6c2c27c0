""".ci/localstack.sh, which make test-localstack uses: bad input gets a clear message, nothing else."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / ".ci" / "localstack.sh"


def run(*args: str, **env: str) -> subprocess.CompletedProcess:
    import os

    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **env})


def test_a_python_that_is_not_3_13_is_refused_before_anything_is_installed():
    answer = run("install", LOCALSTACK_PYTHON=sys.executable)  # the course's 3.11
    assert answer.returncode == 1
    assert "is not a Python 3.13 (LocalStack 4.14 needs 3.13)" in answer.stderr


def test_unknown_actions_show_the_usage():
    answer = run("serve")
    assert answer.returncode == 1 and "usage:" in answer.stderr


def test_every_package_of_localstack_is_pinned():
    lines = [line.strip() for line in (SCRIPT.parent / "localstack-requirements.txt").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert "localstack-core[runtime]==4.14.0" in lines
    assert all("==" in line for line in lines), [line for line in lines if "==" not in line]
    for pin in ("cbor2==5.9.0", "pyOpenSSL==24.3.0", "cryptography==44.0.3", "service-identity==24.2.0"):
        assert pin in lines


def test_the_compose_file_runs_the_release_ci_tests_with_the_same_services():
    """compose.yaml (README, "LocalStack") pins the tag CI installs and starts the services it starts."""
    import re

    import yaml

    compose = yaml.safe_load((SCRIPT.parents[1] / "compose.yaml").read_text())["services"]["localstack"]
    pinned = re.search(r"^localstack-core\[runtime\]==(\d+\.\d+)\.\d+$",
                       (SCRIPT.parent / "localstack-requirements.txt").read_text(), re.M)
    assert compose["image"] == f"localstack/localstack:{pinned[1]}"
    services = dict(item.split("=", 1) for item in compose["environment"])["SERVICES"].split("#")[0].strip()
    ci_services = re.search(r"^SERVICES=(\S+)$", SCRIPT.read_text(), re.M)[1]
    assert sorted(services.split(",")) == sorted(ci_services.split(","))
