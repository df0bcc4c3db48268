"""A real headless Chromium for the web view's tests and benchmark: Debian's ``/usr/bin/chromium``
(installed by ``deploy/system-packages.sh``) driven by Playwright; Playwright's own browser downloads are
not used (nor available)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import Browser, sync_playwright

CHROMIUM = Path(os.environ.get("ORBITWATCH_TEST_CHROMIUM", "/usr/bin/chromium"))
# Headless in a container as root, with nothing reaching out to the network (the product is air-gapped).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(
    os.environ.get("ORBITWATCH_TEST_ARTIFACTS", Path(__file__).resolve().parents[2] / "build" / "test-artifacts")
)
"""Where screenshots go (``build/`` is not committed)."""


def chromium_missing() -> str | None:
    """Why no browser test can run here, or None."""
    if not CHROMIUM.exists() and shutil.which(str(CHROMIUM)) is None:
        return f"{CHROMIUM} is missing: run deploy/system-packages.sh (make install does)"
    return None


@contextmanager
def chromium() -> Iterator[Browser]:
    """A headless Chromium, closed afterwards."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
