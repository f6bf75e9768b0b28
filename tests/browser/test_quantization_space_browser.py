"""The quantization Space in a real browser: headless system Chromium driven by Playwright."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import chromium_page, publish_tiny_quantized, running_space

pytestmark = [pytest.mark.integration, pytest.mark.browser]

BASE = "alice/tiny-sd-shapes"
W8A8 = "alice/tiny-w8a8"
TIMEOUT_MS = 30_000


@pytest.fixture(scope="module")
def space_url(hub, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``spaces/quantization/app.py`` as a subprocess on a free port, opening with alice's W8A8 UNet."""
    publish_tiny_quantized(hub, tmp_path_factory.mktemp("quantized"), {W8A8: "int8"})
    env = {
        "OMP_NUM_THREADS": "1",
        "HF_ENDPOINT": hub.url,
        "HF_TOKEN": hub.users["alice"],
        "HUBKIT_QUANTIZED_REPO": W8A8,
    }
    with running_space(tmp_path_factory.mktemp("space"), env, "quantization") as (url, _log):
        yield url


@pytest.fixture
def page(space_url: str):
    with chromium_page(TIMEOUT_MS) as page:
        yield page


def test_quantization_page_shows_both_images_bytes_seconds_and_errors(page, space_url: str, tmp_path: Path):
    from playwright.sync_api import expect

    page.goto(space_url)
    quantized = page.locator("#quantized textarea, #quantized input").first
    expect(quantized).to_have_value(W8A8, timeout=TIMEOUT_MS)  # the Space's default
    page.locator("#prompt textarea, #prompt input").first.fill("a green triangle")
    steps = page.locator('#steps input[type="number"]')
    steps.fill("3")
    steps.press("Enter")
    expect(page.locator('#steps input[type="range"]')).to_have_value("3")
    page.locator("#generate-button").click()

    table = page.locator("#cost-table")
    rows = table.locator('[role="row"][data-index]')
    expect(rows).to_have_count(2, timeout=TIMEOUT_MS)
    for i, (model, kind) in enumerate([(BASE, "fp32"), (f"{BASE} + {W8A8}", "quantized")]):
        expect(table.get_by_test_id(f"cell-{i}-0")).to_have_text(model)
        expect(table.get_by_test_id(f"cell-{i}-1")).to_have_text(kind)
        assert float(table.get_by_test_id(f"cell-{i}-3").inner_text()) > 0  # seconds
    sizes = [float(table.get_by_test_id(f"cell-{i}-2").inner_text().replace(",", "")) for i in range(2)]
    assert sizes[0] / sizes[1] > 3.5
    status = page.locator("#quant-status")
    expect(status).to_contain_text("smaller")
    expect(status).to_contain_text("PSNR to the base's image")
    expect(status).to_contain_text(f"{BASE} (from the card)")
    for name in ("base", "quantized"):
        shown = page.locator(f"#{name}-image img")
        expect(shown).to_have_count(1)
        assert shown.evaluate("img => img.naturalWidth") == 256

    shot = tmp_path / "quantization-space.png"
    page.screenshot(path=str(shot), full_page=True)
    data = shot.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 20_000, len(data)

    quantized.fill("alice/no-such-unet")
    page.locator("#generate-button").click()
    for words in ("Cannot load the quantized UNet", "alice/no-such-unet", "no such repo"):
        expect(page.get_by_test_id("toast-body")).to_contain_text(words, timeout=TIMEOUT_MS)
    expect(rows).to_have_count(2)
    expect(table.get_by_test_id("cell-1-0")).to_have_text(f"{BASE} + {W8A8}")
