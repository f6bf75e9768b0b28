"""The fast-sampling Space in a real browser: headless system Chromium driven by Playwright."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import chromium_page, publish_tiny_lcm_lora, running_space

pytestmark = [pytest.mark.integration, pytest.mark.browser]

BASE = "alice/tiny-sd-shapes"
LORA = "alice/lcm-lora-shapes"
TIMEOUT_MS = 30_000


@pytest.fixture(scope="module")
def space_url(hub, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``spaces/fast-sampling/app.py`` as a subprocess on a free port, opening with alice's LoRA."""
    publish_tiny_lcm_lora(hub, tmp_path_factory.mktemp("lcm"), LORA)
    env = {
        "OMP_NUM_THREADS": "1",  # a shared 2-core machine: one torch thread is ~10x faster than two here
        "HF_ENDPOINT": hub.url,
        "HF_TOKEN": hub.users["alice"],
        "HUBKIT_LCM_REPO": LORA,
    }
    with running_space(tmp_path_factory.mktemp("space"), env, "fast-sampling") as (url, _log):
        yield url


@pytest.fixture
def page(space_url: str):
    with chromium_page(TIMEOUT_MS) as page:
        yield page


def test_fast_sampling_page_times_teacher_and_student_and_reports_errors(
    page, space_url: str, tmp_path: Path
):
    from playwright.sync_api import expect

    page.goto(space_url)
    lora = page.locator("#lora textarea, #lora input").first
    expect(lora).to_have_value(LORA, timeout=TIMEOUT_MS)  # the Space's default LoRA
    page.locator("#prompt textarea, #prompt input").first.fill("a green triangle")
    steps = page.locator('#steps input[type="number"]')
    steps.fill("2")
    steps.press("Enter")
    expect(page.locator('#steps input[type="range"]')).to_have_value("2")
    page.locator("#generate-button").click()

    table = page.locator("#timing-table")
    rows = table.locator('[role="row"][data-index]')  # the grid's body rows (the header has no index)
    expect(rows).to_have_count(2, timeout=TIMEOUT_MS)
    expected = [("teacher", BASE, "25", "7.5"), ("student", f"{BASE} + {LORA}", "2", "1")]
    for i, (role, model, steps_shown, guidance) in enumerate(expected):
        for j, text in enumerate((role, model)):
            expect(table.get_by_test_id(f"cell-{i}-{j}")).to_have_text(text)
        expect(table.get_by_test_id(f"cell-{i}-3")).to_have_text(steps_shown)
        expect(table.get_by_test_id(f"cell-{i}-4")).to_have_text(guidance)
        assert float(table.get_by_test_id(f"cell-{i}-5").inner_text()) > 0  # seconds
    expect(table.get_by_test_id("cell-1-2")).to_have_text("LCMScheduler")
    status = page.locator("#speed-status")
    expect(status).to_contain_text("faster")
    expect(status).to_contain_text(f"{BASE} (from the LoRA's card)")
    for name in ("teacher", "student"):
        shown = page.locator(f"#{name}-image img")
        expect(shown).to_have_count(1)
        assert shown.evaluate("img => img.naturalWidth") == 256  # 32 px upscaled ×8

    shot = tmp_path / "fast-sampling-space.png"
    page.screenshot(path=str(shot), full_page=True)
    data = shot.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 20_000, len(data)

    # A LoRA repo that does not exist: the page says so and keeps the last results.
    lora.fill("alice/no-such-lora")
    page.locator("#generate-button").click()
    for words in ("Cannot load the LoRA", "alice/no-such-lora", "no such repo"):
        expect(page.get_by_test_id("toast-body")).to_contain_text(words, timeout=TIMEOUT_MS)
    expect(rows).to_have_count(2)
    expect(table.get_by_test_id("cell-1-1")).to_have_text(f"{BASE} + {LORA}")
