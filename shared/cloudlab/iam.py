"""IAM helpers: identities with exactly the permissions a lesson needs.

Introduced in notebook 02 (least privilege). Everything here is plain boto3 against whatever
backend ``cloudlab.use_backend()`` selected; the embedded backend enforces the policies of the
identities created here (see ``cloudlab.backend.iam_auth``).
"""

from __future__ import annotations

import json

__all__ = ["fresh_iam_user"]


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
