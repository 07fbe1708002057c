"""Debian's Chromium driven by Playwright, for the web console's tests.

Playwright's own browser builds are never downloaded: the tests launch
``/usr/bin/chromium`` from Debian's ``chromium`` package with a fresh
profile. Without it the tests skip, except under CI (``CI`` set), where
a missing browser is a broken setup and fails them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Screenshots of every page go here, for people to look at after a run.
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "console"
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}


def require_chromium() -> None:
    """Skip without Debian's Chromium, or fail when CI should have it."""
    if CHROMIUM.exists():
        return
    message = f"{CHROMIUM} is missing; install Debian's chromium package"
    if os.environ.get("CI"):
        pytest.fail(f"{message} (CI installs it in .ci/run)")
    pytest.skip(message)


@pytest.fixture
def browser_context(tmp_path: Path) -> Iterator[BrowserContext]:
    """A headless Chromium with an empty profile and a desktop viewport."""
    require_chromium()
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport=DESKTOP,
        )
        context.set_default_timeout(15_000)
        try:
            yield context
        finally:
            context.close()
