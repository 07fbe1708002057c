"""The web console in a real browser against the real ``fleetgate serve``.

One walkthrough, as a newcomer does it: sign in, upload the recipe's
root CA, watch a device appear after ``coap-client-openssl`` connects,
disable it, find its next connection refused in the connection log,
then sign out. Along the way: an upload error next to its field, a
forged POST rejected, and a screenshot of every page on a desktop and
a phone viewport in ``test-artifacts/console``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, Page, expect

from .browser import ARTIFACTS, PHONE, browser_context  # noqa: F401
from .conftest import (
    RunningServer,
    coap_client,
    fleetgate,
    requires_coap_client,
    start_server,
    stop_server,
)
from .test_first_device import make_recipe_pki

pytestmark = [pytest.mark.e2e, requires_coap_client]

PROJECT = "acme-sensors"
CERT_ID = "sensor-0001"
# The gateway writes connection events in batches, at least once a second.
EVENT_WAIT_SECONDS = 10.0


@pytest.fixture
def recipe(tmp_path: Path) -> Path:
    folder = tmp_path / "pki"
    make_recipe_pki(folder, PROJECT, CERT_ID)
    return folder


@pytest.fixture
def console_server(data_dir: Path) -> Iterator[RunningServer]:
    fleetgate(data_dir, "project", "create", PROJECT)
    running = start_server(data_dir)
    assert running.admin_key is not None, running.log()
    yield running
    stop_server(running)


def screenshot(page: Page, name: str) -> None:
    """Save the whole page as ``test-artifacts/console/<name>.png``."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def page_width(page: Page) -> int:
    """Return the page's scrollable width in CSS pixels."""
    return int(page.evaluate("document.documentElement.scrollWidth"))


def reload_until_visible(page: Page, text: str) -> None:
    """Reload until ``text`` shows, while the gateway flushes its events."""
    deadline = time.monotonic() + EVENT_WAIT_SECONDS
    while page.get_by_text(text).count() == 0 and time.monotonic() < deadline:
        time.sleep(0.5)
        page.reload()
    expect(page.get_by_text(text).first).to_be_visible()


def test_console_walkthrough(
    console_server: RunningServer,
    recipe: Path,
    browser_context: BrowserContext,  # noqa: F811
) -> None:
    page = browser_context.new_page()
    console = f"{console_server.api_url}/console"
    project_url = f"{console}/projects/{PROJECT}"
    cert, key = recipe / "device.pem", recipe / "device.key"

    assert f"Web console at {console}/" in console_server.log()

    # Signing in, from a bookmarked project page.
    page.goto(project_url)
    expect(page).to_have_url(
        f"{console}/sign-in?next=%2Fconsole%2Fprojects%2F{PROJECT}"
    )
    screenshot(page, "desktop-sign-in")
    # By keyboard: the skip link comes first, then the form submits on Enter.
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    page.get_by_label("API key").fill(console_server.admin_key or "")
    page.get_by_label("API key").press("Enter")
    expect(page).to_have_url(project_url)
    session = [c for c in browser_context.cookies() if c["name"] == "fleetgate_session"]
    assert len(session) == 1
    assert session[0]["secure"] is True
    assert session[0]["httpOnly"] is True
    assert session[0]["sameSite"] == "Strict"

    # An upload that is not a CA shows its error next to the file field.
    page.get_by_role("link", name="CA certificates").click()
    page.get_by_label("Certificate file").set_input_files(str(cert))
    page.get_by_role("button", name="Upload").click()
    error = page.locator(".field:has(#cert_file) .field-error")
    expect(error).to_contain_text("not_a_ca")
    expect(page.get_by_label("Certificate file")).to_have_attribute(
        "aria-describedby", "cert_file-error"
    )
    screenshot(page, "desktop-certificates-error")

    # A file over the API's body limit gets the same page, not JSON.
    huge = recipe / "huge.pem"
    huge.write_bytes(b"A" * 5_000_000)
    page.get_by_label("Certificate file").set_input_files(str(huge))
    page.get_by_role("button", name="Upload").click()
    expect(error).to_contain_text("'huge.pem' is larger than 1024 KiB")
    expect(error).to_contain_text("at most 64 KiB")
    screenshot(page, "desktop-certificates-too-large")

    # The recipe's root CA goes in.
    page.get_by_label("Certificate file").set_input_files(str(recipe / "root.pem"))
    page.get_by_role("button", name="Upload").click()
    expect(page.get_by_role("status")).to_contain_text("CA certificate added")
    expect(page.get_by_role("cell", name="CN=Root CA", exact=True)).to_be_visible()
    screenshot(page, "desktop-certificates")

    # A device connects and appears.
    posted = coap_client(
        console_server,
        ".s/temp",
        cert=cert,
        key=key,
        method="post",
        payload='{"celsius":21.5}',
        content_format=50,
    )
    assert "4." not in posted.stdout, posted.output
    page.get_by_role("link", name="Devices").click()
    page.get_by_label("Search by name").fill("sensor")
    page.get_by_role("button", name="Search").click()
    expect(page.get_by_role("link", name=CERT_ID)).to_be_visible()
    screenshot(page, "desktop-devices")

    # Its page: state edits are checked as they are typed, then saved.
    page.get_by_role("link", name=CERT_ID).click()
    expect(page.get_by_role("heading", name=CERT_ID)).to_be_visible()
    editor = page.get_by_label("Edit the whole document (JSON object)")
    editor.fill('{"interval": ')
    expect(page.locator("#document-error")).to_contain_text("Invalid JSON")
    editor.fill('{"interval": 30, "leds": {"red": true}}')
    expect(page.locator("#document-error")).to_be_empty()
    page.get_by_role("button", name="Save state").click()
    expect(page.get_by_role("status")).to_contain_text("State saved")
    expect(page.locator(".json-view")).to_contain_text("interval")
    expect(page.get_by_text(".s/temp")).to_be_visible()
    device_url = page.url.split("?")[0]

    # A forged POST without the session's CSRF token changes nothing.
    forged = page.evaluate(
        """async (url) => {
            const response = await fetch(url, {
                method: "POST",
                body: new URLSearchParams({enabled: "false"}),
            });
            return response.status;
        }""",
        f"{device_url}/enabled",
    )
    assert forged == 403
    page.reload()
    expect(page.locator(".properties .badge")).to_have_text("enabled")

    # Disabled after a confirmation page, the device's next connection
    # is refused.
    page.get_by_role("button", name="Disable device").click()
    expect(page.get_by_text(f"Disable device {CERT_ID}?")).to_be_visible()
    screenshot(page, "desktop-confirm-disable")
    page.get_by_role("button", name="Disable device").click()
    expect(page.locator(".properties .badge")).to_have_text("disabled")
    screenshot(page, "desktop-device")
    refused = coap_client(console_server, ".d", cert=cert, key=key)
    assert "4.03" in refused.output, refused.output

    page.get_by_role("link", name="Connection log").click()
    page.get_by_label("Reason code").fill("device_disabled")
    page.get_by_label("Certificate ID").fill(CERT_ID)
    page.get_by_role("button", name="Filter").click()
    reload_until_visible(page, "device_disabled")
    rows = page.locator(".data-table tbody tr")
    expect(rows.first).to_contain_text("rejected")
    expect(rows.first).to_contain_text(CERT_ID)
    screenshot(page, "desktop-connections")

    page.get_by_role("link", name="Overview").click()
    expect(page.locator("section", has_text="Latest refusals")).to_contain_text(
        "device_disabled"
    )
    screenshot(page, "desktop-overview")

    page.get_by_role("link", name="Expiries").click()
    # The disabled device is left out, as `fleetgate forecast` leaves it out.
    forecast = json.loads(
        fleetgate(
            console_server.data_dir, "forecast", "--project", PROJECT, "--json"
        ).stdout
    )
    assert forecast["devices"] == 0
    expect(page.get_by_text("0 devices counted")).to_be_visible()
    expect(page.locator("svg[role=img] title").first).to_have_text(
        "Devices losing service per week"
    )
    screenshot(page, "desktop-expiries")

    # The same pages on a phone.
    page.set_viewport_size(PHONE)
    for name, url in [
        ("overview", project_url),
        ("certificates", f"{project_url}/certificates"),
        ("devices", f"{project_url}/devices"),
        ("device", device_url),
        ("connections", f"{project_url}/connections"),
        ("expiries", f"{project_url}/expiries"),
    ]:
        page.goto(url)
        screenshot(page, f"phone-{name}")
        assert page_width(page) <= PHONE["width"], name

    # The chart's axis labels stay readable on a phone.
    page.goto(f"{project_url}/expiries")
    label_pixels = page.evaluate(
        """() => {
            const chart = document.querySelector(".expiry-chart");
            const label = chart.querySelector(".axis-label");
            const scale = chart.getBoundingClientRect().width
                / chart.viewBox.baseVal.width;
            return parseFloat(getComputedStyle(label).fontSize) * scale;
        }"""
    )
    assert label_pixels >= 12

    # The duplicate-CA error, with its long fingerprint, wraps on a phone.
    page.goto(f"{project_url}/certificates")
    page.get_by_label("Certificate file").set_input_files(str(recipe / "root.pem"))
    page.get_by_role("button", name="Upload").click()
    expect(error).to_contain_text("ca_already_registered")
    screenshot(page, "phone-certificates-duplicate")
    assert page_width(page) <= PHONE["width"]

    # A tap on a cut fingerprint shows the whole value.
    page.locator(".fingerprint-details summary").first.click()
    expect(page.locator(".fingerprint-details code.fingerprint").first).to_be_visible()
    screenshot(page, "phone-certificates-fingerprint")

    # Signing out ends the session.
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(f"{console}/sign-in")
    page.goto(project_url)
    expect(page.get_by_role("heading", name="Sign in to Fleetgate")).to_be_visible()


def test_api_docs_page_renders_from_this_server(
    console_server: RunningServer,
    browser_context: BrowserContext,  # noqa: F811
) -> None:
    page = browser_context.new_page()
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))

    page.goto(f"{console_server.api_url}/docs")

    expect(page.locator(".swagger-ui .opblock").first).to_be_visible()
    screenshot(page, "desktop-api-docs")
    assert requested
    assert [
        url for url in requested if not url.startswith(f"{console_server.api_url}/")
    ] == []
