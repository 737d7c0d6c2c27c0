"""S3 static website hosting on the embedded backend: the website endpoint moto lacks.

Introduced in notebook 06 (the capstone's upload page, ``cloudlab.pipeline.web``). moto stores
``PutBucketWebsite`` but serves no website endpoint, so the embedded front answers one itself,
the way S3's does (docs/aws-facts.md, S3 website rows):

- ``GET /`` and ``GET /dir/`` serve the ``IndexDocument`` suffix under that prefix; ``GET /dir``
  with no such object but a ``dir/<index>`` redirects (302) to ``/dir/``;
- objects are read as an ANONYMOUS ``GetObject`` would be (the bucket policy must grant
  ``s3:GetObject`` to everyone, Block Public Access must be off), with the ``Content-Type``
  stored with each object: S3 does not guess it from the name, the uploader sets it;
- errors are HTML pages (``404 Not Found``, ``Code: NoSuchKey``...), or the ``ErrorDocument``
  when one is configured and readable; only ``GET`` and ``HEAD`` are allowed (else 405);
- ``RedirectAllRequestsTo`` redirects every request (301); ``RoutingRules`` are not emulated
  (a 501 page says so).

Addresses, on the emulator's own port: ``http://<bucket>.s3-website.localhost:<port>/`` is
AWS's shape (``<bucket>.s3-website-<region>.amazonaws.com``), one origin per bucket; browsers
resolve ``*.localhost`` to loopback, but many systems' resolvers (and so Python's urllib) do
not. ``http://127.0.0.1:<port>/_cloudlab/s3-website/<bucket>/`` reaches the same site from any
client; :func:`website_url` gives it.
"""

from __future__ import annotations

import html
import re
import uuid
import xml.etree.ElementTree as ElementTree
from urllib.parse import quote, unquote

from .aws_protocol import HTTP_REASONS
from .http11 import RequestHeaders

PATH_PREFIX = "/_cloudlab/s3-website/"
# <bucket>.s3-website.localhost, <bucket>.s3-website-us-east-1.localhost, <bucket>.s3-website.eu-west-1.localhost
_WEBSITE_HOST = re.compile(r"^(?P<bucket>[a-z0-9][a-z0-9.-]*[a-z0-9])\.s3-website(?:[.-][a-z0-9-]+)?\.localhost(?::\d+)?$")
# Request headers an anonymous GetObject may carry over (conditional and range requests).
_FORWARDED = ("range", "if-match", "if-none-match", "if-modified-since", "if-unmodified-since", "user-agent")


def website_url(endpoint: str, bucket: str) -> str:
    """The site's URL on the embedded backend at ``endpoint`` (path form: works from any client)."""
    return f"{endpoint.rstrip('/')}{PATH_PREFIX}{bucket}/"


def website_host_url(endpoint: str, bucket: str) -> str:
    """The same site in AWS's host form, ``http://<bucket>.s3-website.localhost:<port>/`` (browsers)."""
    port = endpoint.rstrip("/").rpartition(":")[2]
    return f"http://{bucket}.s3-website.localhost:{port}/"


def match(host: str, path: str) -> tuple[str, str, str] | None:
    """(bucket, key path, site root path) when a request is for a website endpoint, else None."""
    found = _WEBSITE_HOST.match(host.lower())
    if found:
        return found.group("bucket"), path, "/"
    if path.startswith(PATH_PREFIX):
        bucket, slash, rest = path[len(PATH_PREFIX):].partition("/")
        if bucket:
            return bucket, slash + rest, f"{PATH_PREFIX}{bucket}/"
    return None


def respond(get_object, method: str, bucket: str, path: str, root: str, headers) -> tuple[int, dict, bytes]:
    """One website request. ``get_object(method, target, headers)`` is the backend's own answer to
    an unsigned S3 REST request (bucket policy and all), as ``(status, headers, body)``."""
    if method not in ("GET", "HEAD"):
        return _page(405, "MethodNotAllowed", "The specified method is not allowed against this resource.",
                     method=method, extra={"Allow": "GET, HEAD"})
    from .iam_auth import ACCOUNT_ID
    from .moto_compat import s3_backends

    try:
        found = s3_backends[ACCOUNT_ID]["aws"].get_bucket(bucket)
    except Exception:  # moto's MissingBucket
        return _page(404, "NoSuchBucket", "The specified bucket does not exist", method=method, BucketName=bucket)
    if not found.website_configuration:
        return _page(404, "NoSuchWebsiteConfiguration", "The specified bucket does not have a website configuration",
                     method=method, BucketName=bucket)
    config = _parse(found.website_configuration)
    if config.get("redirect_host"):
        location = f"{config.get('redirect_protocol') or 'http'}://{config['redirect_host']}{path}"
        return _page(301, None, None, method=method, extra={"Location": location})
    if config.get("routing_rules"):
        return _page(501, "NotImplemented", "RoutingRules are not emulated by the embedded backend", method=method)
    suffix = config.get("index")
    if not suffix:
        return _page(404, "NoSuchWebsiteConfiguration", "The website configuration has no IndexDocument",
                     method=method, BucketName=bucket)
    key = unquote(path.lstrip("/"))
    if key == "" or key.endswith("/"):
        key += suffix
    forwarded = RequestHeaders([(name, value) for name, value in headers.items() if name.lower() in _FORWARDED])
    # Always a GET: moto checks an anonymous HEAD against "s3:HeadObject", an action no policy
    # grants (S3 checks s3:GetObject), so a HEAD is a GET whose body is dropped.
    status, answer_headers, body = get_object("GET", f"/{bucket}/{quote(key)}", forwarded)
    if status < 400:
        return status, _object_headers(answer_headers), b"" if method == "HEAD" else body
    code = _error_code(body) or ("NoSuchKey" if status == 404 else "AccessDenied")
    if status == 404 and not key.endswith(suffix):  # "/about" when "about/index.html" exists
        folder_status, _, _ = get_object("GET", f"/{bucket}/{quote(key + '/' + suffix)}", forwarded)
        if folder_status == 200:
            return _page(302, None, None, method=method, extra={"Location": f"{root}{quote(key)}/"})
    if config.get("error") and status in (403, 404):
        error_status, error_headers, error_body = get_object("GET", f"/{bucket}/{quote(config['error'])}", forwarded)
        if error_status == 200:
            return status, _object_headers(error_headers), b"" if method == "HEAD" else error_body
    message = {"NoSuchKey": "The specified key does not exist.", "AccessDenied": "Access Denied"}.get(code, code)
    return _page(status, code, message, method=method, Key=key)


def _parse(document: bytes | str) -> dict:
    """IndexDocument, ErrorDocument, RedirectAllRequestsTo and RoutingRules of a website configuration."""
    root = ElementTree.fromstring(document)

    def text(path: str) -> str | None:
        element = root.find("{*}" + path.replace("/", "/{*}"))  # any namespace, or none
        return element.text.strip() if element is not None and element.text else None

    return {"index": text("IndexDocument/Suffix"), "error": text("ErrorDocument/Key"),
            "redirect_host": text("RedirectAllRequestsTo/HostName"),
            "redirect_protocol": text("RedirectAllRequestsTo/Protocol"),
            "routing_rules": root.find("{*}RoutingRules") is not None}


def _object_headers(headers) -> dict:
    """The object's headers as the website endpoint sends them (no REST-API-only headers)."""
    keep = {}
    for name, value in dict(headers).items():
        name = "Content-Type" if name.lower() == "content-type" else name
        if name.lower() in ("content-type", "content-length", "etag", "last-modified", "content-range",
                            "accept-ranges", "cache-control", "content-encoding", "content-language",
                            "content-disposition", "expires") or name.lower().startswith("x-amz-meta-"):
            keep[name] = value
    keep.setdefault("Content-Type", "binary/octet-stream")
    return keep


def _error_code(body: bytes) -> str | None:
    found = re.search(rb"<Code>([^<]+)</Code>", body or b"")
    return found.group(1).decode() if found else None


def _page(status: int, code: str | None, message: str | None, *, method: str, extra: dict | None = None,
          **details) -> tuple[int, dict, bytes]:
    """S3's website error page (HTML, not the REST API's XML)."""
    title = f"{status} {HTTP_REASONS.get(status, '')}".strip()
    items = [("Code", code), ("Message", message), *details.items(), ("RequestId", uuid.uuid4().hex[:16].upper())]
    lines = "".join(f"<li>{name}: {html.escape(str(value))}</li>\n" for name, value in items if value)
    page = f"<html>\n<head><title>{title}</title></head>\n<body>\n<h1>{title}</h1>\n<ul>\n{lines}</ul>\n<hr/>\n</body>\n</html>\n"
    headers = {"Content-Type": "text/html; charset=utf-8", **(extra or {})}
    return status, headers, b"" if method == "HEAD" else page.encode()
