"""Probes for topics 01 (storage models) and 02 (S3 key design): S3, EBS, EFS, IAM."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

from .suite import Observation, claim, error_code, poll, quietly, status_code

FACTS = "aws-facts.md"  # the course's facts file; docs/aws-facts.md adds the rows beyond it


def _bucket(probe, s3, suffix: str = "b") -> str:
    bucket = probe.name(suffix)
    s3.create_bucket(Bucket=bucket)
    return bucket


def _empty_and_delete(s3, bucket: str) -> None:
    def delete() -> None:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for item in page.get("Contents", []):
                s3.delete_object(Bucket=bucket, Key=item["Key"])
        for upload in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
            s3.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
        s3.delete_bucket(Bucket=bucket)

    quietly(delete)


def _http(url: str, method: str = "GET", data: bytes | None = None, content_type: str | None = None) -> tuple[int, str]:
    """(status, S3 error code or "") of one plain HTTP request, as a browser would send it."""
    headers = {"Content-Type": content_type} if content_type else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data, method=method, headers=headers), timeout=10) as answer:
            answer.read()
            return answer.status, ""
    except urllib.error.HTTPError as error:
        body = error.read()
        code = body.split(b"<Code>")[1].split(b"</Code>")[0].decode() if b"<Code>" in body else ""
        return error.code, code


def _with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query.update(changes)
    return urlunsplit(parts._replace(query="&".join(f"{k}={quote(v, safe='')}" for k, v in query.items())))


def _signer(probe):
    return probe.client("s3", signature_version="s3v4")


def _refused(answer: tuple[int, str], status: int = 403) -> bool:
    return answer[0] == status


# -- topic 01: storage models -------------------------------------------------------------------

@claim("s3-flat-namespace", "01",
       "keys are flat: a Delimiter rolls keys up into CommonPrefixes, and no 'folder' object exists",
       "ListObjectsV2 with Delimiter='/' returns CommonPrefixes ['models/']; HEAD 'models/' is 404",
       "S3 User Guide, 'Organizing objects using prefixes'")
def _flat(probe):
    s3 = probe.client("s3")
    bucket = _bucket(probe, s3)
    try:
        for key in ("models/a.pkl", "models/b.pkl", "readme.txt"):
            s3.put_object(Bucket=bucket, Key=key, Body=b"x")
        listed = s3.list_objects_v2(Bucket=bucket, Delimiter="/")
        prefixes = [p["Prefix"] for p in listed.get("CommonPrefixes", [])]
        keys = [c["Key"] for c in listed.get("Contents", [])]
        try:
            s3.head_object(Bucket=bucket, Key="models/")
            folder = "200"
        except Exception as error:  # noqa: BLE001 (the status is what we report)
            folder = str(status_code(error) or error_code(error))
        return Observation(prefixes == ["models/"] and keys == ["readme.txt"] and folder == "404",
                           f"CommonPrefixes {prefixes}, Contents {keys}, HEAD models/ {folder}")
    finally:
        _empty_and_delete(s3, bucket)


@claim("s3-last-writer-wins", "01",
       "S3 has no locks: two writers of one key both succeed and the last PUT replaces the first",
       "both PutObject calls succeed; GET returns the second body",
       f"{FACTS}, row 'S3 conditional writes' (unconditional PUTs never conflict)")
def _last_writer(probe):
    s3 = probe.client("s3")
    bucket = _bucket(probe, s3)
    try:
        s3.put_object(Bucket=bucket, Key="log.txt", Body=b"writer A")
        s3.put_object(Bucket=bucket, Key="log.txt", Body=b"writer B")
        body = s3.get_object(Bucket=bucket, Key="log.txt")["Body"].read()
        return Observation(body == b"writer B", f"both PUTs accepted; GET returns {body.decode()!r}")
    finally:
        _empty_and_delete(s3, bucket)


def _instances_and_volume(probe, ec2, count: int):
    image = ec2.describe_images(Owners=["amazon"], Filters=[{"Name": "name", "Values": ["amzn2-ami-hvm-*-x86_64-gp2"]}])["Images"][0]
    tags = lambda kind: [{"ResourceType": kind, "Tags": [{"Key": "Name", "Value": probe.name(kind)}]}]  # noqa: E731
    launched = ec2.run_instances(ImageId=image["ImageId"], InstanceType="t3.micro", MinCount=count, MaxCount=count,
                                 Placement={"AvailabilityZone": "us-east-1a"}, TagSpecifications=tags("instance"))
    instance_ids = [i["InstanceId"] for i in launched["Instances"]]
    volume_id = ec2.create_volume(AvailabilityZone="us-east-1a", Size=8, VolumeType="gp3",
                                  TagSpecifications=tags("volume"))["VolumeId"]
    poll(lambda: ec2.describe_volumes(VolumeIds=[volume_id])["Volumes"][0]["State"] == "available", 20, 0.25)
    return instance_ids, volume_id


def _tidy_ec2(ec2, instance_ids, volume_ids, snapshot_ids=()):
    for volume_id in volume_ids:
        for attachment in (ec2.describe_volumes(VolumeIds=[volume_id])["Volumes"][0].get("Attachments", [])
                           if volume_id else []):
            quietly(lambda: ec2.detach_volume(VolumeId=volume_id, InstanceId=attachment["InstanceId"], Force=True))
    if instance_ids:
        quietly(lambda: ec2.terminate_instances(InstanceIds=instance_ids))
    for snapshot_id in snapshot_ids:
        quietly(lambda: ec2.delete_snapshot(SnapshotId=snapshot_id))
    for volume_id in volume_ids:
        if volume_id:
            quietly(lambda: poll(lambda: ec2.describe_volumes(VolumeIds=[volume_id])["Volumes"][0]["State"] == "available", 20, 0.25))
            quietly(lambda: ec2.delete_volume(VolumeId=volume_id))


@claim("ebs-single-attach", "01",
       "an EBS volume attaches to one instance at a time: attaching an attached volume is refused",
       "AttachVolume to a second instance fails with VolumeInUse (io1/io2 Multi-Attach aside)",
       f"{FACTS}, row 'EBS Multi-Attach'; EC2 API reference, AttachVolume", timeout=60,
       course_says_differs=("embedded",))  # notebook 01, section 4: moto moves the attachment
def _single_attach(probe):
    ec2 = probe.client("ec2")
    instance_ids, volume_id = [], None
    try:
        instance_ids, volume_id = _instances_and_volume(probe, ec2, 2)
        ec2.attach_volume(VolumeId=volume_id, InstanceId=instance_ids[0], Device="/dev/sdf")
        poll(lambda: ec2.describe_volumes(VolumeIds=[volume_id])["Volumes"][0]["State"] == "in-use", 20, 0.25)
        try:
            ec2.attach_volume(VolumeId=volume_id, InstanceId=instance_ids[1], Device="/dev/sdf")
            return Observation(False, "second AttachVolume accepted")
        except Exception as error:  # noqa: BLE001
            return Observation(error_code(error) == "VolumeInUse", f"second AttachVolume refused: {error_code(error)}")
    finally:
        _tidy_ec2(ec2, instance_ids, [volume_id])


@claim("ebs-delete-attached", "01",
       "an attached EBS volume cannot be deleted",
       "DeleteVolume on an in-use volume fails with VolumeInUse",
       "EC2 API reference, DeleteVolume", timeout=60)
def _delete_attached(probe):
    ec2 = probe.client("ec2")
    instance_ids, volume_id = [], None
    try:
        instance_ids, volume_id = _instances_and_volume(probe, ec2, 1)
        ec2.attach_volume(VolumeId=volume_id, InstanceId=instance_ids[0], Device="/dev/sdf")
        poll(lambda: ec2.describe_volumes(VolumeIds=[volume_id])["Volumes"][0]["State"] == "in-use", 20, 0.25)
        try:
            ec2.delete_volume(VolumeId=volume_id)
            volume_id = None
            return Observation(False, "DeleteVolume of an attached volume accepted")
        except Exception as error:  # noqa: BLE001
            return Observation(error_code(error) == "VolumeInUse", f"DeleteVolume refused: {error_code(error)}")
    finally:
        _tidy_ec2(ec2, instance_ids, [volume_id])


@claim("ebs-snapshot-other-az", "01",
       "a snapshot restores into a new volume in another Availability Zone of the region",
       "CreateVolume with SnapshotId in us-east-1b gives a volume of the snapshot's size there",
       "EBS User Guide, 'Create a volume from a snapshot'", timeout=60)
def _snapshot_restore(probe):
    ec2 = probe.client("ec2")
    volume_id = restored_id = snapshot_id = None
    try:
        volume_id = ec2.create_volume(AvailabilityZone="us-east-1a", Size=8, VolumeType="gp3")["VolumeId"]
        poll(lambda: ec2.describe_volumes(VolumeIds=[volume_id])["Volumes"][0]["State"] == "available", 20, 0.25)
        snapshot_id = ec2.create_snapshot(VolumeId=volume_id, Description=probe.name())["SnapshotId"]
        poll(lambda: ec2.describe_snapshots(SnapshotIds=[snapshot_id])["Snapshots"][0]["State"] == "completed", 30, 0.25)
        restored = ec2.create_volume(AvailabilityZone="us-east-1b", SnapshotId=snapshot_id, VolumeType="gp3")
        restored_id = restored["VolumeId"]
        return Observation(restored["AvailabilityZone"] == "us-east-1b" and restored["Size"] == 8,
                           f"restored volume: {restored['Size']} GiB in {restored['AvailabilityZone']}")
    finally:
        _tidy_ec2(ec2, [], [restored_id, volume_id], [snapshot_id] if snapshot_id else [])


@claim("efs-mount-target-per-az", "01",
       "EFS is mounted through one mount target per Availability Zone",
       "a second CreateMountTarget in the same AZ fails with MountTargetConflict",
       "EFS API reference, CreateMountTarget", timeout=60)
def _efs_mount_targets(probe):
    efs, ec2 = probe.client("efs"), probe.client("ec2")
    fs_id, targets = None, []
    try:
        fs_id = efs.create_file_system(CreationToken=probe.name(), PerformanceMode="generalPurpose",
                                       Tags=[{"Key": "Name", "Value": probe.name()}])["FileSystemId"]
        poll(lambda: efs.describe_file_systems(FileSystemId=fs_id)["FileSystems"][0]["LifeCycleState"] == "available", 20, 0.25)
        subnets = [s for s in ec2.describe_subnets()["Subnets"] if s["AvailabilityZone"] == "us-east-1a"]
        targets.append(efs.create_mount_target(FileSystemId=fs_id, SubnetId=subnets[0]["SubnetId"])["MountTargetId"])
        second_subnet = subnets[1]["SubnetId"] if len(subnets) > 1 else subnets[0]["SubnetId"]
        try:
            targets.append(efs.create_mount_target(FileSystemId=fs_id, SubnetId=second_subnet)["MountTargetId"])
            return Observation(False, "a second mount target in us-east-1a was accepted")
        except Exception as error:  # noqa: BLE001
            if error_code(error) in ("UnsupportedOperation", "InternalFailure", "NotImplemented"):
                raise
            return Observation(error_code(error) == "MountTargetConflict", f"second mount target refused: {error_code(error)}")
    finally:
        for target in targets:
            quietly(lambda: efs.delete_mount_target(MountTargetId=target))
        if fs_id:
            quietly(lambda: poll(lambda: not efs.describe_mount_targets(FileSystemId=fs_id)["MountTargets"], 20, 0.25))
            quietly(lambda: efs.delete_file_system(FileSystemId=fs_id))


# -- topic 02: S3 key design ----------------------------------------------------------------------

@claim("s3-prefix-is-string-match", "02",
       "Prefix is a plain string match on the start of the key: there is no folder boundary",
       "Prefix='model' lists 'models/a' and 'model.txt'",
       "S3 API reference, ListObjectsV2 (Prefix)")
def _prefix(probe):
    s3 = probe.client("s3")
    bucket = _bucket(probe, s3)
    try:
        for key in ("models/a", "model.txt", "other"):
            s3.put_object(Bucket=bucket, Key=key, Body=b"x")
        keys = [c["Key"] for c in s3.list_objects_v2(Bucket=bucket, Prefix="model").get("Contents", [])]
        return Observation(keys == ["model.txt", "models/a"], f"Prefix='model' lists {keys}")
    finally:
        _empty_and_delete(s3, bucket)


@claim("s3-list-pagination", "02",
       "a LIST returns at most MaxKeys keys per request; NextContinuationToken fetches the next page",
       "3 keys with MaxKeys=2: a truncated page of 2, then a page of 1",
       "S3 API reference, ListObjectsV2 (MaxKeys, at most 1,000)")
def _pagination(probe):
    s3 = probe.client("s3")
    bucket = _bucket(probe, s3)
    try:
        for key in ("a", "b", "c"):
            s3.put_object(Bucket=bucket, Key=key, Body=b"x")
        first = s3.list_objects_v2(Bucket=bucket, MaxKeys=2)
        second = s3.list_objects_v2(Bucket=bucket, MaxKeys=2, ContinuationToken=first["NextContinuationToken"])
        sizes = [first["KeyCount"], second["KeyCount"]]
        truncated = [first["IsTruncated"], second["IsTruncated"]]
        return Observation(sizes == [2, 1] and truncated == [True, False], f"pages of {sizes}, IsTruncated {truncated}")
    finally:
        _empty_and_delete(s3, bucket)


@claim("s3-list-after-put", "02",
       "LIST right after PUT shows the new key (strong read-after-write consistency, since Dec 2020)",
       "every one of 20 PUTs is in the LIST made right after it",
       f"{FACTS}, row 'S3 LIST consistency'")
def _list_after_put(probe):
    s3 = probe.client("s3")
    bucket = _bucket(probe, s3)
    try:
        missing = 0
        for number in range(20):
            key = f"k/{number:02d}"
            s3.put_object(Bucket=bucket, Key=key, Body=b"x")
            listed = {c["Key"] for c in s3.list_objects_v2(Bucket=bucket, Prefix="k/").get("Contents", [])}
            missing += key not in listed
        return Observation(missing == 0, f"{20 - missing} of 20 new keys listed at once")
    finally:
        _empty_and_delete(s3, bucket)


@claim("s3-multipart-min-part", "02",
       "multipart parts are at least 5 MiB, except the last",
       "CompleteMultipartUpload with a 1-byte first part fails with EntityTooSmall",
       f"{FACTS}, row 'S3 multipart'")
def _multipart_min(probe):
    s3 = probe.client("s3")
    bucket = _bucket(probe, s3)
    try:
        upload = s3.create_multipart_upload(Bucket=bucket, Key="big")["UploadId"]
        parts = [{"PartNumber": n, "ETag": s3.upload_part(Bucket=bucket, Key="big", UploadId=upload, PartNumber=n, Body=b"x")["ETag"]}
                 for n in (1, 2)]
        try:
            s3.complete_multipart_upload(Bucket=bucket, Key="big", UploadId=upload, MultipartUpload={"Parts": parts})
            return Observation(False, "two 1-byte parts completed")
        except Exception as error:  # noqa: BLE001
            return Observation(error_code(error) == "EntityTooSmall", f"CompleteMultipartUpload refused: {error_code(error)}")
    finally:
        _empty_and_delete(s3, bucket)


@claim("s3-multipart-etag", "02",
       "a multipart object's ETag is not the MD5 of its bytes: it ends in '-<number of parts>'",
       "the ETag of a 2-part upload ends with '-2'",
       "S3 API reference, Object (ETag); S3 User Guide, 'Checking object integrity'")
def _multipart_etag(probe):
    s3 = probe.client("s3")
    bucket = _bucket(probe, s3)
    try:
        upload = s3.create_multipart_upload(Bucket=bucket, Key="big")["UploadId"]
        bodies = (b"a" * 5 * 1024 * 1024, b"b")
        parts = [{"PartNumber": n, "ETag": s3.upload_part(Bucket=bucket, Key="big", UploadId=upload, PartNumber=n, Body=body)["ETag"]}
                 for n, body in enumerate(bodies, 1)]
        etag = s3.complete_multipart_upload(Bucket=bucket, Key="big", UploadId=upload, MultipartUpload={"Parts": parts})["ETag"]
        suffix = etag.strip('"').rsplit("-", 1)[-1] if "-" in etag else "(none)"
        return Observation(etag.strip('"').endswith("-2"), f"ETag ends with '-{suffix}'")
    finally:
        _empty_and_delete(s3, bucket)


def _presigned(probe, expires: int = 300):
    s3 = probe.client("s3")
    bucket = _bucket(probe, s3)
    s3.put_object(Bucket=bucket, Key="uploads/photo.jpg", Body=b"jpeg")
    s3.put_object(Bucket=bucket, Key="uploads/other.jpg", Body=b"someone else's")
    url = _signer(probe).generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "uploads/photo.jpg"}, ExpiresIn=expires)
    return s3, bucket, url


@claim("s3-presigned-valid", "02",
       "a presigned URL lets anyone holding it make exactly that request",
       "GET with a fresh presigned GET URL answers 200",
       f"{FACTS}, row 'S3 presigned URL'")
def _presigned_valid(probe):
    s3, bucket, url = _presigned(probe)
    try:
        answer = _http(url)
        return Observation(answer[0] == 200, f"{answer[0]}")
    finally:
        _empty_and_delete(s3, bucket)


@claim("s3-presigned-expired", "02",
       "an expired presigned URL is refused",
       "403 AccessDenied ('Request has expired') after ExpiresIn",
       f"{FACTS}, row 'S3 presigned URL'; SigV4 query-string authentication")
def _presigned_expired(probe):
    s3, bucket, url = _presigned(probe, expires=1)
    try:
        def refused() -> tuple[int, str] | None:
            answer = _http(url)
            return answer if answer[0] != 200 else None

        answer = poll(refused, 8, 0.25) or (200, "")
        return Observation(_refused(answer), f"{answer[0]} {answer[1]}".strip() + " once expired")
    finally:
        _empty_and_delete(s3, bucket)


@claim("s3-presigned-tampered", "02",
       "a presigned URL with an altered signature is refused",
       "403 SignatureDoesNotMatch",
       "SigV4 query-string authentication (S3 API reference, 'Authenticating Requests')")
def _presigned_tampered(probe):
    s3, bucket, url = _presigned(probe)
    try:
        signature = dict(parse_qsl(urlsplit(url).query))["X-Amz-Signature"]
        answer = _http(_with_query(url, **{"X-Amz-Signature": signature[:-4] + ("0000" if signature[-4:] != "0000" else "1111")}))
        return Observation(_refused(answer), f"{answer[0]} {answer[1]}".strip())
    finally:
        _empty_and_delete(s3, bucket)


@claim("s3-presigned-other-key", "02",
       "a presigned URL is for one key: pointing it at another key is refused",
       "403 SignatureDoesNotMatch",
       "SigV4 query-string authentication (the path is signed)")
def _presigned_other_key(probe):
    s3, bucket, url = _presigned(probe)
    try:
        parts = urlsplit(url)
        answer = _http(urlunsplit(parts._replace(path=parts.path.replace("photo.jpg", "other.jpg"))))
        return Observation(_refused(answer), f"{answer[0]} {answer[1]}".strip())
    finally:
        _empty_and_delete(s3, bucket)


@claim("s3-presigned-max-7-days", "02",
       "a SigV4 presigned URL lives at most 7 days",
       "X-Amz-Expires over 604,800 s is refused (400 AuthorizationQueryParametersError)",
       f"{FACTS}, row 'S3 presigned URL'")
def _presigned_max(probe):
    s3, bucket, _ = _presigned(probe)
    try:
        url = _signer(probe).generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "uploads/photo.jpg"}, ExpiresIn=604_801)
        answer = _http(url)
        return Observation(answer[0] in (400, 403) and answer[0] != 200, f"{answer[0]} {answer[1]}".strip())
    finally:
        _empty_and_delete(s3, bucket)


@claim("s3-if-none-match-existing", "02",
       "PutObject with If-None-Match: * creates only: on an existing key it fails",
       "412 PreconditionFailed",
       f"{FACTS}, row 'S3 conditional writes'")
def _if_none_match(probe):
    s3 = probe.client("s3")
    bucket = _bucket(probe, s3)
    try:
        s3.put_object(Bucket=bucket, Key="claim", Body=b"a", IfNoneMatch="*")
        try:
            s3.put_object(Bucket=bucket, Key="claim", Body=b"b", IfNoneMatch="*")
            return Observation(False, "second create accepted")
        except Exception as error:  # noqa: BLE001
            return Observation(status_code(error) == 412, f"second create: {status_code(error)} {error_code(error)}")
    finally:
        _empty_and_delete(s3, bucket)


@claim("s3-if-match-stale-etag", "02",
       "PutObject with If-Match: <ETag> fails once someone else has written",
       "412 PreconditionFailed for the stale ETag",
       f"{FACTS}, row 'S3 conditional writes'")
def _if_match(probe):
    s3 = probe.client("s3")
    bucket = _bucket(probe, s3)
    try:
        etag = s3.put_object(Bucket=bucket, Key="doc", Body=b"v1")["ETag"]
        s3.put_object(Bucket=bucket, Key="doc", Body=b"v2", IfMatch=etag)
        try:
            s3.put_object(Bucket=bucket, Key="doc", Body=b"v3", IfMatch=etag)
            return Observation(False, "write with the stale ETag accepted")
        except Exception as error:  # noqa: BLE001
            return Observation(status_code(error) == 412, f"stale ETag: {status_code(error)} {error_code(error)}")
    finally:
        _empty_and_delete(s3, bucket)


def _race(attempt, racers: int, rounds: int) -> list[int]:
    """Winners per round of ``racers`` threads released together on ``attempt(round)``."""
    winners = []
    for round_ in range(rounds):
        barrier, wins = threading.Barrier(racers), []

        def racer() -> None:
            barrier.wait()
            if attempt(round_):
                wins.append(1)

        threads = [threading.Thread(target=racer) for _ in range(racers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        winners.append(len(wins))
    return winners


@claim("s3-if-none-match-race", "02",
       "racing creates with If-None-Match: *: exactly one writer wins",
       "exactly 1 winner in every round of 5 racers; the others get 412 or 409",
       f"{FACTS}, row 'S3 conditional writes'", timeout=60)
def _s3_race(probe):
    s3 = probe.client("s3", max_pool_connections=10)
    bucket = _bucket(probe, s3)
    try:
        def attempt(round_: int) -> bool:
            try:
                s3.put_object(Bucket=bucket, Key=f"job-{round_}", Body=b"me", IfNoneMatch="*")
                return True
            except Exception as error:  # noqa: BLE001
                if status_code(error) not in (409, 412):
                    raise
                return False

        winners = _race(attempt, racers=5, rounds=10)
        return Observation(all(w == 1 for w in winners), f"winners per round: {sorted(set(winners))} over 10 rounds")
    finally:
        _empty_and_delete(s3, bucket)


def _fresh_user(iam, name: str, policy: dict) -> dict:
    iam.create_user(UserName=name)
    iam.put_user_policy(UserName=name, PolicyName="least-privilege", PolicyDocument=json.dumps(policy))
    return iam.create_access_key(UserName=name)["AccessKey"]


def _delete_user(iam, name: str) -> None:
    quietly(lambda: [iam.delete_access_key(UserName=name, AccessKeyId=k["AccessKeyId"])
                     for k in iam.list_access_keys(UserName=name)["AccessKeyMetadata"]])
    quietly(lambda: iam.delete_user_policy(UserName=name, PolicyName="least-privilege"))
    quietly(lambda: iam.delete_user(UserName=name))


def _uploads_only(bucket: str) -> dict:
    return {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"], "Resource": f"arn:aws:s3:::{bucket}/uploads/*"}]}


def _put_outcome(s3, bucket: str, key: str) -> str:
    try:
        s3.put_object(Bucket=bucket, Key=key, Body=b"x")
        return "allowed"
    except Exception as error:  # noqa: BLE001
        if error_code(error) not in ("AccessDenied", "InvalidAccessKeyId"):
            raise
        return error_code(error)


@claim("iam-user-least-privilege", "02",
       "a policy that allows uploads/* denies a write to private/ (least privilege per prefix)",
       "PutObject uploads/x allowed; PutObject private/x AccessDenied",
       "IAM User Guide, 'Policy evaluation logic' (implicit deny)", timeout=45)
def _least_privilege(probe):
    s3, iam = probe.client("s3"), probe.client("iam")
    bucket, user = _bucket(probe, s3), probe.name("user")
    try:
        key = _fresh_user(iam, user, _uploads_only(bucket))
        student = probe.client("s3", credentials=key)
        allowed = poll(lambda: _put_outcome(student, bucket, "uploads/x") == "allowed", 15, 0.5)  # IAM is eventually consistent
        denied = _put_outcome(student, bucket, "private/x")
        return Observation(bool(allowed) and denied == "AccessDenied",
                           f"uploads/x {'allowed' if allowed else 'refused'}; private/x {denied}")
    finally:
        _delete_user(iam, user)
        _empty_and_delete(s3, bucket)


@claim("iam-list-prefix-condition", "02",
       "an s3:prefix condition on ListBucket limits listing to that prefix",
       "ListObjectsV2 Prefix='uploads/' with a condition on 'uploads/u1/*' is AccessDenied",
       f"{FACTS}, row 's3:prefix condition key'", timeout=45)
def _prefix_condition(probe):
    s3, iam = probe.client("s3"), probe.client("iam")
    bucket, user = _bucket(probe, s3), probe.name("user")
    try:
        policy = {"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": f"arn:aws:s3:::{bucket}",
             "Condition": {"StringLike": {"s3:prefix": ["uploads/u1/*"]}}}]}
        student = probe.client("s3", credentials=_fresh_user(iam, user, policy))

        def listing(prefix: str) -> str:
            try:
                student.list_objects_v2(Bucket=bucket, Prefix=prefix)
                return "allowed"
            except Exception as error:  # noqa: BLE001
                if error_code(error) not in ("AccessDenied", "InvalidAccessKeyId"):
                    raise
                return error_code(error)

        own = poll(lambda: listing("uploads/u1/") == "allowed", 15, 0.5)
        everything = listing("uploads/")
        return Observation(bool(own) and everything == "AccessDenied",
                           f"Prefix uploads/u1/ {'allowed' if own else 'refused'}; Prefix uploads/ {everything}")
    finally:
        _delete_user(iam, user)
        _empty_and_delete(s3, bucket)


@claim("iam-role-temporary-keys", "02",
       "temporary keys from AssumeRole carry only the role's permissions",
       "with the role's keys, PutObject uploads/x allowed and private/x AccessDenied",
       "IAM User Guide, 'Temporary security credentials'; STS API reference, AssumeRole", timeout=45)
def _role_keys(probe):
    s3, iam, sts = probe.client("s3"), probe.client("iam"), probe.client("sts")
    bucket, role = _bucket(probe, s3), probe.name("role")
    try:
        account = sts.get_caller_identity()["Account"]
        trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{account}:root"},
                                                          "Action": "sts:AssumeRole"}]}
        role_arn = iam.create_role(RoleName=role, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
        iam.put_role_policy(RoleName=role, PolicyName="least-privilege", PolicyDocument=json.dumps(_uploads_only(bucket)))
        assumed = poll(lambda: _assume(sts, role_arn, probe.name()), 15, 0.5)
        if not assumed:
            return Observation(False, "AssumeRole refused for 15 s")
        student = probe.client("s3", credentials=assumed)
        allowed = poll(lambda: _put_outcome(student, bucket, "uploads/x") == "allowed", 15, 0.5)
        denied = _put_outcome(student, bucket, "private/x")
        return Observation(bool(allowed) and denied == "AccessDenied",
                           f"uploads/x {'allowed' if allowed else 'refused'}; private/x {denied}")
    finally:
        quietly(lambda: iam.delete_role_policy(RoleName=role, PolicyName="least-privilege"))
        quietly(lambda: iam.delete_role(RoleName=role))
        _empty_and_delete(s3, bucket)


def _assume(sts, role_arn: str, session: str) -> dict | None:
    try:
        return sts.assume_role(RoleArn=role_arn, RoleSessionName=session)["Credentials"]
    except Exception as error:  # noqa: BLE001 (a new role may not be assumable for a few seconds on AWS)
        if error_code(error) != "AccessDenied":
            raise
        return None


@claim("s3-event-key-encoding", "02",
       "keys in S3 event notifications are URL-encoded: a space arrives as '+'",
       "the key 'cat photo+1.jpg' arrives as 'cat+photo%2B1.jpg'",
       f"{FACTS}, row 'S3 event notification keys'", timeout=45)
def _event_key(probe):
    s3, sqs = probe.client("s3"), probe.client("sqs")
    bucket, queue_url = _bucket(probe, s3), sqs.create_queue(QueueName=probe.name("q"))["QueueUrl"]
    try:
        arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sqs.set_queue_attributes(QueueUrl=queue_url, Attributes={"Policy": json.dumps({"Statement": [{
            "Effect": "Allow", "Principal": {"Service": "s3.amazonaws.com"}, "Action": "sqs:SendMessage", "Resource": arn}]})})
        s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={"QueueConfigurations": [
            {"QueueArn": arn, "Events": ["s3:ObjectCreated:*"]}]})
        s3.put_object(Bucket=bucket, Key="cat photo+1.jpg", Body=b"x")
        keys: list[str] = []

        def arrived() -> bool:
            for message in sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", []):
                keys.extend(record["s3"]["object"]["key"] for record in json.loads(message["Body"]).get("Records", []))
            return bool(keys)

        poll(arrived, 20, 0)
        if not keys:
            return Observation(False, "no event arrived")
        return Observation(keys[0] == "cat+photo%2B1.jpg", f"arrives as {keys[0]!r}")
    finally:
        quietly(lambda: sqs.delete_queue(QueueUrl=queue_url))
        _empty_and_delete(s3, bucket)
