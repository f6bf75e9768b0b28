"""SaRA end to end on an embedded Hub: the world's ``novel`` dataset → ``hubkit train sara`` → ``publish`` →
``load_sara`` and stock ``from_pretrained`` in a fresh process → ``hubkit export --merged`` → ``eval``."""

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

TINY_ACQUISITION = Path(__file__).parents[1] / "data" / "tiny-acquisition-suite.json"
BASE, REPO = "alice/tiny-sd-shapes", "alice/sara-heart"


@pytest.fixture(scope="module")
def published(hub, tmp_path_factory) -> dict[str, str]:
    """The base model, the world dataset and a SaRA trained by the CLI for a few steps on its ``novel``
    config, with the merged UNet, all published under alice/."""
    from hubkit.world.publish import publish_world

    publish_world(
        endpoint=hub.url, token=hub.users["alice"], namespace="alice", only=["tiny-sd-shapes", "shapes"]
    )
    out = tmp_path_factory.mktemp("sara") / "sara-heart"
    env = {"HF_ENDPOINT": hub.url, "HF_TOKEN": hub.users["alice"]}
    hub_args = ["--endpoint", hub.url, "--token", hub.users["alice"]]
    args = ["train", "sara", "--base", BASE, "--dataset", "alice/shapes", "--dataset-config", "novel"]
    args += [
        "--budget",
        "50000",
        "--steps",
        "3",
        "--batch-size",
        "4",
        "--save-merged-unet",
        "--repo-id",
        REPO,
    ]
    result = CliRunner(env=env).invoke(app, [*args, "--out", str(out), *hub_args])
    assert result.exit_code == 0, result.output
    assert "trainable entries" in result.output
    pub = CliRunner(env=env).invoke(app, ["publish", str(out), REPO, *hub_args])
    assert pub.exit_code == 0, pub.output
    return {"folder": str(out)}


def test_folder_holds_indices_values_config_merged_unet_and_a_card(published):
    from safetensors import safe_open

    folder = Path(published["folder"])
    assert sorted(p.name for p in folder.iterdir()) == [
        "README.md",
        "adapter_config.json",
        "adapter_model.safetensors",
        "hubkit.json",
        "unet",
    ]
    config = json.loads((folder / "adapter_config.json").read_text())
    with safe_open(str(folder / "adapter_model.safetensors"), framework="pt") as f:
        values = sum(f.get_tensor(k).numel() for k in f.keys() if k.endswith(".sara_delta"))  # noqa: SIM118
        assert f.metadata()["peft_type"] == "SARA" and len(f.metadata()["base_digest"]) == 64
    assert config["peft_type"] == "SARA" and values == config["selected"] <= 50_000
    facts = json.loads((folder / "hubkit.json").read_text())["facts"]
    assert facts["parameters"] == values and facts["merged_unet"] is True
    card = ModelCard.load(folder / "README.md")
    assert card.data.base_model == BASE and card.data.base_model_relation == "adapter"
    assert (
        "hubkit-method:sara" in card.data.tags
        and "load_sara" in card.text
        and 'subfolder="unet"' in card.text
    )


STOCK_SCRIPT = """
import torch
from diffusers import StableDiffusionPipeline, UNet2DConditionModel

base = StableDiffusionPipeline.from_pretrained("alice/tiny-sd-shapes")
stock = UNet2DConditionModel.from_pretrained("alice/sara-heart", subfolder="unet")  # no hubkit import yet
import sys
assert not any(m.startswith("hubkit") for m in sys.modules), "stock path imported hubkit"
from hubkit.pipelines.sara import load_sara

load_sara(base, "alice/sara-heart")  # fused
fused, merged = base.unet.state_dict(), stock.state_dict()
assert fused.keys() == merged.keys()
assert all(torch.equal(fused[k], merged[k]) for k in fused), "load_sara differs from the merged UNet"
changed = sum(not torch.equal(fused[k], v) for k, v in StableDiffusionPipeline.from_pretrained(
    "alice/tiny-sd-shapes").unet.state_dict().items())
print("changed tensors", changed)
"""


def test_stock_from_pretrained_and_load_sara_give_the_same_unet(hub, published, tmp_path):
    env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_TOKEN": hub.users["alice"], "HF_HOME": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-c", STOCK_SCRIPT], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert int(out.stdout.split("changed tensors")[1]) > 10


def test_export_merged_writes_a_stock_pipeline(hub, published, tmp_path):
    import torch
    from diffusers import StableDiffusionPipeline

    env = {"HF_ENDPOINT": hub.url, "HF_TOKEN": hub.users["alice"]}
    hub_args = ["--endpoint", hub.url, "--token", hub.users["alice"]]
    out = tmp_path / "merged"
    result = CliRunner(env=env).invoke(app, ["export", REPO, "--merged", "--out", str(out), *hub_args])
    assert result.exit_code == 0, result.output
    pipe = StableDiffusionPipeline.from_pretrained(out)
    reference = Path(published["folder"]) / "unet"
    from diffusers import UNet2DConditionModel

    merged = UNet2DConditionModel.from_pretrained(reference).state_dict()
    assert all(torch.equal(v, merged[k]) for k, v in pipe.unet.state_dict().items())
    card = ModelCard.load(out / "README.md")
    assert card.data.base_model == BASE and card.data.base_model_relation == "finetune"
    again = CliRunner(env=env).invoke(app, ["export", REPO, "--merged", "--out", str(out), *hub_args])
    assert again.exit_code == 1 and "exists and is not empty" in again.output
    plain = CliRunner(env=env).invoke(app, ["export", REPO, "--out", str(tmp_path / "x"), *hub_args])
    assert plain.exit_code == 2 and "--merged" in plain.output


def test_eval_applies_sara_through_the_registry(hub, published):
    record = evaluate(
        REPO,
        TINY_ACQUISITION,
        endpoint=hub.url,
        token=hub.users["alice"],
        results_repo="alice/results",
        progress=False,
    )
    assert record["model"]["method"] == "sara" and record["model"]["base_model"] == BASE
    assert {"novel_trained_rate", "novel_unseen_rate", "alignment"} <= set(record["metrics"])


def test_bad_input_is_a_clear_error_and_writes_nothing(hub, published, tmp_path):
    env = {"HF_ENDPOINT": hub.url, "HF_TOKEN": hub.users["alice"]}
    hub_args = ["--endpoint", hub.url, "--token", hub.users["alice"]]
    out = tmp_path / "never"
    base = ["train", "sara", "--base", BASE, "--out", str(out), *hub_args]
    cases = {
        "no such dataset": (["--dataset", "alice/no-such-data"], "cannot load the dataset"),
        "no such layer": (
            ["--dataset", "alice/shapes", "--dataset-config", "novel", "--target", "no_such_layer"],
            "matches the targets",
        ),
        "selects everything": (
            ["--dataset", "alice/shapes", "--dataset-config", "novel", "--threshold", "100"],
            "full fine-tuning",
        ),
        "bad progressive": (["--dataset", "alice/shapes", "--progressive-at", "-1"], "progressive_at"),
    }
    for name, (args, message) in cases.items():
        result = CliRunner(env=env).invoke(app, [*base, *args, "--steps", "1", "--batch-size", "4"])
        assert result.exit_code in (1, 2) and message in result.output, (name, result.output)
        assert not out.exists(), name
    assert not list(tmp_path.glob(".never*"))  # no staging folder left behind


LORA_SCRIPT = """
import sys
from diffusers import StableDiffusionPipeline

pipe = StableDiffusionPipeline.from_pretrained("alice/tiny-sd-shapes")
pipe.load_lora_weights("alice/lora-heart")  # stock diffusers, straight from the Hub
assert not any(m.startswith("hubkit") for m in sys.modules), "the stock path imported hubkit"
print("adapters", pipe.get_list_adapters()["unet"])
"""


def test_lora_finetune_baseline_trains_publishes_and_loads_with_stock_diffusers(hub, published, tmp_path):
    """The baseline SaRA is compared with: a plain diffusers LoRA trained on the same data."""
    env = {"HF_ENDPOINT": hub.url, "HF_TOKEN": hub.users["alice"]}
    hub_args = ["--endpoint", hub.url, "--token", hub.users["alice"]]
    out = tmp_path / "lora-heart"
    args = [
        "train",
        "lora-finetune",
        "--base",
        BASE,
        "--dataset",
        "alice/shapes",
        "--dataset-config",
        "novel",
    ]
    args += ["--rank", "2", "--steps", "2", "--batch-size", "4", "--repo-id", "alice/lora-heart"]
    result = CliRunner(env=env).invoke(app, [*args, "--out", str(out), *hub_args])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == [
        "README.md",
        "hubkit.json",
        "pytorch_lora_weights.safetensors",
    ]
    card = ModelCard.load(out / "README.md")
    assert "hubkit-method:lora-finetune" in card.data.tags and card.data.base_model_relation == "adapter"
    pub = CliRunner(env=env).invoke(app, ["publish", str(out), "alice/lora-heart", *hub_args])
    assert pub.exit_code == 0, pub.output
    run_env = {**os.environ, **env, "HF_HOME": str(tmp_path / "home")}
    done = subprocess.run(
        [sys.executable, "-c", LORA_SCRIPT], env=run_env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0 and "adapters [" in done.stdout, done.stdout + done.stderr
