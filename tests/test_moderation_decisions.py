"""The decision rules (moderation.decisions): the specification's tables, row by row."""

from __future__ import annotations

from decimal import Decimal

import pytest

from cloudlab.pipeline.layer import layer_module

decisions = layer_module("decisions")
Thresholds, decide = decisions.Thresholds, decisions.decide


def label(name, confidence, parent="", level=None):
    return {"Name": name, "ParentName": parent, "Confidence": confidence,
            "TaxonomyLevel": level or (1 if not parent else 2)}


def mod(*labels):
    return {"labels": list(labels), "model_version": "7.0"}


def custom(p):
    return {"unsafe_probability": p, "model": "test"}


DEFAULTS = Thresholds()

# (why, moderation_result, custom_result, expected) — the docstring's rules and edge cases.
CASES = [
    ("both clean", mod(), custom(0.1), "approve"),
    ("reject and reject at exactly the thresholds", mod(label("Violence", 80.0)), custom(0.8), "reject"),
    ("just under moderation_reject is a warn", mod(label("Violence", 79.99)), custom(0.1), "warn"),
    ("moderation rejects, custom approves", mod(label("Violence", 90.0)), custom(0.1), "manual_review"),
    ("moderation certain at exactly 95 overrides custom", mod(label("Violence", 95.0)), custom(0.0), "reject"),
    ("moderation rejects, custom warns", mod(label("Violence", 90.0)), custom(0.6), "reject"),
    ("custom rejects, moderation approves", mod(), custom(0.9), "manual_review"),
    ("custom rejects, moderation warns", mod(label("Alcohol", 70.0)), custom(0.85), "reject"),
    ("warn category never rejects", mod(label("Swimwear or Underwear", 99.0)), custom(0.1), "warn"),
    ("both below warn", mod(label("Alcohol", 59.9)), custom(0.49), "approve"),
    ("moderation warn at exactly 60", mod(label("Alcohol", 60.0)), custom(0.0), "warn"),
    ("custom warn at exactly 0.5", mod(), custom(0.5), "warn"),
    ("level-2 labels are ignored", mod(label("Weapons", 99.0, parent="Violence")), custom(0.1), "approve"),
    ("unknown top-level name is a warn category", mod(label("Spoilers", 70.0)), custom(0.1), "warn"),
    ("moderation failed", {"error": "InvalidImageFormatException"}, custom(0.99), "manual_review"),
    ("custom missing, rule 1 before rule 2", mod(label("Violence", 99.0)), None, "manual_review"),
    ("moderation missing", None, custom(0.0), "manual_review"),
    ("labels key absent = no labels", {"model_version": "7.0"}, custom(0.2), "approve"),
    ("ParentName absent = top level", mod({"Name": "Violence", "Confidence": 85.0}), custom(0.9), "reject"),
    ("DynamoDB Decimals", mod(label("Violence", Decimal("96.5"))), custom(Decimal("0.01")), "reject"),
    ("highest top-level label counts", mod(label("Alcohol", 99.0), label("Violence", 81.0)), custom(0.8), "reject"),
    ("reject category under reject but over warn", mod(label("Hate Symbols", 65.0)), custom(0.9), "reject"),
]


@pytest.mark.parametrize("why, moderation_result, custom_result, expected", CASES, ids=[case[0] for case in CASES])
def test_specification_table(why, moderation_result, custom_result, expected):
    assert decide(moderation_result, custom_result, DEFAULTS) == expected


def test_every_decision_is_reachable_and_in_the_list():
    seen = {decide(m, c, DEFAULTS) for _, m, c, _ in CASES}
    assert seen == set(decisions.DECISIONS)


@pytest.mark.parametrize("moderation_result, custom_result, message", [
    ("not a dict", custom(0.1), "moderation_result must be a dict"),
    ({"labels": "Violence"}, custom(0.1), "must be a list"),
    (mod(label("Violence", 120.0)), custom(0.1), "within 0-100"),
    (mod({"Confidence": 90.0}), custom(0.1), "with a Name"),
    (mod(label("Violence", "ninety")), custom(0.1), "must be a number"),
    (mod(), {"model": "x"}, "no unsafe_probability"),
    (mod(), custom(1.5), "within 0-1"),
    (mod(), custom(float("nan")), "must be a number"),
    (mod(), custom(True), "must be a number"),
])
def test_malformed_input_gets_a_clear_error(moderation_result, custom_result, message):
    with pytest.raises(ValueError, match=message):
        decide(moderation_result, custom_result, DEFAULTS)


def test_thresholds_change_the_outcome():
    violent = mod(label("Violence", 85.0))
    assert decide(violent, custom(0.1), DEFAULTS) == "manual_review"
    assert decide(violent, custom(0.1), DEFAULTS.replace(moderation_certain=85.0)) == "reject"
    assert decide(violent, custom(0.1), DEFAULTS.replace(moderation_reject=90.0, moderation_certain=99.0)) == "warn"
    assert decide(violent, custom(0.1), DEFAULTS.replace(reject_categories=("Explicit",))) == "warn"


@pytest.mark.parametrize("changes, message", [
    ({"moderation_warn": 90.0}, "moderation_warn <= moderation_reject"),
    ({"custom_reject": 1.2}, "custom_warn <= custom_reject <= 1"),
    ({"custom_warn": "high"}, "must be a number"),
    ({"reject_categories": "Violence"}, "not one string"),
    ({"colour": 1}, "unknown threshold"),
])
def test_bad_thresholds_are_refused(changes, message):
    with pytest.raises(ValueError, match=message):
        DEFAULTS.replace(**changes)


def test_thresholds_from_environment_variables():
    thresholds = Thresholds.from_env({"THRESHOLD_MODERATION_REJECT": "70", "THRESHOLD_CUSTOM_WARN": "0.4",
                                      "THRESHOLD_REJECT_CATEGORIES": "Violence, Explicit", "OTHER": "x"})
    assert thresholds.moderation_reject == 70.0 and thresholds.custom_warn == 0.4
    assert thresholds.reject_categories == ("Violence", "Explicit")
    assert thresholds.moderation_warn == DEFAULTS.moderation_warn
    assert Thresholds.from_env({}) == DEFAULTS
    with pytest.raises(ValueError, match="THRESHOLD_CUSTOM_REJECT='lots' is not a number"):
        Thresholds.from_env({"THRESHOLD_CUSTOM_REJECT": "lots"})


def test_decide_without_thresholds_reads_the_environment(monkeypatch):
    violent = mod(label("Violence", 85.0))
    monkeypatch.delenv("THRESHOLD_MODERATION_CERTAIN", raising=False)
    assert decide(violent, custom(0.1)) == "manual_review"
    monkeypatch.setenv("THRESHOLD_MODERATION_CERTAIN", "85")
    assert decide(violent, custom(0.1)) == "reject"


def test_the_layer_module_imports_nothing_but_the_standard_library():
    import ast

    from cloudlab.pipeline.layer import LAYER_PYTHON

    tree = ast.parse((LAYER_PYTHON / "moderation" / "decisions.py").read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert imported <= {"__future__", "math", "os", "dataclasses", "numbers", "typing"}, imported
