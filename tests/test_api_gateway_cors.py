"""CORS on the course's API Gateway front, as SAM's ``Cors`` setting configures a REST API.

Raw HTTP (``http.client``), because CORS lives in headers a browser sends and reads: the
preflight ``OPTIONS`` is answered by the API itself (SAM's MOCK integration), every other
response carries only what the function returned. A recording stand-in for the Lambda client
shows which requests reach a function. The browser's side of the same rules is tested in
``tests/test_browser_client.py``.
"""

from __future__ import annotations

import http.client
import io
import json

import pytest

from cloudlab.lambda_service.api_gateway import ApiGatewayFront, CorsConfiguration

# The capstone template's setting (PIPELINE-CONTRACT: Api Cors).
PIPELINE_CORS = {"AllowOrigin": "'*'", "AllowHeaders": "'Content-Type'", "AllowMethods": "'GET,POST,OPTIONS'"}
SITE = "http://127.0.0.1:8000"


class RecordingLambda:
    """Stands in for the Lambda client: records each invoke, answers with ``headers``."""

    def __init__(self, headers: dict | None = None) -> None:
        self.events, self.headers = [], headers or {}

    def invoke(self, FunctionName, Payload):
        self.events.append(json.loads(Payload))
        answer = {"statusCode": 202, "headers": {"Content-Type": "application/json", **self.headers},
                  "body": json.dumps({"job_id": "j1"})}
        return {"Payload": io.BytesIO(json.dumps(answer).encode())}


def request(front: ApiGatewayFront, method: str, path: str, headers: dict | None = None, body: bytes | None = None):
    """(status, {lower-case header: value}, body) of one raw HTTP request to the front."""
    connection = http.client.HTTPConnection("127.0.0.1", front.port, timeout=10)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def preflight(front, path, origin=SITE, method="POST", request_headers="content-type"):
    return request(front, "OPTIONS", path, {"Origin": origin, "Access-Control-Request-Method": method,
                                            "Access-Control-Request-Headers": request_headers})


def cors_headers(headers: dict) -> dict:
    return {k: v for k, v in headers.items() if k.startswith("access-control-")}


@pytest.fixture
def pipeline_front():
    lam = RecordingLambda()
    with ApiGatewayFront({"POST /uploads": "upload-fn", "GET /jobs/{job_id}": "status-fn"},
                         lambda_client=lam, cors=PIPELINE_CORS) as front:
        yield front, lam


def test_without_cors_a_preflight_is_an_unknown_route():
    """The default (no ``cors=``) is today's front: OPTIONS has no route, 403, no CORS headers."""
    lam = RecordingLambda()
    with ApiGatewayFront({"POST /uploads": "upload-fn"}, lambda_client=lam) as front:
        status, headers, body = preflight(front, "/prod/uploads")
    assert status == 403 and json.loads(body) == {"message": "Missing Authentication Token"}
    assert cors_headers(headers) == {} and lam.events == []


def test_preflight_is_answered_by_the_api_with_the_configured_headers(pipeline_front):
    front, lam = pipeline_front
    status, headers, body = preflight(front, "/prod/uploads")
    assert status == 200 and json.loads(body) == {}
    assert cors_headers(headers) == {"access-control-allow-origin": "*",
                                     "access-control-allow-headers": "Content-Type",
                                     "access-control-allow-methods": "GET,POST,OPTIONS"}
    assert lam.events == [], "a preflight never reaches a function (MOCK integration)"
    # Paths with parameters get their OPTIONS method too.
    status, headers, _ = preflight(front, "/prod/jobs/0f3a", method="GET")
    assert status == 200 and headers["access-control-allow-origin"] == "*"


def test_preflight_of_a_path_the_api_lacks_gets_no_cors_headers(pipeline_front):
    front, _ = pipeline_front
    status, headers, _ = preflight(front, "/prod/elsewhere")
    assert status == 403 and cors_headers(headers) == {}


def test_proxy_responses_carry_only_the_functions_headers(pipeline_front):
    """With Lambda proxy integration API Gateway adds no CORS header to a function's answer."""
    front, lam = pipeline_front
    status, headers, _ = request(front, "POST", "/prod/uploads", {"Origin": SITE, "Content-Type": "application/json"},
                                 b"{}")
    assert status == 202 and cors_headers(headers) == {}
    lam.headers = {"Access-Control-Allow-Origin": "*"}
    status, headers, _ = request(front, "POST", "/prod/uploads", {"Origin": SITE, "Content-Type": "application/json"},
                                 b"{}")
    assert status == 202 and cors_headers(headers) == {"access-control-allow-origin": "*"}
    assert len(lam.events) == 2 and lam.events[0]["headers"]["Origin"] == SITE


def test_allow_origin_is_static_so_another_origin_is_refused_by_the_browser():
    """API Gateway does not compare origins: it always sends the configured one, and the
    browser refuses the answer when that is not its own origin."""
    lam = RecordingLambda()
    with ApiGatewayFront({"POST /uploads": "upload-fn"}, lambda_client=lam,
                         cors={"AllowOrigin": "'http://site.example'", "AllowHeaders": "'Content-Type'"}) as front:
        allowed = preflight(front, "/prod/uploads", origin="http://site.example")[1]
        denied = preflight(front, "/prod/uploads", origin="http://evil.example")[1]
    assert allowed["access-control-allow-origin"] == "http://site.example"
    assert denied["access-control-allow-origin"] == "http://site.example"  # not an echo of the Origin
    assert browser_allows_preflight(allowed, "http://site.example", "POST", ["content-type"])
    assert not browser_allows_preflight(denied, "http://evil.example", "POST", ["content-type"])


def test_a_header_the_api_does_not_allow_fails_the_preflight(pipeline_front):
    front, _ = pipeline_front
    _, headers, _ = preflight(front, "/prod/uploads", request_headers="content-type,x-api-key")
    assert browser_allows_preflight(headers, SITE, "POST", ["content-type"])
    assert not browser_allows_preflight(headers, SITE, "POST", ["content-type", "x-api-key"])
    assert not browser_allows_preflight(headers, SITE, "DELETE", ["content-type"])


def test_allow_methods_unset_lists_the_paths_methods_and_any_lists_all():
    lam = RecordingLambda()
    routes = {"GET /items": "fn", "POST /items": "fn", "ANY /things/{id}": "fn"}
    with ApiGatewayFront(routes, lambda_client=lam, cors="'*'") as front:
        items = preflight(front, "/prod/items")[1]
        things = preflight(front, "/prod/things/7")[1]
    assert items["access-control-allow-methods"] == "GET,OPTIONS,POST"
    assert things["access-control-allow-methods"] == "DELETE,GET,HEAD,OPTIONS,PATCH,POST,PUT"
    assert "access-control-allow-headers" not in items  # only when AllowHeaders is set
    assert lam.events == [], "the MOCK OPTIONS wins over an ANY route, as on API Gateway"


def test_max_age_and_credentials():
    lam = RecordingLambda()
    cors = {"AllowOrigin": "'http://site.example'", "MaxAge": "'600'", "AllowCredentials": True}
    with ApiGatewayFront({"GET /items": "fn"}, lambda_client=lam, cors=cors) as front:
        headers = preflight(front, "/prod/items", method="GET")[1]
    assert headers["access-control-max-age"] == "600"
    assert headers["access-control-allow-credentials"] == "true"
    assert CorsConfiguration.from_sam({"AllowOrigin": "'*'", "MaxAge": 0}).preflight_headers({"GET"})[-1] == \
        ("Access-Control-Max-Age", "0")


def test_a_path_with_its_own_options_route_keeps_it():
    """SAM skips a path that already has an OPTIONS method: the function answers."""
    lam = RecordingLambda(headers={"Access-Control-Allow-Origin": "http://mine.example"})
    with ApiGatewayFront({"OPTIONS /items": "fn", "GET /items": "fn"}, lambda_client=lam, cors="'*'") as front:
        status, headers, _ = preflight(front, "/prod/items")
    assert status == 202 and headers["access-control-allow-origin"] == "http://mine.example"
    assert len(lam.events) == 1


def test_template_quotes_or_plain_values_mean_the_same():
    """The template writes "'*'"; a deployer reading the translated OPTIONS method back may pass "*"."""
    quoted = CorsConfiguration.from_sam({**PIPELINE_CORS, "MaxAge": "'600'", "AllowOrigin": "'http://a.example'",
                                         "AllowCredentials": True})
    plain = CorsConfiguration.from_sam({"AllowOrigin": "http://a.example", "AllowHeaders": "Content-Type",
                                        "AllowMethods": "GET,POST,OPTIONS", "MaxAge": "600", "AllowCredentials": "true"})
    assert quoted.preflight_headers({"GET"}) == plain.preflight_headers({"GET"})
    assert quoted.as_dict() == {"AllowOrigin": "http://a.example", "AllowHeaders": "Content-Type",
                                "AllowMethods": "GET,POST,OPTIONS", "MaxAge": "600", "AllowCredentials": True}
    with ApiGatewayFront({"GET /items": "fn"}, lambda_client=RecordingLambda(), cors=PIPELINE_CORS) as front:
        assert front.cors == {"AllowOrigin": "*", "AllowHeaders": "Content-Type", "AllowMethods": "GET,POST,OPTIONS"}
    assert ApiGatewayFront({"GET /items": "fn"}, lambda_client=RecordingLambda()).cors is None


@pytest.mark.parametrize("cors, words", [
    ({"AllowOrigin": "'*"}, "unbalanced quotes"),
    ({"AllowOrigin": 7}, "must be a string"),
    ({"AllowHeaders": "'Content-Type'"}, "needs AllowOrigin"),
    ({"AllowOrigin": "'*'", "AllowOrigins": "'*'"}, "unknown keys"),
    ({"AllowOrigin": "'*'", "AllowCredentials": True}, "AllowCredentials can not be true"),
    ({"AllowOrigin": "'*'", "MaxAge": "'ten'"}, "whole number"),
    (["'*'"], "must be a string"),
])
def test_bad_cors_settings_are_refused_clearly(cors, words):
    with pytest.raises(ValueError, match=words):
        ApiGatewayFront({"GET /items": "fn"}, lambda_client=RecordingLambda(), cors=cors)


def browser_allows_preflight(headers: dict, origin: str, method: str, request_headers: list[str]) -> bool:
    """The Fetch standard's CORS check of a preflight response (no credentials), in short."""
    allow_origin = headers.get("access-control-allow-origin")
    if allow_origin not in ("*", origin):
        return False
    safelisted = {"GET", "HEAD", "POST"}
    methods = {m.strip().upper() for m in headers.get("access-control-allow-methods", "").split(",") if m.strip()}
    if method not in safelisted and method not in methods and "*" not in methods:
        return False
    allowed = {h.strip().lower() for h in headers.get("access-control-allow-headers", "").split(",") if h.strip()}
    return all(h.lower() in allowed or "*" in allowed for h in request_headers)
