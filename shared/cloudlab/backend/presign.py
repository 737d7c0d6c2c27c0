"""SigV4 checks for presigned S3 URLs on the embedded backend.

Introduced in notebook 02 (presigned uploads and downloads). moto accepts any presigned
URL, expired, tampered or re-targeted (see ``docs/emulators.md``), which would
teach that presigned URLs are not a security boundary. This module verifies them the way S3
does, from the AWS Signature Version 4 specification (query-string authentication):

- ``X-Amz-Date`` + ``X-Amz-Expires`` in the past: 403 ``AccessDenied`` "Request has expired";
- ``X-Amz-Expires`` over 7 days: 400 ``AuthorizationQueryParametersError``;
- an unknown access key: 403 ``InvalidAccessKeyId``;
- temporary credentials (``sts.assume_role``): the URL must carry their session token in
  ``X-Amz-Security-Token`` (else 400 ``InvalidToken``), and it stops working when the
  credentials expire, even if ``X-Amz-Expires`` runs longer (400 ``ExpiredToken``);
- any change to the method, bucket, key, signed query parameters or signed headers:
  403 ``SignatureDoesNotMatch``.

Requests signed in the ``Authorization`` header are checked by moto's own code
(:mod:`.iam_auth`); the permissions of a presigned URL are its signer's (:mod:`.iam_auth`).
SigV2 presigned URLs (``AWSAccessKeyId=...&Signature=...``, boto3's default for S3 when no
``signature_version`` is configured) are not verified here; their signer's policies are
still enforced.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import uuid
from urllib.parse import parse_qsl, quote, unquote

from . import iam_auth

MAX_EXPIRES_SECONDS = 604_800


class PresignedUrlRejected(Exception):
    def __init__(self, status: int, code: str, message: str, **details: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details

    def xml(self) -> bytes:
        extra = "".join(f"<{name}>{value}</{name}>" for name, value in self.details.items())
        return (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{self.code}</Code>'
                f"<Message>{self.message}</Message>{extra}<RequestId>{uuid.uuid4().hex[:16].upper()}</RequestId>"
                f"</Error>").encode()


def is_presigned(query: str) -> bool:
    return "X-Amz-Signature=" in query and "X-Amz-Algorithm=" in query


def _uri_encode(text: str, safe: str = "-_.~") -> str:
    return quote(text, safe=safe)


def signature_for(method: str, raw_path: str, query_pairs: list[tuple[str, str]], headers, signed_headers: list[str],
                  amz_date: str, scope: str, secret: str) -> str:
    """The SigV4 signature S3 would compute for a presigned request."""
    canonical_uri = _uri_encode(unquote(raw_path), safe="/-_.~")
    canonical_query = "&".join(f"{_uri_encode(k)}={_uri_encode(v)}" for k, v in sorted(
        (k, v) for k, v in query_pairs if k != "X-Amz-Signature"))
    canonical_headers = "".join(f"{name}:{' '.join((headers.get(name) or '').split())}\n" for name in signed_headers)
    payload_hash = dict(query_pairs).get("X-Amz-Content-Sha256", "UNSIGNED-PAYLOAD")
    canonical_request = "\n".join([method, canonical_uri, canonical_query, canonical_headers,
                                   ";".join(signed_headers), payload_hash])
    string_to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope,
                                hashlib.sha256(canonical_request.encode()).hexdigest()])
    date, region, service, _ = scope.split("/")
    key = ("AWS4" + secret).encode()
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()


def verify(method: str, raw_path: str, query: str, headers, now: dt.datetime | None = None) -> None:
    """Raise ``PresignedUrlRejected`` unless the presigned request is valid right now."""
    pairs = parse_qsl(query, keep_blank_values=True)
    params = dict(pairs)
    try:
        credential = params["X-Amz-Credential"]
        access_key, scope = credential.split("/", 1)
        amz_date = params["X-Amz-Date"]
        signed_at = dt.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.timezone.utc)
        expires = int(params["X-Amz-Expires"])
        signed_headers = params["X-Amz-SignedHeaders"].lower().split(";")
        provided = params["X-Amz-Signature"]
        if params.get("X-Amz-Algorithm") != "AWS4-HMAC-SHA256" or len(scope.split("/")) != 4:
            raise ValueError("algorithm or scope")
    except (KeyError, ValueError):
        raise PresignedUrlRejected(400, "AuthorizationQueryParametersError",
                                   "Query-string authentication version 4 requires the X-Amz-Algorithm, "
                                   "X-Amz-Credential, X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, "
                                   "and X-Amz-Expires parameters.") from None
    if not 0 < expires <= MAX_EXPIRES_SECONDS:
        raise PresignedUrlRejected(400, "AuthorizationQueryParametersError",
                                   "X-Amz-Expires must be less than a week (in seconds) that is, "
                                   "the given X-Amz-Expires must be less than 604800 seconds")
    now = now or dt.datetime.now(dt.timezone.utc)
    expired_at = signed_at + dt.timedelta(seconds=expires)
    if now > expired_at:
        raise PresignedUrlRejected(403, "AccessDenied", "Request has expired", **{
            "X-Amz-Expires": str(expires), "Expires": expired_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "ServerTime": now.strftime("%Y-%m-%dT%H:%M:%SZ")})
    identity = iam_auth.lookup(access_key)
    if identity is None:
        raise PresignedUrlRejected(403, "InvalidAccessKeyId",
                                   "The AWS Access Key Id you provided does not exist in our records.",
                                   AWSAccessKeyId=access_key)
    problem = identity.token_problem(params.get("X-Amz-Security-Token"), now)
    if problem == "InvalidToken":
        raise PresignedUrlRejected(400, "InvalidToken", "The provided token is malformed or otherwise invalid.",
                                   Token=params.get("X-Amz-Security-Token", ""))
    if problem == "ExpiredToken":
        raise PresignedUrlRejected(400, "ExpiredToken", "The provided token has expired.",
                                   Token=params.get("X-Amz-Security-Token", ""))
    secret = identity.secret
    expected = signature_for(method, raw_path, pairs, headers, signed_headers, amz_date, scope, secret)
    if not hmac.compare_digest(expected, provided):
        raise PresignedUrlRejected(403, "SignatureDoesNotMatch",
                                   "The request signature we calculated does not match the signature you "
                                   "provided. Check your key and signing method.", AWSAccessKeyId=access_key)
