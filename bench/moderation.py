"""Timings of the capstone's two analyzers' building blocks (notebook 06).

- the Rekognition stand-in through plain boto3 (``detect_moderation_labels`` on an S3 object,
  which includes the stand-in's own S3 read), and its judgement alone (``analyze``, in process);
- the custom model: training (``cloudlab.pipeline.model.train``) and one prediction.

    .venv/bin/python bench/moderation.py [--rounds 3]

Prints medians and p95 per call over every image of data/moderation. No targets are asserted:
these figures go in the README/closing note next to the pipeline's latency.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import boto3

import cloudlab
from cloudlab.backend import moderation_standin
from cloudlab.pipeline.layer import LAYER_PYTHON, layer_module
from cloudlab.pipeline.model import train


def _summary(name: str, seconds: list[float]) -> None:
    ms = sorted(s * 1000 for s in seconds)
    p95 = ms[min(len(ms) - 1, int(round(0.95 * (len(ms) - 1))))]
    print(f"{name:55s} median {statistics.median(ms):7.2f} ms   p95 {p95:7.2f} ms   ({len(ms)} calls)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    rows = train.load_labels()
    images = {row["filename"]: (train.DATA_DIR / row["filename"]).read_bytes() for row in rows}

    cloudlab.use_backend()
    s3, rekognition = boto3.client("s3"), boto3.client("rekognition")
    bucket = "bench-moderation"
    cloudlab.use_backend().clean(bucket)
    s3.create_bucket(Bucket=bucket)
    for name, data in images.items():
        s3.put_object(Bucket=bucket, Key=name, Body=data)
    over_http, in_process = [], []
    for _ in range(args.rounds):
        for name, data in images.items():
            started = time.perf_counter()
            rekognition.detect_moderation_labels(Image={"S3Object": {"Bucket": bucket, "Name": name}})
            over_http.append(time.perf_counter() - started)
            started = time.perf_counter()
            moderation_standin.analyze(data)
            in_process.append(time.perf_counter() - started)
    _summary("stand-in via boto3, S3Object (HTTP + S3 read + judgement)", over_http)
    _summary("stand-in judgement alone (analyze, in process)", in_process)

    trainings = []
    for _ in range(args.rounds):
        started = time.perf_counter()
        bundle = train.train()
        trainings.append(time.perf_counter() - started)
    _summary("custom model: train (features of 82 images + fit)", trainings)
    m = bundle["metrics"]
    print(f"  held-out accuracy {m['test_accuracy']:.1%} on {m['test_images']} images, ROC AUC {m['test_roc_auc']:.3f}")
    features = layer_module("features")
    with tempfile.TemporaryDirectory() as folder:
        path = train.save(bundle, Path(folder) / "model.joblib")
        started = time.perf_counter()
        loaded = features.load_model(path)
        load_seconds = time.perf_counter() - started
        # What a cold start pays: a fresh interpreter importing numpy/scikit-learn and loading the file.
        probe = ("import sys, time; t = time.perf_counter(); sys.path.insert(0, sys.argv[1]); "
                 "from moderation import features; features.load_model(sys.argv[2]); "
                 "print(time.perf_counter() - t)")
        cold = [float(subprocess.run([sys.executable, "-c", probe, str(LAYER_PYTHON), str(path)], check=True,
                                     capture_output=True, text=True).stdout) for _ in range(args.rounds)]
    _summary("custom model: load the joblib file, warm process", [load_seconds])
    _summary("custom model: import + load in a fresh process (cold start)", cold)
    predictions = []
    for _ in range(args.rounds):
        for data in images.values():
            started = time.perf_counter()
            features.unsafe_probability(loaded, data)
            predictions.append(time.perf_counter() - started)
    _summary("custom model: one prediction (decode + features + predict)", predictions)
    cloudlab.use_backend().clean(bucket)


if __name__ == "__main__":
    main()
