"""The custom model: shared features (layer), training, ensure_model, predictions."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from cloudlab.pipeline.layer import LAYER_PYTHON, layer_module
from cloudlab.pipeline.model import train

features = layer_module("features")
DATA = train.DATA_DIR


def test_trainer_and_analyzer_use_the_one_layer_module():
    assert Path(features.__file__).resolve() == (LAYER_PYTHON / "moderation" / "features.py").resolve()
    assert train._features() is features


def test_features_are_fixed_length_scale_free_and_refuse_non_images():
    vector = features.image_features((DATA / "meadow_00.jpg").read_bytes())
    assert vector.shape == (len(features.FEATURE_NAMES),) and np.isfinite(vector).all()
    from PIL import Image

    image = features.decode((DATA / "sea_00.png").read_bytes())
    doubled = image.resize((image.width * 2, image.height * 2), Image.Resampling.NEAREST)
    assert np.abs(features.image_features(image) - features.image_features(doubled)).max() < 0.05
    for bad in (b"GIF89a....", b"plain text", b"\x89PNG\r\n\x1a\n" + b"broken" * 10, b""):
        with pytest.raises(features.NotAnImage):
            features.image_features(bad)


def test_training_is_deterministic_fast_and_honest_about_held_out_accuracy():
    started = time.perf_counter()
    first = train.train()
    elapsed = time.perf_counter() - started
    second = train.train()
    _, X, _ = train.dataset()
    p1 = first["model"].predict_proba(X)
    assert np.array_equal(p1, second["model"].predict_proba(X))
    assert list(first["model"].classes_) == [0, 1]
    metrics = first["metrics"]
    assert metrics["test_images"] >= 20 and metrics["train_images"] + metrics["test_images"] == len(X)
    assert 0.75 <= metrics["test_accuracy"] <= 1.0  # a real model: better than always saying "not unsafe" (68%)
    assert metrics["test_accuracy"] <= metrics["train_accuracy"]
    assert elapsed < 60, "training should take seconds"  # generous: a busy 2-core machine


def test_ensure_model_trains_once_then_reuses_and_retrains_when_stale(tmp_path):
    path = tmp_path / "model.joblib"
    assert train.ensure_model(path) == path and path.exists()
    stamp = path.stat().st_mtime_ns
    assert train.ensure_model(path) == path and path.stat().st_mtime_ns == stamp  # reused
    path.write_bytes(b"not a model")
    train.ensure_model(path)
    bundle = features.load_model(path)
    assert bundle["fingerprint"] == train.fingerprint() and bundle["name"] == train.MODEL_NAME
    import joblib

    joblib.dump({**bundle, "features_version": "older"}, path)
    with pytest.raises(ValueError, match="retrain"):
        features.load_model(path)
    train.ensure_model(path)
    assert features.load_model(path)["features_version"] == features.FEATURES_VERSION


def test_unsafe_probability_separates_clear_cases(tmp_path):
    bundle = features.load_model(train.ensure_model(tmp_path / "m.joblib"))
    splatter = features.unsafe_probability(bundle, (DATA / "holiday_snap.png").read_bytes())
    meadow = features.unsafe_probability(bundle, (DATA / "graphic_violence_explosion.jpg").read_bytes())
    assert 0.0 <= meadow < 0.5 < splatter <= 1.0


def test_the_trainer_runs_as_a_module(tmp_path):
    import subprocess
    import sys

    out = tmp_path / "cli.joblib"
    done = subprocess.run([sys.executable, "-m", "cloudlab.pipeline.model.train", "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "held-out accuracy" in done.stdout and out.exists()


def test_the_bundle_api_the_custom_analyzer_function_uses(tmp_path):
    """``features.load_model(path)`` -> bundle; ``bundle["name"]``; ``unsafe_probability(bundle, bytes)``."""
    bundle = features.load_model(train.ensure_model(tmp_path / "m.joblib"))
    assert bundle["name"] == train.MODEL_NAME and bundle["features_version"] == features.FEATURES_VERSION
    assert set(bundle["metrics"]) >= {"test_accuracy", "train_accuracy", "test_images"}
    image = (DATA / "holiday_snap.png").read_bytes()
    expected = float(bundle["model"].predict_proba([features.image_features(image)])[0][1])
    assert features.unsafe_probability(bundle, image) == expected
    with pytest.raises(features.NotAnImage):
        features.unsafe_probability(bundle, b"GIF89a not for us")
