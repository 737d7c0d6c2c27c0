"""A non-editable install works (issue 14): the data cloudlab reads at run time ships inside the package."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNTIME_DATA = ("cloudlab/data/aws_prices.csv", "cloudlab/data/storage_performance.csv",
                "cloudlab/lambda_service/_watchdog/sitecustomize.py",
                # the capstone's upload page, which publish_site uploads (notebook 06)
                "cloudlab/pipeline/web/index.html", "cloudlab/pipeline/web/app.js", "cloudlab/pipeline/web/style.css",
                # the capstone's SAM app, which the deployer zips (notebook 06)
                "cloudlab/pipeline/template.yaml", "cloudlab/pipeline/functions/upload/app.py",
                "cloudlab/pipeline/functions/custom_analyzer/requirements.txt",
                "cloudlab/pipeline/layers/common/python/moderation/coordination.py",
                "cloudlab/pipeline/layers/common/python/moderation/decisions.py")

CHECK = """
import sys
from pathlib import Path
import cloudlab
from cloudlab import ledger, storage
assert Path(cloudlab.__file__).resolve().is_relative_to(Path(sys.argv[1]).resolve()), cloudlab.__file__
assert ledger.prices()[("lambda", "request")] > 0
assert len(storage.storage_facts()) > 0
print("ok")
"""


def test_a_non_editable_build_carries_the_package_data_and_the_built_copy_reads_it(tmp_path):
    """setuptools' ``build_py`` step (what a wheel and ``pip install .`` put in site-packages),
    run on a copy of the package alone, away from the repository's ``data/``."""
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "shared", source / "shared", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    installed = tmp_path / "site"
    built = subprocess.run([sys.executable, "-c", "from setuptools import setup; setup()", "--quiet",
                            "build_py", "--build-lib", str(installed)],
                           cwd=source, capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    missing = [name for name in RUNTIME_DATA if not (installed / name).is_file()]
    assert not missing, f"not in the built package: {missing}"
    ran = subprocess.run([sys.executable, "-c", CHECK, str(installed)], cwd=tmp_path, capture_output=True, text=True,
                         env={"PYTHONPATH": str(installed), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
                         timeout=120)
    assert ran.returncode == 0 and ran.stdout.strip() == "ok", ran.stderr
