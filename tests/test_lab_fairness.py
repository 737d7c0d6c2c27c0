"""Labs 01 and 02 are fair: an answer that misses a question's core requirement fails a PUBLIC test,
and answers the question allows (any case, either defensible storage choice) earn every point.

The master's test cases run in-process here, in a namespace holding the answer under test, as
``check()`` runs them in a student's notebook.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import cloudlab
from cloudlab.grading.markers import parse_master
from lab_cases import failures

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def lab01():
    cloudlab.use_backend()  # per test: the autouse fixture in conftest.py resets the environment after each
    return parse_master(REPO / "solutions" / "01_storage_models_lab.ipynb")


def read_first_page(s3, bucket, prefix):
    """Misses the core requirement: no pagination."""
    page = s3.list_objects_v2(Bucket=bucket, Prefix=prefix)
    return {item["Key"]: s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read() for item in page.get("Contents", [])}


def test_q3_without_pagination_fails_a_public_test(lab01):
    assert failures(lab01, "q3_read_many", {"read_prefix": read_first_page}) == \
        ["1,005 objects (more than one LIST page): none missed"]


class VolumeInUse(Exception):
    pass


def attach_always_refusing_others(ec2, volume_id, instance_id, device="/dev/sdf"):
    """Misses Multi-Attach and re-attaches to its own holder."""
    volume = ec2.describe_volumes(VolumeIds=[volume_id])["Volumes"][0]
    if any(a["InstanceId"] != instance_id for a in volume.get("Attachments", [])):
        raise VolumeInUse(volume_id)
    ec2.attach_volume(VolumeId=volume_id, InstanceId=instance_id, Device=device)


def test_q4_edge_cases_fail_public_tests(lab01):
    failed = failures(lab01, "q4_attach", {"attach_exclusive": attach_always_refusing_others, "VolumeInUse": VolumeInUse})
    assert failed == ["attaching again to the instance that already holds it does nothing",
                      "a Multi-Attach io2 volume may be attached to a second instance"]


def test_q5_any_case_and_efs_for_model_artifacts_earn_every_point(lab01):
    choices = {"scratch_cache": "Instance Store", "database_volume": "ebs", "shared_cms_files": "efs ", "user_uploads": "s3",
               "model_artifacts": "EFS", "home_directories": "Efs", "clustered_db": "EBS multi-attach", "backup_archive": "S3"}
    assert failures(lab01, "q5_choose", {"choices": choices}, hidden=True) == []
    wrong_home = {**choices, "home_directories": "S3"}
    assert failures(lab01, "q5_choose", {"choices": wrong_home}, hidden=True) == ["home_directories"]
