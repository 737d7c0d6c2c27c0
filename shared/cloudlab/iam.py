"""IAM helpers: identities with exactly the permissions a lesson needs.

Introduced in notebook 02 (least privilege: a role and its temporary credentials, with an
IAM user's long-lived keys as the contrast). Everything here is plain boto3 against whatever
backend ``cloudlab.use_backend()`` selected; the embedded backend enforces the policies of the
identities created here (see ``cloudlab.backend.iam_auth``).
"""

from __future__ import annotations

import datetime as dt
import json

__all__ = ["fresh_iam_user", "fresh_role", "account_trust_policy", "assume_role_credentials"]


def fresh_iam_user(iam, name: str, policy: dict, policy_name: str = "least-privilege") -> dict:
    """Create IAM user ``name`` with one inline ``policy`` and an access key; return the key.

    Introduced in notebook 02. A user left by an earlier run (IAM users are global, not in a
    bucket the notebook can clean) is deleted first, with its keys and inline policies, so
    the cell can be re-run. Returns ``{"aws_access_key_id": ..., "aws_secret_access_key": ...}``,
    ready for ``boto3.client("s3", **key)``.
    """
    try:
        for key in iam.list_access_keys(UserName=name)["AccessKeyMetadata"]:
            iam.delete_access_key(UserName=name, AccessKeyId=key["AccessKeyId"])
        for existing in iam.list_user_policies(UserName=name)["PolicyNames"]:
            iam.delete_user_policy(UserName=name, PolicyName=existing)
        iam.delete_user(UserName=name)
    except iam.exceptions.NoSuchEntityException:
        pass
    iam.create_user(UserName=name)
    iam.put_user_policy(UserName=name, PolicyName=policy_name, PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return {"aws_access_key_id": key["AccessKeyId"], "aws_secret_access_key": key["SecretAccessKey"]}


def account_trust_policy(account_id: str) -> dict:
    """A trust policy letting identities of ``account_id`` assume the role (if their own policies allow it).

    Introduced in notebook 02. Naming the account's root delegates the decision to the
    account's IAM policies; the course key is that account's administrator.
    """
    return {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{account_id}:root"}, "Action": "sts:AssumeRole"}]}


def fresh_role(iam, name: str, policy: dict, trust_policy: dict | None = None,
               policy_name: str = "least-privilege") -> str:
    """Create IAM role ``name`` with one inline permissions ``policy``; return its ARN.

    Introduced in notebook 02 (least privilege with a role). ``trust_policy`` says who may
    assume the role; by default any identity of this account whose own policies allow
    ``sts:AssumeRole`` (:func:`account_trust_policy`). A role left by an earlier run is
    deleted first, with its inline policies, so the cell can be re-run.
    """
    if trust_policy is None:
        import boto3

        trust_policy = account_trust_policy(boto3.client("sts").get_caller_identity()["Account"])
    try:
        for existing in iam.list_role_policies(RoleName=name)["PolicyNames"]:
            iam.delete_role_policy(RoleName=name, PolicyName=existing)
        for attached in iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"]:
            iam.detach_role_policy(RoleName=name, PolicyArn=attached["PolicyArn"])
        iam.delete_role(RoleName=name)
    except iam.exceptions.NoSuchEntityException:
        pass
    arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust_policy))["Role"]["Arn"]
    iam.put_role_policy(RoleName=name, PolicyName=policy_name, PolicyDocument=json.dumps(policy))
    return arn


def assume_role_credentials(sts, role_arn: str, session_name: str, duration_seconds: int = 900,
                            session_policy: dict | None = None) -> tuple[dict, dt.datetime]:
    """Assume ``role_arn``; return ``(client_kwargs, expiration)``.

    Introduced in notebook 02 (temporary credentials). ``client_kwargs`` is
    ``{"aws_access_key_id", "aws_secret_access_key", "aws_session_token"}``, ready for
    ``boto3.client("s3", **client_kwargs)``; ``expiration`` is when AWS stops accepting them
    (``DurationSeconds`` from 900 s up to the role's maximum session duration, 1 hour by
    default). ``session_policy`` narrows the role's permissions further for this session only.
    """
    if not 900 <= duration_seconds <= 43_200:
        raise ValueError(f"duration_seconds={duration_seconds}: AssumeRole accepts 900 to 43,200 seconds "
                         f"(and at most the role's MaxSessionDuration, 3,600 by default)")
    request = {"RoleArn": role_arn, "RoleSessionName": session_name, "DurationSeconds": duration_seconds}
    if session_policy is not None:
        request["Policy"] = json.dumps(session_policy)
    credentials = sts.assume_role(**request)["Credentials"]
    client_kwargs = {"aws_access_key_id": credentials["AccessKeyId"],
                     "aws_secret_access_key": credentials["SecretAccessKey"],
                     "aws_session_token": credentials["SessionToken"]}
    return client_kwargs, credentials["Expiration"]
