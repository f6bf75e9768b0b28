"""The erasure Space in a real browser: headless system Chromium driven by Playwright."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from conftest import free_port, stop_space

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


def _publish(hub, tmp: Path) -> None:
    """The base model and two SPMs (2 training steps, B boosted ×100 so that they show) under alice/."""
    from hubkit.adapters.spm import SPMConfig, save_spm, train_spm
    from hubkit.adapters.spm.card import spm_card

    from hubkit.hub import publish
    from hubkit.world.base_model import assemble_pipeline
    from hubkit.world.publish import publish_world

    token = hub.users["alice"]
    publish_world(endpoint=hub.url, token=token, namespace="alice", only=["tiny-sd-shapes"])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a shared 2-core machine: one thread is far faster than two fighting
    try:
        pipe = assemble_pipeline()
        for repo, concept in SPMS.items():
            config = SPMConfig(
                concepts=[concept], steps=2, batch_size=2, sampling_steps=4, anchors_per_step=1
            )
            result = train_spm(pipe, config, progress=False)
            weights = {p: (d, u * 100, a) for p, (d, u, a) in result.network.adapter_weights("spm").items()}
            result.network.detach_hooks()
            folder = tmp / concept
            save_spm(folder, weights, config, {"base_model": BASE})
            spm_card(config, BASE, repo).save(folder / "README.md")
            publish(folder, repo, endpoint=hub.url, token=token)
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def space_url(hub, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``spaces/erasure/app.py`` as a subprocess on a free port, reading alice's repos on the test Hub."""
    _publish(hub, tmp_path_factory.mktemp("spms"))
    tmp = tmp_path_factory.mktemp("space")
    port = free_port()
    log = tmp / "space.log"
    env = {
        **os.environ,
        "GRADIO_SERVER_NAME": "127.0.0.1",
        "GRADIO_SERVER_PORT": str(port),
        "GRADIO_ANALYTICS_ENABLED": "False",
        "GRADIO_TEMP_DIR": str(tmp / "gradio"),
        "HF_HOME": str(tmp / "hf-home"),
        "OMP_NUM_THREADS": "1",
        "HF_ENDPOINT": hub.url,
        "HF_TOKEN": hub.users["alice"],
        "HUBKIT_BASE_MODEL": BASE,
        "HUBKIT_SPMS": ",".join(SPMS),
    }
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, str(SPACE / "app.py")],
            env=env,
            cwd=tmp,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(url, timeout=2):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"the erasure Space did not start:\n{log.read_text()[-4000:]}")
                time.sleep(0.2)
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
