"""The ops console in a real browser: Debian's chromium, headless, driven by Selenium
through chromedriver, against a real API process. Each page once, sign-in, one cancel,
one redeliver and a CSRF refusal; the screenshots in the README come from here
(`make screenshots` writes them to docs/screenshots/).

The scene (a delivered job with a video and a thumbnail, a running one, a failed one, a
queued one) is built by the in-process pipeline in a database of its own; the API that
serves the console reads it, and nothing else runs: nothing moves but what the test does.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.conftest import DB_NAME, TEST_ENV, TMP, _pg_admin, _using_database
from tests.support.procs import Service, cometjobs, free_port
from tests.support.receiver import Receiver

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = [
    pytest.mark.skipif(
        CHROMIUM is None or CHROMEDRIVER is None,
        reason="chromium and chromedriver are not installed (Debian's chromium and chromium-driver; "
        ".ci/run installs them)",
    ),
    # One scene and one browser: kept on one xdist worker (`make test` runs --dist loadgroup).
    pytest.mark.xdist_group("console-browser"),
]
SCREENSHOTS = os.environ.get("COMETJOBS_SCREENSHOTS")  # e.g. docs/screenshots: `make screenshots`
DEADLINE = 30


def png(width: int = 320, height: int = 180) -> bytes:
    """A thumbnail worth looking at: a dusk gradient with a lighthouse."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (width, height))
    draw = ImageDraw.Draw(image)
    for y in range(height):
        draw.line([(0, y), (width, y)], fill=(40 + y // 3, 60 + y // 4, 120 + y // 3))
    draw.rectangle([150, 70, 170, 160], fill=(235, 235, 235))
    draw.polygon([(145, 70), (175, 70), (160, 50)], fill=(200, 60, 60))
    draw.rectangle([0, 160, width, height], fill=(20, 40, 70))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


@dataclass
class Scene:
    url: str
    admin_key: str
    billing_key: str
    delivered: str
    running: str
    failed: str
    queued: str


def build(receiver: Receiver) -> dict[str, Any]:
    """Jobs in every interesting state, made by the real pipeline functions."""
    from app.core import aio, queue
    from app.core.clock import use_clock
    from app.providers.http import UpstreamError, use_upstream
    from tests.support.inprocess import (
        FakeUpstream,
        FrozenClock,
        Pipeline,
        RecordingPublisher,
        SoraScript,
    )

    publisher, upstream, clock = RecordingPublisher(), FakeUpstream(), FrozenClock()
    previous = queue.install(publisher)
    try:
        with use_clock(clock), use_upstream(upstream, upstream.aio):
            p = Pipeline(publisher, upstream, clock)
            admin = p.client("ops-oncall", is_admin=True)
            billing = p.client("billing-service", webhook_url=receiver.url, webhook_events=["job.running"])
            p.client("search-indexer")

            SoraScript(upstream, polls=[{"status": "in_progress", "progress": 60}, {"status": "completed"}],
                       video=b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 4096)
            thumbnail = png()

            def content(req: Any, _match: Any) -> bytes:
                variant = (req.params or {}).get("variant")
                if variant == "thumbnail":
                    return thumbnail
                if variant:
                    raise UpstreamError("no such variant", status=404, retryable=False)
                return b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 4096

            upstream.route("GET", r"/v1/videos/(?P<id>[^/]+)/content", content)
            delivered = p.create_job(billing, input={"prompt": "a lighthouse at dusk, slow dolly in", "seconds": "8"},
                                     metadata={"order": "ord-1234", "customer": "acme"})
            p.run_until_settled(delivered)
            p.deliver_nudged()

            # Failed before the running one: a poll round polls every job that is due.
            SoraScript(upstream, polls=[{"status": "failed", "error": {
                "code": "moderation_blocked", "message": "The request was blocked by the moderation system"}}])
            failed = p.create_job(billing, model="sora-2-pro", input={"prompt": "something the moderator refuses"})
            p.submit(failed)
            clock.now = max(clock.now, p.schedule(failed).due_at)
            p.poll()
            p.deliver_nudged()

            SoraScript(upstream, polls=[{"status": "in_progress", "progress": 42}])
            running = p.create_job(billing, input={"prompt": "waves on a breakwater"}, metadata={"order": "ord-1235"})
            p.submit(running)
            clock.now = max(clock.now, p.schedule(running).due_at)
            p.poll()
            p.deliver_nudged()

            queued = p.create_job(billing, input={"prompt": "a paper boat in the rain"})
            assert [p.job(j).status for j in (delivered, running, failed, queued)] == [
                "succeeded", "running", "failed", "queued"]
            assert p.deliveries(delivered)[-1].status == "delivered"
            return {"admin_key": admin.api_key, "billing_key": billing.api_key, "delivered": delivered,
                    "running": running, "failed": failed, "queued": queued}
    finally:
        queue.install(previous)
        aio.shutdown()


@pytest.fixture(scope="module")
def scene(database: str) -> Iterator[Scene]:
    name = f"{DB_NAME}_console"
    url = TEST_ENV["COMETJOBS_DATABASE_URL"].rsplit("/", 1)[0] + f"/{name}"
    with _pg_admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    from app.core.migrate import upgrade

    upgrade(url)
    receiver = Receiver().start()
    try:
        with _using_database(url):
            made = build(receiver)
    finally:
        receiver.stop()
    port = free_port()
    api = Service("console-api", cometjobs("api", "--port", str(port)),
                  {**os.environ, "COMETJOBS_DATABASE_URL": url, "COMETJOBS_PUBLIC_BASE_URL": f"http://127.0.0.1:{port}"},
                  TMP).start()
    try:
        api.wait_http(f"http://127.0.0.1:{port}/healthz")
        yield Scene(url=f"http://127.0.0.1:{port}", **made)
    finally:
        api.stop()
        with _pg_admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service as DriverService

    profile = tempfile.mkdtemp(prefix="cometjobs-chromium-", dir=TMP)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM  # type: ignore[assignment]
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                 f"--user-data-dir={profile}", "--window-size=1440,1000", "--lang=en-US"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=DriverService(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(DEADLINE)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def until(browser: Any, condition: Any, message: str) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, DEADLINE, poll_frequency=0.1).until(condition, message)


def shot(browser: Any, name: str) -> None:
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        height = browser.execute_script("return document.documentElement.scrollHeight")
        browser.set_window_size(1440, min(max(int(height), 700), 2400))
        browser.save_screenshot(str(Path(SCREENSHOTS) / f"{name}.png"))
        browser.set_window_size(1440, 1000)


def text(browser: Any, selector: str) -> str:
    from selenium.webdriver.common.by import By

    return str(browser.find_element(By.CSS_SELECTOR, selector).text)


def sign_in(browser: Any, scene: Scene) -> None:
    """Sign in unless this browser already is (each test can run alone)."""
    from selenium.webdriver.common.by import By

    browser.get(f"{scene.url}/console/login")
    if browser.find_elements(By.ID, "login"):
        browser.find_element(By.ID, "api_key").send_keys(scene.admin_key)
        browser.find_element(By.CSS_SELECTOR, "#login button").click()
    until(browser, lambda b: b.get_cookie("cometjobs_console"), "a console session")


def open_page(browser: Any, url: str, marker: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    browser.get(url)
    until(browser, ec.presence_of_element_located((By.CSS_SELECTOR, marker)), f"{marker} on {url}")


class TestConsoleInABrowser:
    """On one browser: each test signs in if it is not yet, then visits its page."""

    def test_sign_in_refuses_a_client_key_and_takes_an_admin_key(self, browser, scene):
        from selenium.webdriver.common.by import By

        browser.get(f"{scene.url}/console/login")
        browser.delete_all_cookies()
        open_page(browser, f"{scene.url}/console/jobs", "#login")  # redirected to the form
        shot(browser, "login")
        browser.find_element(By.ID, "api_key").send_keys(scene.billing_key)
        browser.find_element(By.CSS_SELECTOR, "#login button").click()
        until(browser, lambda b: b.find_elements(By.ID, "login-error"), "the refusal")
        assert "not a valid admin API key" in text(browser, "#login-error")
        assert browser.get_cookie("cometjobs_console") is None

        browser.find_element(By.ID, "api_key").send_keys(scene.admin_key)
        browser.find_element(By.CSS_SELECTOR, "#login button").click()
        until(browser, lambda b: b.find_elements(By.ID, "jobs"), "the jobs page it was asked for")
        cookie = browser.get_cookie("cometjobs_console")
        assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict" and cookie["path"] == "/console"
        assert browser.execute_script("return document.cookie").find("cometjobs_console") == -1  # not readable by JS

    def test_overview_shows_the_state_and_updates_itself(self, browser, scene):
        sign_in(browser, scene)
        open_page(browser, f"{scene.url}/console", "#jobs-by-model")
        assert text(browser, "#total-running") == "1" and text(browser, "#total-queued") == "1"
        assert "moderation_blocked" in text(browser, "#failures")
        assert {"submit", "collect", "webhooks"} <= set(text(browser, "#queues").split())
        shot(browser, "overview")
        # A job arrives through the public API: the page shows it without a reload.
        answer = httpx.post(f"{scene.url}/v1/jobs", headers={"Authorization": f"Bearer {scene.billing_key}"},
                            json={"model": "sora-2", "input": {"prompt": "one more"}}, timeout=30)
        assert answer.status_code == 202, answer.text
        until(browser, lambda b: text(b, "#total-queued") == "2", "the live refresh to count the new job")

    def test_jobs_list_filters_by_metadata_and_status(self, browser, scene):
        from selenium.webdriver.common.by import By

        sign_in(browser, scene)
        open_page(browser, f"{scene.url}/console/jobs", "#jobs")
        listed = {row.get_attribute("data-job-id") for row in browser.find_elements(By.CSS_SELECTOR, "#jobs tbody tr")}
        assert {scene.delivered, scene.running, scene.failed, scene.queued} <= listed
        shot(browser, "jobs")
        search = browser.find_element(By.NAME, "q")
        search.send_keys("ord-1234")
        search.submit()
        until(browser, lambda b: [r.get_attribute("data-job-id") for r in b.find_elements(
            By.CSS_SELECTOR, "#jobs tbody tr")] == [scene.delivered], "only the job with that order")

    def test_job_page_shows_its_whole_story_and_redelivers(self, browser, scene):
        from selenium.webdriver.common.by import By

        sign_in(browser, scene)
        open_page(browser, f"{scene.url}/console/jobs/{scene.delivered}", "#timeline")
        assert "lighthouse at dusk" in text(browser, "#job-input")
        assert "ord-1234" in text(browser, "#job-metadata")
        image = browser.find_element(By.CSS_SELECTOR, '.artifact[data-name="thumbnail"] img')
        until(browser, lambda b: b.execute_script("return arguments[0].complete && arguments[0].naturalWidth", image)
              == 320, "the thumbnail preview to load")
        assert browser.find_elements(By.CSS_SELECTOR, '.artifact[data-name="video"] video')
        events = text(browser, "#timeline")
        for status in ("queued", "submitting", "running", "collecting", "succeeded"):
            assert status in events
        deliveries = browser.find_elements(By.CSS_SELECTOR, ".delivery")
        assert [d.get_attribute("data-status") for d in deliveries] == ["delivered", "delivered"]
        assert "200" in deliveries[-1].find_element(By.CSS_SELECTOR, ".attempts").text
        shot(browser, "job")

        deliveries[-1].find_element(By.CSS_SELECTOR, ".redeliver button").click()
        until(browser, lambda b: "queued to be sent again" in text(b, "#notice"), "the redelivery notice")
        statuses = [d.get_attribute("data-status") for d in browser.find_elements(By.CSS_SELECTOR, ".delivery")]
        assert statuses == ["delivered", "pending"]

    def test_a_forged_form_is_refused_and_cancel_works(self, browser, scene):
        from selenium.webdriver.common.by import By

        sign_in(browser, scene)
        page = f"{scene.url}/console/jobs/{scene.running}"
        open_page(browser, page, "#cancel")
        # Another site's form would not know the session's token: the same request without it.
        browser.execute_script(
            "const f = document.getElementById('cancel'); f.removeAttribute('data-confirm');"
            "f.querySelector('[name=csrf_token]').value = 'forged'; f.submit();")
        until(browser, lambda b: b.find_elements(By.ID, "refused"), "the CSRF refusal")
        open_page(browser, page, "#cancel")
        assert text(browser, "#job-status") == "running"

        browser.find_element(By.CSS_SELECTOR, "#cancel button").click()
        until(browser, lambda b: _alert(b), "the confirmation dialog").accept()
        until(browser, lambda b: b.find_elements(By.ID, "notice"), "the cancel notice")
        assert text(browser, "#job-status") == "canceled"
        assert "canceled" in text(browser, "#job-error")
        with psycopg.connect(TEST_ENV["COMETJOBS_DATABASE_URL"].replace("postgresql+psycopg", "postgresql")
                             .rsplit("/", 1)[0] + f"/{DB_NAME}_console") as conn:
            assert conn.execute("SELECT status FROM jobs WHERE id = %s", (scene.running,)).fetchone() == (
                "canceled",)

    def test_clients_page_lists_every_client(self, browser, scene):
        from selenium.webdriver.common.by import By

        sign_in(browser, scene)
        open_page(browser, f"{scene.url}/console/clients", "#clients")
        names = [row.find_element(By.CSS_SELECTOR, "td").text
                 for row in browser.find_elements(By.CSS_SELECTOR, "#clients tbody tr")]
        assert names == ["billing-service", "ops-oncall", "search-indexer"]
        assert scene.admin_key not in browser.page_source and scene.billing_key not in browser.page_source
        shot(browser, "clients")


def _alert(browser: Any) -> Any:
    from selenium.common.exceptions import NoAlertPresentException

    try:
        return browser.switch_to.alert
    except NoAlertPresentException:
        return None

