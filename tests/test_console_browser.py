"""The web console in a real browser: headless Chromium from Debian's packages driven with
Selenium (``scripts/ci-extras`` installs them; without them these tests skip and say why).

Set INCIDENTS_SCREENSHOTS to a folder to have the screenshots of the incident list, an
incident and a subscription's attempts written there (the README's come from ``docs/``)."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.console_support import declare
from tests.delivery_support import Receiver, Workers, publish, subscribe
from tests.support import ADMIN_TOKEN, create_principal, event

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
LIVE_WITHIN = 2.0  # seconds: the bound for a new incident to appear in the list

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
    pytest.skip(
        "headless Chromium is absent (/usr/bin/chromium and /usr/bin/chromedriver: "
        "Debian's chromium and chromium-driver, installed by scripts/ci-extras)",
        allow_module_level=True,
    )

from selenium.common.exceptions import (  # noqa: E402
    NoAlertPresentException,
    NoSuchElementException,
)
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    """One headless Chromium for the module, on a new empty profile."""
    profile = tempfile.mkdtemp(prefix="incidents-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,900",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    service = webdriver.ChromeService(executable_path=str(CHROMEDRIVER))
    driver = webdriver.Chrome(options=options, service=service)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def page(browser: WebDriver, gateway: str) -> Iterator[WebDriver]:
    """The browser with no cookies left from another test."""
    browser.get(gateway + "/console/sign-in")
    browser.delete_all_cookies()
    try:
        yield browser
    finally:
        browser.get("about:blank")  # closes the page's live stream before the app stops
        time.sleep(0.2)


def sign_in(driver: WebDriver, gateway: str, token: str) -> None:
    driver.get(gateway + "/console/sign-in")
    driver.find_element(By.ID, "token").send_keys(token)
    driver.find_element(By.ID, "sign-in").click()
    WebDriverWait(driver, 10).until(lambda d: d.current_url.endswith("/console/incidents"))


def text_of(driver: WebDriver, element_id: str) -> str:
    """The element's rendered text, read in one step (a live part may be replaced meanwhile)."""
    found = driver.execute_script(
        "var e = document.getElementById(arguments[0]); return e === null ? null : e.innerText;",
        element_id,
    )
    if found is None:
        raise NoSuchElementException(f"no element #{element_id}")
    return str(found)


def screenshot(driver: WebDriver, name: str) -> None:
    folder = os.environ.get("INCIDENTS_SCREENSHOTS")
    if folder:
        driver.save_screenshot(str(Path(folder) / name))


def test_signing_in_shows_the_incidents(
    page: WebDriver, gateway: str, client: httpx.Client
) -> None:
    """Typing the token into the sign-in form opens the incident list, signed in by name."""
    declare(client, title="Checkout down")
    sign_in(page, gateway, ADMIN_TOKEN)
    assert "Checkout down" in text_of(page, "incidents")
    assert text_of(page, "who").startswith("admin")
    cookie = page.get_cookie("incidents_session")
    assert cookie is not None and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert page.execute_script("return document.cookie") == ""


def test_a_new_incident_appears_in_the_list_without_a_reload(
    page: WebDriver, gateway: str, client: httpx.Client
) -> None:
    """An incident declared by another client shows in an open list within 2 s."""
    sign_in(page, gateway, ADMIN_TOKEN)
    page.execute_script("document.body.setAttribute('data-marker', 'same-page')")
    time.sleep(0.5)  # the page's script has connected (or started polling)
    declared = time.monotonic()
    declare(client, title="Payments degraded")
    WebDriverWait(page, LIVE_WITHIN, poll_frequency=0.05).until(
        lambda d: "Payments degraded" in text_of(d, "incidents")
    )
    took = time.monotonic() - declared
    assert took < LIVE_WITHIN
    assert page.find_element(By.TAG_NAME, "body").get_attribute("data-marker") == "same-page"


def test_the_list_is_kept_up_to_date_through_the_live_stream(
    page: WebDriver, gateway: str, client: httpx.Client
) -> None:
    """The incident list's EventSource on GET /v1/stream opens (signed in by the session
    cookie) and an incident declared by another client appears within 2 s through it, not
    through the polling fallback."""
    sign_in(page, gateway, ADMIN_TOKEN)
    WebDriverWait(page, 5, poll_frequency=0.05).until(
        lambda d: d.find_element(By.ID, "live").get_attribute("data-stream-state") == "open"
    )
    time.sleep(0.3)  # the refresh made when the stream opened has come back
    declared = time.monotonic()
    declare(client, title="Streamed straight in")
    WebDriverWait(page, LIVE_WITHIN, poll_frequency=0.05).until(
        lambda d: "Streamed straight in" in text_of(d, "incidents")
    )
    assert time.monotonic() - declared < LIVE_WITHIN
    live = page.find_element(By.ID, "live")
    assert live.get_attribute("data-updated-by") == "stream"
    assert live.get_attribute("data-stream-state") == "open"


def test_acknowledging_from_the_incident_page(
    page: WebDriver, gateway: str, client: httpx.Client
) -> None:
    """The Acknowledge button acknowledges the incident as the signed-in principal."""
    incident = declare(client, title="Login errors")
    alice = create_principal(client, name="alice", publish=["im.incident.*"])
    sign_in(page, gateway, alice["token"])
    page.get(f"{gateway}/console/incidents/{incident}")
    page.find_element(By.ID, "text").send_keys("looking into it")
    page.find_element(By.ID, "action-ack").click()
    WebDriverWait(page, 10).until(lambda d: text_of(d, "acknowledged_at") != "—")
    assert "by alice" in text_of(page, "timeline")
    assert client.get(f"/v1/incidents/{incident}").json()["acknowledged_at"]


def test_a_restricted_incident_is_invisible_to_an_internal_clearance_user(
    page: WebDriver, gateway: str, client: httpx.Client
) -> None:
    """An internal-clearance principal sees neither the restricted incident in the list nor
    its page."""
    hidden = declare(client, title="Payroll breach", imdataclass="restricted")
    declare(client, title="Search slow")
    user = create_principal(client, name="intern", roles=["subscriber"], clearance="internal")
    sign_in(page, gateway, user["token"])
    listing = text_of(page, "incidents")
    assert "Search slow" in listing and "Payroll breach" not in listing
    page.get(f"{gateway}/console/incidents/{hidden}")
    assert "404" in text_of(page, "error") and "Payroll breach" not in page.page_source


def test_a_form_with_a_wrong_csrf_token_is_refused(
    page: WebDriver, gateway: str, client: httpx.Client
) -> None:
    """A form whose CSRF token was tampered with is refused with a 403 page; nothing changes."""
    incident = declare(client, title="Queue backlog")
    sign_in(page, gateway, ADMIN_TOKEN)
    page.get(f"{gateway}/console/incidents/{incident}")
    page.execute_script("document.querySelector('#act input[name=csrf]').value = 'forged'")
    page.find_element(By.ID, "action-ack").click()
    WebDriverWait(page, 10).until(lambda d: d.find_elements(By.ID, "error"))
    assert "403" in text_of(page, "error") and "CSRF" in text_of(page, "error-detail")
    assert client.get(f"/v1/incidents/{incident}").json()["acknowledged_at"] is None


def test_a_title_with_a_script_tag_is_shown_as_text(
    page: WebDriver, gateway: str, client: httpx.Client
) -> None:
    """An incident titled <script>alert(1)</script> shows that text and runs nothing."""
    incident = declare(client, title="<script>alert(1)</script>")
    sign_in(page, gateway, ADMIN_TOKEN)
    assert "<script>alert(1)</script>" in text_of(page, "incidents")
    page.get(f"{gateway}/console/incidents/{incident}")
    assert text_of(page, "title") == "<script>alert(1)</script>"
    with pytest.raises(NoAlertPresentException):
        page.switch_to.alert.accept()


def test_screenshots_of_the_list_an_incident_and_a_subscription(
    page: WebDriver, gateway: str, client: httpx.Client, rx: Receiver, workers: Workers
) -> None:
    """The incident list, an incident and a subscription's attempts render for the admin
    (and are saved as screenshots when INCIDENTS_SCREENSHOTS names a folder)."""
    sub = subscribe(client, rx, "/hook", types=["im.incident.*"])
    first = declare(client, title="Checkout latency over SLO")
    declare(client, title="Search index lagging", imdataclass="confidential")
    publish(
        client,
        event("im.incident.ack", {"note": "on it"}, imincidentid=first, imactor="alice"),
        event("im.incident.note", {"text": "rolled back 4.2.1"}, imincidentid=first),
    )
    workers.run_until(lambda: len(workers.deliveries(client, sub["id"])) >= 4)
    sign_in(page, gateway, ADMIN_TOKEN)
    screenshot(page, "console-incidents.png")
    page.get(f"{gateway}/console/incidents/{first}")
    assert "rolled back 4.2.1" in text_of(page, "timeline")
    screenshot(page, "console-incident.png")
    page.get(f"{gateway}/console/subscriptions/{sub['id']}")
    attempts = text_of(page, "attempts")
    assert "delivered" in attempts and "POST" in attempts
    screenshot(page, "console-subscription.png")
