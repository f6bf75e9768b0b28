"""The erasure Space against the embedded Hub: two tiny SPMs trained here and published with the base model,
applied side by side through the Space's ``/erase`` endpoint with gradio_client."""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import publish_tiny_spms, start_space, stop_space
from gradio_client import Client
from gradio_client.exceptions import AppError
from PIL import Image

pytestmark = [pytest.mark.integration]

SPACE = Path(__file__).resolve().parents[2] / "spaces" / "erasure"
BASE = "alice/tiny-sd-shapes"
RED, TRIANGLE, MISFIT = "alice/spm-red", "alice/spm-triangle", "alice/spm-other-unet"
BOOST = 100.0  # a 2-step SPM barely moves B away from zero: scaled up so that its effect is visible
SHOWN = (256, 256)  # 32×32 images upscaled ×8


def _misfit(weights: dict, config) -> tuple[dict, object]:
    """An SPM whose layers are twice as wide as the base model's."""
    return {p: (torch.cat([d, d], dim=1), u, a) for p, (d, u, a) in weights.items()}, config


@pytest.fixture(scope="module")
def space(hub, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """The Space reading the test Hub with alice's token, offering her two SPMs; its URL and log."""
    publish_tiny_spms(
        hub, tmp_path_factory.mktemp("spms"), {RED: "red", TRIANGLE: "triangle"}, BOOST, {MISFIT: _misfit}
    )
    env = {
        "HF_ENDPOINT": hub.url,
        "HF_TOKEN": hub.users["alice"],
        "HUBKIT_BASE_MODEL": BASE,
        "HUBKIT_SPMS": f"{RED},{TRIANGLE}",
        "OMP_NUM_THREADS": "1",  # a shared 2-core machine: one torch thread is ~10x faster than two here
    }
    proc, url, log = start_space(tmp_path_factory.mktemp("space"), env, space="erasure")
    try:
        yield url, log
    finally:
        stop_space(proc)


@pytest.fixture(scope="module")
def client(space) -> Client:
    return Client(space[0], verbose=False)


def pixels(gallery: list) -> list[np.ndarray]:
    """The gallery's images as arrays (gradio_client hands back local files)."""
    out = []
    for item in gallery:
        image = item["image"]
        path = image if isinstance(image, str) else image["path"]
        with Image.open(path) as img:
            assert img.format == "PNG" and img.size == SHOWN, (img.format, img.size)
            out.append(np.asarray(img.convert("RGB")))
    return out


def rows(table: dict) -> list[dict]:
    return [dict(zip(table["headers"], row, strict=True)) for row in table["data"]]


def test_app_imports_only_what_the_space_installs():
    from hubkit.cards import check_folder

    tree = ast.parse((SPACE / "app.py").read_text())
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    imported |= {
        node.module.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module
    }
    third_party = imported - set(sys.stdlib_module_names) - {"__future__"}
    assert third_party == {"gradio", "pandas", "torch", "diffusers", "PIL", "hubkit"}
    requirements = set((SPACE / "requirements.txt").read_text().split())
    assert third_party - {"gradio", "PIL"} | {"pillow"} <= requirements  # gradio comes with the sdk
    assert check_folder(SPACE, repo_type="space") == []
    card = (SPACE / "README.md").read_text()
    assert all(
        f"- {repo}\n" in card for repo in ("hubkit/tiny-sd-shapes", "hubkit/spm-red", "hubkit/spm-triangle")
    )


def test_erase_shows_base_and_erased_with_each_spms_permeability(client):
    base, erased, table, status = client.predict(
        "a red circle", [RED, TRIANGLE], 0, True, 2, api_name="/erase"
    )
    base, erased = pixels(base), pixels(erased)
    assert len(base) == len(erased) == 2
    assert not np.array_equal(base[0], base[1])  # a few samples, not one image repeated
    changes = [np.abs(b.astype(int) - e.astype(int)).mean() for b, e in zip(base, erased, strict=True)]
    assert min(changes) > 0 and np.mean(changes) > 8, changes  # the same noise, visibly changed by red
    red, triangle = rows(table)
    assert [red["spm"], triangle["spm"]] == [RED, TRIANGLE]
    assert red["concepts"] == "red" and triangle["concepts"] == "triangle"
    assert all(0.0 <= r[k] <= 1.0 for r in (red, triangle) for k in ("permeability", "scale"))
    assert red["permeability"] == 1.0 and red["scale"] == 1.0  # "red" is a token of the prompt
    assert triangle["permeability"] < 1.0
    assert triangle["scale"] == pytest.approx(triangle["permeability"] ** 2, abs=2e-4)  # m² by default
    assert f"`{BASE}` vs `{BASE}` + 2 SPMs" in status and "transport **on**" in status and "seed 0" in status


def test_base_column_is_the_stock_model_whatever_is_loaded(client):
    """The same seed gives the same base images with any selection; no SPM gives two identical columns;
    transport off applies every SPM at scale 1 and still reports its permeability."""
    first, _, _, _ = client.predict("a red circle", [RED], 3, True, 1, api_name="/erase")
    plain, same, table, status = client.predict("a red circle", [], 3, True, 1, api_name="/erase")
    assert rows(table) == [] and "no SPM" in status
    assert np.array_equal(pixels(first)[0], pixels(plain)[0])
    assert np.array_equal(pixels(plain)[0], pixels(same)[0])
    base, erased_off, table, status = client.predict(
        "a blue square", [TRIANGLE, RED], 3, False, 1, api_name="/erase"
    )
    (triangle, red) = rows(table)
    assert triangle["spm"] == TRIANGLE and red["spm"] == RED  # in the order asked for
    assert red["scale"] == triangle["scale"] == 1.0 and red["permeability"] < 1.0
    assert "transport **off**" in status
    assert not np.array_equal(pixels(base)[0], pixels(erased_off)[0])
    # Transport on: the unrelated prompt lets the SPMs through at m² < 1 only.
    _, _, table, _ = client.predict("a blue square", [TRIANGLE, RED], 3, True, 1, api_name="/erase")
    assert all(r["scale"] < r["permeability"] < 1.0 for r in rows(table))


def test_bad_spm_repos_are_clear_errors(client, space):
    with pytest.raises(AppError, match=r"Cannot load the SPM `alice/no-such-spm`.*no such repo"):
        client.predict("a red circle", [RED, "alice/no-such-spm"], 0, True, 1, api_name="/erase")
    with pytest.raises(AppError, match=rf"The SPM `{MISFIT}` does not fit the base model `{BASE}`"):
        client.predict("a red circle", [MISFIT], 0, True, 1, api_name="/erase")
    with pytest.raises(AppError, match=r"`not a repo` is not a valid SPM repo id"):
        client.predict("a red circle", ["not a repo"], 0, True, 1, api_name="/erase")
    with pytest.raises(AppError, match="Enter a prompt"):
        client.predict("  ", [RED], 0, True, 1, api_name="/erase")
    # Nothing was left half-loaded: the good SPMs still work after the failures.
    _, _, table, _ = client.predict("a red circle", [RED, TRIANGLE], 0, True, 1, api_name="/erase")
    assert [r["spm"] for r in rows(table)] == [RED, TRIANGLE] and rows(table)[0]["permeability"] == 1.0
    assert "Traceback" not in space[1].read_text()
