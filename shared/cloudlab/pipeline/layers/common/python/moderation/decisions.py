"""The moderation pipeline's decision rules: the ONE place they live (notebook 06, lab 06).

Both analyzers' results come in; one of ``approve``, ``warn``, ``reject`` or
``manual_review`` goes out. Function code (check-and-finalize) calls :func:`decide`; the
notebook calls it offline through ``cloudlab.pipeline.evaluate`` with other
:class:`Thresholds` to trade false rejects against manual reviews; lab 06 students write
their own ``decide()`` against the specification below.

This module is part of the Lambda layer (``/opt/python`` on AWS): standard library only.

Inputs (the pipeline contract's result maps; numbers may be ``float``, ``int`` or
``decimal.Decimal``, as they come back from DynamoDB):

- ``moderation_result``: ``{"labels": [{"Name", "ParentName", "Confidence", "TaxonomyLevel"}, ...],
  "model_version": "7.0", "max_confidence": float, "top_category": str | None}``, built from
  Rekognition's ``DetectModerationLabels`` answer. A level-2 or level-3 label comes with its
  ancestors as labels of their own (the course's stand-in always lists them), so the verdict
  is read from the top-level ones.
- ``custom_result``: ``{"unsafe_probability": float in [0, 1], "model": str, ...}``.
- A result that is ``None`` or has an ``"error"`` key means that analyzer FAILED.

SPECIFICATION
=============

Definitions (``t`` is the :class:`Thresholds`; every comparison is ``>=``, so a value exactly
at a threshold counts as reaching it):

- A *top-level label* is a label whose ``ParentName`` is ``""``, ``None`` or absent. Only top-level
  labels are used; level-2 and level-3 labels are detail for the human reviewer.
- A top-level label is a *reject category* if its ``Name`` is in ``t.reject_categories``;
  every other top-level name (including names this module has never heard of) is a
  *warn category*.
- ``c_reject`` = the highest ``Confidence`` of a reject-category top-level label (0 if none);
  ``c_any`` = the highest ``Confidence`` of any top-level label (0 if none, e.g. no labels,
  ``labels`` empty or absent).
- Moderation verdict ``M``:  ``reject`` if ``c_reject >= t.moderation_reject``;
  else ``warn`` if ``c_any >= t.moderation_warn``; else ``approve``.
- Custom verdict ``C`` from ``p = unsafe_probability``: ``reject`` if ``p >= t.custom_reject``;
  else ``warn`` if ``p >= t.custom_warn``; else ``approve``.

Decision: the FIRST rule that matches wins.

====  ==============================================================  ================
rule  condition                                                       decision
====  ==============================================================  ================
1     either result is missing (``None``) or has an ``"error"`` key   manual_review
2     ``c_reject >= t.moderation_certain`` (whatever ``C`` says)      reject
3     ``M == reject`` and ``C == reject``                             reject
4     one of ``M``, ``C`` is reject and the other is approve          manual_review
5     one of ``M``, ``C`` is reject and the other is warn             reject
6     ``M == warn`` or ``C == warn``                                  warn
7     otherwise (both approve)                                        approve
====  ==============================================================  ================

Edge cases, with the defaults (warn 60 / reject 80 / certain 95; custom warn 0.5 / reject 0.8):

=========================================================  ===========================
case                                                       decision
=========================================================  ===========================
no labels, ``p = 0.1``                                     approve
``Violence`` at exactly 80.0, ``p = 0.8`` exactly          reject (rule 3: ``>=``)
``Violence`` at 79.99, ``p = 0.1``                         warn (``M`` = warn, rule 6)
``Violence`` at 90, ``p = 0.1``                            manual_review (rule 4)
``Violence`` at exactly 95.0, ``p = 0.0``                  reject (rule 2)
``Violence`` at 90, ``p = 0.6``                            reject (rule 5)
no labels, ``p = 0.9``                                     manual_review (rule 4)
``Swimwear or Underwear`` at 99, ``p = 0.1``               warn (warn category)
``Alcohol`` at 59.9 only, ``p = 0.49``                     approve (both below warn)
only a level-2 ``Weapons`` label (``ParentName`` set)      ignored: as if no labels
unknown top-level name ``Spoilers`` at 70                  warn (unknown = warn category)
moderation ``{"error": ...}``, custom ``p = 0.99``         manual_review (rule 1)
custom ``None``, ``Violence`` at 99                        manual_review (rule 1 before 2)
=========================================================  ===========================

Malformed input raises ``ValueError`` with a clear message: a result that is not a dict,
``labels`` that is not a list, a ``Confidence`` outside 0-100, a missing or non-numeric
``unsafe_probability`` or one outside 0-1. Thresholds must satisfy
``0 <= moderation_warn <= moderation_reject <= moderation_certain <= 100`` and
``0 <= custom_warn <= custom_reject <= 1``.

Thresholds come from :class:`Thresholds` defaults, overridden by environment variables
``THRESHOLD_MODERATION_WARN``, ``THRESHOLD_MODERATION_REJECT``, ``THRESHOLD_MODERATION_CERTAIN``,
``THRESHOLD_CUSTOM_WARN``, ``THRESHOLD_CUSTOM_REJECT`` and ``THRESHOLD_REJECT_CATEGORIES``
(comma-separated names) when ``decide`` is called without thresholds (the functions' case).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, fields
from numbers import Real
from typing import Mapping

DECISIONS = ("approve", "warn", "reject", "manual_review")
ENV_PREFIX = "THRESHOLD_"

# Rekognition moderation model 7.0 top-level categories that reject on their own (see
# docs/aws-facts.md for the full list); the others (swimwear, alcohol, gambling, ...) warn.
DEFAULT_REJECT_CATEGORIES = ("Explicit", "Violence", "Visually Disturbing", "Hate Symbols")


@dataclass(frozen=True)
class Thresholds:
    """Where the verdicts change; see the module docstring for how each one is used."""

    moderation_warn: float = 60.0      # Rekognition Confidence (0-100) of any top-level label
    moderation_reject: float = 80.0    # ... of a reject-category top-level label
    moderation_certain: float = 95.0   # ... so sure that the custom model is not asked
    custom_warn: float = 0.5           # custom model's unsafe_probability (0-1)
    custom_reject: float = 0.8
    reject_categories: tuple[str, ...] = DEFAULT_REJECT_CATEGORIES

    def __post_init__(self) -> None:
        for name in ("moderation_warn", "moderation_reject", "moderation_certain", "custom_warn", "custom_reject"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, Real) or math.isnan(value):
                raise ValueError(f"threshold {name} must be a number, got {value!r}")
            object.__setattr__(self, name, float(value))
        if isinstance(self.reject_categories, str):
            raise ValueError("reject_categories must be a sequence of names, not one string")
        object.__setattr__(self, "reject_categories", tuple(self.reject_categories))
        if not 0 <= self.moderation_warn <= self.moderation_reject <= self.moderation_certain <= 100:
            raise ValueError("thresholds must satisfy 0 <= moderation_warn <= moderation_reject <= "
                             f"moderation_certain <= 100, got {self.moderation_warn}, "
                             f"{self.moderation_reject}, {self.moderation_certain}")
        if not 0 <= self.custom_warn <= self.custom_reject <= 1:
            raise ValueError("thresholds must satisfy 0 <= custom_warn <= custom_reject <= 1, "
                             f"got {self.custom_warn}, {self.custom_reject}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Thresholds":
        """Defaults overridden by ``THRESHOLD_<FIELD>`` variables (how a function is configured)."""
        environ = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for field in fields(cls):
            raw = environ.get(ENV_PREFIX + field.name.upper())
            if raw is None or raw.strip() == "":
                continue
            if field.name == "reject_categories":
                values[field.name] = tuple(name.strip() for name in raw.split(",") if name.strip())
            else:
                try:
                    values[field.name] = float(raw)
                except ValueError:
                    raise ValueError(f"{ENV_PREFIX}{field.name.upper()}={raw!r} is not a number") from None
        return cls(**values)

    def replace(self, **changes) -> "Thresholds":
        """A copy with some thresholds changed (the notebook's sweeps use it)."""
        unknown = set(changes) - {field.name for field in fields(self)}
        if unknown:
            raise ValueError(f"unknown threshold(s): {', '.join(sorted(unknown))}")
        current = {field.name: getattr(self, field.name) for field in fields(self)}
        return Thresholds(**{**current, **changes})


def _number(value, what: str) -> float:
    if isinstance(value, bool):
        raise ValueError(f"{what} must be a number, got {value!r}")
    try:
        number = float(value)  # float, int, Decimal (DynamoDB), numeric strings are refused below
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a number, got {value!r}") from None
    if isinstance(value, str) or math.isnan(number):
        raise ValueError(f"{what} must be a number, got {value!r}")
    return number


def failed(result) -> bool:
    """True when an analyzer produced no usable result (rule 1)."""
    return result is None or (isinstance(result, Mapping) and "error" in result)


def top_level_confidences(moderation_result: Mapping) -> dict[str, float]:
    """Highest ``Confidence`` per top-level label name (``ParentName`` empty or absent)."""
    if not isinstance(moderation_result, Mapping):
        raise ValueError(f"moderation_result must be a dict, got {type(moderation_result).__name__}")
    labels = moderation_result.get("labels")
    if labels is None:
        return {}
    if not isinstance(labels, (list, tuple)):
        raise ValueError(f"moderation_result['labels'] must be a list, got {type(labels).__name__}")
    best: dict[str, float] = {}
    for label in labels:
        if not isinstance(label, Mapping) or "Name" not in label:
            raise ValueError(f"each moderation label must be a dict with a Name, got {label!r}")
        confidence = _number(label.get("Confidence"), f"Confidence of label {label.get('Name')!r}")
        if not 0 <= confidence <= 100:
            raise ValueError(f"Confidence of label {label['Name']!r} must be within 0-100, got {confidence}")
        if label.get("ParentName"):
            continue  # level 2/3: detail for the reviewer
        name = str(label["Name"])
        best[name] = max(confidence, best.get(name, 0.0))
    return best


def moderation_verdict(moderation_result: Mapping, thresholds: Thresholds) -> tuple[str, float]:
    """``(M, c_reject)``: the managed moderation's verdict and its reject-category confidence."""
    confidences = top_level_confidences(moderation_result)
    c_reject = max((c for name, c in confidences.items() if name in thresholds.reject_categories), default=0.0)
    c_any = max(confidences.values(), default=0.0)
    if c_reject >= thresholds.moderation_reject:
        return "reject", c_reject
    if c_any >= thresholds.moderation_warn:
        return "warn", c_reject
    return "approve", c_reject


def custom_verdict(custom_result: Mapping, thresholds: Thresholds) -> str:
    """``C``: the custom model's verdict from its ``unsafe_probability``."""
    if not isinstance(custom_result, Mapping):
        raise ValueError(f"custom_result must be a dict, got {type(custom_result).__name__}")
    if "unsafe_probability" not in custom_result:
        raise ValueError("custom_result has no unsafe_probability")
    probability = _number(custom_result["unsafe_probability"], "unsafe_probability")
    if not 0 <= probability <= 1:
        raise ValueError(f"unsafe_probability must be within 0-1, got {probability}")
    if probability >= thresholds.custom_reject:
        return "reject"
    if probability >= thresholds.custom_warn:
        return "warn"
    return "approve"


def decide(moderation_result, custom_result, thresholds: Thresholds | None = None) -> str:
    """``approve`` | ``warn`` | ``reject`` | ``manual_review``, by the rules in the module docstring.

    >>> decide({"labels": []}, {"unsafe_probability": 0.1})
    'approve'
    >>> decide({"labels": [{"Name": "Violence", "ParentName": "", "Confidence": 90.0, "TaxonomyLevel": 1}]},
    ...        {"unsafe_probability": 0.1})
    'manual_review'
    """
    if thresholds is None:
        thresholds = Thresholds.from_env()
    if failed(moderation_result) or failed(custom_result):        # rule 1
        return "manual_review"
    m, c_reject = moderation_verdict(moderation_result, thresholds)
    c = custom_verdict(custom_result, thresholds)
    if c_reject >= thresholds.moderation_certain:                    # rule 2
        return "reject"
    if m == "reject" and c == "reject":                              # rule 3
        return "reject"
    if {m, c} == {"reject", "approve"}:                              # rule 4
        return "manual_review"
    if "reject" in (m, c):                                           # rule 5 (the other is warn)
        return "reject"
    if "warn" in (m, c):                                             # rule 6
        return "warn"
    return "approve"                                                 # rule 7


__all__ = ["DECISIONS", "DEFAULT_REJECT_CATEGORIES", "Thresholds", "decide", "failed",
           "moderation_verdict", "custom_verdict", "top_level_confidences"]
