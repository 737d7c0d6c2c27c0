"""Decisions against ground truth, offline: confusion tables and threshold sweeps (notebook 06).

The pipeline stores both analyzers' results on each job, so changing a threshold needs no
re-run: apply ``moderation.decisions.decide`` (the same function check-and-finalize calls) to
the stored results with other :class:`Thresholds` and count again::

    rows = evaluate.rows_from_jobs(jobs)             # job documents from the pipeline (GET /jobs/{id} or the table)
    rows = evaluate.offline_results()                # or: both analyzers run here, no pipeline at all
    evaluate.confusion(rows)                         # truth x decision counts, default thresholds
    evaluate.pipeline_confusion(rows)                # the decisions the pipeline actually made
    evaluate.sweep(rows, "moderation_certain", [85, 90, 95, 99])

A *row* is a dict with ``filename``, ``truth`` (``safe`` | ``suggestive`` | ``unsafe``, from
``data/moderation/labels.csv``), ``moderation_result`` and ``custom_result`` (the contract's
result maps), plus whatever else came along (``split``, ``scene``...).

What counts as right: ``safe`` -> approve, ``suggestive`` -> warn, ``unsafe`` -> reject
(:data:`EXPECTED`). ``manual_review`` is never right, but it is not a silent mistake either:
a person looks. The costly mistakes are a *false reject* (a decision of reject for an image
that is not unsafe) and a *missed unsafe* image (approve or warn for an unsafe one).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Iterable, Mapping

from .layer import layer_module
from .model import train as model_train

TRUTHS = ("safe", "suggestive", "unsafe")
EXPECTED = {"safe": "approve", "suggestive": "warn", "unsafe": "reject"}


def _decisions():
    return layer_module("decisions")


def thresholds(**changes):
    """``Thresholds()`` with some values changed, e.g. ``thresholds(custom_reject=0.7)``."""
    return _decisions().Thresholds().replace(**changes)


def labels_by_filename(data_dir: Path = model_train.DATA_DIR) -> dict[str, dict]:
    return {row["filename"]: row for row in model_train.load_labels(data_dir)}


def offline_results(data_dir: Path = model_train.DATA_DIR, model_path: Path | None = None,
                    min_confidence: float = 50.0) -> list[dict]:
    """Both analyzers on every image of the data set, in this process, as the pipeline would store them.

    The managed branch is the Rekognition stand-in's ``analyze`` (what the emulator answers to
    ``DetectModerationLabels``); the custom branch is the trained model (``ensure_model``). Each
    row also carries ``moderation_ms`` and ``custom_ms``, the time of each call here.
    """
    from ..backend import moderation_standin

    features, results = layer_module("features"), layer_module("results")
    bundle = features.load_model(model_train.ensure_model(model_path, data_dir))
    rows = []
    for row in model_train.load_labels(data_dir):
        image = (Path(data_dir) / row["filename"]).read_bytes()
        started = time.perf_counter()
        response = moderation_standin.analyze(image, min_confidence)
        middle = time.perf_counter()
        probability = features.unsafe_probability(bundle, image)
        ended = time.perf_counter()
        rows.append({**row, "moderation_result": results.moderation_result(response),
                     "custom_result": results.custom_result(probability, bundle["name"], 0.0, False),
                     "moderation_ms": (middle - started) * 1000, "custom_ms": (ended - middle) * 1000})
    return rows


def rows_from_jobs(jobs: Iterable[Mapping], data_dir: Path = model_train.DATA_DIR) -> list[dict]:
    """Pipeline job documents joined with ground truth by ``filename`` (jobs of unknown files are left out).

    Works on ``GET /jobs/{id}`` documents (results under ``results``) and on raw table items
    (``moderation_result`` / ``custom_result``); a missing result stays ``None`` (rule 1: manual review).
    """
    truth = labels_by_filename(data_dir)
    rows = []
    for job in jobs:
        label = truth.get(job.get("filename"))
        if label is None:
            continue
        results = job.get("results") or {}
        rows.append({**label, "job_id": job.get("job_id"), "pipeline_decision": job.get("decision"),
                     "moderation_result": job.get("moderation_result", results.get("moderation")),
                     "custom_result": job.get("custom_result", results.get("custom"))})
    return rows


def decide_all(rows: Iterable[Mapping], thresholds=None) -> list[str]:
    """The decision for each row under ``thresholds`` (default: ``Thresholds()``, not the environment)."""
    decisions = _decisions()
    thresholds = thresholds or decisions.Thresholds()
    return [decisions.decide(row["moderation_result"], row["custom_result"], thresholds) for row in rows]


def _table(truths: list[str], decisions: list[str], extra_columns: tuple[str, ...] = ()):
    import pandas as pd

    frame = pd.DataFrame({"truth": truths, "decision": decisions})
    table = pd.crosstab(frame["truth"], frame["decision"])
    return table.reindex(index=[t for t in TRUTHS if t in set(truths)],
                         columns=list(_decisions().DECISIONS) + list(extra_columns), fill_value=0)


def confusion(rows: Iterable[Mapping], thresholds=None):
    """A pandas table: one row per truth, one column per decision, counts (all four columns always).

    The decisions are recomputed from the stored results with ``thresholds``.
    """
    rows = list(rows)
    return _table([row["truth"] for row in rows], decide_all(rows, thresholds))


def pipeline_confusion(rows: Iterable[Mapping]):
    """The same table from the decisions the pipeline made (``rows_from_jobs``' ``pipeline_decision``);
    jobs without one (failed, or still running) are counted in a fifth column, ``none``."""
    rows = list(rows)
    decisions = [row.get("pipeline_decision") or "none" for row in rows]
    return _table([row["truth"] for row in rows], decisions, ("none",))


def outcome_counts(rows: Iterable[Mapping], thresholds=None) -> dict[str, int]:
    """``right``, ``false_rejects``, ``missed_unsafe``, ``manual_reviews`` and ``other_wrong`` (warn/approve mix-ups)."""
    rows = list(rows)
    counts = {"right": 0, "false_rejects": 0, "missed_unsafe": 0, "manual_reviews": 0, "other_wrong": 0}
    for row, decision in zip(rows, decide_all(rows, thresholds)):
        truth = row["truth"]
        if decision == EXPECTED[truth]:
            counts["right"] += 1
        elif decision == "manual_review":
            counts["manual_reviews"] += 1
        elif decision == "reject":
            counts["false_rejects"] += 1
        elif truth == "unsafe":
            counts["missed_unsafe"] += 1
        else:
            counts["other_wrong"] += 1
    return counts


def sweep(rows: Iterable[Mapping], name: str, values: Iterable[float], base=None):
    """One line per value of threshold ``name`` (others from ``base``): decisions and outcome counts.

    Values that would break the thresholds' order (e.g. ``moderation_reject`` above
    ``moderation_certain``) raise ``ValueError``; move the neighbouring threshold in ``base``.
    """
    import pandas as pd

    rows = list(rows)
    base = base or _decisions().Thresholds()
    lines = []
    for value in values:
        current = base.replace(**{name: value})
        decided = decide_all(rows, current)
        line = {name: value, **{d: decided.count(d) for d in _decisions().DECISIONS}}
        line.update(outcome_counts(rows, current))
        lines.append(line)
    return pd.DataFrame(lines).set_index(name)


__all__ = ["TRUTHS", "EXPECTED", "thresholds", "offline_results", "rows_from_jobs", "decide_all", "confusion",
           "pipeline_confusion",
           "outcome_counts", "sweep", "labels_by_filename"]
