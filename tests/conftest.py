"""Shared fixtures: every test gets its own environment and never attaches to a served emulator."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def isolated_environment(monkeypatch, tmp_path_factory):
    """Tests may call use_backend(), which edits os.environ; undo it afterwards."""
    saved = dict(os.environ)
    monkeypatch.setenv("CLOUDLAB_STATE_DIR", str(tmp_path_factory.mktemp("state")))
    for name in ("CLOUDLAB_BACKEND", "CLOUDLAB_ENDPOINT", "AWS_ENDPOINT_URL", "CLOUDLAB_ALLOW_REAL_AWS"):
        monkeypatch.delenv(name, raising=False)
    yield
    from cloudlab.backend import guard

    guard.allow_real_aws(False)
    os.environ.clear()
    os.environ.update(saved)
