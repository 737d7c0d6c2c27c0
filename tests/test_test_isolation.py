"""conftest.py leaves the process as each test found it. The two tests of a pair run in file
order: the first changes module-level state without undoing it, the second finds it reset."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import boto3
import pytest

import cloudlab
from cloudlab import backend as backend_module
from cloudlab.backend import local_services
from cloudlab.lambda_service import get_service
from cloudlab.pipeline.layer import layer_module

STARTED_WITH = os.environ.get("CLOUDLAB_STATE_DIR")  # read at collection, before any fixture ran
CHANGED = {"async_retry_delays": (9.0, 9.0), "idle_seconds": 1.5, "concurrency_limit": 1, "max_environments": 2}


def test_a_test_changes_module_state_and_leaves_it_changed():
    cloudlab.use_backend()
    service = get_service()
    for name, value in CHANGED.items():
        setattr(service, name, value)
    backend_module._current["backend"] = backend_module.Backend("localstack", "http://127.0.0.1:9")
    local_services.set_data_endpoint("http://127.0.0.1:9")
    os.environ["CLOUDLAB_BACKEND"] = "localstack"
    boto3.setup_default_session(region_name="eu-west-3")
    layer_module("joblog").start_invocation("handler-run-in-this-process", SimpleNamespace(aws_request_id="stale-request"))


def test_the_next_test_finds_it_reset():
    service = get_service()  # built by an earlier test of this session, at the latest the one above
    for name, value in CHANGED.items():
        assert getattr(service, name) != value, f"{name} leaked from the previous test"
    assert local_services.data_endpoint() is None and service.data_endpoint_url is None
    current = backend_module._current["backend"]
    assert current is None or current.name == "embedded"
    assert "CLOUDLAB_BACKEND" not in os.environ
    assert boto3.DEFAULT_SESSION is None
    # else coordination.check_and_finalize would write as that invocation (test_pipeline_observe's three branches)
    assert layer_module("joblog").request_id() is None


def test_unit_tests_have_a_time_limit(request):
    from conftest import UNIT_TEST_TIME_LIMIT

    assert request.node.get_closest_marker("timeout").args == (UNIT_TEST_TIME_LIMIT,)


@pytest.fixture(scope="module")
def seen_by_a_module_fixture():
    """What a module-scoped fixture (set up before each test's own environment) would attach to."""
    return os.environ.get("CLOUDLAB_STATE_DIR"), os.environ.get("CLOUDLAB_ENDPOINT"), backend_module.running_server_url()


def test_module_fixtures_never_attach_to_a_served_emulator(seen_by_a_module_fixture, tmp_path_factory):
    state_dir, endpoint, served = seen_by_a_module_fixture
    # make test serves the notebooks' emulator in the CLOUDLAB_STATE_DIR pytest starts with
    assert state_dir is not None and state_dir != STARTED_WITH
    assert Path(state_dir).is_relative_to(tmp_path_factory.getbasetemp())
    assert endpoint is None and served is None
