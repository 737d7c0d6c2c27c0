"""IAM policies enforced per credential on the embedded backend.

Introduced in notebook 02 (least privilege: a policy limited to one S3 prefix). moto can check
IAM policies, but only as one global switch (``INITIAL_NO_AUTH_ACTION_COUNT`` or
``POST /moto-api/reset-auth``): turned on by one notebook, it would refuse the calls of every
other notebook and grader sharing the server, whose course credentials (``test``/``test``)
are no IAM user (measured: ``docs/emulators.md``).

Here the switch is per request instead, the way AWS itself behaves:

- a request signed with an access key of an IAM user created in the emulator
  (``iam.create_access_key``) is checked against that user's policies: moto's own signature
  check and policy evaluation, so a denied call gets S3's ``AccessDenied``;
- a request with any other key (the course's ``test`` key) is treated as the account's
  administrator, as before. The global switch is never touched, so nothing leaks between
  notebooks.
- a presigned URL signed with an IAM user's key carries that user's permissions (its
  signature was already verified by :mod:`.presign`); moto's own check crashes on those.

Known gaps, from moto's policy evaluation: condition keys such as ``s3:prefix`` on
``ListBucket`` are not evaluated, and bucket policies are not combined with user policies.
"""

from __future__ import annotations

import threading
from urllib.parse import parse_qs, urlparse

from .aws_protocol import CREDENTIAL_SCOPE as _CREDENTIAL  # group 1: the access key id

_request = threading.local()
COURSE_ACCESS_KEYS = frozenset({"test"})


def access_key_of(headers, query: str) -> str | None:
    """The access key id a request is signed with (header or presigned query), if any."""
    match = _CREDENTIAL.search(headers.get("Authorization", "") or "")
    if match:
        return match.group(1)
    if "X-Amz-Credential" in query:
        credential = parse_qs(query).get("X-Amz-Credential", [""])[0]
        return credential.split("/", 1)[0] or None
    return None


def is_iam_user_key(access_key: str | None) -> bool:
    """True if ``access_key`` belongs to an IAM user made in the emulator."""
    if not access_key or access_key in COURSE_ACCESS_KEYS:
        return False
    try:
        from .moto_compat import DEFAULT_ACCOUNT_ID, iam_backends

        users = iam_backends[DEFAULT_ACCOUNT_ID]["global"].users.values()
        return any(key.access_key_id == access_key for user in users for key in user.access_keys)
    except Exception:
        return False


class enforce_for_request:
    """Context manager around one request's dispatch: turns checks on for IAM users' keys."""

    def __init__(self, headers, query: str, presigned: bool) -> None:
        key = access_key_of(headers, query)
        self.key = key if is_iam_user_key(key) else None
        self.presigned = presigned
        self.query = query

    def __enter__(self):
        _request.key, _request.presigned, _request.query = self.key, self.presigned, self.query
        return self

    def __exit__(self, *exc) -> None:
        _request.key = None
        _request.presigned = False


def authorizer(original):
    """moto's authorisation hook, checking IAM users' keys per request (``original`` for others).

    Installed over ``ActionAuthenticatorMixin._authenticate_and_authorize_action`` by
    ``moto_compat.install()``, the one place moto is patched.
    """
    from .moto_compat import ActionAuthenticatorMixin

    def authenticate_and_authorize(self, iam_request_cls, resource: str = "*"):
        key = getattr(_request, "key", None)
        if key is None:
            return original(self, iam_request_cls, resource)
        if self.headers.get("X-Amz-Target") in ActionAuthenticatorMixin.PUBLIC_OPERATIONS:
            return None
        parsed = urlparse(self.uri)
        path = self.raw_path + (f"?{parsed.query}" if parsed.query else "")
        headers = self.headers
        if getattr(_request, "presigned", False):
            # moto reads the credential scope from an Authorization header; a presigned
            # request has none. Its signature was checked by presign.verify already.
            credential = parse_qs(_request.query).get("X-Amz-Credential", [""])[0]
            headers = dict(self.headers.items())
            headers["Authorization"] = f"AWS4-HMAC-SHA256 Credential={credential}, SignedHeaders=host, Signature=-"
        iam_request = iam_request_cls(account_id=self.current_account, method=self.method, path=path,
                                      data=self.data, body=self.raw_body, headers=headers,
                                      action=self._get_action())
        if not getattr(_request, "presigned", False):
            iam_request.check_signature()
        iam_request.check_action_permitted(resource)
        return None

    return authenticate_and_authorize
