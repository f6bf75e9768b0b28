"""The quantization Space against the embedded Hub: W8A8 and W4A8 UNets quantized here from alice's base model
and published, the base and the quantized pipeline side by side through ``/generate`` with gradio_client."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import publish_tiny_quantized, running_space, third_party_imports
from gradio_client import Client
from gradio_client.exceptions import AppError
from PIL import Image

pytestmark = [pytest.mark.integration]

SPACE = Path(__file__).resolve().parents[2] / "spaces" / "quantization"
BASE = "alice/tiny-sd-shapes"
W8A8, W4A8, MISFIT = "alice/tiny-w8a8", "alice/tiny-w4a8", "alice/tiny-w8a8-other-unet"
SHOWN = (256, 256)


def other_unet(folder: Path) -> None:
    """Make ``folder`` claim another UNet (a wider text embedding) than alice's base model has."""
    config = folder / "unet" / "config.json"
    data = json.loads(config.read_text())
    data["cross_attention_dim"] = 2 * data["cross_attention_dim"]
    config.write_text(json.dumps(data))


@pytest.fixture(scope="module")
def space(hub, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """The Space reading the test Hub with alice's token, opening with her W8A8 UNet; no
    ``HUBKIT_BASE_REPO``: the base model must come from the card."""
    repos = {W8A8: "int8", W4A8: "int4"}
    publish_tiny_quantized(hub, tmp_path_factory.mktemp("quantized"), repos, {MISFIT: other_unet})
    env = {
        "HF_ENDPOINT": hub.url,
        "HF_TOKEN": hub.users["alice"],
        "HUBKIT_QUANTIZED_REPO": W8A8,
        "OMP_NUM_THREADS": "1",  # a shared 2-core machine
    }
    with running_space(tmp_path_factory.mktemp("space"), env, "quantization") as url_and_log:
        yield url_and_log


@pytest.fixture(scope="module")
def client(space) -> Client:
    return Client(space[0], verbose=False)


def image(path: str | dict) -> np.ndarray:
    with Image.open(path if isinstance(path, str) else path["path"]) as img:
        assert img.format == "PNG" and img.size == SHOWN, (img.format, img.size)
        return np.asarray(img.convert("RGB"))


def rows_of(table: dict) -> list[dict]:
    return [dict(zip(table["headers"], row, strict=True)) for row in table["data"]]


def test_app_imports_only_what_the_space_installs():
    from hubkit.cards import check_folder

    third_party = third_party_imports(SPACE / "app.py")
    assert third_party == {
        "gradio",
        "numpy",
        "pandas",
        "diffusers",
        "huggingface_hub",
        "PIL",
        "hubkit",
    }
    requirements = set((SPACE / "requirements.txt").read_text().split())
    assert third_party - {"gradio", "PIL"} | {"pillow", "sdnq"} <= requirements
    assert check_folder(SPACE, repo_type="space") == []
    card = (SPACE / "README.md").read_text()
    assert "- hubkit/tiny-sd-shapes-w8a8\n" in card and "- hubkit/tiny-sd-shapes-w4a8\n" in card
    assert 'api_name="/generate"' in card


def test_generate_shows_base_and_quantized_with_bytes_seconds_and_psnr(client):
    full, quant, table, status = client.predict("a red circle", 4, 0, "", "", api_name="/generate")
    rows = rows_of(table)
    assert [r["UNet"] for r in rows] == ["fp32", "quantized"]
    assert rows[0]["model"] == BASE and rows[1]["model"] == f"{BASE} + {W8A8}"
    assert all(r["seconds"] > 0 for r in rows)
    ratio = rows[0]["UNet bytes"] / rows[1]["UNet bytes"]
    assert ratio > 3.5  # int8 weights (and fp32 scales) against fp32
    full, quant = image(full), image(quant)
    diff = float(np.mean((full.astype(float) - quant.astype(float)) ** 2))
    assert diff > 0  # quantized: close, not the same pixels
    shown = re.search(r"\*\*([0-9.]+)× smaller\*\*.*PSNR to the base's image \*\*([0-9.]+) dB\*\*", status)
    assert shown, status
    assert float(shown[1]) == pytest.approx(ratio, abs=0.01)
    psnr = 10 * np.log10(255**2 / diff)  # upscaling by whole pixels keeps the mean square error
    assert float(shown[2]) == pytest.approx(psnr, abs=0.1) and float(shown[2]) > 15
    assert f"base `{BASE}` (from the card)" in status and "seed 0" in status


def test_another_quantized_unet_replaces_the_first_and_the_seed_fixes_the_noise(client):
    _, w4, table, _ = client.predict("a blue square", 4, 3, W4A8, "", api_name="/generate")
    rows = rows_of(table)
    assert rows[1]["model"] == f"{BASE} + {W4A8}"
    assert rows[0]["UNet bytes"] / rows[1]["UNet bytes"] > 5.0  # int4 packed two to a byte
    full, w8, _, _ = client.predict("a blue square", 4, 3, W8A8, BASE, api_name="/generate")
    assert not np.array_equal(image(w4), image(w8))
    again_full, again_w8, _, status = client.predict("a blue square", 4, 3, W8A8, BASE, api_name="/generate")
    assert np.array_equal(image(again_full), image(full)) and np.array_equal(image(again_w8), image(w8))
    assert f"base `{BASE}` (typed)" in status


def test_bad_input_and_repos_are_clear_errors(client, space):
    with pytest.raises(AppError, match=r"Cannot load the quantized UNet `alice/no-such-unet`: no such repo"):
        client.predict("a red circle", 2, 0, "alice/no-such-unet", "", api_name="/generate")
    with pytest.raises(AppError, match=rf"`{MISFIT}`: .*quantizes another UNet"):
        client.predict("a red circle", 2, 0, MISFIT, "", api_name="/generate")
    with pytest.raises(AppError, match=r"`alice/no-such-base`"):
        client.predict("a red circle", 2, 0, W8A8, "alice/no-such-base", api_name="/generate")
    with pytest.raises(AppError, match=r"`not a repo` is not a valid quantized UNet repo id"):
        client.predict("a red circle", 2, 0, "not a repo", "", api_name="/generate")
    with pytest.raises(AppError, match="Enter a prompt"):
        client.predict("  ", 2, 0, W8A8, "", api_name="/generate")
    # Nothing was left half-loaded: the W8A8 UNet still works after the failures.
    _, _, table, _ = client.predict("a red circle", 2, 0, W8A8, "", api_name="/generate")
    assert rows_of(table)[1]["model"] == f"{BASE} + {W8A8}"
    assert "Traceback" not in space[1].read_text()
    # A negative seed (only the API can send one): gradio's own minimum check refuses it (and logs it).
    with pytest.raises(AppError, match="minimum value 0"):
        client.predict("a red circle", 2, -1, W8A8, "", api_name="/generate")
