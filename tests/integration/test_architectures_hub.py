"""Every method on every architecture (issue 16): each method × SD 1.5 / SD 2.1 (v-prediction) / SDXL, on the
tiny random-weight pipelines of :mod:`hubkit.architectures` published to an embedded Hub. Each artifact is
trained a step with its method's recipe, published, loaded with the stock loader of its architecture's
pipeline class (``load_lora_weights`` for LoRA files, ``UNet2DConditionModel.from_pretrained`` for merged
and quantized UNets, as the cards say), and draws an image that differs from the base's; its card names the
base's repo id. SDXL's LoRA also loads in a process without hubkit, in the layout diffusers writes.

Trained artifacts are shared by the module (one xdist group); settings are the smallest that run each
recipe's every code path (SPM anchors and guided sampling, LCM's guided teacher, calibration plus the int4
sensitivity replay, RECE's regenerating round)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.xdist_group("architectures")]

ARCHS = ("sd15", "sd21", "sdxl")
METHODS = ("spm", "lcm-lora", "sara", "lora-finetune", "quantize-w8a8", "quantize-w4a8", "rece")
LORA_FILE = "pytorch_lora_weights.safetensors"
PROMPT = "a red circle"


def _config(method: str, dataset: Path, unet: Any) -> tuple[str, Any]:
    """(registry name, config): one step of each recipe, sized for the tiny pipelines."""
    if method == "spm":
        from hubkit.adapters.spm import SPMConfig

        return "spm", SPMConfig(
            concepts=["red"], steps=1, batch_size=1, sampling_steps=2, anchors_per_step=1, warmup_steps=0
        )
    if method == "lcm-lora":
        from hubkit.adapters.lcm_lora import LCMLoRAConfig

        return "lcm-lora", LCMLoRAConfig(
            dataset=str(dataset), steps=1, batch_size=1, rank=2, alpha=2, warmup_steps=0
        )
    if method == "sara":
        from hubkit.adapters.sara.config import SaRAConfig

        return "sara", SaRAConfig(
            dataset=str(dataset), steps=1, batch_size=1, warmup_steps=0, rank_layers=1, save_merged_unet=True
        )
    if method == "lora-finetune":
        from hubkit.adapters.lora_finetune.config import LoRAFineTuneConfig

        return "lora-finetune", LoRAFineTuneConfig(
            dataset=str(dataset), steps=1, batch_size=1, warmup_steps=0, rank=2
        )
    if method.startswith("quantize"):
        from hubkit.adapters.quantize.config import QuantizeConfig

        from hubkit.layers import adaptable_layers

        keep_float = []
        if method.endswith("w4a8"):  # int4 measures every quantized layer alone: a few of them here
            measured = (
                "conv_in",
                "conv_out",
                "time_embedding.",
                "add_embedding.",
                "attn2.to_k",
                "attn2.to_v",
            )
            keep_float = [p for p in adaptable_layers(unet) if not any(m in p for m in measured)]
        return "quantize", QuantizeConfig(
            weights="int4" if method.endswith("w4a8") else "int8",
            prompts=[PROMPT],
            calibration_steps=2,
            timestep_groups=1,
            keep_float=keep_float,
        )
    from hubkit.adapters.rece.config import RECEConfig

    return "rece", RECEConfig(
        concepts=["red"], surrogate="gray", templates=["a {} circle"], contexts=0, rounds=1
    )


@pytest.fixture(scope="module")
def use_hub(hub) -> Iterator[Any]:
    """Stock loaders pointed at the test Hub as ``HF_ENDPOINT`` would point them (read at import time)."""
    from huggingface_hub import constants, hf_api

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(constants, "ENDPOINT", hub.url)
        mp.setattr(
            constants, "HUGGINGFACE_CO_URL_TEMPLATE", hub.url + "/{repo_id}/resolve/{revision}/{filename}"
        )
        mp.setattr(constants, "HF_URL_HOSTS", constants.HF_URL_HOSTS | {"127.0.0.1"})
        mp.setattr(hf_api.api, "endpoint", hub.url)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # a shared 2-core machine: one thread is far faster than two fighting
        try:
            yield hub
        finally:
            torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def bases(use_hub, tiny_arch_folder, tmp_path_factory) -> dict[str, str]:
    """arch → repo id of its tiny base pipeline, published under alice/ with a pipeline card."""
    from hubkit.cards import render_card
    from hubkit.hub import publish

    root = tmp_path_factory.mktemp("bases")
    repos = {}
    for arch in ARCHS:
        repo = f"alice/tiny-{arch}"
        folder = root / arch
        shutil.copytree(tiny_arch_folder(arch), folder)
        render_card(
            "pipeline",
            repo_id=repo,
            title=f"tiny-{arch}",
            description=f"Random weights with the structure of {arch} (hubkit.architectures), for tests.",
            tags=["tiny-random"],
            prompt=PROMPT,
        ).save(folder / "README.md")
        publish(folder, repo, endpoint=use_hub.url, token=use_hub.users["alice"])
        repos[arch] = repo
    return repos


@pytest.fixture(scope="module")
def base_folders(bases) -> dict[str, str]:
    """arch → a snapshot of its published base (stock ``snapshot_download``), which the stock pipelines load:
    one download instead of a round of Hub requests per test."""
    from huggingface_hub import snapshot_download

    return {arch: snapshot_download(repo) for arch, repo in bases.items()}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """Four images of a shape the bases never saw, with captions (imagefolder + metadata)."""
    from hubkit.world import shapes

    folder = tmp_path_factory.mktemp("hearts")
    rows = []
    for i, spec in enumerate(shapes.sample_specs(4, 1, "novel-trained")):
        shapes.render(spec).save(folder / f"{i}.png")
        rows.append({"file_name": f"{i}.png", "caption": spec.caption(spec.seed)})
    (folder / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def _stock_class(arch: str) -> Any:
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    return StableDiffusionXLPipeline if arch == "sdxl" else StableDiffusionPipeline


def _stock_pipe(repo: str, arch: str, **components: Any) -> Any:
    pipe = _stock_class(arch).from_pretrained(repo, **components)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _draw(pipe: Any) -> np.ndarray:
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        return pipe(PROMPT, num_inference_steps=2, generator=generator, output_type="np").images


@pytest.fixture(scope="module")
def reference(base_folders) -> dict[str, np.ndarray]:
    """arch → the stock base pipeline's image (same prompt, seed and steps as every artifact's)."""
    return {arch: _draw(_stock_pipe(base_folders[arch], arch)) for arch in ARCHS}


@pytest.fixture(scope="module")
def published(use_hub, bases, dataset, tmp_path_factory) -> Any:
    """``published(method, arch)``: (repo id, folder, facts) of the method's artifact on that base, trained
    (on the base as the Hub serves it) and published once per module, on first use."""
    from hubkit.architectures import build_tiny_pipeline
    from hubkit.hub import publish
    from hubkit.methods import get_method

    root, done = tmp_path_factory.mktemp("artifacts"), {}
    token = use_hub.users["alice"]

    def get(method: str, arch: str) -> tuple[str, Path, dict[str, Any]]:
        if (method, arch) not in done:
            pipe = build_tiny_pipeline(arch)  # the published base's weights (seeded), without a download
            name, config = _config(method, dataset, pipe.unet)
            repo, folder = f"alice/{method}-{arch}", root / f"{method}-{arch}"
            facts = get_method(name).train(
                bases[arch], config, folder, pipe=pipe, repo_id=repo, progress=False, force=True,
                endpoint=use_hub.url, token=token,
            )  # fmt: skip
            publish(folder, repo, endpoint=use_hub.url, token=token)
            done[method, arch] = repo, folder, facts
        return done[method, arch]

    return get


def _lora_modules(folder: Path) -> set[str]:
    from safetensors import safe_open

    with safe_open(str(folder / LORA_FILE), framework="pt") as f:
        keys = list(f.keys())
    assert keys and all(
        k.startswith("unet.") and k.endswith((".lora_A.weight", ".lora_B.weight")) for k in keys
    )
    return {k.removeprefix("unet.").rsplit(".lora_", 1)[0] for k in keys}


def _check_card(folder: Path, base: str, method: str, relation: str) -> None:
    from huggingface_hub import ModelCard

    card = ModelCard.load(folder / "README.md")
    assert card.data.base_model == base and card.data.base_model_relation == relation
    assert f"hubkit-method:{method}" in card.data.tags


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("method", ["spm", "lcm-lora", "lora-finetune", "rece"])
def test_lora_artifacts_load_with_stock_load_lora_weights(
    published, bases, base_folders, reference, method, arch
):
    repo, folder, _ = published(method, arch)
    _check_card(folder, bases[arch], method, "adapter")
    pipe = _stock_pipe(base_folders[arch], arch)
    modules = _lora_modules(folder)
    unet_modules = dict(pipe.unet.named_modules())
    assert modules <= set(unet_modules)
    if method == "rece":  # the cross-attention keys / values, and SDXL's pooled-text projection
        expected = {p for p in unet_modules if p.endswith(("attn2.to_k", "attn2.to_v"))}
        if arch == "sdxl":
            expected.add("add_embedding.linear_1")
        assert modules == expected
    pipe.load_lora_weights(repo)  # stock diffusers, from the Hub
    assert pipe.get_list_adapters() == {"unet": ["default_0"]}
    ups = {n.split(".lora_B.")[0]: w for n, w in pipe.unet.named_parameters() if ".lora_B." in n}
    assert set(ups) == modules and any(w.abs().max() > 0 for w in ups.values())  # a nonzero delta
    image = _draw(pipe)
    assert image.shape == reference[arch].shape and np.abs(image - reference[arch]).max() > 0


@pytest.mark.parametrize("arch", ARCHS)
def test_spm_loads_with_facilitated_transport(use_hub, published, bases, base_folders, reference, arch):
    """hubkit's own SPM loader wraps the pipeline's encode_prompt (SDXL: by keyword, four values back)."""
    from hubkit.leaderboard.evaluation import fetch_artifact
    from hubkit.methods import get_method

    repo, _, _ = published("spm", arch)
    artifact = fetch_artifact(repo, api=use_hub.api(None))
    pipe = get_method("spm").load(artifact, _stock_pipe(base_folders[arch], arch))
    image = _draw(pipe)
    assert pipe.spm.last_permeability["spm"][0] == pytest.approx(1.0)  # the prompt names the concept
    assert image.shape == reference[arch].shape and np.abs(image - reference[arch]).max() > 0


@pytest.mark.parametrize("arch", ARCHS)
def test_sara_merged_unet_loads_with_stock_from_pretrained(published, bases, base_folders, reference, arch):
    from diffusers import UNet2DConditionModel

    repo, folder, facts = published("sara", arch)
    _check_card(folder, bases[arch], "sara", "adapter")
    assert (folder / "adapter_config.json").is_file() and facts["parameters"] > 0
    unet = UNet2DConditionModel.from_pretrained(repo, subfolder="unet")
    base = UNet2DConditionModel.from_pretrained(base_folders[arch], subfolder="unet")
    ours, theirs = unet.state_dict(), base.state_dict()
    assert ours.keys() == theirs.keys() and all(ours[k].shape == theirs[k].shape for k in ours)
    assert any(not torch.equal(ours[k], theirs[k]) for k in ours)
    image = _draw(_stock_pipe(base_folders[arch], arch, unet=unet))
    assert image.shape == reference[arch].shape and np.abs(image - reference[arch]).max() > 0


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("method", ["quantize-w8a8", "quantize-w4a8"])
def test_quantized_unets_load_stock_and_with_hubkit(
    use_hub, published, bases, base_folders, reference, method, arch
):
    from diffusers import UNet2DConditionModel

    from hubkit.leaderboard.evaluation import fetch_artifact
    from hubkit.methods import get_method

    repo, folder, facts = published(method, arch)
    _check_card(folder, bases[arch], "quantize", "quantized")
    quantization = json.loads((folder / "unet" / "config.json").read_text())["quantization_config"]
    assert quantization["quant_method"] == "sdnq"
    assert quantization["weights_dtype"] == ("int4" if method.endswith("w4a8") else "int8")
    if method.endswith("w4a8"):  # measured sensitivity (the UNet replayed as calibration called it)
        assert facts["most_sensitive"]
    stock = UNet2DConditionModel.from_pretrained(repo, subfolder="unet")  # SDNQ, stock diffusers
    image = _draw(_stock_pipe(base_folders[arch], arch, unet=stock))
    assert image.shape == reference[arch].shape and np.abs(image - reference[arch]).max() > 0
    # hubkit's loader: the same integers with static int8 activations (SDXL reads layer shapes off them)
    artifact = fetch_artifact(repo, api=use_hub.api(None))
    ours = _draw(get_method("quantize").load(artifact, _stock_pipe(base_folders[arch], arch)))
    assert ours.shape == reference[arch].shape and np.abs(ours - reference[arch]).max() > 0


SDXL_STOCK_SCRIPT = """
import sys, tempfile
from pathlib import Path

import torch
from diffusers import StableDiffusionXLPipeline
from peft.utils import get_peft_model_state_dict
from safetensors import safe_open

base, repo = {base!r}, {repo!r}
pipe = StableDiffusionXLPipeline.from_pretrained(base)
pipe.set_progress_bar_config(disable=True)
state, _ = StableDiffusionXLPipeline.lora_state_dict(repo)
pipe.load_lora_weights(repo)
assert pipe.get_list_adapters() == {{"unet": ["default_0"]}}, pipe.get_list_adapters()
# diffusers writes the adapter it loaded: the same keys, the same tensors
out = Path(tempfile.mkdtemp())
StableDiffusionXLPipeline.save_lora_weights(
    out, unet_lora_layers=get_peft_model_state_dict(pipe.unet, adapter_name="default_0")
)
with safe_open(str(out / "pytorch_lora_weights.safetensors"), framework="pt") as f:
    written = {{k: f.get_tensor(k) for k in f.keys()}}
assert written.keys() == state.keys(), sorted(set(written) ^ set(state))[:5]
assert all(torch.equal(written[k], state[k]) for k in state)
assert {{k.split(".")[0] for k in state}} <= {{"unet", "text_encoder", "text_encoder_2"}}
image = pipe("a red circle", num_inference_steps=2, output_type="np").images[0]
assert image.shape == (128, 128, 3)
assert not [m for m in sys.modules if m.split(".")[0] == "hubkit"]
print("keys", len(state), "modules", len({{k.rsplit(".lora_", 1)[0] for k in state}}))
"""


def test_sdxl_lora_loads_in_a_process_without_hubkit_in_diffusers_layout(published, bases, hub, tmp_path):
    repo, folder, _ = published("lora-finetune", "sdxl")
    modules = _lora_modules(folder)
    assert "add_embedding.linear_1" in modules and any(".conv" in m for m in modules)  # every layer kind
    script = SDXL_STOCK_SCRIPT.format(base=bases["sdxl"], repo=repo)
    env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"modules {len(modules)}" in proc.stdout
