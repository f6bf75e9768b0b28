"""SPM end to end on an embedded Hub: ``hubkit train spm`` → ``publish`` → stock loaders → ``eval``."""

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
from hubkit.leaderboard.evaluation import EvalError, evaluate

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TINY_ERASURE = Path(__file__).parents[1] / "data" / "tiny-erasure-suite.json"


@pytest.fixture(scope="module")
def published(hub, tmp_path_factory) -> dict[str, str]:
    """The base model and an SPM trained by the CLI (a few steps), both published under alice/."""
    from hubkit.world.publish import publish_world

    publish_world(endpoint=hub.url, token=hub.users["alice"], namespace="alice", only=["tiny-sd-shapes"])
    out = tmp_path_factory.mktemp("spm") / "spm-red"
    env = {"HF_ENDPOINT": hub.url, "HF_TOKEN": hub.users["alice"]}
    args = ["train", "spm", "--base", "alice/tiny-sd-shapes", "--concept", "red", "--out", str(out)]
    args += ["--endpoint", hub.url, "--token", hub.users["alice"]]
    result = CliRunner(env=env).invoke(app, [*args, "--steps", "3", "--repo-id", "alice/spm-red"])
    assert result.exit_code == 0, result.output
    assert "% of the UNet" in result.output
    pub = CliRunner(env=env).invoke(
        app, ["publish", str(out), "alice/spm-red", "--endpoint", hub.url, "--token", hub.users["alice"]]
    )
    assert pub.exit_code == 0, pub.output
    return {"folder": str(out), "repo": "alice/spm-red", "base": "alice/tiny-sd-shapes"}


def test_folder_has_weights_metadata_and_an_adapter_card(published):
    from safetensors import safe_open

    folder = Path(published["folder"])
    assert sorted(p.name for p in folder.iterdir()) == [
        "README.md",
        "hubkit.json",
        "pytorch_lora_weights.safetensors",
    ]
    with safe_open(str(folder / "pytorch_lora_weights.safetensors"), framework="pt") as f:
        meta = f.metadata()
        keys = list(f.keys())
    assert meta["prompts"] == "red" and json.loads(meta["hubkit.spm_config"])["concepts"] == ["red"]
    assert json.loads(meta["lora_adapter_metadata"])["unet.r"] == 1
    assert len(keys) == 2 * 7 * 12 and all(k.startswith("unet.") for k in keys)  # 7 transformer blocks × 12
    card = ModelCard.load(folder / "README.md")
    assert card.data.base_model == "alice/tiny-sd-shapes" and card.data.base_model_relation == "adapter"
    assert {"hubkit-method:spm", "erases:red"} <= set(card.data.tags)
    assert "erased concepts" in card.text and "`red`" in card.text and "training time" in card.text
    info = json.loads((folder / "hubkit.json").read_text())
    with safe_open(str(folder / "pytorch_lora_weights.safetensors"), framework="pt") as f:
        in_file = sum(f.get_tensor(k).numel() for k in f.keys())  # noqa: SIM118 - a safetensors handle
    assert info["facts"]["parameters"] == in_file and 0 < info["facts"]["share"] < 0.01


STOCK_SCRIPT = """
from diffusers import StableDiffusionPipeline
from hubkit.pipelines.spm import load_spm

pipe = StableDiffusionPipeline.from_pretrained("alice/tiny-sd-shapes")
pipe.load_lora_weights("alice/spm-red")  # stock diffusers, straight from the Hub
assert "default_0" in pipe.get_list_adapters()["unet"], pipe.get_list_adapters()
pipe.unload_lora_weights()
ft = load_spm(pipe, "alice/spm-red")
m = ft.permeability(["a red circle", "a blue square"])["spm-red"]
print("concepts", ft.concepts, "permeability", m)
assert ft.concepts == {"spm-red": ["red"]} and abs(m[0] - 1.0) < 1e-6 and m[1] < 1.0
"""


def test_stock_load_lora_weights_and_load_spm_from_the_hub(hub, published, tmp_path):
    # huggingface_hub reads HF_ENDPOINT when imported: a user's fresh process, as on their machine.
    env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_TOKEN": hub.users["alice"], "HF_HOME": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-c", STOCK_SCRIPT], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "permeability [1.0" in out.stdout


def test_eval_applies_the_spm_through_the_registry(hub, published, tmp_path):
    record = evaluate(
        published["repo"],
        TINY_ERASURE,
        {"concept": "red"},
        endpoint=hub.url,
        token=hub.users["alice"],
        results_repo="alice/results",
        progress=False,
    )
    assert record["model"]["method"] == "spm" and record["model"]["base_model"] == published["base"]
    assert record["suite"]["key"] == "tiny-erasure_concept-red"
    assert 0.0 <= record["metrics"]["target_presence"] <= 1.0
    card = ModelCard.load(hub.api("alice").hf_hub_download(published["repo"], "README.md"))
    assert any(r.metric_type == "target_presence" for r in card.data.eval_results)


def test_bad_input_is_a_clear_error_and_writes_nothing(hub, published, tmp_path):
    env = {"HF_ENDPOINT": hub.url, "HF_TOKEN": hub.users["alice"]}
    hub_args = ["--endpoint", hub.url, "--token", hub.users["alice"]]
    out = tmp_path / "never"
    result = CliRunner(env=env).invoke(
        app,
        ["train", "spm", "--base", "alice/tiny-sd-shapes", "--concept", " ", "--out", str(out), *hub_args],
    )
    assert result.exit_code == 1 and "non-empty concept" in result.output and not out.exists()
    result = CliRunner(env=env).invoke(
        app,
        ["train", "spm", "--base", "alice/no-such-model", "--concept", "red", "--out", str(out), *hub_args],
    )
    assert result.exit_code == 1 and "cannot load the base pipeline" in result.output and not out.exists()
    assert not list(tmp_path.glob(".never*"))  # no staging folder left behind
    # An SPM on a base of another UNet shape: the registry names the mismatch.
    with pytest.raises(EvalError, match="does not fit the base model"):
        evaluate(
            published["folder"],
            TINY_ERASURE,
            {"concept": "red"},
            base=str(_other_shape_base(tmp_path)),
            push=False,
            progress=False,
        )


def _other_shape_base(tmp_path: Path) -> Path:
    from diffusers import UNet2DConditionModel

    from hubkit.world.base_model import assemble_pipeline, unet_config

    pipe = assemble_pipeline()
    pipe.unet = UNet2DConditionModel(**{**unet_config(), "block_out_channels": (64, 128)})
    folder = tmp_path / "other-base"
    pipe.save_pretrained(folder)
    return folder
