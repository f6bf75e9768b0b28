"""The fine-tuning Space against the embedded Hub: alice's base model and two tiny adapters of it made
here (a SaRA adapter and a plain diffusers LoRA, random weights instead of training), published with their
cards and compared with the base model through the Space's ``/compare`` endpoint (gradio_client) and in a
browser."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import alice_base_model, chromium_page, running_space, third_party_imports
from gradio_client import Client
from gradio_client.exceptions import AppError
from PIL import Image

# One group: the module's Hub, adapters and Space are made once, on one xdist worker.
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("fine-tuning-space")]

SPACE = Path(__file__).resolve().parents[2] / "spaces" / "fine-tuning"
BASE = "alice/tiny-sd-shapes"
SARA, LORA = "alice/sara-heart", "alice/lora-heart"
SARA_MISFIT, LORA_MISFIT = "alice/sara-other-unet", "alice/lora-other-unet"
SHOWN = (256, 256)  # 32×32 images upscaled ×8
STEPS, GUIDANCE = 10, 7.5  # fewer steps than the page's 25: the comparison is the same, only faster
TIMEOUT_MS = 30_000


def _sara(folder: Path, unet, repo: str) -> None:
    """A SaRA adapter of ``unet`` (20,000 entries) with random small deltas, its card and ``hubkit.json``."""
    from hubkit.adapters.sara.card import sara_card
    from hubkit.adapters.sara.config import SaraAdapterConfig, SaRAConfig
    from hubkit.adapters.sara.model import inject_sara
    from hubkit.adapters.sara.serialization import save_sara

    tuner = inject_sara(unet, SaraAdapterConfig(budget=20_000))
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in tuner.delta_parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * 0.02)
    folder.mkdir(parents=True)
    save_sara(folder, unet, tuner.peft_config["default"], hubkit_json={"method": "sara", "base_model": BASE})
    config = SaRAConfig(dataset="hubkit/shapes", dataset_config="novel", budget=20_000, steps=1)
    sara_card(config, BASE, repo).save(str(folder / "README.md"))


def _lora(folder: Path, unet, repo: str) -> None:
    """A plain diffusers LoRA (rank 4 on the attention projections of ``unet``) with random weights."""
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig, get_peft_model_state_dict

    from hubkit.cards import render_card

    targets = ["to_q", "to_k", "to_v", "to_out.0"]
    unet.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=targets, init_lora_weights="gaussian"))
    generator = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for name, p in unet.named_parameters():
            if "lora_B" in name:  # zero at init (a LoRA that changes nothing): random instead
                p.copy_(torch.randn(p.shape, generator=generator) * 0.05)
    weights = convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))
    StableDiffusionPipeline.save_lora_weights(folder, unet_lora_layers=weights, safe_serialization=True)
    card = render_card(
        "adapter",
        method="lora",
        base_model=BASE,
        repo_id=repo,
        title=repo.split("/")[1],
        description=f"A LoRA of [`{BASE}`](/{BASE}) with random weights, for tests.",
        weight_name="pytorch_lora_weights.safetensors",
    )
    card.save(str(folder / "README.md"))


def _rewrite(file: Path, change) -> None:
    """Rewrite the safetensors ``file`` with ``change(name, tensor)`` applied to each tensor."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(file), framework="pt") as f:
        metadata = f.metadata()
        tensors = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118 (no __iter__)
    save_file({name: change(name, t) for name, t in tensors.items()}, str(file), metadata=metadata)


def _for_another_unet(folder: Path) -> None:
    """Turn the adapter in ``folder`` into one made for a wider UNet: a LoRA's ``lora_A`` twice as wide, a
    SaRA adapter indexing past the end of its layers."""
    lora = folder / "pytorch_lora_weights.safetensors"
    if lora.is_file():
        down = ("lora_A", ".lora.down.")  # peft's and diffusers' names of the input side
        _rewrite(lora, lambda name, t: torch.cat([t, t], dim=1) if any(d in name for d in down) else t)
    else:
        _rewrite(
            folder / "adapter_model.safetensors",
            lambda name, t: t * 4 + 1_000_000 if name.endswith("sara_indices") else t,
        )
    card = folder / "README.md"
    card.write_text(card.read_text().replace(folder.name.replace("-other-unet", "-heart"), folder.name))


@pytest.fixture(scope="module")
def published(hub, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """alice's base model, her two heart adapters and one misfit of each on the test Hub; the base model's
    downloaded folder."""
    from hubkit.hub import publish
    from hubkit.world.base_model import assemble_pipeline

    tmp = tmp_path_factory.mktemp("adapters")
    with alice_base_model(hub):
        _sara(tmp / SARA, assemble_pipeline().unet, SARA)
        _lora(tmp / LORA, assemble_pipeline().unet, LORA)
    for good, bad in ((SARA, SARA_MISFIT), (LORA, LORA_MISFIT)):
        shutil.copytree(tmp / good, tmp / bad)
        _for_another_unet(tmp / bad)
    for repo in (SARA, LORA, SARA_MISFIT, LORA_MISFIT):
        publish(tmp / repo, repo, endpoint=hub.url, token=hub.users["alice"])
    return Path(hub.api("alice").snapshot_download(BASE))


@pytest.fixture(scope="module")
def space(hub, published, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """The Space reading the test Hub with alice's token, offering her two adapters; its URL and log."""
    env = {
        "HF_ENDPOINT": hub.url,
        "HF_TOKEN": hub.users["alice"],
        "HUBKIT_BASE_MODEL": BASE,
        "HUBKIT_ADAPTERS": f"{SARA},{LORA}",
        "OMP_NUM_THREADS": "1",  # a shared 2-core machine: one torch thread is ~10x faster than two here
    }
    with running_space(tmp_path_factory.mktemp("space"), env, "fine-tuning") as url_and_log:
        yield url_and_log


@pytest.fixture(scope="module")
def client(space) -> Client:
    return Client(space[0], verbose=False)


@pytest.fixture(scope="module")
def stock(published) -> Iterator:
    """The base model as stock diffusers loads it, sampling with one thread like the Space."""
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(published)
    pipe.set_progress_bar_config(disable=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield pipe
    finally:
        torch.set_num_threads(threads)


def shown(gallery: list) -> list[tuple[str, np.ndarray]]:
    """The gallery's (caption, pixels) items (gradio_client hands back local PNG files)."""
    out = []
    for item in gallery:
        image = item["image"]
        with Image.open(image if isinstance(image, str) else image["path"]) as img:
            assert img.format == "PNG" and img.size == SHOWN, (img.format, img.size)
            out.append((item["caption"], np.asarray(img.convert("RGB"))))
    return out


def rows(table: dict) -> list[dict]:
    return [dict(zip(table["headers"], row, strict=True)) for row in table["data"]]


def test_app_imports_only_what_the_space_installs():
    from hubkit.cards import check_folder

    third_party = third_party_imports(SPACE / "app.py")
    assert third_party == {"gradio", "pandas", "torch", "diffusers", "huggingface_hub", "PIL", "hubkit"}
    requirements = set((SPACE / "requirements.txt").read_text().split())
    assert third_party - {"gradio", "PIL"} | {"pillow", "peft"} <= requirements  # gradio: the sdk's
    assert check_folder(SPACE, repo_type="space") == []
    card = (SPACE / "README.md").read_text()
    assert all(
        f"- {repo}\n" in card for repo in ("hubkit/tiny-sd-shapes", "hubkit/sara-heart", "hubkit/lora-heart")
    )
    assert 'api_name="/compare"' in card
    app = (SPACE / "app.py").read_text()
    assert "method_for(" in app  # every adapter through the registry: no method's own loader
    assert "hubkit.adapters" not in app and "hubkit.pipelines" not in app


def test_compare_shows_the_stock_base_and_each_adapter_side_by_side(client, stock):
    gallery, table, status = client.predict(
        "a red heart", 0, STEPS, GUIDANCE, 1, [SARA, LORA], api_name="/compare"
    )
    items = shown(gallery)
    assert [caption for caption, _ in items] == ["base · seed 0", f"{SARA} · seed 0", f"{LORA} · seed 0"]
    base, sara, lora = (pixels for _, pixels in items)
    expected = stock(
        "a red heart",
        num_inference_steps=STEPS,
        guidance_scale=GUIDANCE,
        generator=torch.Generator().manual_seed(0),
    ).images[0]
    assert np.array_equal(base[::8, ::8], np.asarray(expected.convert("RGB")))  # the stock model, bit for bit
    for adapter in (sara, lora):
        assert np.abs(adapter.astype(int) - base.astype(int)).mean() > 1  # the same noise, another model
    assert not np.array_equal(sara, lora)
    base_row, sara_row, lora_row = rows(table)
    assert (base_row["model"], base_row["method"]) == (BASE, "base")
    assert (sara_row["model"], sara_row["method"]) == (f"{BASE} + {SARA}", "sara")
    assert (lora_row["model"], lora_row["method"]) == (f"{BASE} + {LORA}", "lora")
    assert all((r["steps"], r["guidance"]) == (STEPS, GUIDANCE) and r["seconds"] > 0 for r in rows(table))
    assert len(sara_row["revision"]) == 10 and base_row["revision"] == ""
    assert f"`{BASE}` and 2 adapters" in status and "trained colour** (red)" in status and "seed 0" in status

    # Deterministic: the same call gives the same images, whatever was loaded in between.
    client.predict("a red heart", 0, STEPS, GUIDANCE, 1, [], api_name="/compare")
    again, _, _ = client.predict("a red heart", 0, STEPS, GUIDANCE, 1, [SARA, LORA], api_name="/compare")
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(items, shown(again), strict=True))


def test_seeds_make_rows_and_adapters_keep_the_order_asked_for(client):
    gallery, table, status = client.predict(
        "a cyan heart on a black background", 5, STEPS, GUIDANCE, 2, [LORA, SARA], api_name="/compare"
    )
    items = shown(gallery)
    assert [caption for caption, _ in items] == [
        f"{name} · seed {seed}" for seed in (5, 6) for name in ("base", LORA, SARA)
    ]
    assert not np.array_equal(items[0][1], items[3][1])  # two seeds, two base images
    assert [r["method"] for r in rows(table)] == ["base", "lora", "sara"]
    assert "unseen colour** (cyan)" in status and "seeds 5–6" in status
    alone, table, status = client.predict("a cyan heart", 5, STEPS, GUIDANCE, 1, [], api_name="/compare")
    assert [caption for caption, _ in shown(alone)] == ["base · seed 5"] and len(rows(table)) == 1
    assert "no adapter (the base alone)" in status


def test_bad_adapters_and_input_are_clear_errors(client, space):
    def compare(adapters, prompt="a red heart", **settings):
        args = {"seed": 0, "steps": STEPS, "guidance": GUIDANCE, "images": 1, **settings}
        return client.predict(prompt, *args.values(), adapters, api_name="/compare")

    with pytest.raises(AppError, match=r"Cannot load the adapter `alice/no-such-adapter`: no such repo"):
        compare([SARA, "alice/no-such-adapter"])
    for misfit in (SARA_MISFIT, LORA_MISFIT):
        with pytest.raises(AppError, match=rf"The adapter `{misfit}` does not fit the base model `{BASE}`"):
            compare([misfit])
    with pytest.raises(AppError, match=r"`not a repo` is not a valid adapter repo id"):
        compare(["not a repo"])
    with pytest.raises(AppError, match="Enter a prompt"):
        compare([SARA], prompt="  ")
    # Nothing was left half-loaded: the good adapters still work after the failures.
    gallery, table, _ = compare([SARA, LORA])
    assert len(shown(gallery)) == 3 and [r["method"] for r in rows(table)] == ["base", "sara", "lora"]
    log = space[1].read_text()
    assert "Traceback" not in log, log[-3000:]
    # Settings out of the sliders' ranges (only the API can send them): gradio's own check refuses them (and,
    # being gradio's, logs its traceback).
    with pytest.raises(AppError, match="greater than maximum value 4"):
        compare([SARA], images=5)


@pytest.mark.browser
def test_page_compares_a_heart_prompt_and_reports_errors(space, tmp_path: Path):
    from playwright.sync_api import expect

    with chromium_page(TIMEOUT_MS) as page:
        page.goto(space[0])
        selector = page.locator("#adapter-select")
        for repo in (SARA, LORA):
            expect(selector).to_contain_text(repo, timeout=TIMEOUT_MS)  # both offered adapters, selected
        expect(page.locator("#training-note")).to_contain_text("only in red, green, blue and yellow")
        for examples, prompt in (("trained", "a green heart"), ("unseen", "a purple heart")):
            expect(page.locator(f"#{examples}-examples")).to_contain_text(prompt)
        page.locator("#prompt textarea, #prompt input").first.fill("a cyan heart on a black background")
        page.locator("#compare-button").click()

        gallery = page.locator("#comparison-gallery")
        images = gallery.locator("img")
        expect(images).to_have_count(6, timeout=TIMEOUT_MS)  # 2 seeds (the default) × base + 2 adapters
        for name in ("base", SARA, LORA):
            for seed in (0, 1):
                expect(gallery).to_contain_text(f"{name} · seed {seed}")
        assert images.first.evaluate("img => img.naturalWidth") == 256  # 32 px upscaled ×8
        table = page.locator("#models-table")
        expect(table.locator('[role="row"][data-index]')).to_have_count(3)
        for i, (model, method) in enumerate(
            [(BASE, "base"), (f"{BASE} + {SARA}", "sara"), (f"{BASE} + {LORA}", "lora")]
        ):
            expect(table.get_by_test_id(f"cell-{i}-0")).to_have_text(model)
            expect(table.get_by_test_id(f"cell-{i}-1")).to_have_text(method)
        status = page.locator("#fine-tuning-status")
        expect(status).to_contain_text(f"{BASE} and 2 adapters")
        expect(status).to_contain_text("unseen colour (cyan)")

        shot = tmp_path / "fine-tuning-space.png"
        page.screenshot(path=str(shot), full_page=True)
        data = shot.read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 20_000, len(data)

        # An adapter repo that does not exist: the page says so and keeps the last results.
        selector.locator("input").fill("alice/no-such-adapter")
        selector.locator("input").press("Enter")
        page.locator("#compare-button").click()
        toast = page.get_by_test_id("toast-body")
        for words in ("Cannot load the adapter", "alice/no-such-adapter", "no such repo"):
            expect(toast).to_contain_text(words, timeout=TIMEOUT_MS)
        expect(images).to_have_count(6)
