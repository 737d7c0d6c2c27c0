"""The Rekognition DetectModerationLabels stand-in (cloudlab.backend.moderation_standin), through plain boto3."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import boto3
import pytest
from PIL import Image

import cloudlab
from cloudlab import backend as backend_module
from cloudlab.backend import local_services, moderation_standin

from aws_calls import code

DATA = Path(__file__).resolve().parents[1] / "data" / "moderation"
BUCKET = "standin-tests"


def _data(name: str) -> bytes:
    return (DATA / name).read_bytes()


@pytest.fixture
def aws():
    cloudlab.use_backend("embedded")
    s3, rekognition = boto3.client("s3"), boto3.client("rekognition")
    if BUCKET not in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
        s3.create_bucket(Bucket=BUCKET)
    return s3, rekognition


def _png(width: int, height: int, colour=(200, 200, 200)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def test_response_has_rekognitions_shape_with_every_ancestor(aws):
    s3, rekognition = aws
    s3.put_object(Bucket=BUCKET, Key="u/splatter.png", Body=_data("splatter_00.png"))
    answer = rekognition.detect_moderation_labels(Image={"S3Object": {"Bucket": BUCKET, "Name": "u/splatter.png"}})
    assert set(answer) - {"ResponseMetadata"} == {"ModerationLabels", "ModerationModelVersion", "ContentTypes"}
    assert answer["ModerationModelVersion"] == "7.0"
    labels = answer["ModerationLabels"]
    assert labels, "a blood splatter must be labelled"
    for label in labels:
        assert set(label) == {"Name", "ParentName", "Confidence", "TaxonomyLevel"}
        assert isinstance(label["Confidence"], float) and 50 <= label["Confidence"] <= 100
        assert label["TaxonomyLevel"] in (1, 2, 3)
        assert (label["ParentName"] == "") == (label["TaxonomyLevel"] == 1)
    names = {label["Name"]: label for label in labels}
    for label in labels:  # every parent is in the answer too, one level up
        if label["ParentName"]:
            assert names[label["ParentName"]]["TaxonomyLevel"] == label["TaxonomyLevel"] - 1
    assert names["Violence"]["Confidence"] >= 95
    assert names["Blood & Gore"]["ParentName"] == "Graphic Violence"
    confidences = [label["Confidence"] for label in labels]
    assert confidences == sorted(confidences, reverse=True)
    assert answer["ContentTypes"] == []
    illustrated = rekognition.detect_moderation_labels(Image={"Bytes": _data("document_00.png")})
    assert [item["Name"] for item in illustrated["ContentTypes"]] == ["Illustrated"]
    assert set(illustrated["ContentTypes"][0]) == {"Name", "Confidence"}


def test_answers_are_deterministic_and_the_same_for_bytes_and_s3(aws):
    s3, rekognition = aws
    image = _data("explosion_00.jpg")
    s3.put_object(Bucket=BUCKET, Key="same.jpg", Body=image)
    first = rekognition.detect_moderation_labels(Image={"Bytes": image})
    second = rekognition.detect_moderation_labels(Image={"Bytes": image})
    from_s3 = rekognition.detect_moderation_labels(Image={"S3Object": {"Bucket": BUCKET, "Name": "same.jpg"}})
    for answer in (first, second, from_s3):
        answer.pop("ResponseMetadata")
    assert first == second == from_s3
    assert {label["Name"] for label in first["ModerationLabels"]} >= {"Violence", "Explosions and Blasts"}


def test_min_confidence_filters_labels(aws):
    _, rekognition = aws
    image = _data("sunset_03.png")  # labels between 50 and 70: a false positive of the colour rules

    def names(**kwargs):
        answer = rekognition.detect_moderation_labels(Image={"Bytes": image}, **kwargs)
        return {label["Name"]: label["Confidence"] for label in answer["ModerationLabels"]}

    default, everything, strict = names(), names(MinConfidence=0), names(MinConfidence=65)
    assert default == names(MinConfidence=50)  # 50 is the default
    assert all(confidence >= 50 for confidence in default.values())
    assert set(default) < set(everything) and len(everything) == 7  # all labels the stand-in knows
    assert set(strict) < set(default) and all(confidence >= 65 for confidence in strict.values())
    assert names(MinConfidence=100) == {}
    assert code(lambda: rekognition.detect_moderation_labels(Image={"Bytes": image}, MinConfidence=150)) == "ValidationException"


def test_pixels_decide_never_the_name_or_metadata(aws):
    s3, rekognition = aws
    image = _data("holiday_snap.png")  # named like a holiday, drawn as a blood splatter
    answers = []
    for key, metadata in (("kittens.png", {"caption": "cute kittens"}), ("gore/blood.png", {"caption": "violence"}),
                          ("no-extension", {})):
        s3.put_object(Bucket=BUCKET, Key=key, Body=image, Metadata=metadata)
        answer = rekognition.detect_moderation_labels(Image={"S3Object": {"Bucket": BUCKET, "Name": key}})
        answer.pop("ResponseMetadata")
        answers.append(answer)
    assert answers[0] == answers[1] == answers[2]
    assert any(label["Name"] == "Violence" and label["Confidence"] >= 80 for label in answers[0]["ModerationLabels"])
    # ...and a meadow named "graphic_violence_explosion" is clean.
    clean = rekognition.detect_moderation_labels(Image={"Bytes": _data("graphic_violence_explosion.jpg")})
    assert clean["ModerationLabels"] == []
    # The stand-in's function has no name to look at: analyze() takes bytes only.
    assert moderation_standin.analyze(image) == answers[0]


def test_errors_are_rekognitions(aws):
    s3, rekognition = aws
    detect = rekognition.detect_moderation_labels
    s3.put_object(Bucket=BUCKET, Key="notes.txt", Body=b"not an image at all")
    gif = b"GIF89a" + b"\x00" * 64
    s3.put_object(Bucket=BUCKET, Key="broken.png", Body=b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)
    assert code(lambda: detect(Image={"S3Object": {"Bucket": BUCKET, "Name": "notes.txt"}})) == "InvalidImageFormatException"
    assert code(lambda: detect(Image={"Bytes": gif})) == "InvalidImageFormatException"  # an image, not JPEG/PNG
    assert code(lambda: detect(Image={"S3Object": {"Bucket": BUCKET, "Name": "broken.png"}})) == "InvalidImageFormatException"
    assert code(lambda: detect(Image={"S3Object": {"Bucket": BUCKET, "Name": "missing.png"}})) == "InvalidS3ObjectException"
    assert code(lambda: detect(Image={"S3Object": {"Bucket": "no-such-bucket-xyz", "Name": "a.png"}})) == "InvalidS3ObjectException"
    too_big = b"\x89PNG\r\n\x1a\n" + b"\x00" * (5 * 1024 * 1024)
    assert code(lambda: detect(Image={"Bytes": too_big})) == "ImageTooLargeException"
    s3.put_object(Bucket=BUCKET, Key="huge.png", Body=b"\x89PNG\r\n\x1a\n" + b"\x00" * (15 * 1024 * 1024))
    assert code(lambda: detect(Image={"S3Object": {"Bucket": BUCKET, "Name": "huge.png"}})) == "ImageTooLargeException"
    assert code(lambda: detect(Image={"Bytes": _png(10_001, 1)})) == "ImageTooLargeException"
    assert code(lambda: detect(Image={"Bytes": _png(10_000, 1)})) == "OK"  # at the limit
    assert code(lambda: detect(Image={"Bytes": _data("sea_00.png"), "S3Object": {"Bucket": BUCKET, "Name": "x"}})) \
        == "InvalidParameterException"
    try:
        detect(Image={"S3Object": {"Bucket": BUCKET, "Name": "missing.png"}})
    except rekognition.exceptions.InvalidS3ObjectException as error:  # boto3's modelled exception class
        assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 400
        assert "Unable to get object metadata from S3" in error.response["Error"]["Message"]
    else:
        pytest.fail("a missing object must raise InvalidS3ObjectException")


def test_other_rekognition_operations_are_left_to_moto():
    headers = {"X-Amz-Target": "RekognitionService.DetectLabels"}
    assert moderation_standin.handler("POST", "/", "", headers, b"{}") is None
    status, _, body = moderation_standin.handler(
        "POST", "/", "", {"X-Amz-Target": moderation_standin.TARGET}, b"[1, 2]")
    assert status == 400 and json.loads(body)["__type"] == "SerializationException"


def test_every_data_set_image_gets_an_answer_and_the_labels_vary():
    rows = list(csv.DictReader(open(DATA / "labels.csv")))
    tops: dict[str, set] = {}
    for row in rows:
        answer = moderation_standin.analyze(_data(row["filename"]))
        top = {label["Name"] for label in answer["ModerationLabels"] if not label["ParentName"]}
        tops.setdefault(row["truth"], set()).update(top)
    assert tops["unsafe"] >= {"Violence", "Explicit"}
    assert "Swimwear or Underwear" in tops["suggestive"]
    assert tops["safe"], "the colour rules must make some mistakes on safe images (barns, deserts)"


@pytest.fixture
def fake_localstack(monkeypatch):
    monkeypatch.setenv("LOCALSTACK_HOST", "127.0.0.1:4510")
    monkeypatch.setattr(backend_module, "localstack_health", lambda endpoint: {"services": {"s3": "running"}})
    yield "http://127.0.0.1:4510"
    cloudlab.use_backend("embedded")


def test_under_localstack_rekognition_is_the_stand_in_and_s3_reads_go_to_localstack(fake_localstack):
    backend = cloudlab.use_backend("localstack")
    assert os.environ["AWS_ENDPOINT_URL_REKOGNITION"] == backend.lambda_endpoint != fake_localstack
    answer = boto3.client("rekognition").detect_moderation_labels(Image={"Bytes": _data("splatter_01.png")})
    assert answer["ModerationModelVersion"] == "7.0" and answer["ModerationLabels"]
    assert local_services.data_endpoint() == fake_localstack
    assert moderation_standin._s3_client().meta.endpoint_url == fake_localstack


@pytest.mark.localstack
@pytest.mark.skipif(os.environ.get("CLOUDLAB_BACKEND") != "localstack" or not os.environ.get("LOCALSTACK_HOST"),
                    reason="needs a real LocalStack: make test-localstack")
def test_against_real_localstack_the_stand_in_reads_the_object_from_localstacks_s3():
    backend = cloudlab.use_backend("localstack")
    try:
        s3, rekognition = boto3.client("s3"), boto3.client("rekognition")
        assert s3.meta.endpoint_url == backend.endpoint != rekognition.meta.endpoint_url
        s3.create_bucket(Bucket="ls-standin")
        s3.put_object(Bucket="ls-standin", Key="u/holiday.png", Body=_data("holiday_snap.png"))
        answer = rekognition.detect_moderation_labels(Image={"S3Object": {"Bucket": "ls-standin", "Name": "u/holiday.png"}})
        assert any(label["Name"] == "Violence" for label in answer["ModerationLabels"])
        # The object exists only in LocalStack: the embedded emulator has no such bucket.
        embedded_s3 = boto3.client("s3", endpoint_url=backend.lambda_endpoint)
        assert "ls-standin" not in [bucket["Name"] for bucket in embedded_s3.list_buckets()["Buckets"]]
        assert code(lambda: rekognition.detect_moderation_labels(
            Image={"S3Object": {"Bucket": "ls-standin", "Name": "u/missing.png"}})) == "InvalidS3ObjectException"
        s3.delete_object(Bucket="ls-standin", Key="u/holiday.png")
        s3.delete_bucket(Bucket="ls-standin")
    finally:
        cloudlab.use_backend("embedded")
