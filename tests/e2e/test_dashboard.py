"""The dashboard in Debian's chromium against real local mode and a 3-round SDK experiment.

Needs /usr/bin/chromium (apt) and the playwright package; never downloads a browser.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from dashboard_local import ROOT, LocalMode, Seeded, running_local_mode, seed_experiment

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DOCS = ROOT / "docs"
TIMEOUT_MS = 15_000


@pytest.fixture(scope="module")
def sync_playwright():
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed at /usr/bin/chromium (apt-get install chromium)")
    api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    return api.sync_playwright


@pytest.fixture(scope="module")
def local_mode(sync_playwright, tmp_path_factory) -> Iterator[LocalMode]:
    with running_local_mode(tmp_path_factory.mktemp("fma-local")) as mode:
        yield mode


@pytest.fixture(scope="module")
def seeded(local_mode) -> Seeded:
    return seed_experiment(local_mode.url, local_mode.admin_token, rounds=3)


@pytest.fixture(scope="module")
def browser(sync_playwright):
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


class Console:
    """Console errors and uncaught exceptions of one page."""

    def __init__(self, page) -> None:
        self.errors: list[str] = []
        page.on("console", lambda msg: self.errors.append(msg.text) if msg.type == "error" else None)
        page.on("pageerror", lambda exc: self.errors.append(f"uncaught: {exc}"))

    def unexpected(self, allowed: str | None = None) -> list[str]:
        return [e for e in self.errors if not (allowed and re.search(allowed, e))]


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    page.console = Console(page)
    try:
        yield page
    finally:
        context.close()


def sign_in(page, url: str, token: str) -> None:
    page.goto(f"{url}/")
    page.get_by_label("API token").fill(token)
    page.get_by_role("button", name="Open dashboard").click()


def test_dashboard_shows_the_experiment_its_rounds_metrics_and_rejected_update(page, local_mode, seeded):
    # Given a finished 3-round experiment with one update of the wrong shape, a client refused
    # after round 2's seal and during round 3's pause, and a one-round experiment sealed by deadline
    sign_in(page, local_mode.url, seeded.analyst_token)

    # Then the list shows it with its status, strategy, round of total, clients and latest accuracy
    row = page.locator(f"tr[data-experiment='{seeded.experiment_id}']")
    row.wait_for()
    assert seeded.name in row.inner_text()
    for text in ("COMPLETED", "fedavg", "3 of 3"):
        assert text in row.inner_text()
    assert page.locator("#metric-select").input_value() == "evaluation:accuracy"
    assert row.locator("td[data-metric-cell]").inner_text() == "0.81 (round 3)"
    assert seeded.analyst_token not in page.url
    assert page.evaluate("sessionStorage.getItem('fma.token')") == seeded.analyst_token
    page.locator("#sort-name").click()
    assert page.locator("th:has(#sort-name)").get_attribute("aria-sort") == "ascending"
    page.locator("body").screenshot(path=str(DOCS / "dashboard-experiments.png"))

    # When the analyst opens the experiment with the keyboard
    row.get_by_role("link", name=seeded.name).focus()
    page.keyboard.press("Enter")
    page.locator("#timeline table").wait_for()
    assert page.url.endswith(f"#/experiments/{seeded.experiment_id}")

    # Then its 3 published rounds, sealed by quota, with the rejected, late and refused counts
    assert page.locator("#timeline tr[data-state='PUBLISHED']").count() == 3
    assert page.locator("#timeline tr[data-round='1'] td").nth(2).inner_text() == "1"  # rejected count
    assert page.locator("#timeline tr[data-round='2'] td[data-col='late']").inner_text() == "1"
    assert page.locator("#timeline tr[data-round='3'] td[data-col='refused-paused']").inner_text() == "1"
    assert page.locator("#timeline td[data-col='sealed-by']").all_inner_texts() == ["quota"] * 3
    assert page.locator("#stuck-alert").count() == 0
    # and what each round cost at list prices, and the experiment so far (issue 14)
    assert "Cost" in page.locator("#timeline thead").inner_text()
    assert page.locator("#timeline tr[data-round='1'] td.cost").inner_text().startswith("$")
    assert page.locator("#experiment-cost").inner_text().startswith("$")

    # And the charts: training per round, federated evaluation from round 0 (the initial model)
    loss = page.locator("figure[data-metric='loss']")
    assert loss.locator("g[data-series='training'] .point").count() == 3
    assert loss.locator("g[data-series='evaluation'] .point").count() == 4
    assert "round 0" in loss.locator("g[data-series='evaluation'] .point title").first.text_content()
    assert page.locator("figure[data-metric='accuracy'] g[data-series='training'] .point").count() == 3
    assert loss.locator("g[data-series^='client-']").count() == 0

    # And the refused updates: wrong shape, late after the seal, refused while paused
    rejected = page.locator(f"#rejected tr[data-client='{seeded.rejected_client}']")
    assert "REJECTED" in rejected.inner_text()
    assert seeded.rejected_reason and seeded.rejected_reason in rejected.inner_text()
    assert "WRONG_SHAPE" in seeded.rejected_reason
    slow = page.locator(f"#rejected tr[data-client='{seeded.slow_client}']")
    assert slow.count() == 2
    assert "ROUND_CLOSED" in slow.filter(has_text="LATE").inner_text()
    assert "EXPERIMENT_NOT_RUNNING" in slow.filter(has_text="REFUSED (paused)").inner_text()
    grid = page.locator("#participation table.grid")
    assert grid.locator("td[data-status='REJECTED']").count() == 1
    assert grid.locator("td[data-status='APPLIED']").count() == 6
    slow_row = grid.locator(f"tr[data-client='{seeded.slow_client}'] td")
    assert [slow_row.nth(i).get_attribute("data-status") for i in range(3)] == [None, "LATE", "REFUSED"]
    assert page.locator("#models tr[data-model-round]").count() == 4

    # When the analyst asks for each client's series
    page.get_by_label("Show each client's series").check()

    # Then every chart draws both clients' training and evaluation lines under the aggregate ones
    assert loss.locator("g[data-series^='client-training-']").count() == 2
    assert loss.locator("g[data-series^='client-evaluation-']").count() == 2
    assert loss.locator("g[data-series^='client-evaluation-']").first.locator(".point").count() == 4
    page.screenshot(path=str(DOCS / "dashboard-experiment.png"), full_page=True)

    # And the model of round 3 downloads under the experiment's name, with the sha256 shown
    sha = page.locator("#models tr[data-model-round='3'] code.sha").inner_text()
    with page.expect_download() as download:
        page.get_by_role("button", name="Download the model of round 3").click()
    assert download.value.suggested_filename == f"{seeded.name}-round-3.safetensors"
    assert hashlib.sha256(Path(download.value.path()).read_bytes()).hexdigest() == sha
    assert page.console.unexpected() == []


def test_deadline_seal_is_marked_in_the_timeline(page, local_mode, seeded):
    sign_in(page, local_mode.url, seeded.analyst_token)
    page.locator(f"tr[data-experiment='{seeded.deadline_experiment_id}']").get_by_role("link").click()
    page.locator("#timeline tr[data-state='PUBLISHED']").wait_for()
    assert page.locator("#timeline tr[data-round='1'] td[data-col='sealed-by']").inner_text() == "deadline"
    assert page.console.unexpected() == []


def test_list_filters_by_status_and_name_through_the_api(page, local_mode, seeded):
    # Given the list with the seeded experiments and one that is still open
    from fma_client import Developer

    Developer(local_mode.url, seeded.developer_token).create_experiment(
        "open-filter-check", {"w": np.zeros(2, np.float32)}, rounds={"min_updates": 1, "total_rounds": 1})
    sign_in(page, local_mode.url, seeded.analyst_token)
    page.locator(f"tr[data-experiment='{seeded.deadline_experiment_id}']").wait_for()

    # When the analyst filters by status, the API is asked and only completed experiments remain
    with page.expect_request(lambda r: "status=COMPLETED" in r.url):
        page.get_by_label("Status").select_option("COMPLETED")
    page.locator("tr[data-experiment]", has_text="open-filter-check").wait_for(state="detached")
    assert set(page.locator("tr[data-experiment] td[data-label='Status']").all_inner_texts()) == {"COMPLETED"}

    # And searching part of a name, in any case, leaves that experiment alone
    with page.expect_request(lambda r: "q=DEADLINE" in r.url):
        page.get_by_label("Search by name").fill("DEADLINE")
    page.locator(f"tr[data-experiment='{seeded.experiment_id}']").wait_for(state="detached")
    assert page.locator("tr[data-experiment]").count() == 1
    assert "match" in page.locator("#list-count").inner_text()

    # And a filter that matches nothing says so
    page.get_by_label("Search by name").fill("no-such-experiment")
    page.get_by_text("No experiments match these filters.").wait_for()
    assert page.console.unexpected() == []


def _stuck(round_: dict) -> dict:
    return {**round_, "state": "AGGREGATING", "stuck": True, "age_seconds": 1500.0, "attempts": 2,
            "expected_seconds": 900.0, "last_error": "attempt 2: RuntimeError: throttled", "published_at": None}


def test_stuck_round_is_flagged_in_the_list_and_on_the_page(page, local_mode, seeded):
    # Given the API reports round 3 stuck in AGGREGATING (rendering only: the API side is
    # proven in tests/functional/test_round_trouble.py)
    def list_route(route):
        response = route.fetch()
        body = response.json()
        for e in body["experiments"]:
            if e["id"] == seeded.experiment_id:
                e.update(status="RUNNING", attention={
                    "code": "ROUND_STUCK", "round": 3, "state": "AGGREGATING", "age_seconds": 1500.0, "attempts": 2,
                    "last_error": "attempt 2: RuntimeError: throttled", "message": "round 3 has been AGGREGATING"})
        route.fulfill(response=response, json=body)

    def rounds_route(route):
        response = route.fetch()
        body = response.json()
        body["rounds"] = [_stuck(r) if r["round"] == 3 else r for r in body["rounds"]]
        route.fulfill(response=response, json=body)

    page.route("**/v1/experiments?*", list_route)
    page.route(f"**/v1/experiments/{seeded.experiment_id}/rounds?*", rounds_route)
    sign_in(page, local_mode.url, seeded.analyst_token)

    # Then the list does not say a plain RUNNING
    row = page.locator(f"tr[data-experiment='{seeded.experiment_id}']")
    row.wait_for()
    assert row.get_attribute("data-attention") == "true"
    marker = row.locator("[data-attention='ROUND_STUCK']")
    assert marker.inner_text() == "⚠ stuck"
    assert "Round 3 AGGREGATING for 25 min 0 s, 2 attempts" in row.inner_text()
    assert "needs attention" in page.locator("#list-count").inner_text()

    # And the experiment page says how long, how many attempts and the last error
    row.get_by_role("link").click()
    alert = page.locator("#stuck-alert")
    alert.wait_for()
    assert "Round 3 has been AGGREGATING for 25 min 0 s" in alert.inner_text()
    assert "2 aggregation attempts" in alert.inner_text()
    assert "attempt 2: RuntimeError: throttled" in alert.inner_text()
    assert page.locator("#timeline tr[data-round='3']").get_attribute("data-stuck") == "true"
    assert page.console.unexpected() == []


def test_invalid_token_shows_the_error_state(page, local_mode, seeded):
    sign_in(page, local_mode.url, "fma_not-a-real-token")

    alert = page.locator("#auth-error")
    alert.wait_for()
    assert "token expired or invalid" in alert.inner_text().lower()
    assert page.get_by_label("API token").is_visible()
    assert page.evaluate("sessionStorage.getItem('fma.token')") is None
    # the browser itself logs the refused request; nothing else may reach the console
    assert page.console.unexpected(allowed=r"status of 401") == []


def test_unreachable_api_shows_the_error_state_and_recovers_by_itself(page, local_mode, seeded):
    # Given an API that cannot be reached
    page.clock.install()
    page.route("**/v1/**", lambda route: route.abort())
    sign_in(page, local_mode.url, seeded.analyst_token)
    page.get_by_role("heading", name="API unreachable").wait_for()
    assert page.get_by_role("button", name="Try again").is_visible()

    # When it comes back, the next auto-refresh shows the experiments
    page.unroute("**/v1/**")
    page.clock.run_for(11_000)
    page.locator(f"tr[data-experiment='{seeded.experiment_id}']").wait_for()
    assert page.console.unexpected(allowed=r"net::ERR_FAILED") == []


def test_narrow_screen_has_no_horizontal_scroll(page, local_mode, seeded):
    page.set_viewport_size({"width": 375, "height": 800})
    sign_in(page, local_mode.url, seeded.analyst_token)
    page.locator(f"tr[data-experiment='{seeded.experiment_id}']").wait_for()
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")

    page.goto(f"{local_mode.url}/#/experiments/{seeded.experiment_id}")
    page.locator("#timeline table").wait_for()
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    page.get_by_label("Show each client's series").check()
    page.locator("g[data-series^='client-']").first.wait_for()
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    assert page.console.unexpected() == []


def test_experiments_list_refreshes_by_itself(page, local_mode, seeded):
    # Given the list on screen, with the page's timers under the test's control
    page.clock.install()
    sign_in(page, local_mode.url, seeded.analyst_token)
    page.locator(f"tr[data-experiment='{seeded.experiment_id}']").wait_for()

    # When a developer creates another experiment and the refresh interval passes
    from fma_client import Developer

    created = Developer(local_mode.url, seeded.developer_token).create_experiment(
        "appears-by-itself", {"w": np.zeros(2, np.float32)}, rounds={"min_updates": 1, "total_rounds": 1}
    )
    page.clock.run_for(11_000)

    # Then it shows up without a reload, and its open round shows the quota being filled
    page.locator(f"tr[data-experiment='{created['id']}']").get_by_role("link").click()
    open_round = page.locator("#timeline tr[data-state='OPEN']")
    assert open_round.get_attribute("data-round") == "1"
    assert "0 / 1" in open_round.inner_text()
    assert page.get_by_role("progressbar", name="Round 1: 0 of 1 updates").is_visible()
    assert page.console.unexpected() == []


def test_no_experiments_shows_the_empty_state(page, local_mode, seeded):
    page.route("**/v1/experiments?*", lambda route: route.fulfill(json={"experiments": [], "next_cursor": None}))
    sign_in(page, local_mode.url, seeded.analyst_token)

    page.get_by_text("No experiments yet").wait_for()
    assert page.locator("table.experiments").count() == 0
    assert page.console.unexpected() == []
