"""Delete the resources a notebook owns, by name prefix (``Backend.clean``)."""

from __future__ import annotations

import boto3
from botocore.exceptions import ClientError


def _empty_and_delete_bucket(s3, bucket: str) -> None:
    # List every page before deleting: moto's list_object_versions returns nothing once the
    # key in its KeyMarker has been deleted, so deleting while paging stops after page one.
    entries = [{"Key": v["Key"], "VersionId": v["VersionId"]}
               for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket)
               for v in page.get("Versions", []) + page.get("DeleteMarkers", [])]
    for start in range(0, len(entries), 1000):
        s3.delete_objects(Bucket=bucket, Delete={"Objects": entries[start:start + 1000], "Quiet": True})
    for upload in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
        s3.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
    s3.delete_bucket(Bucket=bucket)


def delete_prefixed(prefix: str) -> dict[str, int]:
    if len(prefix) < 3:
        raise ValueError("use a prefix of at least 3 characters, so clean() cannot wipe everything")
    deleted = {"buckets": 0, "queues": 0, "topics": 0, "tables": 0, "functions": 0,
               "instances": 0, "volumes": 0, "snapshots": 0, "file_systems": 0}
    _delete_functions(prefix, deleted)  # first: their SQS pollers must not outlive the queues
    s3 = boto3.client("s3")
    for bucket in s3.list_buckets().get("Buckets", []):
        if bucket["Name"].startswith(prefix):
            _empty_and_delete_bucket(s3, bucket["Name"])
            deleted["buckets"] += 1
    sqs = boto3.client("sqs")
    for url in sqs.list_queues(QueueNamePrefix=prefix).get("QueueUrls", []):
        sqs.delete_queue(QueueUrl=url)
        deleted["queues"] += 1
    sns = boto3.client("sns")
    for page in sns.get_paginator("list_topics").paginate():
        for topic in page.get("Topics", []):
            if topic["TopicArn"].rsplit(":", 1)[-1].startswith(prefix):
                sns.delete_topic(TopicArn=topic["TopicArn"])
                deleted["topics"] += 1
    dynamodb = boto3.client("dynamodb")
    try:
        for page in dynamodb.get_paginator("list_tables").paginate():
            for table in page.get("TableNames", []):
                if table.startswith(prefix):
                    dynamodb.delete_table(TableName=table)
                    deleted["tables"] += 1
    except ClientError:
        pass  # LocalStack in host mode has no DynamoDB
    try:
        _delete_compute(prefix, deleted)
    except ClientError:
        pass  # a backend without EC2 or EFS
    return deleted


def _delete_functions(prefix: str, deleted: dict[str, int]) -> None:
    """Lambda functions named ``prefix*``, with their event source mappings (notebook 03).

    Deleting a function stops its execution environments (local Lambda service) and drops
    its provisioned concurrency; mappings are deleted explicitly first, as AWS keeps them.
    """
    lam = boto3.client("lambda")
    try:
        names = [fn["FunctionName"] for page in lam.get_paginator("list_functions").paginate()
                 for fn in page.get("Functions", []) if fn["FunctionName"].startswith(prefix)]
        for name in names:
            for mapping in lam.list_event_source_mappings(FunctionName=name).get("EventSourceMappings", []):
                try:
                    lam.delete_event_source_mapping(UUID=mapping["UUID"])
                except ClientError:
                    pass  # already gone
            try:
                lam.delete_function(FunctionName=name)
                deleted["functions"] += 1
            except lam.exceptions.ResourceNotFoundException:
                pass
    except ClientError:
        pass  # a backend without Lambda


def _delete_compute(prefix: str, deleted: dict[str, int]) -> None:
    """EC2 instances (terminated), EBS volumes (detached, then deleted), snapshots and EFS file
    systems (mount targets first) named ``prefix*`` (notebook 01). The name is the ``Name`` tag
    for EC2 resources and the file system's ``Name`` for EFS.
    """
    ec2, efs = boto3.client("ec2"), boto3.client("efs")
    named = [{"Name": "tag:Name", "Values": [prefix + "*"]}]
    for volume in ec2.describe_volumes(Filters=named)["Volumes"]:
        for attachment in volume.get("Attachments", []):
            ec2.detach_volume(VolumeId=volume["VolumeId"], InstanceId=attachment["InstanceId"], Force=True)
        ec2.delete_volume(VolumeId=volume["VolumeId"])
        deleted["volumes"] += 1
    for snapshot in ec2.describe_snapshots(OwnerIds=["self"], Filters=named)["Snapshots"]:
        ec2.delete_snapshot(SnapshotId=snapshot["SnapshotId"])
        deleted["snapshots"] += 1
    ids = [instance["InstanceId"]
           for reservation in ec2.describe_instances(Filters=named)["Reservations"]
           for instance in reservation["Instances"] if instance["State"]["Name"] not in ("terminated", "shutting-down")]
    for instance_id in ids:
        try:
            ec2.terminate_instances(InstanceIds=[instance_id])
            deleted["instances"] += 1
        except ClientError:
            # moto keeps a stale block-device entry on an instance whose volume was attached
            # elsewhere (it does not refuse the second attach); terminating it then fails.
            # The instance is left behind: harmless, and it holds no volume.
            pass
    for system in efs.describe_file_systems()["FileSystems"]:
        if system.get("Name", "").startswith(prefix):
            for target in efs.describe_mount_targets(FileSystemId=system["FileSystemId"])["MountTargets"]:
                efs.delete_mount_target(MountTargetId=target["MountTargetId"])
            efs.delete_file_system(FileSystemId=system["FileSystemId"])
            deleted["file_systems"] += 1
