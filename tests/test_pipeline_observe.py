"""Notebook 06's helpers: pipeline.observe (source, logs to timelines, Gantt, failure counts) and
pipeline.extension (the third analyzer branch), and the coordination's configurable branches."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import matplotlib

matplotlib.use("Agg")

import pytest

import cloudlab
from cloudlab.pipeline import deploy, extension, observe, races
from cloudlab.pipeline.layer import LAYER_PYTHON, layer_module

JOB = "job-1"


def test_source_shows_one_function_of_a_real_file_or_the_whole_file():
    text = observe.source("layers/common/python/moderation/coordination.py", "check_and_finalize")
    assert text.startswith("def check_and_finalize(") and "ConditionExpression" in text
    assert "def claim_job(" not in text
    assert observe.source("template.yaml").startswith("AWSTemplateFormatVersion")
    with pytest.raises(LookupError, match="no top-level function or class 'nope'"):
        observe.source("functions/upload/app.py", "nope")
    with pytest.raises(FileNotFoundError):
        observe.source("../pipeline/../../README.md")


def test_template_resources_say_what_connects_to_what():
    table = observe.template_resources(deploy.load_template())
    assert table.loc["JobsQueue", "connects"] == "redrive to JobsDeadLetterQueue after 3 receives"
    assert "POST /uploads" in table.loc["UploadFunction", "connects"]
    assert "async failures -> AnalyzerDeadLetterQueue" in table.loc["CustomAnalyzerFunction", "connects"]
    assert table.loc["NotificationsSubscription", "connects"] == "sqs -> NotificationsQueue"


def test_line_time_reads_stage_times_and_both_timestamp_formats():
    assert observe.line_time({"at": 12.5, "timestamp": "2026-11-30 00:00:00,000+0000"}) == 12.5
    powertools = observe.line_time({"timestamp": "2026-11-30 12:43:35,658+0000"})
    iso = observe.line_time({"timestamp": "2026-11-30T12:43:35.658Z"})
    assert powertools == pytest.approx(iso) and powertools == pytest.approx(1796042615.658)
    assert observe.line_time({"message": "no time"}) is None


def _lines():
    """Log lines as observe.log_lines returns them: one job, upload (one line at its end), dispatcher,
    both analyzers, a status read, a REPORT line per invocation, and a second job's line."""
    def json_line(service, request_id, at, stage=None, job_id=JOB, **fields):
        line = {"service": service, "request_id": request_id, "job_id": job_id, "level": "INFO", "at": at, **fields}
        if stage:
            line["stage"] = stage
        return line

    return [
        json_line("upload", "u1", 100.50, "uploaded"),
        {"text": "REPORT RequestId: u1\tDuration: 400.00 ms\tBilled Duration: 401 ms\tMemory Size: 256 MB", "group": "s-UploadFunction-X"},
        json_line("dispatcher", "d1", 101.0, "dispatched"),
        json_line("status", "s1", 101.1),
        json_line("moderation_analyzer", "m1", 101.2, "moderation_started"),
        json_line("moderation_analyzer", "m1", 101.4, "moderation_done"),
        json_line("custom_analyzer", "c1", 101.3, "custom_started"),
        json_line("custom_analyzer", "c1", 103.0, "custom_done"),
        json_line("custom_analyzer", "c1", 103.1, "finalized"),
        json_line("custom_analyzer", "c1", 103.2, "notified"),
        json_line("custom_analyzer", "c9", 104.0, "custom_started", job_id="another-job"),
    ]


def test_job_invocations_group_lines_by_request_and_use_report_durations():
    invocations = observe.job_invocations(_lines(), JOB)
    assert [entry["service"] for entry in invocations] == ["upload", "dispatcher", "moderation_analyzer", "custom_analyzer"]
    upload = invocations[0]
    assert upload["start"] == pytest.approx(100.10) and upload["end"] == pytest.approx(100.50)  # end minus Duration
    custom = invocations[-1]
    assert (custom["start"], custom["end"]) == (101.3, 103.2)
    assert [stage for stage, _ in custom["stages"]] == ["custom_started", "custom_done", "finalized", "notified"]
    assert observe.job_invocations(_lines(), "another-job")[0]["service"] == "custom_analyzer"
    assert any(entry["service"] == "status" for entry in observe.job_invocations(_lines(), JOB, skip=()))


def test_stage_table_counts_from_the_start_of_the_upload():
    table = observe.stage_table(observe.job_invocations(_lines(), JOB))
    first, last = table.iloc[0], table.iloc[-1]
    assert first["stage"] == "uploaded" and first["seconds after the upload began"] == pytest.approx(0.4)
    assert last["stage"] == "notified" and last["seconds after the upload began"] == pytest.approx(3.1)


def test_gantt_draws_a_lane_per_function_and_the_queue():
    ax = observe.gantt(observe.job_invocations(_lines(), JOB))
    lanes = [label.get_text() for label in ax.get_yticklabels()]
    assert lanes == list(reversed(["upload", "jobs queue (SQS)", "dispatcher", "moderation_analyzer", "custom_analyzer"]))
    assert len(ax.patches) == 5  # four invocations and the queue wait
    with pytest.raises(ValueError, match="no log line names this job"):
        observe.gantt([])


def test_failure_counts_group_warnings_errors_and_unhandled_exceptions():
    lines = [
        {"service": "upload", "level": "WARNING", "message": "upload refused", "error": "TooLarge"},
        {"service": "upload", "level": "WARNING", "message": "upload refused", "error": "TooLarge"},
        {"service": "dispatcher", "level": "ERROR", "message": "message not dispatched",
         "error": "ValueError('message has no job_id')"},
        {"service": "dispatcher", "level": "INFO", "message": "job claimed"},
        {"text": "[ERROR] ClientError: An error occurred (ChaosAnalyzerCrash) when calling the UpdateItem operation",
         "group": "nb06-moderation-CustomAnalyzerFunction-1A2B3C"},
        {"text": "START RequestId: x Version: $LATEST", "group": "nb06-moderation-CustomAnalyzerFunction-1A2B3C"},
    ]
    counts = observe.failure_counts(lines)
    assert counts == {("upload", "upload refused", "TooLarge"): 2,
                      ("dispatcher", "message not dispatched", "ValueError"): 1,
                      ("custom_analyzer", "unhandled exception", "ChaosAnalyzerCrash"): 1}


def test_the_extended_template_adds_one_function_and_changes_nothing_else_in_place():
    original = deploy.load_template()
    before = json.dumps(original, sort_keys=True)
    extended = extension.extended_template(original)
    assert json.dumps(original, sort_keys=True) == before
    added = set(extended["Resources"]) - set(original["Resources"])
    assert added == {"FormatAnalyzerFunction"}
    assert extended["Globals"]["Function"]["Environment"]["Variables"]["ANALYZER_BRANCHES"] == "moderation,custom,format"
    dispatcher = extended["Resources"]["DispatcherFunction"]["Properties"]
    assert dispatcher["Environment"]["Variables"]["FORMAT_FUNCTION"] == {"Ref": "FormatAnalyzerFunction"}
    assert {"LambdaInvokePolicy": {"FunctionName": {"Ref": "FormatAnalyzerFunction"}}} in dispatcher["Policies"]
    diff = extension.template_diff(original, extended)
    assert "+  FormatAnalyzerFunction:" in diff and "+        ANALYZER_BRANCHES: moderation,custom,format" in diff


def test_build_writes_a_deployable_application_that_lints_clean(tmp_path):
    path = extension.build(tmp_path)
    assert (tmp_path / "functions" / "format_analyzer" / "app.py").is_file()
    assert (tmp_path / "layers" / "common" / "python" / "moderation" / "coordination.py").is_file()
    assert deploy.lint(path) == []


def test_the_format_analyzer_reads_sizes_from_pixels(monkeypatch):
    import io
    import runpy

    from PIL import Image

    monkeypatch.syspath_prepend(str(LAYER_PYTHON))
    for name, value in {"JOBS_TABLE": "t", "RESULTS_TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:t",
                        "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    module = runpy.run_path(str(extension.EXAMPLE / "app.py"))  # its module level only makes boto3 clients

    def png(width, height):
        buffer = io.BytesIO()
        Image.new("RGB", (width, height)).save(buffer, format="PNG")
        return buffer.getvalue()

    assert module["image_format"](png(120, 90)) == {"format": "PNG", "width": 120, "height": 90, "rekognition_ok": True}
    assert module["image_format"](png(79, 200))["rekognition_ok"] is False


def test_coordination_reads_its_branches_from_the_environment():
    code = "from moderation import coordination; print(','.join(coordination.BRANCHES))"
    for value, expected in ((None, "moderation,custom"), ("moderation, custom ,format", "moderation,custom,format")):
        env = {k: v for k, v in os.environ.items() if k != "ANALYZER_BRANCHES"}
        if value is not None:
            env["ANALYZER_BRANCHES"] = value
        env["PYTHONPATH"] = str(LAYER_PYTHON)
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
        assert out.strip() == expected


def test_with_three_branches_the_job_finalizes_once_when_the_last_result_arrives(monkeypatch):
    cloudlab.use_backend()
    coordination = layer_module("coordination")
    monkeypatch.setattr(coordination, "BRANCHES", ("moderation", "custom", "format"))
    import boto3

    name = races.create_jobs_table()
    table = boto3.resource("dynamodb").Table(name)
    try:
        job_id = races.new_job(table)
        moderation, custom = races.SAMPLE_RESULTS[0]
        assert coordination.check_and_finalize(table, job_id, "moderation", moderation) is None
        assert coordination.check_and_finalize(table, job_id, "custom", custom) is None
        assert table.get_item(Key={"job_id": job_id}, ConsistentRead=True)["Item"]["status"] == "analyzing"
        decision = coordination.check_and_finalize(table, job_id, "format", {"format": "PNG", "rekognition_ok": True})
        assert decision == "approve"
        item = table.get_item(Key={"job_id": job_id}, ConsistentRead=True)["Item"]
        assert item["status"] == "decided" and sum(e["stage"] == "decided" for e in item["timeline"]) == 1
        assert coordination.check_and_finalize(table, job_id, "format", {"format": "PNG"}) is None  # a late duplicate
    finally:
        boto3.client("dynamodb").delete_table(TableName=name)


def test_the_lectures_finalizer_is_caught_finalizing_twice():
    """The lecture's ``#s <> :done`` claim lets a second branch through (cloudlab.pipeline.lecture)."""
    from cloudlab.pipeline import lecture

    cloudlab.use_backend()
    outcome = races.race_check_and_finalize(lecture.lecture_check_and_finalize, races=30, racers=2)
    assert outcome.more_than_once > 0, outcome.summary()
    assert outcome.undecided == 0 and outcome.error_count == 0
    with pytest.raises(ValueError, match="branch must be one of"):
        lecture.lecture_check_and_finalize(None, "job", "format", {})
