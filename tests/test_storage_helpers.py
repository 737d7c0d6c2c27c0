"""Helpers introduced in notebook 01: cloudlab.storage and cloudlab.display, on the emulator."""

from __future__ import annotations

import uuid

import boto3
import pytest
from botocore.exceptions import ClientError

import cloudlab
from cloudlab import display, storage


@pytest.fixture
def s3():
    cloudlab.use_backend()
    return boto3.client("s3")


@pytest.fixture
def bucket(s3):
    name = f"test-storage-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=name)
    yield name
    cloudlab.use_backend().clean(name)


def test_instance_store_is_wiped_by_stop_and_a_restart_gets_an_empty_disk():
    instance = storage.Instance("box")
    disk = storage.InstanceStore(instance)
    disk.save("cache/a.bin", b"abc")
    assert disk.load("cache/a.bin") == b"abc"
    assert disk.names() == ["cache/a.bin"]
    old_root = instance.instance_store
    instance.stop()
    assert instance.state == "stopped" and not old_root.exists()
    with pytest.raises(RuntimeError, match="stopped"):
        disk.load("cache/a.bin")
    instance.start()
    assert instance.state == "running" and disk.names() == []
    with pytest.raises(FileNotFoundError, match="box's disk"):
        disk.load("cache/a.bin")
    instance.terminate()
    with pytest.raises(RuntimeError):
        instance.start()


def test_file_names_cannot_escape_their_root():
    disk = storage.InstanceStore(storage.Instance("box"))
    for bad in ("../x", "/etc/passwd", ""):
        with pytest.raises(ValueError):
            disk.save(bad, b"x")


def test_round_robin_local_disks_lose_the_upload_and_shared_storage_keeps_it(s3, bucket):
    a, b = storage.Instance("instance-a"), storage.Instance("instance-b")
    local = storage.RoundRobin([storage.UploadService(a), storage.UploadService(b)])
    up = local.upload("f.txt", b"hello")
    down = local.download("f.txt")
    assert (up.served_by, up.ok) == ("instance-a", True)
    assert (down.served_by, down.ok) == ("instance-b", False)
    assert isinstance(down.error, FileNotFoundError)
    assert str(down) == "[instance-b] 500 FileNotFoundError: /data/uploads/f.txt does not exist on instance-b's disk"

    for shared in (storage.S3Storage(bucket, "app/", s3=s3), storage.SharedFolder()):
        router = storage.RoundRobin([storage.UploadService(a, shared), storage.UploadService(b, shared)])
        assert router.upload("f.txt", b"hello").ok
        answers = [router.download("f.txt") for _ in range(2)]
        assert [r.served_by for r in answers] == ["instance-b", "instance-a"]
        assert all(r.ok and r.body == b"hello" for r in answers)
        assert shared.names() == ["uploads/f.txt"]
    assert s3.list_objects_v2(Bucket=bucket)["Contents"][0]["Key"] == "app/uploads/f.txt"


def test_s3_storage_missing_key_is_file_not_found(s3, bucket):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        storage.S3Storage(bucket, s3=s3).load("nope")


def test_count_requests_counts_by_operation_and_stops_counting_after_the_block(s3, bucket):
    with storage.count_requests(s3) as counts:
        s3.put_object(Bucket=bucket, Key="k", Body=b"1")
        s3.get_object(Bucket=bucket, Key="k")["Body"].read()
        s3.get_object(Bucket=bucket, Key="k")["Body"].read()
    s3.list_objects_v2(Bucket=bucket)
    assert dict(counts) == {"PutObject": 1, "GetObject": 2}


def test_log_requests_lists_method_path_and_operation_without_host(s3, bucket):
    with storage.log_requests(s3) as lines:
        s3.put_object(Bucket=bucket, Key="models/a b.pkl", Body=b"1")
        s3.list_objects_v2(Bucket=bucket, Prefix="models/")
    assert lines == [f"PUT /{bucket}/models/a b.pkl  (PutObject)",
                     f"GET /{bucket}?list-type=2&prefix=models/&encoding-type=url  (ListObjectsV2)"]


def test_measure_small_vs_large_returns_one_row_per_store_and_count(s3, bucket):
    frame = storage.measure_small_vs_large((1, 10), total_bytes=10_001, s3=s3, bucket=bucket, repeats=2, keep=True)
    assert list(frame["store"]) == ["local disk", "S3 (emulator)", "local disk", "S3 (emulator)"]
    assert list(frame["objects"]) == [1, 1, 10, 10]
    assert list(frame["requests"]) == [0, 1, 0, 10]
    assert (frame["read_s"] > 0).all() and (frame["write_s"] > 0).all()
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert len(keys) == 11
    sizes = sorted(o["Size"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="n10/")["Contents"])
    assert sum(sizes) == 10_001 and sizes[0] == 1000 and sizes[-1] == 1001
    storage.measure_small_vs_large((3,), total_bytes=30, s3=s3, bucket=bucket)
    assert s3.list_objects_v2(Bucket=bucket, Prefix="n3/")["KeyCount"] == 0, "objects are deleted unless keep=True"


def test_reboot_keeps_the_instance_store_and_stop_does_not():
    instance = storage.Instance("box")
    disk = storage.InstanceStore(instance)
    disk.save("cache/a.bin", b"abc")
    instance.reboot()
    assert instance.state == "running" and disk.load("cache/a.bin") == b"abc"
    instance.stop()
    with pytest.raises(RuntimeError, match="only a running instance can be rebooted"):
        instance.reboot()


def test_parallel_gets_reads_every_object_and_cleans_up(s3, bucket):
    from botocore.config import Config

    client = boto3.client("s3", config=Config(max_pool_connections=4))
    frame = storage.measure_parallel_gets(client, bucket, objects=12, object_bytes=10, threads=(1, 4), repeats=1)
    assert list(frame["threads"]) == [1, 4] and (frame["gets"] == 12).all()
    assert frame.loc[0, "speedup"] == 1.0 and (frame["gets_per_s"] > 0).all()
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0
    with pytest.raises(ValueError):
        storage.measure_parallel_gets(client, bucket, threads=(0,))


def test_durability_facts_cover_each_storage_with_a_source():
    facts = storage.durability_facts().set_index("storage")
    assert {"instance store", "EBS root volume", "EBS data volume", "EFS (Regional)", "S3 Standard"} == set(facts.index)
    assert facts.loc["instance store", "survives_reboot"] == "yes" and facts.loc["instance store", "survives_stop"] == "no"
    assert facts.loc["S3 Standard", "designed_durability"] == "99.999999999%"
    assert facts["source"].str.contains("docs/aws-facts.md").all()


def test_storage_facts_every_number_has_a_source():
    facts = storage.storage_facts()
    assert {"storage", "metric", "unit", "lecture_low", "lecture_high", "current", "source"} <= set(facts.columns)
    numbers = facts[facts["current"].notna()]
    assert numbers["source"].str.contains("aws-facts.md").all()
    efs = facts[(facts["storage"] == "EFS General Purpose") & (facts["metric"] == "read latency")].iloc[0]
    assert efs["current"] == 0.25 and efs["lecture_low"] == 5


def test_error_text_drops_request_ids_and_masks_resource_ids():
    error = ClientError({"Error": {"Code": "VolumeInUse", "Message": "vol-0a1b2c3d4e5f60718 is attached to i-0123456789abcdef0"},
                         "ResponseMetadata": {"RequestId": "abc"}}, "AttachVolume")
    assert display.error_text(error) == "VolumeInUse: <vol-id> is attached to <i-id>"
    assert display.error_text(FileNotFoundError("x.txt")) == "FileNotFoundError: x.txt"
    assert display.redact_ids("arn:aws:sqs:us-east-1:123456789012:q") == "arn:aws:sqs:us-east-1:<account>:q"


def test_show_error_and_show_fields_print_stable_lines(capsys):
    display.show_error(KeyError("k"))
    display.show_fields({"VolumeId": "vol-0123456789abcdef0", "State": "available"}, "VolumeId", "State", "Size")
    assert capsys.readouterr().out.splitlines() == [
        "KeyError: 'k'", "  VolumeId = <vol-id>", "  State    = available", "  Size     = -"]


def test_plot_helpers_draw_one_line_or_bar_group_per_series():
    import matplotlib

    matplotlib.use("Agg")
    import pandas as pd

    frame = pd.DataFrame({"n": [1, 10, 1, 10], "t": [1.0, 2.0, 3.0, 4.0], "store": ["a", "a", "b", "b"]})
    ax = display.loglog(frame, "n", "t", "store")
    assert len(ax.get_lines()) == 2 and ax.get_xscale() == "log"
    ax = display.compare_bars(["x", "y"], {"old": [1.0, None], "new": [2.0, 3.0]})
    assert len(ax.patches) == 3


def test_clean_removes_only_named_ec2_and_efs_resources():
    cloudlab.use_backend()
    ec2, efs = boto3.client("ec2"), boto3.client("efs")
    prefix = f"tclean{uuid.uuid4().hex[:6]}-"
    tag = lambda kind, name: [{"ResourceType": kind, "Tags": [{"Key": "Name", "Value": name}]}]  # noqa: E731
    instance = ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1, Placement={"AvailabilityZone": "us-east-1a"},
                                 TagSpecifications=tag("instance", prefix + "a"))["Instances"][0]["InstanceId"]
    volume = ec2.create_volume(AvailabilityZone="us-east-1a", Size=1, TagSpecifications=tag("volume", prefix + "v"))["VolumeId"]
    other = ec2.create_volume(AvailabilityZone="us-east-1a", Size=1, TagSpecifications=tag("volume", "keep-me"))["VolumeId"]
    ec2.attach_volume(VolumeId=volume, InstanceId=instance, Device="/dev/sdf")
    ec2.create_snapshot(VolumeId=volume, TagSpecifications=tag("snapshot", prefix + "s"))
    system = efs.create_file_system(CreationToken=prefix, Tags=[{"Key": "Name", "Value": prefix + "fs"}])["FileSystemId"]
    subnet = ec2.describe_subnets()["Subnets"][0]["SubnetId"]
    efs.create_mount_target(FileSystemId=system, SubnetId=subnet)
    compute = ("instances", "volumes", "snapshots", "file_systems")
    removed = cloudlab.use_backend().clean(prefix)
    assert {kind: removed[kind] for kind in compute} == {"instances": 1, "volumes": 1, "snapshots": 1, "file_systems": 1}
    assert [v["VolumeId"] for v in ec2.describe_volumes(VolumeIds=[other])["Volumes"]] == [other]
    state = ec2.describe_instances(InstanceIds=[instance])["Reservations"][0]["Instances"][0]["State"]["Name"]
    assert state in ("shutting-down", "terminated")
    removed = cloudlab.use_backend().clean(prefix)
    assert {kind: removed[kind] for kind in compute} == {"instances": 0, "volumes": 0, "snapshots": 0, "file_systems": 0}
    ec2.delete_volume(VolumeId=other)
