"""The capstone's upload page in a real browser: headless Chromium, driven by Selenium.

The page is published as an S3 static website on the embedded backend
(``cloudlab.pipeline.web.publish_site``) and talks to an API on another origin, so Chromium
enforces CORS exactly as it would against AWS: the preflight, and the
``Access-Control-Allow-Origin`` each answer must carry.

- Against small fixture functions (``tests/fixtures/web_api.py``) behind an ``ApiGatewayFront``:
  the page's flow, and the three ways CORS breaks it (no ``Cors`` on the API; functions that
  return no ``Access-Control-Allow-Origin``; an API that allows another origin).
- Against the real pipeline deployed from ``template.yaml`` (``cloudlab.pipeline.deploy``): a
  good image reaches a decision; a file that is not an image shows the API's 4xx message.

Screenshots are kept under ``.cloudlab-test/artifacts/browser/`` (``CLOUDLAB_ARTIFACTS_DIR``
moves it); each test prints its path. Skipped, with the reason, where Debian's ``chromium``,
``chromium-driver`` or the ``selenium`` package is missing: ``make test-browser`` installs them.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import struct
import tempfile
import urllib.error
import urllib.request
import uuid
import zlib
from pathlib import Path

import pytest

import cloudlab
from cloudlab.lambda_service.api_gateway import ApiGatewayFront
from cloudlab.pipeline.web import publish_site
from fixtures.web_api import FixtureLambda

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("CLOUDLAB_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CLOUDLAB_CHROMEDRIVER", "/usr/bin/chromedriver")
ARTIFACTS = Path(os.environ.get("CLOUDLAB_ARTIFACTS_DIR") or REPO / ".cloudlab-test" / "artifacts") / "browser"
# The template's Cors (PIPELINE-CONTRACT), as the fixture API's setting.
PIPELINE_CORS = {"AllowOrigin": "'*'", "AllowHeaders": "'Content-Type'", "AllowMethods": "'GET,POST,OPTIONS'"}
# As the machine notes say: without the background-networking flags the closed network refuses
# Chromium's own connections, and a root user needs --no-sandbox.
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1100,1000")
DECISIONS = {"approve", "warn", "reject", "manual_review"}


def _why_no_browser() -> str | None:
    missing = [f"{what} ({path})" for what, path in (("Debian's chromium", CHROMIUM), ("chromium-driver", CHROMEDRIVER))
               if not (os.path.isfile(path) and os.access(path, os.X_OK))]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium package")
    if missing:
        return f"no browser to test in: missing {', '.join(missing)}; `make test-browser` installs them"
    return None


pytestmark = pytest.mark.skipif(_why_no_browser() is not None, reason=_why_no_browser() or "")


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="cloudlab-chromium-")
    options.add_argument(f"--user-data-dir={profile}")
    # Service with an explicit path: Selenium never tries to download a driver of its own.
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


class Page:
    """The upload page in the browser: load, pick a file, upload, wait for an outcome."""

    def __init__(self, driver, files: Path) -> None:
        self.driver, self.files = driver, files

    def load(self, url: str) -> "Page":
        self.driver.get(url)
        self.wait_for({"idle"}, timeout=15)
        return self

    def upload(self, name: str, content: bytes) -> None:
        from selenium.webdriver.common.by import By

        path = self.files / name
        path.write_bytes(content)
        self.driver.find_element(By.ID, "image").send_keys(str(path))
        self.driver.find_element(By.ID, "upload").click()

    def state(self) -> str | None:
        # None until the page's body exists: right after a navigation, or when the answer was not
        # the page (an XML error document has no body); wait_for then says what was shown.
        return self.driver.execute_script("return document.body ? document.body.dataset.state : null")

    def shown(self) -> str:
        """What the browser shows, for failure messages: URL, content type, the document's start."""
        url, kind, source = self.driver.execute_script(
            "return [location.href, document.contentType, document.documentElement ? document.documentElement.outerHTML : '']")
        return f"{url} ({kind}): {source[:400]!r}"

    def wait_for(self, states: set[str], timeout: float) -> str:
        """Wait until the page's state is one of ``states``; fail with what the page shows."""
        from selenium.common.exceptions import TimeoutException
        from selenium.webdriver.support.ui import WebDriverWait

        try:
            WebDriverWait(self.driver, timeout, poll_frequency=0.1).until(lambda _: self.state() in states)
        except TimeoutException:
            if self.state() is None:
                raise AssertionError(f"no upload page after {timeout} s (wanted {sorted(states)}); "
                                     f"the browser shows {self.shown()}") from None
            raise AssertionError(f"the page stayed {self.state()!r} for {timeout} s (wanted {sorted(states)}); "
                                 f"error box: {self.text('error')!r}; status: {self.text('status')!r}") from None
        return self.state()

    def text(self, element_id: str) -> str:
        return self.driver.execute_script(f"return document.getElementById({element_id!r}).textContent").strip()

    def timeline(self) -> list[list[str]]:
        return self.driver.execute_script(
            "return [...document.querySelectorAll('#timeline tbody tr')].map(r => [...r.cells].map(c => c.textContent))")

    def screenshot(self, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        assert self.driver.save_screenshot(str(path)), f"no screenshot written to {path}"
        assert path.stat().st_size > 1000 and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        print(f"screenshot: {path}")
        return path


@pytest.fixture
def page(browser, tmp_path):
    return Page(browser, tmp_path)


def tiny_png() -> bytes:
    """A valid 2x2 PNG (magic number, IHDR, IDAT, IEND), made here so the test needs no files."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    pixels = b"".join(b"\x00" + b"\x30\xa0\x50" * 2 for _ in range(2))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 2, 2, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(pixels)) + chunk(b"IEND", b""))


NOT_AN_IMAGE = b"Dear diary, today I renamed a text file to .png.\n"


def fixture_site(allow_origin: str | None = "*", cors=PIPELINE_CORS):
    """An API front over the fixture functions, and the page published to talk to it."""
    cloudlab.use_backend()
    functions = FixtureLambda(allow_origin)
    front = ApiGatewayFront({"POST /uploads": "upload", "GET /jobs/{job_id}": "status"},
                            lambda_client=functions, cors=cors).start()
    site = publish_site(front.url, bucket=f"web-{uuid.uuid4().hex[:10]}")
    return front, functions, site


# -- the page against fixture functions ------------------------------------------------------------
def test_fixture_api_good_image_is_polled_to_a_decision(page):
    front, functions, site = fixture_site()
    try:
        page.load(site)
        assert page.text("api-url") == front.url
        page.upload("meadow.png", tiny_png())
        assert page.wait_for({"decided", "failed", "error", "rejected"}, timeout=30) == "decided"
    finally:
        front.stop()
    assert page.text("decision") == "approve"
    assert [row[0] for row in page.timeline()] == ["uploaded", "analyzing", "moderation_done", "custom_done", "decided"]
    (job_id,) = functions.jobs
    assert page.text("job-id") == job_id and functions.reads[job_id] >= 2, "the page polled until the decision"
    page.screenshot("fixture-decided")


def test_fixture_api_bad_file_shows_the_apis_4xx_message(page):
    front, functions, site = fixture_site()
    try:
        page.load(site)
        page.upload("holiday.png", NOT_AN_IMAGE)
        assert page.wait_for({"decided", "failed", "error", "rejected"}, timeout=30) == "rejected"
    finally:
        front.stop()
    assert page.text("error") == "415 UnsupportedMediaType: The file is not a PNG or JPEG image (checked from its bytes)."
    assert functions.jobs == {}


@pytest.mark.parametrize("case, allow_origin, cors, request_sent", [
    # No Cors on the API: the preflight gets 403 without CORS headers, the POST is never sent.
    ("api without Cors", "*", None, False),
    # Cors on the API but the function returns no Access-Control-Allow-Origin: the POST is sent
    # and the upload happens, but the browser will not let the page read the answer.
    ("function without the header", None, PIPELINE_CORS, True),
    # The API allows another origin only: the preflight fails, the POST is never sent.
    ("another origin allowed", "http://elsewhere.example",
     {**PIPELINE_CORS, "AllowOrigin": "'http://elsewhere.example'"}, False),
])
def test_browser_refuses_what_cors_does_not_allow(page, case, allow_origin, cors, request_sent):
    front, functions, site = fixture_site(allow_origin, cors)
    try:
        page.load(site)
        page.upload("meadow.png", tiny_png())
        assert page.wait_for({"decided", "failed", "error", "rejected"}, timeout=30) == "error", case
    finally:
        front.stop()
    assert "Could not reach the API" in page.text("error") and "Failed to fetch" in page.text("error")
    assert bool(functions.jobs) is request_sent, case
    # Outside a browser the same API answers: only the browser enforces CORS.
    preflights = [r for r in front.requests if r["route"] and r["route"].startswith("OPTIONS")]
    assert bool(preflights) is (cors is not None)


# -- the page against the real pipeline ------------------------------------------------------------
@pytest.fixture(scope="module")
def pipeline():
    """The pipeline deployed from template.yaml (API front with the template's Cors), and the page."""
    from cloudlab.pipeline.deploy import deploy

    cloudlab.use_backend()
    stack = deploy("browser-test")
    bucket = f"browser-test-web-{uuid.uuid4().hex[:6]}"
    site = publish_site(stack, bucket=bucket)
    yield stack, site, bucket
    stack.teardown()


def a_good_image() -> tuple[str, bytes]:
    """A safe photo from the committed data set (data/moderation, its labels.csv)."""
    import csv

    folder = REPO / "data" / "moderation"
    with open(folder / "labels.csv", newline="") as labels:
        row = next(r for r in csv.DictReader(labels) if r["truth"] == "safe" and r.get("misleading_name") != "yes")
    return row["filename"], (folder / row["filename"]).read_bytes()


def api_answer(api_url: str, payload: dict) -> tuple[int, dict]:
    request = urllib.request.Request(f"{api_url}/uploads", data=json.dumps(payload).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def test_pipeline_good_image_reaches_a_decision(page, pipeline):
    from cloudlab.backend.s3_website import website_host_url

    stack, site, bucket = pipeline
    cloudlab.use_backend()
    # AWS's host form of the website endpoint, on the server that published the site: its own
    # origin, as <bucket>.s3-website-<region>.amazonaws.com
    page.load(website_host_url(site.split("/_cloudlab/")[0], bucket))
    name, image = a_good_image()
    page.upload(name, image)
    state = page.wait_for({"decided", "failed", "error", "rejected"}, timeout=180)
    shot = page.screenshot("pipeline-decided")
    assert state == "decided", (state, page.text("error"))
    job_id = page.text("job-id")
    with urllib.request.urlopen(f"{stack.api_url}/jobs/{job_id}", timeout=30) as response:
        job = json.load(response)
    assert page.text("decision") == job["decision"] and job["decision"] in DECISIONS
    # The page shows the timeline as of its last poll; events after the decision (the
    # notification) may have been added since.
    stages = [row[0] for row in page.timeline()]
    assert stages == [event["stage"] for event in job["timeline"]][:len(stages)], (stages, job["timeline"])
    assert stages[0] == "uploaded" and "decided" in stages, stages
    assert shot.exists()


def test_pipeline_bad_file_shows_the_apis_message(page, pipeline):
    stack, site, _ = pipeline
    cloudlab.use_backend()
    page.load(site)
    page.upload("holiday.png", NOT_AN_IMAGE)
    assert page.wait_for({"decided", "failed", "error", "rejected"}, timeout=60) == "rejected", page.text("error")
    page.screenshot("pipeline-rejected")
    status, body = api_answer(stack.api_url, {"user_id": "web-user", "filename": "holiday.png",
                                              "image": base64.b64encode(NOT_AN_IMAGE).decode()})
    assert 400 <= status < 500 and body["message"]
    assert page.text("error") == f"{status} {body['error']}: {body['message']}"
