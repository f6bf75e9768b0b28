"""LCM-LoRA end to end on an embedded Hub: train → publish → stock loaders → eval."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from huggingface_hub import ModelCard
from typer.testing import CliRunner

from hubkit.cli import app
from hubkit.leaderboard.evaluation import evaluate

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TINY_SPEED = Path(__file__).parents[1] / "data" / "tiny-speed-suite.json"


@pytest.fixture(scope="module")
def published(hub, tmp_path_factory) -> dict[str, str]:
    """The base model and a LoRA distilled by the CLI (a few steps), both published under alice/."""
    from hubkit.world.publish import publish_world

    publish_world(endpoint=hub.url, token=hub.users["alice"], namespace="alice", only=["tiny-sd-shapes"])
    out = tmp_path_factory.mktemp("lcm") / "lcm-lora"
    env = {"HF_ENDPOINT": hub.url, "HF_TOKEN": hub.users["alice"]}
    hub_args = ["--endpoint", hub.url, "--token", hub.users["alice"]]
    args = ["train", "lcm-lora", "--base", "alice/tiny-sd-shapes", "--out", str(out), *hub_args]
    result = CliRunner(env=env).invoke(
        app, [*args, "--steps", "2", "--batch-size", "4", "--rank", "4", "--repo-id", "alice/lcm-lora"]
    )
    assert result.exit_code == 0, result.output
    assert "LCMScheduler, 4 steps, guidance 1" in result.output
    pub = CliRunner(env=env).invoke(app, ["publish", str(out), "alice/lcm-lora", *hub_args])
    assert pub.exit_code == 0, pub.output
    return {"folder": str(out), "repo": "alice/lcm-lora", "base": "alice/tiny-sd-shapes"}


def test_folder_has_lora_sampling_recipe_and_an_adapter_card(published):
    folder = Path(published["folder"])
    assert sorted(p.name for p in folder.iterdir()) == [
        "README.md",
        "hubkit.json",
        "pytorch_lora_weights.safetensors",
    ]
    info = json.loads((folder / "hubkit.json").read_text())
    assert info["method"] == "lcm-lora" and info["scheduler"]["class_name"] == "LCMScheduler"
    assert info["scheduler"]["num_inference_steps"] == 4 and info["scheduler"]["guidance_scale"] == 1.0
    assert info["config"]["rank"] == 4 and info["config"]["alpha"] == 4
    card = ModelCard.load(folder / "README.md")
    assert card.data.base_model == "alice/tiny-sd-shapes" and card.data.base_model_relation == "adapter"
    assert {"hubkit-method:lcm-lora", "lora", "lcm"} <= set(card.data.tags)
    assert "LCMScheduler.from_config" in card.text and "load_lcm_lora" in card.text
    assert "distillation time" in card.text and info["facts"]["parameters"] > 0


STOCK_SCRIPT = """
import torch
from diffusers import LCMScheduler, StableDiffusionPipeline

pipe = StableDiffusionPipeline.from_pretrained("alice/tiny-sd-shapes")
pipe.scheduler = LCMScheduler.from_config(pipe.scheduler.config)
pipe.load_lora_weights("alice/lcm-lora")  # stock diffusers, straight from the Hub
assert pipe.get_list_adapters()["unet"] == ["default_0"], pipe.get_list_adapters()
out = pipe(["a red circle"] * 2, num_inference_steps=4, guidance_scale=1.0, output_type="np")
print("images", out.images.shape, "timesteps", pipe.scheduler.timesteps.tolist())
"""


def test_stock_load_lora_weights_with_lcm_scheduler_from_the_hub(hub, published, tmp_path):
    env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_TOKEN": hub.users["alice"], "HF_HOME": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-c", STOCK_SCRIPT], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "images (2, 32, 32, 3) timesteps [999, 759, 499, 259]" in out.stdout


def test_eval_applies_lora_and_scheduler_through_the_registry(hub, published):
    record = evaluate(
        published["repo"],
        TINY_SPEED,
        endpoint=hub.url,
        token=hub.users["alice"],
        results_repo="alice/results",
        progress=False,
    )
    assert record["model"]["method"] == "lcm-lora" and record["model"]["base_model"] == published["base"]
    assert record["settings"]["scheduler"] == "LCMScheduler" and record["settings"]["guidance_scale"] == 1.0
    metrics = record["metrics"]
    # Guidance 1 runs one UNet row per image and step (no CFG pass).
    assert [metrics["unet_evals@1"], metrics["unet_evals@2"]] == [1.0, 2.0]
    assert all(0 < metrics[f"time_ratio@{s}"] < 1 for s in (1, 2))  # vs the base at 3 steps with CFG
    assert 0 <= metrics["alignment@2"] <= 1
    card = ModelCard.load(hub.api("alice").hf_hub_download(published["repo"], "README.md"))
    assert any(r.metric_type.startswith("alignment") for r in card.data.eval_results)


def test_eval_cli_saves_the_steps_tradeoff_plot(hub, published, tmp_path):
    env = {"HF_ENDPOINT": hub.url, "HF_TOKEN": hub.users["alice"]}
    plot = tmp_path / "plots" / "speed.png"
    hub_args = ["--base", published["base"], "--endpoint", hub.url, "--token", hub.users["alice"]]
    args = ["eval", published["folder"], "--suite", str(TINY_SPEED), "--no-push", "--plot", str(plot)]
    result = CliRunner(env=env).invoke(app, [*args, *hub_args])
    assert result.exit_code == 0, result.output
    assert "alignment@1" in result.output and f"plot: {plot}" in result.output
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_size > 5000
