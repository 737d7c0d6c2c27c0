"""A notebook can be re-run against the same served emulator (issue: course foundation).

``make lab`` starts one ``backend serve`` emulator that every kernel attaches to, so a
student re-running a notebook meets the resources of the first run. Each notebook owns its
resources (``backend.clean(prefix)`` at the top), so the second run must work as the first.
(``make test`` runs nbval over every notebook and lab master against one shared served
emulator too, which covers neighbours.)
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from cloudlab.backend.serve import wait_until_served

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


@pytest.fixture
def served_emulator(tmp_path, monkeypatch):
    monkeypatch.setenv("CLOUDLAB_STATE_DIR", str(tmp_path))
    monkeypatch.delenv("CLOUDLAB_ENDPOINT", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    server = subprocess.Popen([sys.executable, "-m", "cloudlab", "backend", "serve"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield wait_until_served(60, tmp_path / "serve.json", still_starting=lambda: server.poll() is None)
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.mark.skipif(not NOTEBOOKS, reason="no lecture notebooks yet")
def test_a_notebook_reruns_on_the_same_emulator(served_emulator):
    for path in NOTEBOOKS[:1] * 2:  # the same notebook twice on one emulator
        notebook = nbformat.read(path, as_version=4)
        notebook.cells.append(nbformat.v4.new_code_cell("import os; print(os.environ['AWS_ENDPOINT_URL'])"))
        NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}},
                       ).execute(env=dict(os.environ, MPLBACKEND="Agg"))
        attached_to = notebook.cells[-1].outputs[0]["text"].strip()
        assert attached_to == served_emulator, f"{path.name} did not attach to the served emulator"
