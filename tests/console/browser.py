"""A real Chromium for the console tests: Debian's `chromium`, driven by Playwright.

Playwright's own browser download cannot run here, so the tests launch the system browser; a machine without it
skips the tests locally and fails them under CI (`tests.tools.requirements.unavailable`). axe-core comes from the
Node tools (`scripts/install-test-tools`). Screenshots go to `docs/console/` when `AGENTHUB_CONSOLE_SCREENSHOTS`
is set.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from playwright.async_api import Browser, Page, async_playwright

from tests.admin.conftest import ADMIN
from tests.tools.node import DEFAULT_TOOLS_DIR
from tests.tools.requirements import unavailable

CHROMIUM = "/usr/bin/chromium"
SHOTS = Path(__file__).resolve().parents[2] / "docs" / "console"


@asynccontextmanager
async def chromium() -> AsyncGenerator[Browser]:
    """A headless Chromium, closed when the block ends."""
    if not (os.access(CHROMIUM, os.X_OK) or shutil.which("chromium")):
        unavailable("chromium", "apt-get install chromium")
    async with async_playwright() as play:
        browser = await play.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        try:
            yield browser
        finally:
            await browser.close()


async def sign_in(page: Page, base: str, token: str = ADMIN) -> None:
    """Sign in through the form, as a person would, and open the keys page from the overview."""
    await page.goto(f"{base}/ui/signin")
    await page.get_by_label("Admin token").fill(token)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(f"{base}/ui/overview")
    await page.get_by_role("link", name="Keys", exact=True).click()
    await page.wait_for_url(f"{base}/ui/keys")


def axe_source() -> str:
    """axe-core's browser bundle from the Node tools."""
    root = Path(os.environ.get("AGENTHUB_NODE_TOOLS", DEFAULT_TOOLS_DIR))
    bundle = root / "node_modules" / "axe-core" / "axe.min.js"
    if not bundle.is_file():
        unavailable("axe-core", "run scripts/install-test-tools")
    return bundle.read_text()


async def serious_violations(page: Page, source: str) -> list[dict[str, Any]]:
    """axe-core's serious and critical findings on the page as it is now (the page's context must bypass the
    CSP: axe is injected as an inline script)."""
    await page.add_script_tag(content=source)
    result: dict[str, Any] = await page.evaluate("async () => await axe.run(document)")
    return [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["html"] for n in v["nodes"]][:3]}
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]


async def screenshot(page: Page, name: str) -> None:
    """Save a screenshot of the page for the docs, when asked to (`AGENTHUB_CONSOLE_SCREENSHOTS=1`)."""
    if os.environ.get("AGENTHUB_CONSOLE_SCREENSHOTS"):
        SHOTS.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
