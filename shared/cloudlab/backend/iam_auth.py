"""Who signed a request, and IAM policies enforced per credential on the embedded backend.

Introduced in notebook 02 (least privilege with a role and its temporary credentials). moto
can check IAM policies, but only as one global switch (``INITIAL_NO_AUTH_ACTION_COUNT`` or
``POST /moto-api/reset-auth``): turned on by one notebook, it would refuse the calls of every
other notebook and grader sharing the server, whose course credentials (``test``/``test``)
are no IAM identity. See ``docs/aws-facts.md`` and the README's backends section.

Here the check is per request instead, the way AWS itself behaves. This module is the one
home for looking up an access key (:func:`lookup`); :mod:`.presign` uses it too.

- The course key (``test``) is the account's administrator: not checked, as before.
- An IAM user's access key (``iam.create_access_key``): the user's policies (inline,
  attached, and its groups').
- Temporary credentials from ``sts.assume_role`` (access key ``ASIA...`` plus a session
  token): the role's policies (inline and attached), narrowed by the session policy if one
  was passed. The session token must be the one issued with the key (else S3 answers
  400 ``InvalidToken``), and the credentials stop working at their ``Expiration``
  (400 ``ExpiredToken`` from S3, 403 ``ExpiredToken`` from other services).
- Requests with no signature at all (a browser fetching a static website, ``curl``) are
  anonymous: S3 allows them only where the bucket policy allows ``Principal: "*"``, and
  answers 403 ``AccessDenied`` otherwise (:func:`anonymous_refusal`).
- Block Public Access as on AWS since 2023: a new bucket starts with all four settings on
  (:func:`public_access_block`), so a public bucket policy is refused (``BlockPublicPolicy``)
  and, if already there, grants nobody (``RestrictPublicBuckets``) until they are turned off.
- ``sts:AssumeRole`` needs the role's trust policy to let the caller in, course key included.

Policies are evaluated by :mod:`.policies` (conditions such as ``s3:prefix`` on
``ListBucket`` included; bucket policies combined with identity policies); moto's own code
still checks header signatures and reads the policies from its IAM backend. Requests that
cloudlab's local Lambda API answers itself (invoke, event source mappings) are not checked.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote, urlparse

from werkzeug.exceptions import HTTPException

from . import policies
from .aws_protocol import CREDENTIAL_SCOPE as _CREDENTIAL  # group 1: the access key id

ACCOUNT_ID = "123456789012"  # moto's default account
COURSE_CREDENTIALS = {"test": "test"}  # the emulators' well-known key and secret (LocalStack's too)

_request = threading.local()


@dataclass(frozen=True)
class Identity:
    """The credentials behind one access key id, as the emulator knows them."""

    access_key: str
    secret: str
    kind: str  # "course", "user" or "session"
    arns: tuple[str, ...] = ()  # the ARNs a bucket policy may name for this caller
    session_token: str | None = None
    expiration: dt.datetime | None = None
    session_policy: dict | None = None
    context: dict = field(default_factory=dict)

    def token_problem(self, token: str | None, now: dt.datetime | None = None) -> str | None:
        """``"InvalidToken"``, ``"ExpiredToken"`` or None for the session token a request carried."""
        if self.kind == "course":  # Lambda environments send test/test with a dummy token "test"
            return None
        if self.kind != "session":
            return "InvalidToken" if token else None
        if token != self.session_token:
            return "InvalidToken"
        if (now or utcnow()) >= self.expiration:
            return "ExpiredToken"
        return None


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _aware(moment: dt.datetime) -> dt.datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)


def lookup(access_key: str | None) -> Identity | None:
    """The identity an access key id belongs to, or None if the emulator never issued it."""
    if not access_key:
        return None
    if access_key in COURSE_CREDENTIALS:
        return Identity(access_key, COURSE_CREDENTIALS[access_key], "course")
    try:
        from .moto_compat import iam_backends, sts_backends

        for user in iam_backends[ACCOUNT_ID]["aws"].users.values():
            for key in user.access_keys:
                if key.access_key_id == access_key:
                    arn = f"arn:aws:iam::{ACCOUNT_ID}:user/{user.name}"
                    return Identity(access_key, key.secret_access_key, "user", (arn,),
                                    context={"aws:PrincipalArn": arn, "aws:username": user.name})
        for session in reversed(sts_backends[ACCOUNT_ID]["aws"].assumed_roles):
            if session.access_key_id == access_key:
                session_policy = json.loads(session.policy) if session.policy else None
                return Identity(access_key, session.secret_access_key, "session", (session.arn, session.role_arn),
                                session.session_token, _aware(session.expiration), session_policy,
                                context={"aws:PrincipalArn": session.role_arn})
    except (KeyError, AttributeError, ValueError):  # moto state not there (yet): an unknown key
        return None
    return None


def access_key_of(headers, query: str) -> str | None:
    """The access key id a request is signed with (header, or presigned query v4 or v2), if any."""
    match = _CREDENTIAL.search(headers.get("Authorization", "") or "")
    if match:
        return match.group(1)
    if "X-Amz-Credential" in query or "AWSAccessKeyId" in query:
        params = parse_qs(query)
        credential = params.get("X-Amz-Credential", params.get("AWSAccessKeyId", [""]))[0]
        return credential.split("/", 1)[0] or None
    return None


def session_token_of(headers, query: str) -> str | None:
    token = headers.get("X-Amz-Security-Token")
    if token:
        return token
    params = {name.lower(): values for name, values in parse_qs(query).items()}
    return params.get("x-amz-security-token", [None])[0]


def is_unsigned(headers, query: str) -> bool:
    """No ``Authorization`` header and no presigned query (SigV4 or SigV2): an anonymous request."""
    return not headers.get("Authorization") and "Signature=" not in query


class enforce_for_request:
    """Context manager around one request's dispatch: who signed it, for the moto hook."""

    def __init__(self, headers, query: str, presigned: bool) -> None:
        identity = lookup(access_key_of(headers, query))
        self.identity = identity if identity is not None and identity.kind != "course" else None
        self.presigned = presigned or "Signature=" in query
        self.query = query
        self.token = session_token_of(headers, query)

    def __enter__(self):
        _request.identity, _request.presigned, _request.query = self.identity, self.presigned, self.query
        _request.token = self.token
        return self

    def __exit__(self, *exc) -> None:
        _request.identity = None
        _request.presigned = False


# -- anonymous S3 requests: only what the bucket policy grants to everyone ------------------------
def _s3_action(method: str, path: str, query: str) -> tuple[str, str, str | None]:
    """(IAM action, resource ARN, bucket) of an S3 REST request, with moto's own action table."""
    from .moto_compat import S3_ACTION_MAP as ACTION_MAP

    bucket, _, key = path.lstrip("/").partition("/")
    kind = "KEY" if key else "BUCKET" if bucket else "SERVICE"
    table = ACTION_MAP[kind].get(method.upper(), {"DEFAULT": method.title()})
    params = parse_qs(query, keep_blank_values=True)
    action = next((name for marker, name in table.items() if marker != "DEFAULT" and marker in params),
                  table.get("DEFAULT", "ListAllMyBuckets"))
    resource = f"arn:aws:s3:::{unquote(bucket)}/{unquote(key)}" if key else f"arn:aws:s3:::{unquote(bucket) or '*'}"
    return f"s3:{action}", resource, unquote(bucket) or None


def bucket_policy(bucket: str | None) -> dict | None:
    if not bucket:
        return None
    try:
        from .moto_compat import s3_backends

        document = s3_backends[ACCOUNT_ID]["aws"].get_bucket(bucket).policy
    except Exception:  # no such bucket: S3's own handler answers NoSuchBucket
        return None
    if not document:
        return None
    return json.loads(document.decode() if isinstance(document, bytes) else document)


def public_access_block(bucket: str | None):
    """The bucket's Block Public Access settings (moto's object), None when turned off.

    Since April 2023 every new S3 bucket starts with all four settings on; moto's start with
    none. The first time the backend sees a bucket it gives it AWS's default, so
    ``get_public_access_block`` answers as on AWS and a public policy needs it turned off first
    (``delete_public_access_block``, or ``put_public_access_block`` with the settings off).
    """
    try:
        from .moto_compat import PublicAccessBlock, s3_backends

        found = s3_backends[ACCOUNT_ID]["aws"].get_bucket(bucket)
    except Exception:  # no such bucket (yet)
        return None
    if not getattr(found, "_cloudlab_defaults_applied", False):
        found._cloudlab_defaults_applied = True
        if found.public_access_block is None:
            found.public_access_block = PublicAccessBlock(True, True, True, True)
    return found.public_access_block


def _public_policies_restricted(bucket: str | None) -> bool:
    """Block Public Access ``RestrictPublicBuckets``: a public bucket policy grants nobody outside."""
    block = public_access_block(bucket)
    return bool(block and block.restrict_public_buckets)


def _is_public(document: dict) -> bool:
    """A policy granting something to everyone (``Principal: "*"``), which BlockPublicPolicy refuses."""
    return any(statement.get("Effect") == "Allow" and statement.get("Principal") in ("*", {"AWS": "*"})
               for statement in policies._as_list(document.get("Statement")))


def _s3_defaults_and_public_policy(responder, resource: str, caller: str) -> None:
    """Every S3 request: apply AWS's Block Public Access default to a bucket seen for the first
    time, and refuse a public bucket policy while ``BlockPublicPolicy`` is on, as S3 does."""
    bucket = resource.split(":::", 1)[1].split("/", 1)[0] if ":::" in resource else None
    if not bucket or bucket == "*":
        return
    block = public_access_block(bucket)
    if responder._get_action() != "PutBucketPolicy" or not (block and block.block_public_policy):
        return
    try:
        document = json.loads(responder.body or b"{}")
    except ValueError:
        return  # moto answers MalformedPolicy
    if isinstance(document, dict) and _is_public(document):
        raise S3Error(403, "AccessDenied", f"User: {caller} is not authorized to perform: s3:PutBucketPolicy on "
                                           f'resource: "arn:aws:s3:::{bucket}" because public policies are blocked '
                                           "by the BlockPublicPolicy block public access setting.")


def anonymous_refusal(method: str, path: str, query: str) -> tuple[int, dict, bytes] | None:
    """S3's 403 ``AccessDenied`` for an unsigned request the bucket policy does not allow, else None."""
    if method.upper() == "OPTIONS":  # CORS preflight is never signed
        return None
    action, resource, bucket = _s3_action(method, path, query)
    document = bucket_policy(bucket)
    allowed = bool(document) and not _public_policies_restricted(bucket) and policies.is_allowed(
        action, resource, policies.Principal(), policies.request_context({}, query), resource_policy=document)
    if allowed:
        return None
    refusal = S3Error(403, "AccessDenied", "Access Denied")
    return refusal.code, dict(refusal.get_headers()), refusal.get_body().encode()


class S3Error(HTTPException):
    """An S3-shaped XML error raised inside moto's dispatch (the dispatcher answers it as is)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__()
        self.code, self.error_code, self.message = status, code, message

    def get_body(self, *args, **kwargs) -> str:
        return ('<?xml version="1.0" encoding="UTF-8"?>\n'
                f"<Error><Code>{self.error_code}</Code><Message>{self.message}</Message></Error>")

    def get_headers(self, *args, **kwargs):
        return [("Content-Type", "application/xml")]


# -- the moto hook ---------------------------------------------------------------------------------
def _token_error(iam_request, problem: str, is_s3: bool, json_protocol: bool):
    """Raise the error AWS gives for a wrong or expired session token, in the service's shape."""
    if problem == "InvalidToken":
        iam_request._raise_invalid_access_key("InvalidToken")
    if is_s3:
        raise S3Error(400, "ExpiredToken", "The provided token has expired.")
    from .moto_compat import JsonRESTError, RESTError

    # moto's own InvalidClientTokenId derives from _RESTError (XML); JSON services get JSON.
    error_class = JsonRESTError if json_protocol else RESTError
    error = error_class("ExpiredToken", "The security token included in the request is expired")
    error.code = 403
    raise error


def _check_assume_role(responder, identity: Identity | None) -> None:
    """``sts:AssumeRole``: the role's trust policy must let the caller in (moto checks it only
    under its global switch), and ``DurationSeconds`` must not exceed the role's maximum."""
    from .moto_compat import RESTError, iam_backends

    role_arn = responder._get_param("RoleArn") or ""
    caller = identity.arns[0] if identity and identity.arns else f"arn:aws:iam::{ACCOUNT_ID}:root"
    try:
        role = iam_backends[ACCOUNT_ID]["aws"].get_role_by_arn(role_arn)
        trust = json.loads(role.assume_role_policy_document)
    except Exception:
        role, trust = None, None
    context = dict(identity.context) if identity else {}
    if responder._get_param("ExternalId"):
        context["sts:ExternalId"] = responder._get_param("ExternalId")
    principal = policies.Principal(identity.arns if identity else (caller,), context, account=ACCOUNT_ID)
    if role is None or not policies.trust_allows(trust, role_arn, principal, context):
        denied = RESTError(  # the base of moto's own AccessDeniedError, with AWS's full message
            "AccessDenied", f"User: {caller} is not authorized to perform: sts:AssumeRole on resource: {role_arn}")
        denied.code = 403
        raise denied
    duration = responder._get_int_param("DurationSeconds", 3600)
    if duration > int(role.max_session_duration or 3600):
        error = RESTError("ValidationError", "The requested DurationSeconds exceeds the "
                                                         "MaxSessionDuration set for this role.")
        error.code = 400
        raise error


def _is_assume_role(responder) -> bool:
    return type(responder).__module__.startswith("moto.sts") and responder._get_action() == "AssumeRole"


def authorise(responder, iam_request_cls, resource: str, original):
    """Replacement body of moto's ``_authenticate_and_authorize_action`` (see :func:`install`)."""
    identity: Identity | None = getattr(_request, "identity", None)
    from .moto_compat import S3IAMRequest

    if iam_request_cls is S3IAMRequest:
        _s3_defaults_and_public_policy(responder, resource, identity.arns[0] if identity and identity.arns
                                       else f"arn:aws:iam::{ACCOUNT_ID}:root")
    if identity is None:
        if _is_assume_role(responder):  # the course key too: only roles that trust the account
            _check_assume_role(responder, None)
        return original(responder, iam_request_cls, resource)
    from .moto_compat import ActionAuthenticatorMixin, IAMPolicy

    if responder.headers.get("X-Amz-Target") in ActionAuthenticatorMixin.PUBLIC_OPERATIONS:
        return None
    parsed = urlparse(responder.uri)
    path = responder.raw_path + (f"?{parsed.query}" if parsed.query else "")
    headers = responder.headers
    presigned = getattr(_request, "presigned", False)
    token = getattr(_request, "token", None)
    if presigned:
        # moto reads the credential scope from an Authorization header; a presigned
        # request has none. Its v4 signature was checked by presign.verify already.
        params = parse_qs(_request.query)
        credential = params.get("X-Amz-Credential", [None])[0] or \
            f"{identity.access_key}/19700101/us-east-1/s3/aws4_request"
        headers = dict(responder.headers.items())
        headers["Authorization"] = f"AWS4-HMAC-SHA256 Credential={credential}, SignedHeaders=host, Signature=-"
        if token:
            headers["X-Amz-Security-Token"] = token
    iam_request = iam_request_cls(account_id=responder.current_account, method=responder.method, path=path,
                                  data=responder.data, body=responder.raw_body, headers=headers,
                                  action=responder._get_action())
    json_protocol = "json" in (responder.headers.get("Content-Type") or "")
    problem = identity.token_problem(token)
    if problem:
        _token_error(iam_request, problem, iam_request_cls is S3IAMRequest, json_protocol)
    if not presigned:
        iam_request.check_signature()
    action = iam_request._action
    if action == "sts:GetCallerIdentity":  # always allowed, as on AWS
        return None
    documents = [IAMPolicy(p)._policy_json for p in iam_request._access_key.collect_policies()]
    bucket = resource.split(":::", 1)[1].split("/", 1)[0] if iam_request_cls is S3IAMRequest and ":::" in resource else None
    context = policies.request_context(identity.context, _request.query)
    principal = policies.Principal(identity.arns, identity.context)
    if not policies.is_allowed(action, resource, principal, context, identity_policies=documents,
                               session_policy=identity.session_policy,
                               resource_policy=bucket_policy(bucket) if bucket not in (None, "*") else None):
        if json_protocol:  # moto's AccessDenied is XML, which JSON-protocol clients cannot read
            from .moto_compat import JsonRESTError

            denied = JsonRESTError("AccessDeniedException", f"User: {identity.arns[0]} is not authorized to "
                                   f"perform: {action} on resource: {resource} because no identity-based policy "
                                   f"allows the {action} action")
            denied.code = 400
            raise denied
        iam_request._raise_access_denied()
    if _is_assume_role(responder):
        _check_assume_role(responder, identity)
    return None


def authorizer(original):
    """moto's authorisation hook with :func:`authorise` in front (``original`` for the rest).

    Installed over ``ActionAuthenticatorMixin._authenticate_and_authorize_action`` by
    ``moto_compat.install()``, the one place moto is patched.
    """
    def authenticate_and_authorize(self, iam_request_cls, resource: str = "*"):
        return authorise(self, iam_request_cls, resource, original)

    return authenticate_and_authorize
