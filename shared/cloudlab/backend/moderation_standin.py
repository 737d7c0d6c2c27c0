"""A STAND-IN for Amazon Rekognition's ``DetectModerationLabels``, served by the embedded backend.

Introduced in notebook 06 (the capstone's managed-moderation branch). Neither moto (it answers
HTTP 500) nor LocalStack (not emulated) serves this API, so cloudlab answers it here, and plain
boto3 works unchanged::

    rekognition = boto3.client("rekognition")
    rekognition.detect_moderation_labels(Image={"S3Object": {"Bucket": bucket, "Name": key}}, MinConfidence=50)
    rekognition.detect_moderation_labels(Image={"Bytes": png_bytes})

What is Rekognition's and what is not (docs/emulators.md, section "Rekognition stand-in"):

- The request, the response shape and the errors are Rekognition's: moderation model 7.0
  labels with ``Name``, ``ParentName`` (``""`` at the top level), ``Confidence`` and
  ``TaxonomyLevel``, each detected label with its ancestors; ``ModerationModelVersion`` "7.0";
  ``ContentTypes``; ``MinConfidence`` (0-100, default 50) filters labels; JPEG and PNG only
  (``InvalidImageFormatException``); an S3 object that cannot be read is
  ``InvalidS3ObjectException``; over 5 MB of ``Bytes``, over 15 MB of S3 object or over 10,000
  pixels a side is ``ImageTooLargeException`` (docs/aws-facts.md).
- The JUDGEMENT is not Amazon's model. It is a few colour rules on the image's pixels, fixed so
  every answer is deterministic and explainable: dark saturated red areas -> ``Violence`` /
  ``Graphic Violence`` / ``Blood & Gore``; a compact fire-coloured burst -> ``Violence`` /
  ``Graphic Violence`` / ``Explosions and Blasts``; skin-coloured areas -> ``Swimwear or
  Underwear`` and, when they dominate, ``Explicit`` / ``Explicit Nudity``; a few flat colours
  -> content type ``Illustrated``. The confidence grows with the share of the image each rule
  matches. It sees only pixels: never the key, the file name or the object's metadata.
  On the course's data set it is wrong in instructive ways (red barns, deserts, sunsets).
- Not served: adapters (``ProjectVersion``), human review (``HumanLoopConfig``), IAM checks on
  the call, the 80-pixel minimum side, throttling. Each answer is logged on the
  ``cloudlab.rekognition`` logger as coming from this stand-in.

Where the S3 object is read: through boto3 at the data endpoint, i.e. the embedded emulator
itself, or LocalStack's S3 when ``CLOUDLAB_BACKEND=localstack`` (Rekognition then still comes
here: ``AWS_ENDPOINT_URL_REKOGNITION`` is among ``EMBEDDED_UNDER_LOCALSTACK``).
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import logging
import math
import threading

from . import local_services

TARGET = "RekognitionService.DetectModerationLabels"
MODEL_VERSION = "7.0"
DEFAULT_MIN_CONFIDENCE = 50.0
MAX_BYTES = 5 * 1024 * 1024          # image passed as Bytes (raw bytes)
MAX_S3_OBJECT = 15 * 1024 * 1024     # image stored as an S3 object
MAX_SIDE = 10_000                    # pixels, width and height, for DetectModerationLabels
ANALYSIS_SIDE = 256                  # the rules look at a copy at most this large (fractions do not change)

_log = logging.getLogger("cloudlab.rekognition")
_JSON = "application/x-amz-json-1.1"


class RekognitionError(Exception):
    """An error in Rekognition's shape: ``code`` is the ``__type`` boto3 raises as ``ClientError``."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


# -- the judgement: colour rules on pixels ----------------------------------------------------------
def _curve(share: float, scale: float) -> float:
    """Confidence 0-99 that grows with the matched share of the image; float32 like AWS's numbers."""
    import numpy as np

    return float(np.float32(99.0 * (1.0 - math.exp(-max(0.0, share) / scale))))


def _measure(image) -> dict[str, float]:
    """Shares of the image each colour rule matches (on a copy at most ANALYSIS_SIDE pixels a side)."""
    import numpy as np

    image = image.convert("RGB")
    image.thumbnail((ANALYSIS_SIDE, ANALYSIS_SIDE))
    hsv = np.asarray(image.convert("HSV")).astype(np.int16)  # Pillow's HSV: each 0-255
    hue, sat, val = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    blood = ((hue <= 8) | (hue >= 245)) & (sat >= 150) & (val >= 80) & (val <= 180)
    fire = (hue >= 10) & (hue <= 45) & (sat >= 150) & (val >= 200)
    skin = (hue >= 8) & (hue <= 24) & (sat >= 60) & (sat <= 150) & (val >= 110)
    # A horizon band of fire colours (a sunset) fills whole rows; a burst does not.
    full_rows = fire.mean(axis=1) > 0.9
    banded = fire[full_rows].sum() / max(1, int(fire.sum()))
    rgb = np.asarray(image) >> 3  # 32 levels a channel
    codes = (rgb[..., 0].astype(np.int32) << 10) | (rgb[..., 1].astype(np.int32) << 5) | rgb[..., 2]
    counts = np.sort(np.bincount(codes.ravel()))[::-1]
    flat = counts[:8].sum() / codes.size
    return {"blood": float(blood.mean()), "burst": float(fire.mean() * (1.0 - banded)),
            "skin": float(skin.mean()), "flat": float(flat)}


def _labels(shares: dict[str, float]) -> tuple[list[dict], list[dict]]:
    blood = _curve(shares["blood"], 0.06)
    burst = _curve(shares["burst"], 0.07)
    swimwear = _curve(shares["skin"], 0.10)
    explicit = _curve(shares["skin"] - 0.30, 0.08)
    violence = max(blood, burst)

    def label(name, parent, confidence, level):
        return {"Confidence": confidence, "Name": name, "ParentName": parent, "TaxonomyLevel": level}

    labels = [label("Violence", "", violence, 1), label("Graphic Violence", "Violence", violence, 2),
              label("Blood & Gore", "Graphic Violence", blood, 3),
              label("Explosions and Blasts", "Graphic Violence", burst, 3),
              label("Explicit", "", explicit, 1), label("Explicit Nudity", "Explicit", explicit, 2),
              label("Swimwear or Underwear", "", swimwear, 1)]
    content_types = []
    if shares["flat"] >= 0.85:
        content_types.append({"Confidence": _curve(shares["flat"] - 0.8, 0.05), "Name": "Illustrated"})
    return labels, content_types


def analyze(image_bytes: bytes, min_confidence: float = DEFAULT_MIN_CONFIDENCE) -> dict:
    """The stand-in's whole answer for these image bytes: ``DetectModerationLabels``' response shape.

    Raises :class:`RekognitionError` (``InvalidImageFormatException``, ``ImageTooLargeException``).
    """
    from PIL import Image, UnidentifiedImageError

    if not (image_bytes.startswith(b"\x89PNG\r\n\x1a\n") or image_bytes.startswith(b"\xff\xd8\xff")):
        raise RekognitionError("InvalidImageFormatException", "Request has invalid image format")
    try:
        image = Image.open(io.BytesIO(image_bytes))
        if image.width > MAX_SIDE or image.height > MAX_SIDE:
            raise RekognitionError("ImageTooLargeException", "Image size is too large.")
        if image.format == "JPEG":
            image.draft("RGB", (ANALYSIS_SIDE, ANALYSIS_SIDE))  # decode at reduced size: fast on big JPEGs
        image.load()
    except RekognitionError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        raise RekognitionError("InvalidImageFormatException", "Request has invalid image format") from None
    labels, content_types = _labels(_measure(image))
    keep = [item for item in labels if item["Confidence"] >= min_confidence]
    keep.sort(key=lambda item: (-item["Confidence"], item["TaxonomyLevel"], item["Name"]))
    return {"ModerationLabels": keep, "ModerationModelVersion": MODEL_VERSION,
            "ContentTypes": [item for item in content_types if item["Confidence"] >= min_confidence]}


# -- the API: request parsing, S3 reads, errors ---------------------------------------------------------
_servers: list[str] = []
_clients: dict[str, object] = {}
_clients_lock = threading.Lock()


def _s3_client():
    endpoint = local_services.data_endpoint() or (_servers[-1] if _servers else None)
    if endpoint is None:
        raise RekognitionError("InternalServerError", "the stand-in has no S3 endpoint to read from", 500)
    client = _clients.get(endpoint)
    if client is None:
        with _clients_lock:
            client = _clients.get(endpoint)
            if client is None:
                import boto3
                from botocore.config import Config

                client = boto3.session.Session().client(
                    "s3", endpoint_url=endpoint, region_name="us-east-1",
                    aws_access_key_id="test", aws_secret_access_key="test",
                    config=Config(s3={"addressing_style": "path"}, retries={"total_max_attempts": 2}))
                _clients[endpoint] = client
    return client


_UNREADABLE = "Unable to get object metadata from S3. Check object key, region and/or access permissions."


def _read_s3_object(location: dict) -> bytes:
    from botocore.exceptions import ClientError

    bucket, key = location.get("Bucket"), location.get("Name")
    if not bucket or not key:
        raise RekognitionError("InvalidParameterException", "Request has invalid parameters")
    extra = {"VersionId": location["Version"]} if location.get("Version") else {}
    s3 = _s3_client()
    try:
        head = s3.head_object(Bucket=bucket, Key=key, **extra)
        if head["ContentLength"] > MAX_S3_OBJECT:
            raise RekognitionError("ImageTooLargeException", "Image size is too large.")
        return s3.get_object(Bucket=bucket, Key=key, **extra)["Body"].read()
    except ClientError:
        raise RekognitionError("InvalidS3ObjectException", _UNREADABLE) from None


def detect_moderation_labels(request: dict) -> dict:
    """Answer one ``DetectModerationLabels`` request document (the JSON boto3 sends)."""
    image = request.get("Image")
    if not isinstance(image, dict) or ("Bytes" in image) == ("S3Object" in image):
        raise RekognitionError("InvalidParameterException", "Request has invalid parameters")
    if request.get("ProjectVersion") or request.get("HumanLoopConfig"):
        raise RekognitionError("InvalidParameterException",
                               "cloudlab's Rekognition stand-in serves neither adapters (ProjectVersion) nor "
                               "human review (HumanLoopConfig); call without them")
    min_confidence = request.get("MinConfidence", DEFAULT_MIN_CONFIDENCE)
    if isinstance(min_confidence, bool) or not isinstance(min_confidence, (int, float)):
        raise RekognitionError("ValidationException", f"Value '{min_confidence}' at 'minConfidence' is not a number")
    if not 0 <= min_confidence <= 100:
        bound = "greater than or equal to 0" if min_confidence < 0 else "less than or equal to 100"
        raise RekognitionError("ValidationException", "1 validation error detected: Value "
                               f"'{float(min_confidence)}' at 'minConfidence' failed to satisfy constraint: "
                               f"Member must have value {bound}")
    if "Bytes" in image:
        try:
            data = base64.b64decode(image["Bytes"], validate=True)
        except (binascii.Error, TypeError, ValueError):
            raise RekognitionError("InvalidParameterException", "Request has invalid parameters") from None
        if not data:
            raise RekognitionError("InvalidParameterException", "Request has invalid parameters")
        if len(data) > MAX_BYTES:
            raise RekognitionError("ImageTooLargeException", "Image size is too large.")
        source = f"{len(data)} bytes"
    else:
        location = image["S3Object"] if isinstance(image["S3Object"], dict) else {}
        data = _read_s3_object(location)
        source = f"s3://{location.get('Bucket')}/{location.get('Name')}"
    answer = analyze(data, float(min_confidence))
    _log.info("DetectModerationLabels on %s answered by cloudlab's stand-in (colour rules, not Amazon's model): %s",
              source, [label["Name"] for label in answer["ModerationLabels"]])
    return answer


def handler(method: str, path: str, query: str, headers, body: bytes):
    """``SERVICE_OVERRIDES["rekognition"]``: DetectModerationLabels here, every other operation to moto."""
    if method != "POST" or headers.get("X-Amz-Target", "") != TARGET:
        return None
    try:
        try:
            request = json.loads(body or b"{}")
        except ValueError:
            raise RekognitionError("SerializationException", "the request body is not valid JSON") from None
        if not isinstance(request, dict):
            raise RekognitionError("SerializationException", "the request body must be a JSON object")
        document = detect_moderation_labels(request)
        return 200, {"Content-Type": _JSON}, json.dumps(document).encode()
    except RekognitionError as error:
        return (error.status, {"Content-Type": _JSON, "x-amzn-ErrorType": error.code},
                json.dumps({"__type": error.code, "Message": error.message}).encode())


def install(url: str) -> None:
    """An embedded server started at ``url``: answer Rekognition's moderation calls there."""
    _servers.append(url)
    local_services.set_override("rekognition", handler)


def uninstall(url: str) -> None:
    if url in _servers:
        _servers.remove(url)
    if not _servers:
        local_services.set_override("rekognition", None)


local_services.add_server_hooks(install, uninstall)
