"""AWS wire-protocol facts that cloudlab's servers and checks share, each defined once.

Introduced with the embedded backend (notebook 01) and used by the Lambda service's servers
(notebook 03): the course's default region, HTTP reason phrases, and the SigV4 credential
scope (``Credential=<access key>/<date>/<region>/<service>/aws4_request``) that a signed
request carries in its ``Authorization`` header.
"""

from __future__ import annotations

import re
from http.server import BaseHTTPRequestHandler

DEFAULT_REGION = "us-east-1"

# status code -> reason phrase, for status lines ("HTTP/1.1 404 Not Found").
HTTP_REASONS = {code: reason for code, (reason, _) in BaseHTTPRequestHandler.responses.items()}

# Groups: access_key (also group 1), date, region, service.
CREDENTIAL_SCOPE = re.compile(
    r"Credential=(?P<access_key>[^/,\s]+)/(?P<date>\d{8})/(?P<region>[^/]+)/(?P<service>[^/]+)/aws4_request")


def signed_region(headers, default: str = DEFAULT_REGION) -> str:
    """The region a request is signed for (its ``Authorization`` credential scope), else ``default``."""
    match = CREDENTIAL_SCOPE.search(headers.get("Authorization", "") or "")
    return match.group("region") if match else default
