"""data/moderation: the committed image set, its labels, and the generator that makes it."""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import io
from pathlib import Path

import numpy as np
from PIL import Image

DATA = Path(__file__).resolve().parents[1] / "data" / "moderation"


def _generator():
    spec = importlib.util.spec_from_file_location("make_images", DATA / "make_images.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rows(folder: Path = DATA) -> list[dict]:
    with open(folder / "labels.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def _digests(folder: Path) -> dict[str, str]:
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in sorted(folder.iterdir())
            if path.suffix in (".png", ".jpg", ".csv")}


def test_the_generator_writes_identical_bytes_twice(tmp_path):
    make = _generator().make
    make(tmp_path / "one")
    make(tmp_path / "two")
    first, second = _digests(tmp_path / "one"), _digests(tmp_path / "two")
    assert first == second and len(first) == len(_rows()) + 1


def test_the_committed_set_is_what_the_generator_draws(tmp_path):
    """Pixels, not bytes: another Pillow/zlib/libjpeg may encode the same pixels differently."""
    _generator().make(tmp_path)
    assert (tmp_path / "labels.csv").read_text() == (DATA / "labels.csv").read_text()
    for row in _rows():
        committed = np.asarray(Image.open(DATA / row["filename"]).convert("RGB"), dtype=np.int16)
        fresh = np.asarray(Image.open(tmp_path / row["filename"]).convert("RGB"), dtype=np.int16)
        assert committed.shape == fresh.shape, row["filename"]
        if row["format"] == "png":
            assert (committed == fresh).all(), row["filename"]
        else:
            assert np.abs(committed - fresh).mean() < 1.0, row["filename"]


def test_labels_describe_every_file_and_the_set_is_varied_and_small():
    rows = _rows()
    files = {path.name for path in DATA.iterdir() if path.suffix in (".png", ".jpg")}
    assert {row["filename"] for row in rows} == files
    assert {row["truth"] for row in rows} == {"safe", "suggestive", "unsafe"}
    for truth in ("safe", "suggestive", "unsafe"):
        formats = {row["format"] for row in rows if row["truth"] == truth}
        splits = {row["split"] for row in rows if row["truth"] == truth}
        assert formats == {"png", "jpeg"} and splits == {"train", "test"}, truth
    assert sum(row["misleading_name"] == "yes" for row in rows) >= 3
    assert sum((DATA / name).stat().st_size for name in files) < 3_000_000
    for row in rows:
        data = (DATA / row["filename"]).read_bytes()
        magic_png = data.startswith(b"\x89PNG\r\n\x1a\n")
        assert magic_png == (row["format"] == "png") and (magic_png or data.startswith(b"\xff\xd8\xff"))
        with Image.open(io.BytesIO(data)) as image:
            assert image.size == (int(row["width"]), int(row["height"]))
            assert min(image.size) >= 80  # Rekognition's smallest side (docs/aws-facts.md)


def test_misleading_names_point_the_wrong_way():
    words = {"safe": ("holiday", "kittens", "birthday"), "unsafe": ("violence", "explosion", "nsfw", "explicit")}
    for row in _rows():
        if row["misleading_name"] != "yes":
            continue
        truth = "unsafe" if row["truth"] == "unsafe" else "safe"
        other = "safe" if truth == "unsafe" else "unsafe"
        assert any(word in row["filename"] for word in words[other]), row["filename"]
