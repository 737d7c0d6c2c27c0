"""cloudlab.pipeline.lab: what lab 06 takes from a student's notebook into the pipeline.

The module it builds from a student's functions must run as the layer's coordination module
(imports, helpers and constants carried along, the pipeline's own ``decide``), and code that
cannot run in a Lambda function must be refused with a clear message, before any deploy.
"""

from __future__ import annotations

import json
import sys
import threading
import types
from decimal import Decimal

import boto3
import pytest

from cloudlab.pipeline import lab, races
from cloudlab.pipeline.layer import LAYER_PYTHON, layer_module

decisions = layer_module("decisions")
LIMIT = 2
BRANCH_NAMES = ("moderation", "custom")


def decide(moderation_result, custom_result, thresholds=None):
    return "the notebook's own decide"


def stored(result):
    return json.loads(json.dumps(result), parse_float=Decimal)


def check_and_finalize(table, job_id, branch, result):
    if branch not in BRANCH_NAMES:
        raise ValueError(branch)
    return decide(stored(result), {}) if LIMIT else None


def claim_job(table, job_id):
    return boto3 is not None


def as_layer_module(source: str) -> dict:
    """Run ``source`` as ``moderation.coordination`` would run in the layer."""
    if str(LAYER_PYTHON) not in sys.path:
        sys.path.insert(0, str(LAYER_PYTHON))
    namespace = {"__name__": "moderation.coordination", "__package__": "moderation"}
    exec(compile(source, "coordination.py", "exec"), namespace)
    return namespace


def test_student_functions_replace_the_layers_and_carry_what_they_use():
    module = as_layer_module(lab.coordination_source(claim_job, check_and_finalize))
    assert module["check_and_finalize"] is not check_and_finalize
    assert module["check_and_finalize"].__code__.co_filename == "lab06_student.py"
    assert module["claim_job"](None, "job") is True
    # the pipeline's decide replaced the notebook's: it refuses these results with its own message
    with pytest.raises(ValueError, match="unsafe_probability"):
        module["check_and_finalize"](None, "job", "custom", {"unsafe_probability": 0.5})
    with pytest.raises(ValueError):
        module["check_and_finalize"](None, "job", "third", {})
    # the layer's other functions are still there, untouched by the student's helpers
    assert callable(module["notify_once"]) and module["BRANCHES"] == ("moderation", "custom")
    assert "stored" not in module


def uses_cloudlab(table, job_id):
    return races.BRANCHES


LOCK = threading.Lock()


def uses_a_global_object(table, job_id):
    with LOCK:  # a lock in the notebook cannot be shared with a Lambda function
        return job_id


def test_code_that_cannot_run_in_a_lambda_function_is_refused():
    def nested(table, job_id):
        return LIMIT + len(job_id) + len(shared)

    with pytest.raises(ValueError, match="cannot import cloudlab"):
        lab.coordination_source(uses_cloudlab)
    shared = "a variable of the enclosing function"
    with pytest.raises(ValueError, match="at the top level of a cell"):
        lab.coordination_source(nested)
    with pytest.raises(ValueError, match="create it inside the function"):
        lab.coordination_source(uses_a_global_object)
    with pytest.raises(ValueError, match="expected functions defined with def"):
        lab.coordination_source(print)
    with pytest.raises(ValueError, match="cannot read the source"):
        lab.coordination_source(types.FunctionType(compile("def f(): pass", "<cell>", "exec").co_consts[0], {}))


def test_with_pipeline_decide_swaps_decide_only_in_a_copy():
    copy = lab.with_pipeline_decide(check_and_finalize)
    with pytest.raises(ValueError, match="unsafe_probability"):
        copy(None, "job", "moderation", {"unsafe_probability": 0.5})
    assert check_and_finalize(None, "job", "moderation", {}) == "the notebook's own decide"


def test_reference_decisions_blocked_while_active():
    reference = decisions.decide
    with lab.reference_decisions_blocked():
        with pytest.raises(AssertionError, match="Question 1 asks for the rules written by you"):
            decisions.decide({"labels": []}, {"unsafe_probability": 0.1})
        decisions.Thresholds()  # still usable
    assert decisions.decide is reference and reference({"labels": []}, {"unsafe_probability": 0.1}) == "approve"


def test_specification_is_cut_from_the_decisions_docstring():
    text = lab.specification()
    assert text.startswith("SPECIFICATION") and "manual_review" in text and text in decisions.__doc__


def unanswered_claim(table, job_id):
    raise NotImplementedError("write your solution here")


def test_code_that_fails_on_its_own_is_not_deployed():
    import cloudlab

    cloudlab.use_backend()
    report = lab.run_in_pipeline(unanswered_claim, check_and_finalize)
    assert report["ok"] is False and report["deploy_seconds"] == 0.0
    assert report["problem"] == ("before deploying: claim_job on a pending job raised NotImplementedError: "
                                 "write your solution here")
