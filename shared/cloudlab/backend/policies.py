"""IAM policy evaluation for the embedded backend: identity, session and bucket policies.

Introduced in notebook 02 (least privilege with a role). moto evaluates identity policies
but ignores conditions (an ``Allow`` limited by ``s3:prefix`` allows every listing), turns
a failed condition into an explicit deny, and leaves out session policies and bucket
policies. This module follows the order AWS documents for a request inside one account
("Policy evaluation logic", IAM User Guide):

1. an explicit ``Deny`` in any policy that applies wins;
2. otherwise the request is allowed if an identity policy allows it (and, for temporary
   credentials passed a session policy, that session policy allows it too), or if the
   bucket policy allows it for this principal;
3. otherwise it is denied (implicit deny).

Conditions: ``StringEquals``, ``StringNotEquals``, ``StringLike``, ``StringNotLike``, their
``IgnoreCase`` forms, the ``...IfExists`` suffix and ``Null``. A key missing from the
request matches no positive operator and every negated one, as on AWS. An operator not in
that list makes its statement not apply (neither allow nor deny), a documented gap.
Context keys supplied: ``s3:prefix``, ``s3:delimiter`` and ``s3:max-keys`` (from the
query string, present only when the request carries them), ``aws:PrincipalArn`` and
``aws:username`` (IAM users).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import parse_qs

ALLOW, DENY, NEUTRAL = "allow", "deny", "neutral"
_S3_QUERY_KEYS = {"prefix": "s3:prefix", "delimiter": "s3:delimiter", "max-keys": "s3:max-keys"}


@dataclass
class Principal:
    """Who signed a request: the ARNs a bucket policy may name, and the request's context keys."""

    arns: tuple[str, ...] = ()  # empty: anonymous
    context: dict[str, str] = field(default_factory=dict)
    account: str | None = None  # the caller's account, which a trust policy may name as a whole

    @property
    def anonymous(self) -> bool:
        return not self.arns


def request_context(principal_context: dict[str, str], query: str) -> dict[str, str]:
    """Condition keys of one request: the principal's, plus S3's list parameters if sent."""
    context = dict(principal_context)
    params = parse_qs(query, keep_blank_values=True)
    for name, key in _S3_QUERY_KEYS.items():
        if name in params:
            context[key] = params[name][0]
    return context


def _as_list(value) -> list:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _wildcard(pattern: str, value: str, ignore_case: bool = False) -> bool:
    """IAM wildcards: ``*`` any run of characters, ``?`` one character, nothing else special."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, re.IGNORECASE | re.DOTALL if ignore_case else re.DOTALL) is not None


def _matches_any(patterns, value: str, ignore_case: bool = False) -> bool:
    return any(_wildcard(str(p), value, ignore_case) for p in _as_list(patterns))


def _condition_holds(operator: str, key: str, expected, context: dict[str, str]) -> bool | None:
    """True/False for a supported operator, None for an unsupported one."""
    if_exists = operator.endswith("IfExists")
    base = operator[: -len("IfExists")] if if_exists else operator
    present = key in context
    expected = [str(v) for v in _as_list(expected)]
    if base == "Null":
        return (not present) == (expected[0].lower() == "true")
    if not present and if_exists:
        return True
    compare = {
        "StringEquals": lambda v: v in expected,
        "StringEqualsIgnoreCase": lambda v: v.lower() in {e.lower() for e in expected},
        "StringLike": lambda v: _matches_any(expected, v),
    }
    negated = {"StringNotEquals": "StringEquals", "StringNotEqualsIgnoreCase": "StringEqualsIgnoreCase",
               "StringNotLike": "StringLike"}
    if base in compare:
        return present and compare[base](context[key])
    if base in negated:
        return not present or not compare[negated[base]](context[key])
    return None


def _conditions_hold(conditions: dict | None, context: dict[str, str]) -> bool:
    for operator, pairs in (conditions or {}).items():
        for key, expected in (pairs or {}).items():
            if not _condition_holds(operator, key, expected, context):  # None (unsupported) too
                return False
    return True


def _principal_matches(statement: dict, principal: Principal, whole_account: bool = False) -> bool:
    named = statement.get("Principal")
    if named is None:  # identity policies name no principal: they belong to one
        return True
    if named == "*":
        return True
    if isinstance(named, dict):
        aws = _as_list(named.get("AWS"))
        if "*" in aws:
            return True
        if whole_account and principal.account and (
                principal.account in aws or f"arn:aws:iam::{principal.account}:root" in aws):
            return True
        return any(arn in aws for arn in principal.arns)
    return False


def statement_result(statement: dict, action: str, resource: str, principal: Principal,
                     context: dict[str, str], whole_account: bool = False) -> str:
    """ALLOW, DENY or NEUTRAL: what one statement says about ``action`` on ``resource``."""
    if "Action" in statement:
        if not _matches_any(statement["Action"], action, ignore_case=True):
            return NEUTRAL
    elif "NotAction" in statement:
        if _matches_any(statement["NotAction"], action, ignore_case=True):
            return NEUTRAL
    else:
        return NEUTRAL
    if "Resource" in statement:  # trust policies have none: they apply to their role
        if not _matches_any(statement["Resource"], resource):
            return NEUTRAL
    elif "NotResource" in statement and _matches_any(statement["NotResource"], resource):
        return NEUTRAL
    if "NotPrincipal" in statement or not _principal_matches(statement, principal, whole_account):
        return NEUTRAL
    if not _conditions_hold(statement.get("Condition"), context):
        return NEUTRAL
    return DENY if statement.get("Effect") == "Deny" else ALLOW


def policy_result(document: dict | None, action: str, resource: str, principal: Principal,
                  context: dict[str, str]) -> str:
    """DENY if any statement denies, else ALLOW if any allows, else NEUTRAL."""
    if not document:
        return NEUTRAL
    results = {statement_result(s, action, resource, principal, context)
               for s in _as_list(document.get("Statement"))}
    return DENY if DENY in results else ALLOW if ALLOW in results else NEUTRAL


def trust_allows(trust_policy: dict | None, role_arn: str, principal: Principal, context: dict[str, str]) -> bool:
    """Whether a role's trust policy lets ``principal`` call ``sts:AssumeRole`` on it.

    A trust policy naming the account (``arn:aws:iam::<account>:root``) lets in any identity
    of that account whose own policies allow ``sts:AssumeRole``; those are checked apart.
    """
    results = {statement_result(s, "sts:AssumeRole", role_arn, principal, context, whole_account=True)
               for s in _as_list((trust_policy or {}).get("Statement"))}
    return ALLOW in results and DENY not in results


def is_allowed(action: str, resource: str, principal: Principal, context: dict[str, str], *,
               identity_policies: list[dict] = (), session_policy: dict | None = None,
               resource_policy: dict | None = None) -> bool:
    """AWS's decision for one request in one account (see the module docstring)."""
    identity = [policy_result(d, action, resource, principal, context) for d in identity_policies]
    session = policy_result(session_policy, action, resource, principal, context) if session_policy else None
    bucket = policy_result(resource_policy, action, resource, principal, context)
    if DENY in identity or session == DENY or bucket == DENY:
        return False
    by_identity = ALLOW in identity and session in (None, ALLOW)
    return by_identity or bucket == ALLOW


__all__ = ["Principal", "request_context", "statement_result", "policy_result", "trust_allows", "is_allowed"]
