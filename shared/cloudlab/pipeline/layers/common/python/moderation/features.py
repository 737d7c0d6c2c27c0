"""Image decoding and the custom model's features: shared by the trainer and the custom analyzer (notebook 06).

Part of the Lambda layer: the custom-analyzer function imports it as ``moderation.features``,
and ``cloudlab.pipeline.model.train`` imports the very same file, so the features a model was
trained on and the features it is asked about cannot drift apart. Needs numpy and Pillow
(and scikit-learn/joblib to load a model), never ``cloudlab``.

Features (:data:`FEATURE_NAMES`, :func:`image_features`): the image is shrunk to
:data:`SIDE` x :data:`SIDE`, then described by colour and texture only:

- a 12-bin hue histogram of the coloured pixels (saturation and value above a floor),
- 4-bin histograms of saturation and of value (brightness),
- a 4-bin histogram of gradient magnitude (flat areas versus edges and noise),
- the mean and standard deviation of each RGB channel.

Every value is a share of pixels or a number scaled to 0-1, so image size does not matter.

The model file (written by the trainer, uploaded to S3 by the deployer) is a joblib bundle:
``{"model": <scikit-learn estimator with predict_proba>, "name", "features_version",
"feature_names", "sklearn_version", "fingerprint", "metrics"}``. Loading it unpickles code:
load models only from your own bucket.
"""

from __future__ import annotations

import io

import numpy as np

FEATURES_VERSION = "colour-texture-1"
SIDE = 64
HUE_BINS, LEVEL_BINS, GRADIENT_BINS = 12, 4, 4
_GRADIENT_EDGES = np.array([0.0, 0.02, 0.06, 0.15, np.inf])

FEATURE_NAMES: tuple[str, ...] = (
    tuple(f"hue_{i * 360 // HUE_BINS:03d}" for i in range(HUE_BINS))
    + tuple(f"saturation_q{i}" for i in range(LEVEL_BINS))
    + tuple(f"value_q{i}" for i in range(LEVEL_BINS))
    + tuple(f"gradient_q{i}" for i in range(GRADIENT_BINS))
    + ("red_mean", "green_mean", "blue_mean", "red_std", "green_std", "blue_std")
)


class NotAnImage(ValueError):
    """The bytes are not a JPEG or PNG image that decodes."""


def decode(image_bytes: bytes):
    """A Pillow RGB image from JPEG or PNG bytes; :class:`NotAnImage` for anything else."""
    from PIL import Image, UnidentifiedImageError

    if not isinstance(image_bytes, (bytes, bytearray)):
        raise NotAnImage(f"expected image bytes, got {type(image_bytes).__name__}")
    if not (image_bytes.startswith(b"\x89PNG\r\n\x1a\n") or image_bytes.startswith(b"\xff\xd8\xff")):
        raise NotAnImage("not a JPEG or PNG image (checked by its first bytes)")
    try:
        image = Image.open(io.BytesIO(image_bytes))
        if image.format == "JPEG":
            image.draft("RGB", (SIDE * 2, SIDE * 2))  # decode big JPEGs at reduced size
        return image.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise NotAnImage(f"the image does not decode: {error}") from None


def image_features(image) -> np.ndarray:
    """The feature vector (float64, ``len(FEATURE_NAMES)``) of a Pillow image or of image bytes."""
    from PIL import Image

    if isinstance(image, (bytes, bytearray)):
        image = decode(image)
    small = image.convert("RGB").resize((SIDE, SIDE), Image.Resampling.BILINEAR)
    rgb = np.asarray(small, dtype=np.float64) / 255.0
    hsv = np.asarray(small.convert("HSV"), dtype=np.float64) / 255.0
    hue, saturation, value = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    pixels = float(hue.size)
    coloured = (saturation > 0.2) & (value > 0.15)
    hue_hist = np.histogram(hue[coloured], bins=HUE_BINS, range=(0.0, 1.0))[0] / pixels
    sat_hist = np.histogram(saturation, bins=LEVEL_BINS, range=(0.0, 1.0))[0] / pixels
    val_hist = np.histogram(value, bins=LEVEL_BINS, range=(0.0, 1.0))[0] / pixels
    grey = rgb.mean(axis=2)
    gradient = np.zeros_like(grey)
    gradient[:, 1:] += np.abs(np.diff(grey, axis=1))
    gradient[1:, :] += np.abs(np.diff(grey, axis=0))
    grad_hist = np.histogram(gradient, bins=_GRADIENT_EDGES)[0] / pixels
    stats = np.concatenate([rgb.mean(axis=(0, 1)), rgb.std(axis=(0, 1))])
    vector = np.concatenate([hue_hist, sat_hist, val_hist, grad_hist, stats])
    assert vector.shape == (len(FEATURE_NAMES),)
    return vector


def load_model(path) -> dict:
    """The model bundle the trainer wrote (joblib), checked against this module's features."""
    import joblib

    bundle = joblib.load(path)
    if not isinstance(bundle, dict) or "model" not in bundle:
        raise ValueError(f"{path} is not a moderation model bundle")
    if bundle.get("features_version") != FEATURES_VERSION:
        raise ValueError(f"{path} was trained on features {bundle.get('features_version')!r}; this layer computes "
                         f"{FEATURES_VERSION!r}: retrain (python -m cloudlab.pipeline.model.train)")
    return bundle


def unsafe_probability(bundle: dict, image_bytes: bytes) -> float:
    """The model's probability (0-1) that the image is unsafe."""
    vector = image_features(image_bytes).reshape(1, -1)
    model = bundle["model"]
    unsafe_column = list(model.classes_).index(1)
    return float(model.predict_proba(vector)[0, unsafe_column])


__all__ = ["FEATURES_VERSION", "FEATURE_NAMES", "NotAnImage", "decode", "image_features", "load_model",
           "unsafe_probability"]
