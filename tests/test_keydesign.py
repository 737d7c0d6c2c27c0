"""cloudlab.keydesign (notebook 02): data set, layouts, paginated LIST, queries; with
the helpers notebook 02 uses beside it (hooks.InFlight, faults.FailOnce, iam.fresh_iam_user)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
from boto3.s3.transfer import TransferConfig

import cloudlab
from cloudlab import keydesign as kd
from cloudlab.faults import FailOnce
from cloudlab.hooks import InFlight
from cloudlab.iam import fresh_iam_user
from cloudlab.ledger import Ledger

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def records():
    return kd.make_uploads(2_000, users=60, seed=7)


@pytest.fixture
def s3():
    cloudlab.use_backend()
    return boto3.client("s3")


def test_make_uploads_is_deterministic_and_skewed():
    first, again = kd.make_uploads(3_000, seed=11), kd.make_uploads(3_000, seed=11)
    assert first.equals(again)
    assert not first.equals(kd.make_uploads(3_000, seed=12))
    assert list(first.columns) == ["upload_id", "user", "uploaded_at", "day", "ext", "size_bytes"]
    assert first["upload_id"].is_unique
    per_user = first["user"].value_counts()
    assert per_user.iloc[:3].sum() > 0.2 * len(first), "a few heavy users"
    per_day = first["day"].value_counts()
    assert per_day.max() > 2 * per_day.median(), "busy days"
    assert first["uploaded_at"].is_monotonic_increasing


def test_make_uploads_script_writes_csv(tmp_path):
    out = tmp_path / "u.csv"
    result = subprocess.run([sys.executable, str(REPO / "data" / "make_uploads.py"), "--records", "500", "--out", str(out)],
                            capture_output=True, text=True, check=True)
    assert "500 records" in result.stdout
    assert out.read_text().count("\n") == 501


def test_key_for_both_layouts():
    record = {"user": "u0042", "day": "2025-03-14", "upload_id": "abc", "ext": "jpg"}
    assert kd.key_for(record, "by_user") == "uploads/u0042/2025-03-14_abc.jpg"
    assert kd.key_for(record, "by_date") == "uploads/2025-03-14/u0042_abc.jpg"
    assert kd.key_for(record, "{ext}/{user}/{upload_id}") == "jpg/u0042/abc"


def test_list_all_follows_pagination(s3):
    bucket = "test-kd-pages"
    cloudlab.use_backend().clean(bucket)
    s3.create_bucket(Bucket=bucket)
    for i in range(25):
        s3.put_object(Bucket=bucket, Key=f"a/{i % 3}/{i:03d}", Body=b"x")
    listing = kd.list_all(s3, bucket, "a/", page_size=10)
    assert (listing.requests, len(listing.keys)) == (3, 25)
    assert listing.keys == sorted(listing.keys)
    folders = kd.list_all(s3, bucket, "a/", delimiter="/")
    assert folders.common_prefixes == ["a/0/", "a/1/", "a/2/"] and folders.keys == []
    empty = kd.list_all(s3, bucket, "nothing/")
    assert (empty.requests, empty.keys) == (1, [])


def test_run_query_matches_plan_query(s3, records):
    sample = records.iloc[::4]
    backend = cloudlab.use_backend()
    for layout in kd.LAYOUTS:
        bucket = f"test-kd-{layout.replace('_', '-')}"
        backend.clean(bucket)
        s3.create_bucket(Bucket=bucket)
        assert kd.load(s3, bucket, sample, layout) == len(sample)
        keys = kd.keys_for(sample, layout)
        user, day = sample["user"].value_counts().index[0], sample["day"].value_counts().index[0]
        for field, value in (("user", user), ("day", day)):
            measured = kd.run_query(s3, bucket, layout, field, value)
            planned = kd.plan_query(keys, layout, field, value, page_size=1000)
            assert {k: measured[k] for k in planned} == planned
            expected = int((sample[field] == value).sum())
            assert measured["objects_returned"] == expected
        small_pages = kd.plan_query(keys, layout, "user", user, page_size=100)
        assert small_pages["list_requests"] == -(-small_pages["objects_scanned"] // 100)
    by_user = kd.plan_query(kd.keys_for(sample, "by_user"), "by_user", "day", day)
    assert by_user["strategy"] == "scan" and by_user["objects_scanned"] == len(sample)


def test_load_with_threads(s3, records):
    bucket = "test-kd-threads"
    cloudlab.use_backend().clean(bucket)
    s3.create_bucket(Bucket=bucket)
    assert kd.load(s3, bucket, records.iloc[:40], ["by_user", "by_date"], threads=3) == 80
    assert len(kd.list_all(s3, bucket).keys) == 80


def test_hot_prefix_load(records):
    by_date, by_user = kd.hot_prefix_load(records, "by_date"), kd.hot_prefix_load(records, "by_user")
    assert by_date["hottest_share"] == 1.0 and by_date["key_ranges"] == 1
    assert by_date["max_total_put_rate"] == kd.PUT_LIMIT_PER_PREFIX
    assert by_user["key_ranges"] > 1 and by_user["hottest_share"] < 1
    assert by_user["max_total_put_rate"] > by_date["max_total_put_rate"]
    assert by_user["busiest_hour"] == by_date["busiest_hour"]
    assert by_user["new_bucket_put_rate"] == by_date["new_bucket_put_rate"] == kd.PUT_LIMIT_PER_PREFIX


def test_hot_ranges_split_at_any_character_not_only_at_slashes():
    import pandas as pd

    def upload(user, when, upload_id):
        return {"user": user, "uploaded_at": when, "day": when[:10], "upload_id": upload_id, "ext": "jpg"}

    # users "ab" and "ac" share the characters "uploads/a" but not a "/" level
    records = pd.DataFrame([upload("ab", "2025-03-01T10:00:00Z", "1"), upload("ac", "2025-03-01T10:00:00Z", "2"),
                            upload("ab", "2025-03-02T10:00:00Z", "3"), upload("ac", "2025-03-02T10:30:00Z", "4"),
                            upload("ac", "2025-03-02T10:40:00Z", "5")])
    load = kd.hot_prefix_load(records, "by_user")
    assert load["key_ranges"] == 2 and load["hottest_range"] == "uploads/ac/2025-03-02_"
    assert load["hottest_share"] == round(2 / 3, 3)
    assert kd.hot_prefix_load(records, "by_date")["hottest_range"] == "uploads/2025-03-02/a"


def test_multipart_in_flight_and_one_failed_part_retried(s3, tmp_path):
    bucket = "test-kd-multipart"
    cloudlab.use_backend().clean(bucket)
    s3.create_bucket(Bucket=bucket)
    path = tmp_path / "big.bin"
    path.write_bytes(os.urandom(12 * 1024 * 1024))
    config = TransferConfig(multipart_threshold=5 * 1024 ** 2, multipart_chunksize=5 * 1024 ** 2, max_concurrency=3)
    with Ledger() as ledger, InFlight(s3, "UploadPart") as watch, \
            FailOnce(s3, "UploadPart", lambda params: params.get("PartNumber") == 2) as fault:
        s3.upload_file(str(path), bucket, "big.bin", Config=config)
    assert fault.failed == 1
    assert ledger.count("s3", "UploadPart") == 4          # 3 parts + 1 retry
    assert sum(1 for r in ledger.records if r.operation == "UploadPart" and r.status == 500) == 1
    assert watch.sent == 3 + 1 and 1 <= watch.peak <= 3
    head = s3.head_object(Bucket=bucket, Key="big.bin")
    assert head["ContentLength"] == path.stat().st_size and head["ETag"].endswith('-3"')
    assert s3.get_object(Bucket=bucket, Key="big.bin")["Body"].read() == path.read_bytes()


def test_fresh_iam_user_can_be_recreated():
    cloudlab.use_backend()
    iam = boto3.client("iam")
    policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]}
    first = fresh_iam_user(iam, "test-kd-user", policy)
    again = fresh_iam_user(iam, "test-kd-user", policy)
    assert first["aws_access_key_id"] != again["aws_access_key_id"]
    keys = iam.list_access_keys(UserName="test-kd-user")["AccessKeyMetadata"]
    assert [k["AccessKeyId"] for k in keys] == [again["aws_access_key_id"]]
    assert iam.list_user_policies(UserName="test-kd-user")["PolicyNames"] == ["least-privilege"]
