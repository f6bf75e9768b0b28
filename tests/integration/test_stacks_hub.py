"""Stacks on an embedded Hub: `hubkit stack create` pins each component → publish → `load_stack` applies
them in order by their own methods (LoRAs all active, the quantizer requantizing the edited UNet) → eval
through the registry; clear errors for a missing revision, mixed bases or architectures, two quantizers, a
wrong order."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from huggingface_hub import ModelCard
from typer.testing import CliRunner

from hubkit.cli import app

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DATA = Path(__file__).parents[1] / "data"
TO_K = "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k"


def _cli(hub, *args: str):
    env = {"HF_ENDPOINT": hub.url, "HF_TOKEN": hub.users["alice"]}
    return CliRunner(env=env).invoke(app, [*args, "--endpoint", hub.url, "--token", hub.users["alice"]])


@pytest.fixture(scope="module")
def world(hub, tmp_path_factory) -> dict[str, str]:
    """alice's base, RECE erasing red, a 2-step LCM-LoRA and W8A8 / W4A8 UNets of the base, all published;
    a RECE made for another base (the same files, the card naming another model) and one whose card says its
    base is an SDXL (as if the base repo had been replaced since)."""
    from conftest import publish_tiny_quantized
    from hubkit.adapters.lcm_lora import LCMLoRAConfig
    from hubkit.adapters.rece import RECEConfig

    from hubkit.cards.render import set_architecture
    from hubkit.hub import publish
    from hubkit.methods import get_method
    from hubkit.world.base_model import assemble_pipeline

    tmp = tmp_path_factory.mktemp("stacks")
    token = hub.users["alice"]
    base = publish_tiny_quantized(hub, tmp, {"alice/w8a8": "int8", "alice/w4a8": "int4"})
    pipe = assemble_pipeline()
    made = {
        "alice/rece-red": ("rece", RECEConfig(concepts=["red"], surrogate="gray", contexts=0)),
        "alice/lcm-lora": ("lcm-lora", LCMLoRAConfig(steps=2, batch_size=2, rank=4)),
    }
    for repo, (method, config) in made.items():
        folder = tmp / repo.split("/")[1]
        get_method(method).train(base, config, folder, pipe=pipe, repo_id=repo, progress=False)
        publish(folder, repo, endpoint=hub.url, token=token)
    other = tmp / "rece-other"
    shutil.copytree(tmp / "rece-red", other)
    card = ModelCard.load(other / "README.md")
    card.data.base_model = "bob/another-model"
    card.data.tags = [t.replace(base, "bob/another-model") for t in card.data.tags]
    card.save(other / "README.md")
    info = json.loads((other / "hubkit.json").read_text())
    (other / "hubkit.json").write_text(json.dumps(info | {"base_model": "bob/another-model"}))
    publish(other, "alice/rece-other", endpoint=hub.url, token=token)
    xl = tmp / "rece-xl"
    shutil.copytree(tmp / "rece-red", xl)
    set_architecture(ModelCard.load(xl / "README.md"), "sdxl").save(xl / "README.md")
    info = json.loads((xl / "hubkit.json").read_text())
    (xl / "hubkit.json").write_text(json.dumps(info | {"architecture": "sdxl"}))
    publish(xl, "alice/rece-xl", endpoint=hub.url, token=token)
    return {"base": base, "tmp": str(tmp)}


@pytest.fixture(scope="module")
def stack(hub, world) -> dict[str, str]:
    out = Path(world["tmp"]) / "full-stack"
    adds = ["--add", "alice/rece-red", "--add", "alice/lcm-lora", "--add", "alice/w8a8"]
    result = _cli(
        hub, "stack", "create", str(out), "--base", world["base"], *adds, "--repo-id", "alice/stack"
    )
    assert result.exit_code == 0, result.output
    assert "3. alice/w8a8@" in result.output and "(quantize)" in result.output
    pub = _cli(hub, "publish", str(out), "alice/stack")
    assert pub.exit_code == 0, pub.output
    return {"folder": str(out), "repo": "alice/stack"}


def test_stack_pins_each_component_and_has_a_card(hub, world, stack):
    api = hub.api("alice")
    info = json.loads((Path(stack["folder"]) / "hubkit.json").read_text())
    assert info["method"] == "stack" and info["base_model"] == world["base"]
    assert info["base_revision"] == api.model_info(world["base"]).sha
    assert info["architecture"] == "sd1"  # from the base's configs on the Hub
    assert [(c["repo"], c["method"]) for c in info["components"]] == [
        ("alice/rece-red", "rece"),
        ("alice/lcm-lora", "lcm-lora"),
        ("alice/w8a8", "quantize"),
    ]
    for component in info["components"]:
        assert component["revision"] == api.model_info(component["repo"]).sha
    assert ["shapes-fidelity", {}] in info["components"][2]["suites"]
    card = ModelCard.load(Path(stack["folder"]) / "README.md")
    assert card.data.base_model == world["base"] and card.data.base_model_relation == "adapter"
    assert {"hubkit-method:stack", "stack-component:rece", "stack-component:quantize"} <= set(card.data.tags)
    assert "lora" not in card.data.tags and "load_stack" in card.text
    assert card.data.base_architecture == "sd1" and "base-architecture:sd1" in card.data.tags


def test_load_stack_applies_every_component_in_order(hub, world, stack):
    from diffusers import LCMScheduler
    from hubkit.adapters.quantize.layer import QuantizedLayer
    from hubkit.pipelines import load_stack
    from safetensors.torch import load_file

    from hubkit.world.base_model import assemble_pipeline

    pipe = load_stack("alice/stack", endpoint=hub.url, token=hub.users["alice"])
    assert isinstance(pipe.scheduler, LCMScheduler)  # the distiller's scheduler
    layer = pipe.unet.get_submodule(TO_K)
    assert isinstance(layer, QuantizedLayer)
    # The quantized weight is the base's plus RECE's and the LCM-LoRA's deltas (fused, then quantized), not
    # the base's own, which the artifact's file holds.
    base = assemble_pipeline().unet.get_submodule(TO_K).weight
    folders = {r: Path(world["tmp"]) / r for r in ("rece-red", "lcm-lora")}
    rece = load_file(folders["rece-red"] / "pytorch_lora_weights.safetensors")
    lcm = load_file(folders["lcm-lora"] / "pytorch_lora_weights.safetensors")
    delta = rece[f"unet.{TO_K}.lora_B.weight"] @ rece[f"unet.{TO_K}.lora_A.weight"]
    scale = json.loads((folders["lcm-lora"] / "hubkit.json").read_text())["config"]["alpha"] / 4
    delta = delta + scale * (lcm[f"unet.{TO_K}.lora_B.weight"] @ lcm[f"unet.{TO_K}.lora_A.weight"])
    got = layer.quantized.dequantize()
    step = float(got.abs().max()) / 127
    assert (got - (base + delta)).abs().max() < step  # within one int8 step of the edited weight
    assert (got - base).abs().max() > 2 * step  # and the edit shows
    out = pipe(["a red circle"], num_inference_steps=4, guidance_scale=1.0, output_type="np")
    assert out.images.shape == (1, 32, 32, 3)


def test_eval_ranks_the_stack_on_its_components_suites(hub, world, stack):
    from hubkit.leaderboard.evaluation import evaluate, fetch_artifact
    from hubkit.methods import method_for

    common = {
        "endpoint": hub.url,
        "token": hub.users["alice"],
        "results_repo": "alice/results",
        "progress": False,
    }
    record = evaluate(stack["repo"], DATA / "tiny-suite.json", **common)
    assert record["model"]["method"] == "stack" and record["settings"]["guidance_scale"] == 1.0
    assert record["model"]["architecture"] == "sd1"
    assert (
        record["settings"]["num_inference_steps"] == 4 and record["settings"]["scheduler"] == "LCMScheduler"
    )
    artifact = fetch_artifact(stack["folder"])
    assert method_for(artifact).default_suites(artifact) == [
        ("shapes-quality", {}),
        ("shapes-erasure", {"concept": "red"}),
        ("shapes-attack", {"concept": "red"}),
        ("shapes-speed", {}),
        ("shapes-fidelity", {}),
    ]


@pytest.mark.parametrize(
    ("adds", "message"),
    [
        (["alice/rece-red@" + "0" * 40], "alice/rece-red has no revision '0000"),
        (["alice/nope"], "alice/nope: no such repo"),
        (["alice/rece-red", "alice/rece-other"], "made for bob/another-model, the stack's base is alice/"),
        (["alice/rece-xl"], "alice/rece-xl was made for an SDXL base (sdxl), the stack's base alice/"),
        (["alice/w8a8", "alice/w4a8"], "a stack has one UNet: alice/w8a8@"),
        (["alice/w8a8", "alice/rece-red"], "cannot come after alice/w8a8@"),
        (["alice/rece-red", "alice/rece-red"], "appears twice"),
        (["alice/tiny-sd-shapes"], "is a whole pipeline"),
    ],
)
def test_bad_stacks_are_clear_errors_and_write_nothing(hub, world, tmp_path, adds, message):
    out = tmp_path / "stack"
    args = [a for repo in adds for a in ("--add", repo)]
    result = _cli(hub, "stack", "create", str(out), "--base", world["base"], *args)
    assert result.exit_code != 0 and message in result.output, result.output
    assert not out.exists() or not any(out.iterdir())


def test_a_pinned_revision_that_is_gone_is_a_clear_error_at_load(hub, world, stack, tmp_path):
    from hubkit.pipelines import load_stack

    from hubkit.stacks import StackError
    from hubkit.world.base_model import assemble_pipeline

    folder = tmp_path / "stack"
    shutil.copytree(stack["folder"], folder)
    info = json.loads((folder / "hubkit.json").read_text())
    info["components"][0]["revision"] = "f" * 40
    (folder / "hubkit.json").write_text(json.dumps(info))
    with pytest.raises(StackError, match="alice/rece-red: no such repo or revision 'ffff"):
        load_stack(str(folder), assemble_pipeline(), endpoint=hub.url, token=hub.users["alice"])


def test_export_merges_a_stack_without_a_quantizer_and_refuses_one_with(hub, world, stack, tmp_path):
    from diffusers import LCMScheduler, StableDiffusionPipeline

    from hubkit.world.base_model import assemble_pipeline

    two = tmp_path / "two"
    adds = ["--add", "alice/rece-red", "--add", "alice/lcm-lora"]
    assert _cli(hub, "stack", "create", str(two), "--base", world["base"], *adds).exit_code == 0
    merged = tmp_path / "merged"
    result = _cli(hub, "export", str(two), "--merged", "--out", str(merged))
    assert result.exit_code == 0, result.output
    pipe = StableDiffusionPipeline.from_pretrained(merged)  # stock: the LoRAs are in the weights
    assert isinstance(pipe.scheduler, LCMScheduler) and not getattr(pipe.unet, "peft_config", None)
    moved = (pipe.unet.get_submodule(TO_K).weight - assemble_pipeline().unet.get_submodule(TO_K).weight).abs()
    assert float(moved.max()) > 1e-3
    refused = _cli(hub, "export", stack["folder"], "--merged", "--out", str(tmp_path / "quantized"))
    assert refused.exit_code != 0 and "swaps the UNet (quantized)" in refused.output
