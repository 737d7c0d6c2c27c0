"""Write the capstone's moderation image set and its ground truth (notebook 06; deterministic).

    python data/moderation/make_images.py                 # -> data/moderation/*.png|*.jpg + labels.csv
    python data/moderation/make_images.py --out /tmp/set  # anywhere else

Every image is drawn from numbers alone (numpy's seeded generator + Pillow's drawing), so the
same Pillow writes the same bytes on every run (``tests/test_moderation_data.py`` checks it).
No real photographs: a toy world where "unsafe" means what the generator drew:

- ``safe``: meadows, seas, cities, documents, fruit bowls; and the hard ones: red barns
  (big red areas), sunsets (fire colours), deserts (skin-like sand), night scenes;
- ``suggestive`` (the course expects ``warn``): beaches and pools with skin-toned figures;
- ``unsafe`` (expects ``reject``): blood splatter, explosions, large skin areas; and the hard
  ones: dim or small splatter that a colour rule can miss.

A few files carry names that lie about their content (``MISLEADING``): the pipeline must
decide from pixels. ``labels.csv`` columns: ``filename, truth, scene, split, seed, width,
height, format, misleading_name``. ``split`` (train/test, stratified by truth, seeded) is
what ``cloudlab.pipeline.model.train`` uses to report held-out accuracy honestly.
"""

from __future__ import annotations

import argparse
import csv
import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

SEED = 2026
HERE = Path(__file__).resolve().parent
TEST_SHARE = 0.3

# scene -> (truth, how many, format). Formats alternate by scene so both occur in every class.
SCENES: dict[str, tuple[str, int, str]] = {
    "meadow": ("safe", 7, "jpg"),
    "sea": ("safe", 5, "png"),
    "city": ("safe", 5, "png"),
    "document": ("safe", 4, "png"),
    "fruit": ("safe", 5, "jpg"),
    "red_barn": ("safe", 5, "jpg"),
    "sunset": ("safe", 5, "png"),
    "desert": ("safe", 5, "jpg"),
    "night": ("safe", 3, "png"),
    "beach": ("suggestive", 7, "jpg"),
    "pool": ("suggestive", 5, "png"),
    "splatter": ("unsafe", 6, "png"),
    "explosion": ("unsafe", 6, "jpg"),
    "skin": ("unsafe", 6, "png"),
    "dim_splatter": ("unsafe", 4, "jpg"),
    "small_splatter": ("unsafe", 4, "png"),
}
# (scene, index) -> the lying filename it is written under instead of "<scene>_<index>".
MISLEADING = {
    ("splatter", 5): "holiday_snap",
    ("meadow", 6): "graphic_violence_explosion",
    ("document", 3): "nsfw_explicit_do_not_open",
    ("skin", 5): "kittens_playing",
    ("explosion", 5): "birthday_cake",
}
SIZES = [(128, 128), (160, 120), (120, 160), (144, 112)]


def _rng(scene: str, index: int) -> tuple[np.random.Generator, int]:
    seed = SEED * 1000 + sorted(SCENES).index(scene) * 50 + index
    return np.random.default_rng(seed), seed


def _gradient(height: int, width: int, top, bottom) -> np.ndarray:
    t = np.linspace(0.0, 1.0, height)[:, None, None]
    return (np.array(top, float) * (1 - t) + np.array(bottom, float) * t).repeat(width, axis=1)


def _texture(rng, height: int, width: int, amplitude: float) -> np.ndarray:
    """Smooth noise (coarse random grid, upsampled), so PNGs stay small."""
    coarse = rng.normal(0, amplitude, (height // 8 + 2, width // 8 + 2))
    big = np.kron(coarse, np.ones((8, 8)))[:height, :width]
    return big[:, :, None]


def _jitter(rng, colour, amount: int = 18) -> tuple[int, int, int]:
    return tuple(int(np.clip(c + rng.integers(-amount, amount + 1), 0, 255)) for c in colour)


def _skin(rng) -> tuple[int, int, int]:
    base = [(224, 172, 140), (198, 134, 96), (236, 190, 160), (168, 112, 80), (210, 160, 120)]
    return _jitter(rng, base[int(rng.integers(len(base)))], 10)


def _splats(draw: ImageDraw.ImageDraw, rng, width: int, height: int, count: int, radius: tuple[int, int],
            colour_base, area=None) -> None:
    x0, y0, x1, y1 = area or (0, 0, width, height)
    for _ in range(count):
        cx, cy = rng.integers(x0, x1), rng.integers(y0, y1)
        r = int(rng.integers(*radius))
        for _ in range(int(rng.integers(3, 7))):  # a blob of overlapping drops
            dx, dy = rng.integers(-r, r + 1, size=2)
            rr = int(rng.integers(max(2, r // 3), r + 1))
            draw.ellipse([cx + dx - rr, cy + dy - rr, cx + dx + rr, cy + dy + rr], fill=_jitter(rng, colour_base, 22))


def _draw(scene: str, rng, width: int, height: int) -> Image.Image:
    h, w = height, width
    if scene in ("meadow", "red_barn"):
        horizon = int(h * rng.uniform(0.35, 0.55))
        sky = _gradient(horizon, w, _jitter(rng, (110, 160, 225)), _jitter(rng, (190, 215, 240)))
        grass = _gradient(h - horizon, w, _jitter(rng, (70, 140, 60)), _jitter(rng, (40, 100, 35)))
        pixels = np.concatenate([sky, grass]) + _texture(rng, h, w, 8)
        image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
        draw = ImageDraw.Draw(image)
        if scene == "red_barn":
            bw, bh = int(w * rng.uniform(0.45, 0.7)), int(h * rng.uniform(0.35, 0.5))
            bx, by = int(rng.integers(0, w - bw)), horizon - bh // 3
            red = _jitter(rng, (rng.integers(120, 200), 25, 25), 12)
            draw.rectangle([bx, by, bx + bw, by + bh], fill=red)
            draw.polygon([(bx - 4, by), (bx + bw // 2, by - bh // 3), (bx + bw + 4, by)], fill=_jitter(rng, (90, 60, 50)))
            draw.rectangle([bx + bw // 3, by + bh // 3, bx + 2 * bw // 3, by + bh], fill=(235, 235, 225))
        else:
            for _ in range(int(rng.integers(4, 10))):  # flowers
                x, y = int(rng.integers(0, w)), int(rng.integers(horizon, h))
                draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=_jitter(rng, [(250, 240, 90), (250, 250, 250), (200, 120, 220)][int(rng.integers(3))]))
        if rng.random() < 0.6:
            sx, sy, r = int(rng.integers(10, w - 10)), int(rng.integers(5, max(6, horizon // 2))), int(rng.integers(5, 10))
            draw.ellipse([sx - r, sy - r, sx + r, sy + r], fill=(255, 236, 120))
        return image
    if scene in ("sea", "pool", "beach"):
        top = _jitter(rng, (120, 170, 230)) if scene != "pool" else _jitter(rng, (90, 200, 220))
        bottom = _jitter(rng, (20, 80, 150)) if scene != "pool" else _jitter(rng, (40, 150, 200))
        pixels = _gradient(h, w, top, bottom) + _texture(rng, h, w, 10)
        image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
        draw = ImageDraw.Draw(image)
        for y in range(int(h * 0.3), h, int(rng.integers(6, 12))):  # waves
            draw.line([(0, y), (w, y + int(rng.integers(-3, 4)))], fill=_jitter(rng, (200, 225, 245), 10), width=1)
        if scene == "beach":
            sand_top = int(h * rng.uniform(0.55, 0.7))
            draw.rectangle([0, sand_top, w, h], fill=_jitter(rng, (225, 205, 160), 10))
        if scene in ("beach", "pool"):
            for _ in range(int(rng.integers(3, 6))):  # figures: skin with a swimsuit band
                cx, cy = int(rng.integers(10, w - 10)), int(rng.integers(h // 3, h - 15))
                bw, bh = int(rng.integers(8, 16)), int(rng.integers(20, 36))
                draw.ellipse([cx - bw, cy - bh, cx + bw, cy + bh], fill=_skin(rng))
                draw.ellipse([cx - bw // 2 - 2, cy - bh - 10, cx + bw // 2 + 2, cy - bh + 4], fill=_skin(rng))
                band = _jitter(rng, [(230, 40, 120), (30, 30, 160), (250, 200, 0), (20, 20, 20)][int(rng.integers(4))], 10)
                draw.rectangle([cx - bw, cy + bh // 4, cx + bw, cy + bh // 2], fill=band)
        return image
    if scene in ("city", "night"):
        dark = scene == "night"
        sky = _gradient(h, w, (10, 12, 35) if dark else _jitter(rng, (150, 180, 210)), (25, 25, 50) if dark else _jitter(rng, (210, 215, 220)))
        image = Image.fromarray(np.clip(sky + _texture(rng, h, w, 4), 0, 255).astype(np.uint8))
        draw = ImageDraw.Draw(image)
        x = 0
        while x < w:
            bw, bh = int(rng.integers(14, 30)), int(rng.integers(h // 3, int(h * 0.9)))
            grey = int(rng.integers(20, 45)) if dark else int(rng.integers(90, 170))
            draw.rectangle([x, h - bh, x + bw, h], fill=_jitter(rng, (grey, grey, grey + 8), 6))
            for wy in range(h - bh + 4, h - 4, 7):
                for wx in range(x + 3, x + bw - 3, 6):
                    if rng.random() < (0.35 if dark else 0.8):
                        draw.rectangle([wx, wy, wx + 2, wy + 3], fill=(250, 220, 120) if dark else _jitter(rng, (60, 80, 110), 10))
            x += bw + int(rng.integers(1, 5))
        return image
    if scene == "document":
        image = Image.new("RGB", (w, h), _jitter(rng, (246, 244, 238), 6))
        draw = ImageDraw.Draw(image)
        for y in range(10, h - 8, int(rng.integers(7, 10))):
            x = 8
            while x < w - 10:
                word = int(rng.integers(4, 18))
                draw.rectangle([x, y, min(x + word, w - 8), y + 2], fill=(30, 30, 40))
                x += word + int(rng.integers(3, 6))
        return image
    if scene == "fruit":
        wood = _gradient(h, w, _jitter(rng, (150, 105, 60)), _jitter(rng, (110, 75, 40)))
        image = Image.fromarray(np.clip(wood + _texture(rng, h, w, 10), 0, 255).astype(np.uint8))
        draw = ImageDraw.Draw(image)
        draw.ellipse([w * 0.15, h * 0.35, w * 0.85, h * 0.9], fill=_jitter(rng, (235, 235, 230), 8))
        for _ in range(int(rng.integers(3, 7))):
            cx, cy, r = int(rng.integers(w * 0.3, w * 0.7)), int(rng.integers(h * 0.45, h * 0.75)), int(rng.integers(6, 11))
            colour = [(200, 30, 35), (240, 200, 40), (90, 170, 50), (245, 140, 30)][int(rng.integers(4))]
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=_jitter(rng, colour, 15))
        return image
    if scene in ("sunset", "explosion"):
        if scene == "sunset":
            horizon = int(h * rng.uniform(0.55, 0.75))
            sky = _gradient(horizon, w, _jitter(rng, (120, 60, 110)), _jitter(rng, (250, 150, 50)))
            ground = _gradient(h - horizon, w, _jitter(rng, (50, 35, 40)), (15, 10, 15))
            image = Image.fromarray(np.clip(np.concatenate([sky, ground]) + _texture(rng, h, w, 5), 0, 255).astype(np.uint8))
            draw = ImageDraw.Draw(image)
            r = int(rng.integers(10, 20))
            cx = int(rng.integers(r, w - r))
            draw.ellipse([cx - r, horizon - r, cx + r, horizon + r], fill=(255, 200, 80))
            return image
        background = _gradient(h, w, _jitter(rng, (70, 70, 75)), _jitter(rng, (30, 28, 28)))
        image = Image.fromarray(np.clip(background + _texture(rng, h, w, 12), 0, 255).astype(np.uint8))
        draw = ImageDraw.Draw(image)
        cx, cy = int(rng.integers(w * 0.3, w * 0.7)), int(rng.integers(h * 0.3, h * 0.7))
        big = int(min(w, h) * rng.uniform(0.3, 0.45))
        for radius, colour in ((big, (200, 60, 20)), (int(big * 0.75), (245, 120, 20)), (int(big * 0.5), (255, 200, 40)), (int(big * 0.25), (255, 250, 200))):
            points = []
            for k in range(24):  # a ragged burst
                angle = 2 * np.pi * k / 24
                rr = radius * rng.uniform(0.7, 1.15)
                points.append((cx + rr * np.cos(angle), cy + rr * np.sin(angle)))
            draw.polygon(points, fill=_jitter(rng, colour, 12))
        return image.filter(ImageFilter.GaussianBlur(1.2))
    if scene == "desert":
        horizon = int(h * rng.uniform(0.3, 0.45))
        sky = _gradient(horizon, w, _jitter(rng, (120, 170, 230)), _jitter(rng, (200, 220, 240)))
        sand = _gradient(h - horizon, w, _jitter(rng, (228, 190, 140), 12), _jitter(rng, (200, 150, 100), 12))
        image = Image.fromarray(np.clip(np.concatenate([sky, sand]) + _texture(rng, h, w, 9), 0, 255).astype(np.uint8))
        draw = ImageDraw.Draw(image)
        for _ in range(int(rng.integers(2, 4))):  # dunes
            y = int(rng.integers(horizon + 5, h))
            draw.arc([int(rng.integers(-w // 2, w // 2)), y - 20, int(rng.integers(w // 2, int(w * 1.5))), y + 20], 180, 360, fill=_jitter(rng, (170, 120, 80)), width=2)
        return image
    if scene == "skin":
        background = _gradient(h, w, _jitter(rng, (80, 70, 90), 30), _jitter(rng, (40, 35, 45), 20))
        image = Image.fromarray(np.clip(background + _texture(rng, h, w, 6), 0, 255).astype(np.uint8))
        draw = ImageDraw.Draw(image)
        tone = _skin(rng)
        draw.ellipse([w * rng.uniform(0.0, 0.15), h * rng.uniform(0.05, 0.2), w * rng.uniform(0.85, 1.0), h * rng.uniform(0.85, 1.05)], fill=tone)
        draw.ellipse([w * 0.3, -h * 0.1, w * 0.7, h * 0.25], fill=_jitter(rng, tone, 6))
        pixels = np.asarray(image).astype(float) + _texture(rng, h, w, 5)
        return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(1.0))
    if scene in ("splatter", "dim_splatter", "small_splatter"):
        base = [(200, 200, 195), (150, 160, 170), (120, 110, 100), (90, 100, 90)][int(rng.integers(4))]
        background = _gradient(h, w, _jitter(rng, base, 20), _jitter(rng, base, 20))
        if scene == "dim_splatter":
            background = background * 0.35
        image = Image.fromarray(np.clip(background + _texture(rng, h, w, 7), 0, 255).astype(np.uint8))
        draw = ImageDraw.Draw(image)
        if scene == "splatter":
            _splats(draw, rng, w, h, int(rng.integers(5, 9)), (10, 20), (140, 10, 15))
        elif scene == "dim_splatter":
            _splats(draw, rng, w, h, int(rng.integers(5, 9)), (10, 20), (70, 12, 14))
        else:
            corner = (0, 0, w // 3, h // 3) if rng.random() < 0.5 else (2 * w // 3, 2 * h // 3, w, h)
            _splats(draw, rng, w, h, int(rng.integers(2, 4)), (5, 10), (140, 10, 15), area=corner)
        for _ in range(int(rng.integers(3, 8))):  # drips
            x, y = int(rng.integers(0, w)), int(rng.integers(0, h // 2))
            draw.line([(x, y), (x + int(rng.integers(-3, 4)), y + int(rng.integers(10, 35)))], fill=(110, 8, 12) if scene != "dim_splatter" else (55, 10, 12), width=2)
        return image.filter(ImageFilter.GaussianBlur(0.6))
    raise ValueError(f"unknown scene {scene!r}")


def encode(image: Image.Image, fmt: str) -> bytes:
    """PNG or JPEG bytes with no metadata that could vary between runs."""
    buffer = io.BytesIO()
    if fmt == "png":
        image.save(buffer, format="PNG", compress_level=9)
    elif fmt == "jpg":
        image.save(buffer, format="JPEG", quality=88, subsampling=0)
    else:
        raise ValueError(f"unknown format {fmt!r}")
    return buffer.getvalue()


def _splits(rows: list[dict]) -> None:
    """Stratified train/test split: per truth, a seeded shuffle, the first ~30% are test."""
    rng = np.random.default_rng(SEED)
    for truth in sorted({row["truth"] for row in rows}):
        members = [row for row in rows if row["truth"] == truth]
        order = rng.permutation(len(members))
        n_test = round(len(members) * TEST_SHARE)
        for rank, position in enumerate(order):
            members[position]["split"] = "test" if rank < n_test else "train"


def make(out: Path = HERE) -> list[dict]:
    """Write every image and ``labels.csv`` into ``out``; return the label rows."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for scene, (truth, count, fmt) in SCENES.items():
        for index in range(count):
            rng, seed = _rng(scene, index)
            width, height = SIZES[(index + len(scene)) % len(SIZES)]
            image = _draw(scene, rng, width, height).convert("RGB")
            name = MISLEADING.get((scene, index), f"{scene}_{index:02d}")
            filename = f"{name}.{fmt}"
            (out / filename).write_bytes(encode(image, fmt))
            rows.append({"filename": filename, "truth": truth, "scene": scene, "split": "", "seed": seed,
                         "width": width, "height": height, "format": "png" if fmt == "png" else "jpeg",
                         "misleading_name": "yes" if (scene, index) in MISLEADING else "no"})
    _splits(rows)
    with open(out / "labels.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE)
    args = parser.parse_args(argv)
    rows = make(args.out)
    counts = {truth: sum(row["truth"] == truth for row in rows) for truth in ("safe", "suggestive", "unsafe")}
    size = sum((args.out / row["filename"]).stat().st_size for row in rows)
    print(f"{len(rows)} images ({counts}), {size / 1e6:.2f} MB -> {args.out}")


if __name__ == "__main__":
    main()
