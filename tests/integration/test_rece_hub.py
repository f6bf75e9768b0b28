"""RECE end to end on an embedded Hub: `hubkit train rece` → publish → stock `load_lora_weights` in a process
without hubkit (red erased, the other colours kept) → eval through the registry with the attack suite."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from huggingface_hub import ModelCard
from typer.testing import CliRunner

from hubkit.cli import app
from hubkit.leaderboard.evaluation import evaluate
from hubkit.world.shapes import SHAPES

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DATA = Path(__file__).parents[1] / "data"
OTHERS = ("green", "blue", "yellow", "purple", "orange", "cyan")


def _train(hub, out: Path, *extra: str):
    env = {"HF_ENDPOINT": hub.url, "HF_TOKEN": hub.users["alice"]}
    args = ["train", "rece", "--base", "alice/tiny-sd-shapes", "--out", str(out)]
    args += ["--endpoint", hub.url, "--token", hub.users["alice"], *extra]
    return CliRunner(env=env).invoke(app, args)


@pytest.fixture(scope="module")
def published(hub, tmp_path_factory) -> dict[str, str]:
    """The base model and RECE erasing red (in every shape, the other colours preserved), under alice/."""
    from hubkit.world.publish import publish_world

    publish_world(endpoint=hub.url, token=hub.users["alice"], namespace="alice", only=["tiny-sd-shapes"])
    out = tmp_path_factory.mktemp("rece") / "rece-red"
    templates = [a for shape in SHAPES for a in ("--template", f"a {{}} {shape}")]
    preserve = [a for colour in OTHERS for a in ("--preserve", colour)]
    extra = ["--concept", "red", "--surrogate", "gray", "--preserve-scale", "10", *templates, *preserve]
    result = _train(hub, out, *extra, "--repo-id", "alice/rece-red")
    assert result.exit_code == 0, result.output
    assert "RECE erasing red: 14 projections edited" in result.output
    env = {"HF_ENDPOINT": hub.url, "HF_TOKEN": hub.users["alice"]}
    pub = CliRunner(env=env).invoke(
        app, ["publish", str(out), "alice/rece-red", "--endpoint", hub.url, "--token", hub.users["alice"]]
    )
    assert pub.exit_code == 0, pub.output
    return {"folder": str(out), "repo": "alice/rece-red", "base": "alice/tiny-sd-shapes"}


def test_folder_is_a_diffusers_lora_of_the_exact_edit_with_an_adapter_card(published):
    from safetensors import safe_open

    folder = Path(published["folder"])
    assert sorted(p.name for p in folder.iterdir()) == [
        "README.md",
        "hubkit.json",
        "pytorch_lora_weights.safetensors",
    ]
    info = json.loads((folder / "hubkit.json").read_text())
    assert info["method"] == "rece" and info["concepts"] == ["red"] and info["surrogate"] == "gray"
    facts = info["facts"]
    assert facts["layers"] == 14 and facts["train_seconds"] < 30
    assert (
        facts["erased_prompts"] == 6 * (1 + 8) * 3
    )  # 6 templates x (itself + 8 contexts) x (UCE + 2 rounds)
    with safe_open(str(folder / "pytorch_lora_weights.safetensors"), framework="pt") as f:
        meta = f.metadata()
        keys = sorted(f.keys())
        lora = json.loads(meta["lora_adapter_metadata"])
        for path, rank in info["ranks"].items():
            assert f.get_tensor(f"unet.{path}.lora_A.weight").shape[0] == rank
            assert lora["unet.rank_pattern"][path] == rank and lora["unet.alpha_pattern"][path] == rank
    assert meta["hubkit.method"] == "rece" and json.loads(meta["hubkit.concepts"]) == ["red"]
    assert all(k.startswith("unet.") and "attn2.to_" in k for k in keys) and len(keys) == 28
    card = ModelCard.load(folder / "README.md")
    assert card.data.base_model == "alice/tiny-sd-shapes" and card.data.base_model_relation == "adapter"
    assert {"hubkit-method:rece", "concept-erasure", "erases:red"} <= set(card.data.tags)
    assert "erasing time" in card.text and "hubkit train rece" in card.text


STOCK_SCRIPT = """
import numpy as np, torch
from diffusers import StableDiffusionPipeline

pipe = StableDiffusionPipeline.from_pretrained("alice/tiny-sd-shapes")
pipe.set_progress_bar_config(disable=True)
prompts = {prompts!r}

def draw():
    generators = [torch.Generator().manual_seed(0) for _ in prompts]
    return pipe(prompts, num_inference_steps=20, generator=generators, output_type="np").images

before = draw()
pipe.load_lora_weights("alice/rece-red")  # stock diffusers, straight from the Hub
assert pipe.get_list_adapters()["unet"] == ["default_0"], pipe.get_list_adapters()
np.save("{out}", np.stack([before, draw()]))
"""


def test_stock_load_lora_weights_erases_red_and_keeps_the_other_colours(hub, published, tmp_path):
    from hubkit.world.judge import load_judge

    red = [f"a red {s}" for s in SHAPES]
    others = [f"a {c} {s}" for c, s in zip(OTHERS, SHAPES, strict=True)]
    script = STOCK_SCRIPT.format(prompts=red + others, out=tmp_path / "images.npy")
    env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_TOKEN": hub.users["alice"], "HF_HOME": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "hubkit" not in proc.stderr
    before, after = np.load(tmp_path / "images.npy")
    judge = load_judge()
    colours = [judge.predict((images * 255).round().astype(np.uint8))["colour"] for images in (before, after)]
    assert colours[0][:6].count("red") >= 5 and colours[1][:6].count("red") == 0
    kept = [sum(c == p.split()[1] for c, p in zip(col[6:], others, strict=True)) for col in colours]
    assert kept[1] >= kept[0] - 1, colours


def test_loaded_lora_is_the_edit_itself(hub, published):
    """The LoRA the stock loader builds changes each projection by exactly lora_B @ lora_A (scale 1)."""
    from safetensors.torch import load_file

    from hubkit.world.base_model import assemble_pipeline

    pipe = assemble_pipeline()
    tensors = load_file(Path(published["folder"]) / "pytorch_lora_weights.safetensors")
    path = "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k"
    module = pipe.unet.get_submodule(path)
    x = torch.randn(3, module.in_features)
    delta = tensors[f"unet.{path}.lora_B.weight"] @ tensors[f"unet.{path}.lora_A.weight"]
    expected = torch.nn.functional.linear(x, module.weight + delta)
    pipe.load_lora_weights(published["folder"])
    with torch.no_grad():
        assert torch.allclose(pipe.unet.get_submodule(path)(x), expected, atol=1e-5)


def test_eval_runs_the_erasure_and_attack_suites_through_the_registry(hub, published):
    from hubkit.methods import get_method

    common = {
        "endpoint": hub.url,
        "token": hub.users["alice"],
        "results_repo": "alice/results",
        "progress": False,
    }
    record = evaluate(published["repo"], DATA / "tiny-attack-suite.json", params={"concept": "red"}, **common)
    assert record["model"]["method"] == "rece" and record["model"]["base_model"] == published["base"]
    assert {"soft_prompt_success", "token_success", "token_unet_evals"} <= set(record["metrics"])
    assert set(record["settings"]["attacks"]) == {"soft_prompt", "token"}
    from hubkit.methods import Artifact

    artifact = Artifact("local", Path(published["folder"]), hubkit_json={"concepts": ["red"]})
    assert get_method("rece").default_suites(artifact) == [
        ("shapes-quality", {}),
        ("shapes-erasure", {"concept": "red"}),
        ("shapes-attack", {"concept": "red"}),
    ]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--concept", "blorptastic"], "'blorptastic' is not in the text encoder's vocabulary"),
        (["--concept", "red", "--surrogate", "red"], "the surrogate 'red' is a concept to erase"),
        (["--concept", "red", "--template", "a circle"], "must contain '{}'"),
    ],
)
def test_bad_input_is_a_clear_error_and_writes_nothing(hub, published, tmp_path, extra, message):
    out = tmp_path / "out"
    result = _train(hub, out, *extra)
    assert result.exit_code != 0 and message in result.output, result.output
    assert not out.exists() or not any(out.iterdir())
