"""Offline evaluation: decisions against ground truth, confusion tables, threshold sweeps."""

from __future__ import annotations

import pytest

from cloudlab.pipeline import evaluate
from cloudlab.pipeline.layer import layer_module


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    return evaluate.offline_results(model_path=tmp_path_factory.mktemp("model") / "m.joblib")


def test_every_decision_occurs_and_some_disagree_with_truth(rows):
    table = evaluate.confusion(rows)
    assert list(table.columns) == ["approve", "warn", "reject", "manual_review"]
    assert list(table.index) == ["safe", "suggestive", "unsafe"]
    assert int(table.values.sum()) == len(rows)
    assert (table.sum(axis=0) > 0).all(), table  # every decision occurs
    outcomes = evaluate.outcome_counts(rows)
    assert sum(outcomes.values()) == len(rows)
    assert outcomes["right"] > len(rows) / 2
    assert outcomes["false_rejects"] > 0 and outcomes["manual_reviews"] > 0 and outcomes["missed_unsafe"] > 0


def test_decisions_use_the_layers_decide(rows):
    decide = layer_module("decisions").decide
    assert evaluate.decide_all(rows) == [decide(r["moderation_result"], r["custom_result"],
                                                layer_module("decisions").Thresholds()) for r in rows]


def test_sweep_trades_false_rejects_for_manual_reviews(rows):
    table = evaluate.sweep(rows, "moderation_certain", [85, 90, 95, 99, 100])
    assert list(table.index) == [85, 90, 95, 99, 100]
    assert (table[["approve", "warn", "reject", "manual_review"]].sum(axis=1) == len(rows)).all()
    # Trusting the managed service less (a higher "certain" bar) can only move rejects to reviews.
    assert table["reject"].is_monotonic_decreasing and table["manual_review"].is_monotonic_increasing
    assert table["false_rejects"].iloc[0] > table["false_rejects"].iloc[-1]
    assert table["manual_reviews"].iloc[-1] > table["manual_reviews"].iloc[0]
    with pytest.raises(ValueError, match="moderation_reject <= moderation_certain"):
        evaluate.sweep(rows, "moderation_certain", [70])


def test_rows_from_jobs_joins_pipeline_documents_with_truth(rows):
    by_name = {row["filename"]: row for row in rows}
    jobs = [
        {"job_id": "j1", "filename": "holiday_snap.png", "decision": "reject",
         "results": {"moderation": by_name["holiday_snap.png"]["moderation_result"],
                     "custom": by_name["holiday_snap.png"]["custom_result"]}},
        {"job_id": "j2", "filename": "sea_00.png", "moderation_result": by_name["sea_00.png"]["moderation_result"],
         "custom_result": None},
        {"job_id": "j3", "filename": "someone-elses.png", "results": {}},
    ]
    joined = evaluate.rows_from_jobs(jobs)
    assert [row["job_id"] for row in joined] == ["j1", "j2"]
    assert joined[0]["truth"] == "unsafe" and joined[0]["pipeline_decision"] == "reject"
    assert evaluate.decide_all(joined) == ["reject", "manual_review"]  # j2: custom result missing (rule 1)
    table = evaluate.pipeline_confusion(joined)
    assert list(table.columns) == ["approve", "warn", "reject", "manual_review", "none"]
    assert table.loc["unsafe", "reject"] == 1 and table.loc["safe", "none"] == 1  # j2 has no decision yet


def test_offline_results_have_the_contracts_result_maps(rows):
    row = rows[0]
    assert set(row["moderation_result"]) == {"labels", "model_version", "max_confidence", "top_category"}
    assert row["moderation_result"]["model_version"] == "7.0"
    assert set(row["custom_result"]) == {"unsafe_probability", "model", "load_ms", "cold"}
    splatter = next(r for r in rows if r["filename"] == "splatter_00.png")["moderation_result"]
    assert splatter["top_category"] == "Violence" and splatter["max_confidence"] >= 95


def test_result_maps_from_an_empty_answer_and_bad_probabilities():
    results = layer_module("results")
    empty = results.moderation_result({"ModerationLabels": [], "ModerationModelVersion": "7.0", "ContentTypes": []})
    assert empty == {"labels": [], "model_version": "7.0", "max_confidence": 0.0, "top_category": None}
    nested = results.moderation_result({"ModerationLabels": [
        {"Name": "Graphic Violence", "ParentName": "Violence", "Confidence": 97.0, "TaxonomyLevel": 2},
        {"Name": "Swimwear or Underwear", "ParentName": "", "Confidence": 60.0, "TaxonomyLevel": 1}]})
    assert nested["top_category"] == "Swimwear or Underwear" and nested["max_confidence"] == 97.0
    with pytest.raises(ValueError, match="within 0-1"):
        results.custom_result(1.2, "m", 1.0, True)
