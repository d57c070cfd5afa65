"""Debian's chromium, driven by Playwright, for the browser tests.

Browsers cannot be downloaded on the machines this project runs on, so the
tests use the system's chromium (``apt-get install chromium``, done by
``test.sh``) and skip with that instruction when it is absent.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")

# Without the networking switches chromium reaches out to Google's services at
# start; this machine has no network, and each refused connection is noise.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


@contextmanager
def launch_chromium() -> Iterator:
    """Launch headless chromium; skip the test when it is not installed.

    Use it for a module-scoped fixture at most: an open sync Playwright keeps
    an event loop running in this thread, and a later module starting its own
    would be refused.
    """
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is absent; install it with: apt-get install chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()
