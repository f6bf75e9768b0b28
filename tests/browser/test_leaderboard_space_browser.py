"""The leaderboard Space in a real browser: headless system Chromium driven by Playwright."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from conftest import start_space, stop_space

from hubkit.leaderboard.plots import declared_plots, plots_json

pytestmark = [pytest.mark.integration, pytest.mark.browser]

SPACE = Path(__file__).resolve().parents[2] / "spaces" / "leaderboard"
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
TIMEOUT_MS = 20_000


def _results_parquet() -> bytes:
    base = {"kind": "pipeline", "base_model": None, "suite_version": 1, "date": "2025-06-01T12:00:00Z"}
    rows = [
        {**base, "model": "alice/tiny-sd-shapes", "revision": "a" * 40, "method": "pipeline"}
        | {"suite": "shapes-quality", "params": "{}", "alignment": 0.97, "fd": 1.2, "unet_evals": 50.0},
        {**base, "model": "alice/tiny-sd-shapes-lcm", "revision": "b" * 40, "method": "lcm-lora"}
        | {"suite": "shapes-quality", "params": "{}", "alignment": 0.91, "fd": 2.5, "unet_evals": 4.0},
        {**base, "model": "alice/spm-red", "revision": "c" * 40, "method": "spm", "kind": "adapter"}
        | {"suite": "shapes-erasure", "params": '{"concept": "red"}'}
        | {"target_presence": 0.02, "unrelated_alignment": 0.95},
    ]
    frame = pd.DataFrame(rows).assign(hubkit_version="0.1.0")
    for metric in ("alignment", "fd", "unet_evals", "target_presence", "unrelated_alignment"):
        frame[metric] = frame[metric].astype("float64")
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def space_url(hub, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The Space as a subprocess on a free port, reading results from the test Hub with alice's token."""
    alice = hub.api("alice")
    alice.create_repo("alice/leaderboard-results", repo_type="dataset")
    alice.upload_file(
        path_or_fileobj=_results_parquet(),
        path_in_repo="leaderboard.parquet",
        repo_id="alice/leaderboard-results",
        repo_type="dataset",
    )
    alice.upload_file(
        path_or_fileobj=plots_json(declared_plots(pd.read_parquet(io.BytesIO(_results_parquet())))),
        path_in_repo="plots.json",
        repo_id="alice/leaderboard-results",
        repo_type="dataset",
    )
    tmp = tmp_path_factory.mktemp("space")
    env = {
        "HF_ENDPOINT": hub.url,
        "HF_TOKEN": hub.users["alice"],
        "HUBKIT_RESULTS_REPO": "alice/leaderboard-results",
        "HUBKIT_REQUESTS_REPO": "alice/leaderboard-requests",
    }
    proc, url, _ = start_space(tmp, env)
    try:
        yield url
    finally:
        stop_space(proc)


@pytest.fixture
def page(space_url: str):
    """A page of a headless system Chromium (Playwright cannot download browsers here)."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: install the Debian package 'chromium' (make test installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(TIMEOUT_MS)
            yield page
        finally:
            browser.close()


def test_leaderboard_page_renders_filters_and_submits(page, space_url: str, hub, tmp_path: Path):
    from playwright.sync_api import expect

    page.goto(space_url)
    table = page.locator("#leaderboard-table")
    # It starts on one suite (the one with the most models), with that suite's columns only.
    expect(table).to_contain_text("alice/tiny-sd-shapes", timeout=TIMEOUT_MS)
    expect(table).to_contain_text("0.97")
    expect(page.locator("#filter-suite input")).to_have_value("shapes-quality")
    expect(table).not_to_contain_text("alice/spm-red")
    expect(table).not_to_contain_text("target_presence")
    expect(page.locator("#leaderboard-status")).to_contain_text("3 results for 3 models on 2 suites")
    # The suite's two declared plots, drawn; the other slots hidden.
    plot = "#plot-{} img"
    expect(page.locator(plot.format(0))).to_be_visible()
    expect(page.locator(plot.format(1))).to_be_visible()
    expect(page.locator("#plot-2")).to_have_count(0)

    shot = tmp_path / "leaderboard-space.png"
    page.screenshot(path=str(shot), full_page=True)
    data = shot.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 20_000, len(data)

    # Refresh picks up a new results file, and the plots redraw with it.
    before = page.locator(plot.format(0)).get_attribute("src")
    frame = pd.read_parquet(io.BytesIO(_results_parquet()))
    sara = frame.iloc[[1]].assign(model="alice/sara-shapes", method="sara", alignment=0.5)
    buffer = io.BytesIO()
    pd.concat([frame, sara]).to_parquet(buffer, index=False)
    hub.api("alice").upload_file(
        path_or_fileobj=buffer.getvalue(),
        path_in_repo="leaderboard.parquet",
        repo_id="alice/leaderboard-results",
        repo_type="dataset",
    )
    page.locator("#refresh-button").click()
    expect(table).to_contain_text("alice/sara-shapes")
    expect(page.locator(plot.format(0))).not_to_have_attribute("src", before)
    expect(page.locator("#filter-suite input")).to_have_value("shapes-quality")  # kept

    # The suite filter (its choices came from the results when the page loaded).
    page.locator("#filter-suite input").click()
    page.get_by_role("option", name="shapes-erasure").click()
    expect(table).to_contain_text("alice/spm-red")
    expect(table).not_to_contain_text("alice/tiny-sd-shapes-lcm")
    expect(page.locator(plot.format(0))).to_be_visible()  # its one declared plot
    expect(page.locator("#plot-1")).to_have_count(0)
    page.screenshot(path=str(tmp_path / "leaderboard-space-erasure.png"), full_page=True)
    page.locator("#filter-search input, #filter-search textarea").first.fill("nobody")
    expect(page.locator("#plots-status")).to_contain_text("nothing to plot")
    expect(page.locator("#plot-0")).to_have_count(0)
    page.locator("#filter-search input, #filter-search textarea").first.fill("")

    # The submit form files a request for an existing model.
    alice = hub.api("alice")
    alice.create_repo("alice/browser-model")
    alice.upload_file(path_or_fileobj=b"{}", path_in_repo="config.json", repo_id="alice/browser-model")
    page.get_by_role("tab", name="Submit").click()
    page.locator("#submit-model textarea, #submit-model input").first.fill("alice/browser-model")
    page.locator("#submit-button").click()
    expect(page.locator("#submit-status")).to_contain_text("Queued alice/browser-model")
    expect(page.locator("#queue-table")).to_contain_text("PENDING")
    files = alice.list_repo_files("alice/leaderboard-requests", repo_type="dataset")
    assert "requests/alice/browser-model.json" in files
