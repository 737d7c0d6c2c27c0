"""Custom-model analyzer (invoked asynchronously by the dispatcher).

Notebook 06 (the capstone). A small scikit-learn model, trained by
``cloudlab/pipeline/model/train.py`` on ``data/moderation`` and stored in S3, scores the image's
features (``moderation.features``) with the probability that it is unsafe.

Cold start vs warm: the model is fetched from S3 once per execution environment and cached in
the environment's temporary directory (``/tmp`` on Lambda: 512 MB by default, kept while the
environment lives). The first invocation of an environment pays the download and the load;
later ones reuse the loaded model. Each result records which it was (``cold``) and how long
loading took (``load_ms``), and so does the log line.

Environment: JOBS_TABLE, RESULTS_TOPIC_ARN, UPLOAD_BUCKET, MODEL_BUCKET (default: UPLOAD_BUCKET),
MODEL_KEY (default models/moderation-model.joblib).
"""

from __future__ import annotations

import os
import tempfile
import time

import boto3

from moderation import features, joblog
from moderation.coordination import check_and_finalize, notify_once
from moderation.results import custom_result

table = boto3.resource("dynamodb").Table(os.environ["JOBS_TABLE"])
s3 = boto3.client("s3")
sns = boto3.client("sns")
TOPIC_ARN = os.environ["RESULTS_TOPIC_ARN"]
MODEL_BUCKET = os.environ.get("MODEL_BUCKET") or os.environ["UPLOAD_BUCKET"]
MODEL_KEY = os.environ.get("MODEL_KEY", "models/moderation-model.joblib")
_model: dict = {}  # the loaded model bundle, kept between invocations of this environment


def load_model() -> tuple[dict, dict]:
    """The model bundle and how it was obtained: ``{"cold", "load_ms", "source"}`` ("s3", "tmp" or "memory")."""
    started = time.perf_counter()
    if "bundle" in _model:
        return _model["bundle"], {"cold": False, "load_ms": round((time.perf_counter() - started) * 1000, 3),
                                  "source": "memory"}
    cached = os.path.join(tempfile.gettempdir(), "moderation-model-" + MODEL_KEY.replace("/", "_"))
    source = "tmp"
    if not os.path.exists(cached):
        source = "s3"
        partial = f"{cached}.{os.getpid()}.part"
        s3.download_file(MODEL_BUCKET, MODEL_KEY, partial)
        os.replace(partial, cached)  # atomic: a crash mid-download never leaves half a model
    _model["bundle"] = features.load_model(cached)
    return _model["bundle"], {"cold": True, "load_ms": round((time.perf_counter() - started) * 1000, 3), "source": source}


def handler(event, context):
    joblog.start_invocation("custom_analyzer", context)
    job_id = event["job_id"]
    joblog.log("analysis started", job_id, stage="custom_started")
    bundle, loading = load_model()
    joblog.log("model ready", job_id, cold=loading["cold"], load_ms=loading["load_ms"], source=loading["source"])
    bucket, key = event.get("bucket"), event.get("key")
    if not (bucket and key):
        item = table.get_item(Key={"job_id": job_id}, ConsistentRead=True).get("Item")
        if item is None:
            raise LookupError(f"job {job_id} does not exist")
        bucket, key = item["bucket"], item["key"]
    image = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    started = time.perf_counter()
    name = bundle.get("name", "custom-model")
    try:
        result = custom_result(features.unsafe_probability(bundle, image), name, loading["load_ms"], loading["cold"])
    except features.NotAnImage as error:  # e.g. a GIF or WebP the features cannot decode: a human looks
        result = {"error": str(error), "model": name, "load_ms": loading["load_ms"], "cold": loading["cold"]}
    result["inference_ms"] = round((time.perf_counter() - started) * 1000, 3)
    joblog.log("custom model scored", job_id, stage="custom_done", unsafe_probability=result.get("unsafe_probability"),
               error=result.get("error"), cold=loading["cold"], load_ms=loading["load_ms"])
    decision = check_and_finalize(table, job_id, "custom", result)
    if decision is not None:
        joblog.log("job finalized", job_id, stage="finalized", decision=decision, branch="custom")
        notify_once(table, sns, TOPIC_ARN, job_id)
    return {"job_id": job_id, "branch": "custom", "finalized": decision is not None, "decision": decision}
