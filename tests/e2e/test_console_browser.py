"""The console in a real browser (issue 21): Debian's headless Chromium driven by Playwright clicks from the models
list to a version's lineage, the alias history, the rollout and a run's metric curve, reads the store's values
from each page, checks from the browser's network log that no request leaves 127.0.0.1, and takes screenshots.

``CONSOLE_UPDATE_SCREENSHOTS=1`` also writes them to docs/console/ (committed); otherwise they go to tmp."""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from tests._net import free_port
from tests._png import assert_painted
from tests.integration._console_scenario import COMMIT, DATASET_HASH, MODEL, XSS, seed

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]
DOCS = Path(__file__).resolve().parents[2] / "docs" / "console"

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (.ci/run installs it)")]


@pytest.fixture
def console_url(client: Any) -> Iterator[str]:
    import uvicorn

    from mlplatform.console.app import create_app

    seed(client)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(client=client), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "the console did not start"
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def test_click_through_the_console(console_url: str, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    out = DOCS if os.environ.get("CONSOLE_UPDATE_SCREENSHOTS") == "1" else tmp_path
    out.mkdir(parents=True, exist_ok=True)
    requests: list[str] = []

    def shot(page: Any, name: str) -> None:
        data = page.screenshot(path=str(out / f"{name}.png"), full_page=True)
        assert_painted(data)

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=FLAGS)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            context.on("request", lambda r: requests.append(r.url))
            page = context.new_page()
            page.set_default_timeout(30_000)  # a busy 2-core machine can be slow
            dialogs: list[str] = []
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))

            page.goto(f"{console_url}/models")
            row = page.locator("#models tbody tr", has_text=MODEL).first
            assert "accuracy=0.8500" in row.inner_text() and "accuracy=0.8600" in row.inner_text()
            assert "RED" in row.inner_text()
            shot(page, "models")

            row.get_by_role("link", name=MODEL, exact=True).click()
            page.wait_for_url(f"**/models/{MODEL}")
            assert "champion=v2" in page.locator("body > p").first.inner_text()
            shot(page, "model")

            page.locator("#versions-table").get_by_role("link", name="v3", exact=True).first.click()
            page.wait_for_url(f"**/models/{MODEL}/versions/3")
            lineage = page.locator("#lineage-table").inner_text()
            assert DATASET_HASH in lineage and COMMIT in lineage and "v2" in lineage
            assert "0.8600" in page.locator("#metrics").inner_text()
            shot(page, "lineage")

            page.get_by_role("link", name=f"← {MODEL}").click()
            page.wait_for_url(f"**/models/{MODEL}")
            history = page.locator("#alias-history-table").inner_text()
            assert re.search(r"champion\s+1\s+2\s+bob\s+beat v1 on holdout", history), history
            page.locator("input[name=at]").fill(datetime.now(UTC).strftime("%Y-%m-%d"))
            page.get_by_role("button", name="ask").click()
            assert "the champion was v2" in page.locator("#holder").inner_text()
            page.locator("#alias-history").scroll_into_view_if_needed()
            shot(page, "alias-history")

            page.get_by_role("link", name="stages, windows and guard decisions").click()
            page.wait_for_url(f"**/models/{MODEL}/rollout")
            summary = page.locator("#rollout-summary").inner_text()
            assert "active at stage canary" in summary and "v2 95.0000% / challenger v3 5.0000%" in summary
            assert "shadow looked fine" in page.locator("#decisions").inner_text()
            shot(page, "rollout")

            page.get_by_role("link", name="Runs", exact=True).click()
            page.locator("select[name=metric]").select_option("loss")
            page.get_by_role("button", name="apply").click()
            page.get_by_role("link", name=f"train-{XSS}").click()
            page.wait_for_url("**/runs/*")
            caption = page.locator("figure.curve[data-metric=loss] figcaption").inner_text()
            assert "train=0.2000 (step 5)" in caption and "val=0.2400 (step 5)" in caption
            assert page.locator("figure.curve[data-metric=loss] polyline").count() == 2
            assert "/ckpt/epoch-5" in page.locator("#checkpoints").inner_text()
            assert XSS in page.locator("h1").inner_text()  # shown as text, never run
            shot(page, "run")
            assert dialogs == []  # no injected script ran
        finally:
            browser.close()

    assert requests, "the network log is empty"
    outside = [u for u in requests if urlparse(u).scheme not in ("data", "about")
               and urlparse(u).hostname != "127.0.0.1"]
    assert outside == [], f"requests left 127.0.0.1: {outside}"
