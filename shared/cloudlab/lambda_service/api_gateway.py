"""An API Gateway REST API (Lambda proxy integration) on loopback, in front of functions.

Introduced in notebook 03 (event shapes from API Gateway). ``ApiGatewayFront`` is a small
HTTP server on 127.0.0.1 that does what a REST API with ``AWS_PROXY`` integrations does:

- matches ``METHOD /resource/{param}/{proxy+}`` routes (``ANY`` matches every method);
- turns the request into the v1 proxy event (``resource``, ``path``, ``httpMethod``,
  ``headers``/``multiValueHeaders``, ``queryStringParameters``/``multiValue...``,
  ``pathParameters``, ``requestContext``, ``body``, ``isBase64Encoded``);
- invokes the function through the Lambda API (plain boto3, so it works whether the emulator
  runs in this process or in ``python -m cloudlab backend serve``);
- turns ``{"statusCode", "headers", "multiValueHeaders", "body", "isBase64Encoded"}`` back
  into the HTTP response; a function error or a malformed answer is ``502
  {"message": "Internal server error"}``, as on AWS; a throttled function is ``429``;
- throttles each route with a token bucket (``rate`` requests per second, ``burst``), as a
  usage plan / stage throttle does: over it, ``429 {"message": "Too Many Requests"}`` with a
  ``Retry-After`` header (seconds until a token is back; AWS itself sends no Retry-After);
- with ``cors=`` (an ``AWS::Serverless::Api``'s ``Cors`` setting, notebook 06), answers the
  CORS preflight itself, as the ``OPTIONS`` method SAM adds to every path does (see
  ``CorsConfiguration``).

    front = ApiGatewayFront({"GET /items/{id}": "items-fn"}, rate_limits={"GET /items/{id}": (5, 10)}).start()
    urllib.request.urlopen(front.url + "/items/42")   # front.url ends with the stage, /prod

CORS with Lambda proxy integration (what a function behind a ``Cors`` API must do): SAM's
``Cors`` adds only the ``OPTIONS`` method, a MOCK integration that returns the configured
``Access-Control-Allow-*`` headers. API Gateway passes a proxy integration's response through
untouched, so every other response (200s, 4xx from the function) carries CORS headers only if
the FUNCTION returns them: at least ``Access-Control-Allow-Origin`` (AWS's docs ask for
``-Methods`` and ``-Headers`` too). Without it the browser sends the request but refuses the page
the answer, error messages included. API Gateway's own errors (403 unknown route, 429, 502,
504) carry none either, unless the API's ``GatewayResponses`` add them; this front mirrors that.

HTTP itself is cloudlab's one HTTP layer (``backend/http11.py``, on h11): chunked bodies,
keep-alive, limits (10 MB payloads, as API Gateway), and 400 ``{"message": ...}`` for malformed
requests, which never reach a function.
"""

from __future__ import annotations

import base64
import json
import math
import re
import threading
import time
import uuid
from urllib.parse import parse_qs, urlsplit

from ..backend.http11 import HttpLimits, HttpServer, Request

# API Gateway's payload limit is 10 MB (aws-facts.md, API Gateway row); fewer connections than the emulator's.
API_GATEWAY_LIMITS = HttpLimits(max_body_bytes=10 * 1024 * 1024, max_connections=64)
_ERROR_TYPES = {403: "MissingAuthenticationTokenException", 413: "RequestTooLongException",
                429: "TooManyRequestsException", 502: "InternalServerErrorException", 504: "IntegrationTimeout"}


def api_gateway_error_document(status: int, code: str, message: str) -> tuple[int, list, bytes]:
    """A request the HTTP layer rejects, in API Gateway's JSON error shape (``{"message": ...}``)."""
    if code == "EntityTooLarge":
        status, message = 413, "Request Too Long"
    headers = [("Content-Type", "application/json"), ("x-amzn-RequestId", str(uuid.uuid4())),
               ("x-amzn-ErrorType", _ERROR_TYPES.get(status, "BadRequestException"))]
    return status, headers, json.dumps({"message": message}).encode()


class TokenBucket:
    """``rate`` tokens a second up to ``burst``; ``take()`` answers (allowed, seconds to wait)."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = float(rate), max(1, int(burst))
        self.tokens = float(self.burst)
        self.updated = time.monotonic()
        self._lock = threading.Lock()

    def take(self) -> tuple[bool, float]:
        with self._lock:
            now = time.monotonic()
            self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
            self.updated = now
            if self.tokens >= 1:
                self.tokens -= 1
                return True, 0.0
            return False, (1 - self.tokens) / self.rate if self.rate > 0 else 60.0


class CorsConfiguration:
    """An API's CORS setting, as SAM's ``Cors`` property turns it into API Gateway (notebook 06).

    SAM adds an ``OPTIONS`` method to every path of the API (unless the path has one already),
    with a MOCK integration: ``200``, body ``{}``, and these static headers, whatever the
    request's ``Origin`` (the BROWSER compares them with its origin and refuses a mismatch):

    - ``Access-Control-Allow-Origin``: ``AllowOrigin`` (required), sent as written: a
      comma-separated list is sent as is too, which browsers reject (one origin or ``*``);
    - ``Access-Control-Allow-Headers``: ``AllowHeaders``, only if set;
    - ``Access-Control-Allow-Methods``: ``AllowMethods``, or if unset the path's own methods
      plus ``OPTIONS`` (every method for an ``ANY`` route), sorted;
    - ``Access-Control-Max-Age``: ``MaxAge``, only if set (``0`` included);
    - ``Access-Control-Allow-Credentials: true`` only when ``AllowCredentials`` is true, which
      SAM refuses together with ``AllowOrigin: "'*'"``.

    Values are written as in the template, API Gateway "string expressions" with the literal in
    single quotes (``AllowOrigin: "'*'"``), or already unquoted (``"*"``, what a deployer reads
    back from the translated OPTIONS method); ``MaxAge`` may be an integer and
    ``AllowCredentials`` a boolean or ``"true"``.
    """

    FIELDS = ("AllowOrigin", "AllowHeaders", "AllowMethods", "MaxAge", "AllowCredentials")

    def __init__(self, allow_origin: str, allow_headers: str | None = None, allow_methods: str | None = None,
                 max_age: int | None = None, allow_credentials: bool = False) -> None:
        if not allow_origin:
            raise ValueError("Cors needs AllowOrigin (for example \"'*'\" or \"'https://example.com'\")")
        if allow_credentials and allow_origin == "*":
            raise ValueError("Cors: AllowCredentials can not be true when AllowOrigin is \"'*'\" (SAM refuses it, "
                             "and browsers ignore credentials with a wildcard origin)")
        self.allow_origin, self.allow_headers, self.allow_methods = allow_origin, allow_headers, allow_methods
        self.max_age, self.allow_credentials = max_age, bool(allow_credentials)

    @classmethod
    def from_sam(cls, setting) -> "CorsConfiguration | None":
        """From a template's ``Cors`` value: ``None``, a string (the origin) or a dict of ``FIELDS``."""
        if setting is None or isinstance(setting, CorsConfiguration):
            return setting
        if isinstance(setting, str):
            setting = {"AllowOrigin": setting}
        if not isinstance(setting, dict):
            raise ValueError(f"Cors must be a string (the allowed origin) or a mapping of {', '.join(cls.FIELDS)}; "
                             f"got {type(setting).__name__}")
        unknown = sorted(set(setting) - set(cls.FIELDS))
        if unknown:
            raise ValueError(f"Cors has unknown keys {unknown}; SAM allows {', '.join(cls.FIELDS)}")
        credentials = setting.get("AllowCredentials", False)
        if isinstance(credentials, str) and _string_expression("AllowCredentials", credentials) in ("true", "false"):
            credentials = _string_expression("AllowCredentials", credentials) == "true"
        if not isinstance(credentials, bool):
            raise ValueError(f"Cors AllowCredentials must be true or false, got {credentials!r}")
        max_age = setting.get("MaxAge")
        if max_age is not None and not isinstance(max_age, int):
            max_age = _string_expression("MaxAge", max_age)
            if not max_age.isdigit():
                raise ValueError(f"Cors MaxAge must be a whole number of seconds, got {setting['MaxAge']!r}")
        return cls(_string_expression("AllowOrigin", setting.get("AllowOrigin")),
                   _string_expression("AllowHeaders", setting.get("AllowHeaders")),
                   _string_expression("AllowMethods", setting.get("AllowMethods")),
                   None if max_age is None else int(max_age), credentials)

    def as_dict(self) -> dict:
        """The setting with its values unquoted, only the keys that are set."""
        values = {"AllowOrigin": self.allow_origin, "AllowHeaders": self.allow_headers,
                  "AllowMethods": self.allow_methods, "MaxAge": None if self.max_age is None else str(self.max_age),
                  "AllowCredentials": True if self.allow_credentials else None}
        return {key: value for key, value in values.items() if value is not None}

    def preflight_headers(self, methods_on_path) -> list[tuple[str, str]]:
        """The MOCK ``OPTIONS`` response's headers for a path whose routes have ``methods_on_path``."""
        methods = self.allow_methods
        if not methods:
            named = {method.upper() for method in methods_on_path}
            named = set(_ALL_HTTP_METHODS) if "ANY" in named else named | {"OPTIONS"}
            methods = ",".join(sorted(named))
        headers = [("Access-Control-Allow-Origin", self.allow_origin)]
        if self.allow_headers:
            headers.append(("Access-Control-Allow-Headers", self.allow_headers))
        headers.append(("Access-Control-Allow-Methods", methods))
        if self.max_age is not None:
            headers.append(("Access-Control-Max-Age", str(self.max_age)))
        if self.allow_credentials:
            headers.append(("Access-Control-Allow-Credentials", "true"))
        return headers


# The methods SAM lists in Access-Control-Allow-Methods for a path with an ANY route.
_ALL_HTTP_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


def _string_expression(name: str, value) -> str | None:
    """The literal of a Cors value: ``"'*'"`` (the template's string expression) or ``"*"`` -> ``*``."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"Cors {name} must be a string such as \"'*'\" (as in a SAM template), got {value!r}")
    if len(value) >= 2 and value[0] == value[-1] == "'":
        return value[1:-1]
    if "'" in value:
        raise ValueError(f"Cors {name} {value!r} has unbalanced quotes; write \"'value'\" as in a SAM template")
    return value


class Route:
    def __init__(self, spec: str, function: str | None) -> None:
        method, _, resource = spec.strip().partition(" ")
        self.method, self.resource, self.function = method.upper(), resource or "/", function
        pattern = ""
        self.literal_segments = 0
        self.greedy = False
        for segment in self.resource.strip("/").split("/") if self.resource.strip("/") else []:
            if segment.startswith("{") and segment.endswith("+}"):
                pattern += f"/(?P<{segment[1:-2]}>.+)"
                self.greedy = True
            elif segment.startswith("{") and segment.endswith("}"):
                pattern += f"/(?P<{segment[1:-1]}>[^/]+)"
            else:
                pattern += "/" + re.escape(segment)
                self.literal_segments += 1
        self.regex = re.compile("^" + (pattern or "/") + "/?$")

    @property
    def key(self) -> str:
        return f"{self.method} {self.resource}"

    def match(self, method: str, path: str):
        if self.method not in ("ANY", method):
            return None
        return self.regex.match(path)


class ApiGatewayFront:
    """A REST API proxy in front of Lambda functions, on 127.0.0.1 (see the module docstring)."""

    def __init__(self, routes: dict[str, str], *, stage: str = "prod", rate_limits: dict | None = None,
                 default_rate_limit: tuple[float, int] | None = None, port: int = 0,
                 lambda_client=None, integration_timeout: float = 29.0,
                 limits: HttpLimits = API_GATEWAY_LIMITS, cors=None) -> None:
        declared = [Route(spec, fn) for spec, fn in routes.items()]
        # cors: None (no CORS, the default), or the template's Cors value (see CorsConfiguration).
        self.cors_configuration = CorsConfiguration.from_sam(cors)
        # The setting unquoted, as a deployer reads it back: {"AllowOrigin": "*", ...} (or None).
        self.cors = self.cors_configuration.as_dict() if self.cors_configuration else None
        if self.cors_configuration is not None:
            # SAM adds an OPTIONS method (a MOCK, function None) to each path that lacks one.
            methods_by_path: dict[str, set[str]] = {}
            for route in declared:
                methods_by_path.setdefault(route.resource, set()).add(route.method)
            self._cors_methods = methods_by_path
            declared += [Route(f"OPTIONS {path}", None) for path, methods in methods_by_path.items()
                         if "OPTIONS" not in methods]
        self.routes = sorted(declared, key=lambda r: (r.greedy, -r.literal_segments, r.method == "ANY"))
        self.stage = stage.strip("/")
        self.buckets = {Route(spec, "").key: TokenBucket(*limit) for spec, limit in (rate_limits or {}).items()}
        self.default_rate_limit = default_rate_limit
        self.port = port
        self.integration_timeout = integration_timeout
        self.limits = limits
        self._client = lambda_client
        self._server: HttpServer | None = None
        self.api_id = uuid.uuid4().hex[:10]
        self.requests: list[dict] = []  # (route, status) per request, for notebooks and tests

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/{self.stage}"

    def _lambda(self):
        if self._client is None:
            import boto3
            from botocore.config import Config

            self._client = boto3.client("lambda", config=Config(
                retries={"mode": "standard", "total_max_attempts": 1}, read_timeout=self.integration_timeout + 1))
        return self._client

    def start(self) -> "ApiGatewayFront":
        self._server = HttpServer("127.0.0.1", self.port, self._serve, api_gateway_error_document,
                                  limits=self.limits, name="cloudlab-api-gateway")
        self.port = self._server.address[1]
        self._server.start()
        return self

    def _serve(self, request: Request):
        status, headers, payload = self.handle(request.method, request.target, request.headers, request.body,
                                               request.client[0])
        if not any(name.lower() == "content-type" for name, _ in headers):
            headers = headers + [("Content-Type", "application/json")]
        return status, headers, payload

    def stop(self) -> None:
        """Stop serving and close every connection, kept-alive ones included."""
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> "ApiGatewayFront":
        return self.start() if self._server is None else self

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- one request ------------------------------------------------------------------------------
    def handle(self, method: str, target: str, headers, body: bytes, source_ip: str = "127.0.0.1"):
        """(status, [(header, value)], body) for one HTTP request."""
        parts = urlsplit(target)
        path = parts.path
        prefix = f"/{self.stage}"
        if not (path == prefix or path.startswith(prefix + "/")):
            return self._answer(None, 403, {"message": "Forbidden"})
        path = path[len(prefix):] or "/"
        route = match = None
        for candidate in self.routes:
            match = candidate.match(method, path)
            if match:
                route = candidate
                break
        if route is None:
            return self._answer(None, 403, {"message": "Missing Authentication Token"})
        bucket = self.buckets.get(route.key)
        if bucket is None and self.default_rate_limit:
            bucket = self.buckets.setdefault(route.key, TokenBucket(*self.default_rate_limit))
        if bucket is not None:
            allowed, wait = bucket.take()
            if not allowed:
                return self._answer(route, 429, {"message": "Too Many Requests"},
                                    [("Retry-After", str(max(1, math.ceil(wait))))])
        if route.function is None:  # the CORS preflight's MOCK integration: API Gateway answers itself
            headers = self.cors_configuration.preflight_headers(self._cors_methods[route.resource])
            return self._answer(route, 200, {}, headers)
        event = self.event(method, path, parts.query, headers, body, route, match, source_ip)
        from botocore.exceptions import ClientError, ReadTimeoutError

        try:
            answer = self._lambda().invoke(FunctionName=route.function, Payload=json.dumps(event).encode())
        except ReadTimeoutError:
            return self._answer(route, 504, {"message": "Endpoint request timed out"})
        except ClientError as failure:
            if failure.response["Error"]["Code"] == "TooManyRequestsException":
                return self._answer(route, 429, {"message": "Too Many Requests"}, [("Retry-After", "1")])
            return self._answer(route, 502, {"message": "Internal server error"})
        raw = answer["Payload"].read()
        if answer.get("FunctionError"):
            return self._answer(route, 502, {"message": "Internal server error"})
        return self._from_proxy_result(route, raw)

    def _answer(self, route, status: int, document: dict, extra: list | None = None):
        self.requests.append({"route": route.key if route else None, "status": status})
        headers = [("Content-Type", "application/json"), ("x-amzn-RequestId", str(uuid.uuid4()))] + (extra or [])
        if status in (403, 429, 502, 504):
            headers.append(("x-amzn-ErrorType", _ERROR_TYPES[status]))
        return status, headers, json.dumps(document).encode()

    def _from_proxy_result(self, route, raw: bytes):
        try:
            result = json.loads(raw)
            status = int(result["statusCode"])
            headers = [(str(k), str(v)) for k, v in (result.get("headers") or {}).items()]
            for name, values in (result.get("multiValueHeaders") or {}).items():
                headers += [(str(name), str(value)) for value in values]
            body = result.get("body")
            if body is None:
                payload = b""
            elif result.get("isBase64Encoded"):
                payload = base64.b64decode(body)
            elif isinstance(body, str):
                payload = body.encode()
            else:
                raise TypeError("body must be a string")
        except (ValueError, KeyError, TypeError, AttributeError):
            return self._answer(route, 502, {"message": "Internal server error"})  # "Malformed Lambda proxy response"
        self.requests.append({"route": route.key, "status": status})
        return status, headers, payload

    def event(self, method, path, query, headers, body, route, match, source_ip) -> dict:
        """The v1 REST API proxy event for one request."""
        single, multi = {}, {}
        for name, value in headers.items():
            single[name] = value
            multi.setdefault(name, []).append(value)
        parsed = parse_qs(query, keep_blank_values=True)
        text_body, encoded = None, False
        if body:
            try:
                text_body = body.decode("utf-8")
            except UnicodeDecodeError:
                text_body, encoded = base64.b64encode(body).decode(), True
        now = time.time()
        request_id = str(uuid.uuid4())
        return {
            "resource": route.resource,
            "path": path,
            "httpMethod": method,
            "headers": single or None,
            "multiValueHeaders": multi or None,
            "queryStringParameters": {k: v[-1] for k, v in parsed.items()} or None,
            "multiValueQueryStringParameters": parsed or None,
            "pathParameters": match.groupdict() or None,
            "stageVariables": None,
            "requestContext": {
                "resourceId": route.key.replace(" ", ""), "resourcePath": route.resource, "httpMethod": method,
                "extendedRequestId": request_id, "requestTime": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
                "path": f"/{self.stage}{path}", "accountId": "123456789012", "protocol": "HTTP/1.1",
                "stage": self.stage, "domainPrefix": self.api_id, "requestTimeEpoch": int(now * 1000),
                "requestId": request_id, "identity": {"sourceIp": source_ip, "userAgent": headers.get("User-Agent")},
                "domainName": f"127.0.0.1:{self.port}", "apiId": self.api_id,
            },
            "body": text_body,
            "isBase64Encoded": encoded,
        }
