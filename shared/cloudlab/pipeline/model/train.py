"""Train the capstone's custom moderation model on data/moderation (notebook 06).

    python -m cloudlab.pipeline.model.train                  # train, print held-out figures
    python -m cloudlab.pipeline.model.train --out model.joblib

The model: scikit-learn logistic regression on standardised colour and texture features
(``moderation.features``, the layer module the custom analyzer uses too), predicting whether
an image is ``unsafe``. It is fitted on the ``train`` rows of ``data/moderation/labels.csv``
only and scored on the ``test`` rows, so the accuracy it reports is held-out accuracy, and the
pipeline's confusion table over the whole set mixes seen and unseen images (``split`` tells
which). Deterministic (lbfgs, fixed data order, no random state involved) and about a second.

:func:`ensure_model` is what the deployer calls: it returns a model file, training one only
when none exists or the existing one was trained on other data, features or scikit-learn.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import os
import time
from pathlib import Path

import numpy as np

from ..layer import LAYER_PYTHON, layer_module

MODEL_NAME = "logreg-colour-texture"
DATA_DIR = Path(__file__).resolve().parents[4] / "data" / "moderation"
MODEL_FILENAME = "moderation-model.joblib"
REGULARISATION = 1.0  # logistic regression's C


def _features():
    return layer_module("features")


def load_labels(data_dir: Path = DATA_DIR) -> list[dict]:
    """The rows of ``labels.csv`` (filename, truth, scene, split, ...)."""
    path = Path(data_dir) / "labels.csv"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run python data/moderation/make_images.py")
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def fingerprint(data_dir: Path = DATA_DIR) -> str:
    """What a trained model depends on: the data, the feature code, scikit-learn, the settings."""
    import sklearn

    digest = hashlib.sha256()
    for row in load_labels(data_dir):
        digest.update(f"{row['filename']},{row['truth']},{row['split']}\n".encode())
        digest.update(hashlib.sha256((Path(data_dir) / row["filename"]).read_bytes()).digest())
    digest.update((LAYER_PYTHON / "moderation" / "features.py").read_bytes())
    digest.update(f"{sklearn.__version__} {REGULARISATION} {MODEL_NAME}".encode())
    return digest.hexdigest()[:16]


def dataset(data_dir: Path = DATA_DIR) -> tuple[list[dict], np.ndarray, np.ndarray]:
    """``(rows, X, y)``: features of every image and ``y = 1`` for truth ``unsafe``."""
    features = _features()
    rows = load_labels(data_dir)
    X = np.stack([features.image_features((Path(data_dir) / row["filename"]).read_bytes()) for row in rows])
    y = np.array([1 if row["truth"] == "unsafe" else 0 for row in rows])
    return rows, X, y


def train(data_dir: Path = DATA_DIR) -> dict:
    """Fit on the train split, score on the test split; returns the model bundle (with ``metrics``)."""
    import sklearn
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, confusion_matrix, roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    started = time.perf_counter()
    rows, X, y = dataset(data_dir)
    is_train = np.array([row["split"] == "train" for row in rows])
    if is_train.all() or not is_train.any():
        raise ValueError("labels.csv needs both train and test rows (column split)")
    model = make_pipeline(StandardScaler(), LogisticRegression(C=REGULARISATION, max_iter=2000))
    model.fit(X[is_train], y[is_train])
    probability = model.predict_proba(X)[:, list(model.classes_).index(1)]
    predicted = (probability >= 0.5).astype(int)
    test = ~is_train
    metrics = {
        "train_images": int(is_train.sum()), "test_images": int(test.sum()),
        "train_accuracy": float(accuracy_score(y[is_train], predicted[is_train])),
        "test_accuracy": float(accuracy_score(y[test], predicted[test])),
        "test_roc_auc": float(roc_auc_score(y[test], probability[test])),
        # rows: truth safe-or-suggestive / unsafe; columns: predicted the same (threshold 0.5)
        "test_confusion": confusion_matrix(y[test], predicted[test], labels=[0, 1]).tolist(),
        "test_mistakes": [row["filename"] for row, p, t in zip(np.array(rows)[test], predicted[test], y[test]) if p != t],
        "train_seconds": round(time.perf_counter() - started, 3),
    }
    features = _features()
    return {"model": model, "name": MODEL_NAME, "features_version": features.FEATURES_VERSION,
            "feature_names": list(features.FEATURE_NAMES), "sklearn_version": sklearn.__version__,
            "fingerprint": fingerprint(data_dir), "metrics": metrics}


def save(bundle: dict, path: Path) -> Path:
    import joblib

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + f".{os.getpid()}.partial")
    joblib.dump(bundle, partial)
    partial.replace(path)  # atomic: a concurrent reader never sees half a file
    return path


def default_model_path() -> Path:
    folder = os.environ.get("CLOUDLAB_STATE_DIR") or Path.home() / ".cache" / "cloudlab"
    return Path(folder) / MODEL_FILENAME


def ensure_model(path: Path | str | None = None, data_dir: Path = DATA_DIR) -> Path:
    """A trained model file at ``path`` (default: the state folder), trained now if missing or stale."""
    path = Path(path) if path else default_model_path()
    if path.exists():
        try:
            bundle = _features().load_model(path)
            if bundle.get("fingerprint") == fingerprint(data_dir):
                return path
        except Exception:  # unreadable or from another version: train a new one
            pass
    return save(train(data_dir), path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help=f"model file (default: {default_model_path()})")
    parser.add_argument("--data", type=Path, default=DATA_DIR)
    args = parser.parse_args(argv)
    bundle = train(args.data)
    path = save(bundle, args.out or default_model_path())
    m = bundle["metrics"]
    (tn, fp), (fn, tp) = m["test_confusion"]
    print(f"{MODEL_NAME}: trained on {m['train_images']} images in {m['train_seconds']:.2f} s -> {path}")
    print(f"held-out accuracy {m['test_accuracy']:.1%} on {m['test_images']} images "
          f"(train {m['train_accuracy']:.1%}), ROC AUC {m['test_roc_auc']:.3f}")
    print(f"held-out confusion (threshold 0.5): unsafe caught {tp}, missed {fn}; not unsafe passed {tn}, flagged {fp}")
    if m["test_mistakes"]:
        print("held-out mistakes:", ", ".join(m["test_mistakes"]))


if __name__ == "__main__":
    main()
