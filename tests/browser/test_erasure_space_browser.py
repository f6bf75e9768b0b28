"""The erasure Space in a real browser: headless system Chromium driven by Playwright."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import publish_tiny_spms, start_space, stop_space

pytestmark = [pytest.mark.integration, pytest.mark.browser]

SPACE = Path(__file__).resolve().parents[2] / "spaces" / "erasure"
BASE = "alice/tiny-sd-shapes"
SPMS = {"alice/spm-red": "red", "alice/spm-triangle": "triangle"}
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
TIMEOUT_MS = 30_000


@pytest.fixture(scope="module")
def space_url(hub, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``spaces/erasure/app.py`` as a subprocess on a free port, reading alice's repos on the test Hub."""
    publish_tiny_spms(hub, tmp_path_factory.mktemp("spms"), SPMS, boost=100.0)
    env = {
        "OMP_NUM_THREADS": "1",  # a shared 2-core machine: one torch thread is ~10x faster than two here
        "HF_ENDPOINT": hub.url,
        "HF_TOKEN": hub.users["alice"],
        "HUBKIT_BASE_MODEL": BASE,
        "HUBKIT_SPMS": ",".join(SPMS),
    }
    proc, url, _log = start_space(tmp_path_factory.mktemp("space"), env, space="erasure")
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
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.set_default_timeout(TIMEOUT_MS)
            yield page
        finally:
            browser.close()


def test_erasure_page_generates_side_by_side_and_reports_errors(page, space_url: str, tmp_path: Path):
    from playwright.sync_api import expect

    page.goto(space_url)
    selector = page.locator("#spm-select")
    for repo in SPMS:
        expect(selector).to_contain_text(repo, timeout=TIMEOUT_MS)  # both offered SPMs, selected
    page.locator("#prompt textarea, #prompt input").first.fill("a red triangle")
    page.locator("#generate-button").click()

    images = {name: page.locator(f"#{name}-gallery img") for name in ("base", "erased")}
    for gallery in images.values():
        expect(gallery).to_have_count(4, timeout=TIMEOUT_MS)  # the default number of images
    table = page.locator("#permeability-table")
    rows = table.locator('[role="row"][data-index]')  # the grid's body rows (the header has no index)
    expect(rows).to_have_count(2)
    for i, (repo, concept) in enumerate(SPMS.items()):
        cells = [table.get_by_test_id(f"cell-{i}-{j}") for j in range(4)]
        expect(cells[0]).to_have_text(repo)
        expect(cells[1]).to_have_text(concept)
        expect(cells[2]).to_have_text("1")  # "a red triangle" names both concepts: permeability 1,
        expect(cells[3]).to_have_text("1")  # so each SPM is applied at scale 1
    status = page.locator("#erasure-status")
    expect(status).to_contain_text(f"{BASE} + 2 SPMs")
    expect(status).to_contain_text("facilitated transport on")
    sizes = [images["erased"].nth(i).evaluate("img => img.naturalWidth") for i in range(4)]
    assert sizes == [256] * 4  # 32 px upscaled ×8

    shot = tmp_path / "erasure-space.png"
    page.screenshot(path=str(shot), full_page=True)
    data = shot.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 20_000, len(data)

    # An SPM repo that does not exist: the page says so and keeps the last results.
    selector.locator("input").fill("alice/no-such-spm")
    selector.locator("input").press("Enter")
    page.locator("#generate-button").click()
    toast = page.get_by_test_id("toast-body")
    expect(toast).to_contain_text("Cannot load the SPM", timeout=TIMEOUT_MS)
    expect(toast).to_contain_text("alice/no-such-spm")
    expect(toast).to_contain_text("no such repo")
    expect(rows).to_have_count(2)
