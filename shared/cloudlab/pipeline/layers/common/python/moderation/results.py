"""The analyzers' result maps, built in one place (notebook 06; pipeline contract).

``moderation_result(response)`` turns Rekognition's ``DetectModerationLabels`` answer into the
map the job stores; ``custom_result(...)`` does the same for the custom model. Both analyzer
functions and ``cloudlab.pipeline.evaluate`` use them, so stored and offline results agree.
Standard library only (part of the Lambda layer).
"""

from __future__ import annotations


def moderation_result(response: dict) -> dict:
    """``{"labels", "model_version", "max_confidence", "top_category"}`` from a DetectModerationLabels answer.

    ``top_category`` is the top-level label (``ParentName`` empty) with the highest confidence,
    ``None`` when there is none; ``max_confidence`` is the highest confidence of any label (0.0 if none).
    """
    labels = [{"Name": label["Name"], "ParentName": label.get("ParentName", ""),
               "Confidence": float(label["Confidence"]), "TaxonomyLevel": int(label.get("TaxonomyLevel", 0))}
              for label in response.get("ModerationLabels", [])]
    top = [label for label in labels if not label["ParentName"]]
    return {"labels": labels, "model_version": response.get("ModerationModelVersion", ""),
            "max_confidence": max((label["Confidence"] for label in labels), default=0.0),
            "top_category": max(top, key=lambda label: label["Confidence"])["Name"] if top else None}


def custom_result(unsafe_probability: float, model: str, load_ms: float, cold: bool) -> dict:
    """``{"unsafe_probability", "model", "load_ms", "cold"}`` for the custom analyzer."""
    probability = float(unsafe_probability)
    if not 0.0 <= probability <= 1.0:
        raise ValueError(f"unsafe_probability must be within 0-1, got {probability}")
    return {"unsafe_probability": probability, "model": str(model), "load_ms": float(load_ms), "cold": bool(cold)}
