"""The capstone's browser client: a static upload page, hosted as an S3 static website (notebook 06).

``index.html``, ``app.js`` and ``style.css`` in this folder are the whole client: plain
JavaScript, no build step. The page POSTs the picked image to the API (``POST /uploads``, JSON
with the image in base64), polls ``GET /jobs/{job_id}`` until the job is decided or failed, and
shows the decision and the job's timeline; a refused upload shows the API's 4xx message.

:func:`publish_site` hosts it the way the lecture hosts static sites: a bucket with website
hosting (index document), Block Public Access turned off, a public-read bucket policy, each file
uploaded with its Content-Type (S3 serves what was stored; it does not guess), and a
``config.js`` that tells the page its API's URL. The page and the API are then on different
origins, so the browser enforces CORS: the API's ``Cors`` setting answers the preflight, and
the functions' own responses must carry ``Access-Control-Allow-Origin``
(``cloudlab.lambda_service.api_gateway`` explains why).

    site_url = publish_site(stack)            # or publish_site("http://127.0.0.1:PORT/prod")

The embedded backend serves the website endpoint itself (``cloudlab.backend.s3_website``: moto
stores website configurations but serves none). ``tests/test_browser_client.py`` drives the page
in headless Chromium.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import boto3

SITE_DIR = Path(__file__).resolve().parent
SITE_FILES = ("index.html", "app.js", "style.css")
CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                 ".css": "text/css; charset=utf-8"}
DEFAULT_BUCKET = "moderation-web"


def site_config(api_url: str) -> str:
    """The ``config.js`` the page reads: where its API is."""
    return f"window.MODERATION_CONFIG = {json.dumps({'apiUrl': api_url.rstrip('/')})};\n"


def _api_url_of(stack_or_api_url) -> str:
    api_url = getattr(stack_or_api_url, "api_url", stack_or_api_url)
    if not isinstance(api_url, str) or urlsplit(api_url).scheme not in ("http", "https") or not urlsplit(api_url).netloc:
        raise ValueError(f"publish_site needs a deployed stack (with .api_url) or the API's base URL such as "
                         f"'http://127.0.0.1:8123/prod'; got {stack_or_api_url!r}")
    return api_url.rstrip("/")


def _embedded_endpoint(s3) -> str:
    """The embedded backend's URL behind this S3 client, or a clear error for other backends."""
    from ...backend.embedded import HEALTH_PATH

    endpoint = (s3.meta.endpoint_url or "").rstrip("/")
    try:
        with urllib.request.urlopen(endpoint + HEALTH_PATH, timeout=5) as response:
            backend = json.load(response).get("backend")
    except (OSError, ValueError):
        backend = None
    if backend != "embedded":
        raise RuntimeError(f"publish_site serves the page from the embedded backend's S3 website endpoint; the S3 "
                           f"endpoint here ({endpoint or 'AWS'}) is not the embedded backend. Run it with the default "
                           "backend (cloudlab.use_backend()).")
    return endpoint


def publish_site(stack_or_api_url, bucket: str = DEFAULT_BUCKET, *, s3=None) -> str:
    """Host the upload page as an S3 static website pointed at the API; return the site's URL.

    ``stack_or_api_url``: the ``Stack`` from ``cloudlab.pipeline.deploy.deploy()`` (its
    ``api_url``), or the API's base URL. Publishing again updates the files (idempotent).
    Plain boto3, the same calls as on AWS (the lecture's recipe). Introduced in notebook 06.
    """
    from ...backend.s3_website import website_url

    api_url = _api_url_of(stack_or_api_url)
    s3 = s3 or boto3.client("s3")
    endpoint = _embedded_endpoint(s3)
    try:
        s3.create_bucket(Bucket=bucket)
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass
    s3.put_bucket_website(Bucket=bucket, WebsiteConfiguration={"IndexDocument": {"Suffix": "index.html"}})
    # New buckets block public policies (since April 2023); a public website needs that off first.
    s3.delete_public_access_block(Bucket=bucket)
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps({"Version": "2012-10-17", "Statement": [{
        "Sid": "PublicReadForWebsite", "Effect": "Allow", "Principal": "*",
        "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{bucket}/*"}]}))
    for name in SITE_FILES:
        s3.put_object(Bucket=bucket, Key=name, Body=(SITE_DIR / name).read_bytes(),
                      ContentType=CONTENT_TYPES[Path(name).suffix], CacheControl="no-cache")
    s3.put_object(Bucket=bucket, Key="config.js", Body=site_config(api_url).encode(),
                  ContentType=CONTENT_TYPES[".js"], CacheControl="no-cache")
    return website_url(endpoint, bucket)


__all__ = ["publish_site", "site_config", "SITE_DIR", "SITE_FILES"]
