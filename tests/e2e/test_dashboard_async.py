"""The dashboard of an async-mode experiment (issue 15) in Debian's chromium against real local
mode: versions with their buffers, the staleness histogram (with a STALE refusal), the time
between versions, and the mode in the experiments list.

Needs /usr/bin/chromium (apt) and the playwright package; never downloads a browser.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from dashboard_local import LocalMode

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
DOCS = Path(__file__).resolve().parents[2] / "docs"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
INITIAL = {"dense/kernel": np.zeros((4, 2), np.float32), "dense/bias": np.zeros(2, np.float32)}


@pytest.fixture(scope="module")
def sync_playwright():
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed at /usr/bin/chromium (apt-get install chromium)")
    return pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed").sync_playwright


@pytest.fixture(scope="module")
def local_mode(sync_playwright, tmp_path_factory) -> Iterator[LocalMode]:
    mode = LocalMode.start(tmp_path_factory.mktemp("fma-local-async"))
    try:
        yield mode
    finally:
        mode.stop()


def _wait_version(dev, exp_id: str, version: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while (dev.experiment(exp_id).get("model_version") or 0) < version:
        if time.monotonic() > deadline:
            raise TimeoutError(f"version {version} of {exp_id} was not published")
        time.sleep(0.2)


def seed_async(url: str, admin_token: str) -> tuple[str, str, dict[str, str]]:
    """Buffers of 2, max_staleness 1: version 1 from two fresh updates, version 2 from one fresh
    and one stale by a version, then an update two versions behind is refused STALE."""
    from fma_client import Client, Developer, UpdateRejected

    admin = Developer(url, admin_token)
    analyst = admin.create_token("analyst", name="async-analyst")["token"]
    exp = admin.create_experiment("async-dashboard", INITIAL, strategy="fedavg", rounds={
        "mode": "async", "buffer_size": 2, "max_staleness": 1, "total_rounds": 3})
    enroll = admin.enrollment_token(exp["id"], max_uses=4)["token"]
    clients = {name: Client(url, exp["id"], enrollment_token=enroll, name=name, persist_registration=False)
               for name in ("fresh-a", "fresh-b", "stale-one", "too-stale")}
    for c in clients.values():
        c.get_model()  # everyone holds version 0

    def send(name: str, n: int, value: float) -> dict:
        weights = {k: np.full_like(v, value) for k, v in INITIAL.items()}
        return clients[name].submit(weights, 10, {"loss": value}, round=n, timeout=60)

    send("fresh-a", 1, 1.0)
    send("fresh-b", 1, 1.0)
    _wait_version(admin, exp["id"], 1)
    send("stale-one", 1, 2.0)  # still on version 0: staleness 1
    send("fresh-a", 2, 2.0)
    _wait_version(admin, exp["id"], 2)
    reason = ""
    try:
        send("too-stale", 1, 9.0)
    except UpdateRejected as exc:
        reason = exc.reason or ""
    ids = {name: c.client_id or "" for name, c in clients.items()}
    return exp["id"], analyst, {**ids, "reason": reason}


def test_async_dashboard_shows_versions_buffers_staleness_and_the_mode(sync_playwright, local_mode):
    exp_id, analyst, seeded = seed_async(local_mode.url, local_mode.admin_token)
    assert seeded["reason"].startswith("STALE:")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(15_000)
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(f"{local_mode.url}/")
            page.get_by_label("API token").fill(analyst)
            page.get_by_role("button", name="Open dashboard").click()
            row = page.locator(f"tr[data-experiment='{exp_id}']")
            row.wait_for()
            assert row.locator("[data-mode]").inner_text() == "async"
            row.get_by_role("link", name="async-dashboard").click()
            page.locator("#versions table.versions").wait_for()
            assert page.locator("#versions tr[data-version]").count() == 2
            buffer2 = page.locator("#versions tr[data-version='2'] li")
            assert buffer2.count() == 2
            stale = buffer2.filter(has=page.locator(f"text={seeded['stale-one']}"))
            assert stale.get_attribute("data-staleness") == "1"
            histogram = page.locator("#staleness-histogram")
            assert histogram.locator("tr[data-staleness='0'] td").inner_text().strip() == "3"
            assert histogram.locator("tr[data-staleness='1'] td").inner_text().strip() == "1"
            assert histogram.locator("tr[data-staleness='stale'] td").inner_text().strip() == "1"
            assert page.locator("#mean-version-gap").inner_text().endswith(" s")
            page.locator("#versions").screenshot(path=str(DOCS / "dashboard-async.png"))
            assert not errors, errors
        finally:
            browser.close()
