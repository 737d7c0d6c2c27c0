"""Shared fixtures: every test, and every module's fixtures, get their own environment and never
attach to a served emulator (not even the notebooks' one that ``make test`` serves beside them).

Each test also leaves the process as it found it: environment variables, boto3's default
session, the backend ``use_backend()`` chose (and the data endpoint it set for locally served
code), the tunable settings of the process-wide Lambda service, and the Lambda invocation the
pipeline layer's ``joblog`` remembers. And no unit test can hang the suite: each has a time limit (pytest-timeout).
"""

from __future__ import annotations

import os
import sys
import weakref
from pathlib import Path

import pytest

# Per unit test (set-up, call and tear-down), generous for a busy 2-core machine: the slowest, a
# course lab graded with real kernels, takes about a minute there. nbval's notebook cells are
# not affected: they have --nbval-cell-timeout.
UNIT_TEST_TIME_LIMIT = 300
TESTS = Path(__file__).resolve().parent

# The LocalLambdaService attributes tests (and use_backend) may change; reset after each test.
SERVICE_SETTINGS = ("idle_seconds", "concurrency_limit", "max_environments", "async_retry_delays")
_as_created: "weakref.WeakKeyDictionary[object, dict]" = weakref.WeakKeyDictionary()


def pytest_collection_modifyitems(config, items):
    """Give the tests under tests/ a time limit, unless --timeout, the ini option or the test's
    own marker sets one; notebook cells collected by nbval are left alone."""
    if not config.pluginmanager.hasplugin("timeout") or config.getoption("timeout", None) is not None \
            or config.getini("timeout"):
        return
    for item in items:
        if item.path.is_relative_to(TESTS) and item.path.suffix == ".py" and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(UNIT_TEST_TIME_LIMIT))


@pytest.fixture(scope="session", autouse=True)
def record_service_settings_as_created():
    """Remember each Lambda service's settings as it was built (from the environment)."""
    from cloudlab.lambda_service import service

    build = service.LocalLambdaService.__init__

    def build_and_record(self, *args, **kwargs):
        build(self, *args, **kwargs)
        _as_created[self] = {name: getattr(self, name) for name in SERVICE_SETTINGS}

    service.LocalLambdaService.__init__ = build_and_record
    yield
    service.LocalLambdaService.__init__ = build


# What a test must not inherit from the shell: which backend, and where a served one is found.
ATTACHING_VARIABLES = ("CLOUDLAB_BACKEND", "CLOUDLAB_ENDPOINT", "AWS_ENDPOINT_URL", "CLOUDLAB_ALLOW_REAL_AWS")


@pytest.fixture(scope="module", autouse=True)
def module_environment(tmp_path_factory):
    """Module-scoped fixtures run before each test's ``isolated_environment``, so they get this
    environment, and what they change (``use_backend()`` sets AWS_ENDPOINT_URL, CLOUDLAB_ENDPOINT,
    the backend it chose) is undone here, when the module ends, not after each test.

    Without it they ran in the environment pytest was started with: under ``make test`` its
    CLOUDLAB_STATE_DIR is ``.cloudlab-test``, where the notebooks' served emulator runs, so a
    fixture's ``use_backend()`` attached to that other process, and every later test of the worker
    kept that backend (test_schedules' rules went there, out of its scheduler's sight)."""
    from cloudlab import backend
    from cloudlab.backend import local_services

    saved = dict(os.environ)
    chosen, data_endpoint = backend._current["backend"], local_services.data_endpoint()
    os.environ["CLOUDLAB_STATE_DIR"] = str(tmp_path_factory.mktemp("module-state"))
    for name in ATTACHING_VARIABLES:
        os.environ.pop(name, None)
    yield
    os.environ.clear()
    os.environ.update(saved)
    backend._current["backend"] = chosen
    local_services.set_data_endpoint(data_endpoint)
    import boto3

    boto3.DEFAULT_SESSION = None


def _current_service():
    from cloudlab.lambda_service import get_service

    try:
        return get_service()
    except RuntimeError:
        return None


@pytest.fixture(autouse=True)
def isolated_environment(monkeypatch, tmp_path_factory):
    """Tests may call use_backend(), which edits os.environ; undo it afterwards."""
    saved = dict(os.environ)
    monkeypatch.setenv("CLOUDLAB_STATE_DIR", str(tmp_path_factory.mktemp("state")))
    for name in ATTACHING_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    yield
    from cloudlab.backend import guard

    guard.allow_real_aws(False)
    os.environ.clear()
    os.environ.update(saved)
    import boto3

    boto3.DEFAULT_SESSION = None  # its clients would keep the test's endpoint and credentials


@pytest.fixture(autouse=True)
def restored_module_state():
    """The backend use_backend() chose, where locally served code finds data services, and the
    Lambda service's settings, as before the test."""
    from cloudlab import backend
    from cloudlab.backend import local_services

    chosen, data_endpoint = backend._current["backend"], local_services.data_endpoint()
    service = _current_service()
    before = {name: getattr(service, name) for name in SERVICE_SETTINGS} if service is not None else None
    yield
    backend._current["backend"] = chosen
    local_services.set_data_endpoint(data_endpoint)
    now = _current_service()
    if now is not None:
        settings = before if now is service else _as_created.get(now)
        for name, value in (settings or {}).items():
            setattr(now, name, value)


@pytest.fixture(autouse=True)
def no_remembered_invocation():
    """A handler run in this process (or a test calling ``joblog.start_invocation``) leaves its
    request id in the layer's context variable, and the coordination writes as that invocation
    (``finalized_by``): a later test's late duplicate would pass for a retry of the winner."""
    yield
    joblog = sys.modules.get("moderation.joblog")
    if joblog is not None:
        joblog._invocation.set({})
