"""The quantized UNet end to end on an embedded Hub: ``hubkit train quantize`` (calibrated on the world's
captions) → ``publish`` → stock ``from_pretrained`` in a fresh process (diffusers + sdnq, no hubkit) and
``load_quantized_unet`` → bad input."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard
from typer.testing import CliRunner

from hubkit.cli import app

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BASE, REPO = "alice/tiny-sd-shapes", "alice/tiny-sd-shapes-w4a8"


@pytest.fixture(scope="module")
def published(hub, tmp_path_factory) -> dict[str, str]:
    from hubkit.world.publish import publish_world

    publish_world(
        endpoint=hub.url, token=hub.users["alice"], namespace="alice", only=["tiny-sd-shapes", "shapes"]
    )
    out = tmp_path_factory.mktemp("quantize") / "w4a8"
    env = {"HF_ENDPOINT": hub.url, "HF_TOKEN": hub.users["alice"]}
    hub_args = ["--endpoint", hub.url, "--token", hub.users["alice"]]
    args = ["train", "quantize", "--base", BASE, "--weights", "int4", "--calibration-dataset", "alice/shapes"]
    args += ["--calibration-prompts", "2", "--calibration-steps", "2", "--timestep-groups", "2"]
    result = CliRunner(env=env).invoke(app, [*args, "--repo-id", REPO, "--out", str(out), *hub_args])
    assert result.exit_code == 0, result.output
    assert "smaller than fp32" in result.output
    pub = CliRunner(env=env).invoke(app, ["publish", str(out), REPO, *hub_args])
    assert pub.exit_code == 0, pub.output
    return {"folder": str(out)}


def test_folder_is_a_stock_sdnq_unet_with_activation_scales_and_a_card(published):
    folder = Path(published["folder"])
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "hubkit.json", "unet"]
    assert sorted(p.name for p in (folder / "unet").iterdir()) == [
        "config.json",
        "diffusion_pytorch_model.safetensors",
        "hubkit_activations.safetensors",
    ]
    quant = json.loads((folder / "unet" / "config.json").read_text())["quantization_config"]
    assert quant["quant_method"] == "sdnq" and quant["weights_dtype"] == "int4" and quant["quant_conv"]
    facts = json.loads((folder / "hubkit.json").read_text())["facts"]
    # the layers kept at int8 are the measured most sensitive per byte, within 0.5 % of the fp32 bytes
    assert facts["int8_layers"] and len(facts["most_sensitive"]) == 8
    assert quant["modules_dtype_dict"] == {"int8": sorted(f"{p}.weight" for p in facts["int8_layers"])}
    size = (folder / "unet" / "diffusion_pytorch_model.safetensors").stat().st_size
    assert facts["float_unet_bytes"] / size > 5.5 and facts["calibration_prompts"] == 2
    card = ModelCard.load(folder / "README.md")
    assert card.data.base_model == BASE and card.data.base_model_relation == "quantized"
    assert "hubkit-method:quantize" in card.data.tags and "load_quantized_unet" in card.text
    assert "sdnq" in card.text and 'subfolder="unet"' in card.text and f"{size:,} bytes" in card.text
    assert "Most sensitive layers (measured)" in card.text
    assert all(f"`{p}`" in card.text for p in facts["most_sensitive"])


def test_stock_diffusers_loads_it_and_hubkit_adds_the_static_activations(hub, published, tmp_path):
    script = f"""
import sys, torch
from diffusers import UNet2DConditionModel
unet = UNet2DConditionModel.from_pretrained({REPO!r}, subfolder="unet")
assert not any(m.startswith("hubkit") for m in sys.modules), "stock loading imported hubkit"
assert type(unet.conv_in).__name__.startswith("SDNQ")
g = torch.Generator().manual_seed(0)
x, emb = torch.randn(1, 4, 8, 8, generator=g), torch.randn(1, 16, 384, generator=g)
with torch.no_grad():
    torch.save(unet(x, 500, emb).sample, {str(tmp_path / "stock.pt")!r})
"""
    env = {
        **os.environ,
        "HF_ENDPOINT": hub.url,
        "HF_TOKEN": hub.users["alice"],
        "SDNQ_USE_TORCH_COMPILE": "0",
    }
    run = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    stock = torch.load(tmp_path / "stock.pt")

    from hubkit.adapters.quantize.kernels import cpu_int8_support
    from hubkit.pipelines.quantize import load_quantized_unet
    from hubkit.pipelines.quantize.loading import unload_quantized_unet

    from hubkit.world.base_model import assemble_pipeline

    pipe = assemble_pipeline()
    g = torch.Generator().manual_seed(0)
    x, emb = torch.randn(1, 4, 8, 8, generator=g), torch.randn(1, 16, 384, generator=g)
    with torch.no_grad():
        float_out = pipe.unet(x, 500, emb).sample
        load_quantized_unet(pipe, published["folder"], activations=False)
        weight_only = pipe.unet(x, 500, emb).sample
        with pytest.raises(ValueError, match="already loaded"):
            load_quantized_unet(pipe, published["folder"])
        unload_quantized_unet(pipe)
        # auto runs int8 kernels where the CPU has exact ones (VNNI), else weight-only float: the reference
        # path is the artifact's static-activation numerics on every CPU
        kernels = "auto" if cpu_int8_support() is not None else "reference"
        load_quantized_unet(pipe, published["folder"], kernels=kernels)
        static = pipe.unet(x, 500, emb).sample
        unload_quantized_unet(pipe)
        back = pipe.unet(x, 500, emb).sample
    assert torch.allclose(weight_only, stock, atol=1e-4, rtol=1e-4)  # the same integers, the same numbers
    assert not torch.allclose(static, weight_only, atol=1e-4)  # int8 inputs change them, a little
    assert (static - float_out).abs().mean() < 0.25 * float_out.abs().mean()
    assert torch.allclose(back, float_out, atol=1e-5)


def test_bad_input_is_a_clear_error_and_writes_nothing(hub, published, tmp_path):
    from hubkit.adapters.quantize.config import QuantizeConfig
    from hubkit.adapters.quantize.serialization import QuantizedFileError
    from hubkit.pipelines.quantize import load_quantized_unet

    from hubkit.world.base_model import assemble_pipeline

    env = {"HF_ENDPOINT": hub.url, "HF_TOKEN": hub.users["alice"]}
    hub_args = ["--endpoint", hub.url, "--token", hub.users["alice"]]
    out = tmp_path / "never"
    result = CliRunner(env=env).invoke(
        app, ["train", "quantize", "--base", BASE, "--weights", "int3", "--out", str(out), *hub_args]
    )
    assert result.exit_code != 0 and "weights must be int8 or int4" in result.output and not out.exists()
    result = CliRunner(env=env).invoke(
        app, ["train", "quantize", "--base", BASE, "--keep-float", "nope", "--prompt", "a red circle",
              "--out", str(out), *hub_args],
    )  # fmt: skip
    assert result.exit_code != 0 and "--keep-float names no Linear/Conv2d" in result.output
    assert not out.exists()
    with pytest.raises(ValueError, match="timestep_groups"):
        QuantizeConfig(calibration_steps=2, timestep_groups=3)

    broken = tmp_path / "broken"
    shutil.copytree(published["folder"], broken)
    weights = broken / "unet" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    pipe = assemble_pipeline()
    before = {k: v.clone() for k, v in pipe.unet.state_dict().items()}
    with pytest.raises(QuantizedFileError, match="unreadable or truncated"):
        load_quantized_unet(pipe, broken)
    other = assemble_pipeline()
    other.unet.register_to_config(cross_attention_dim=999)
    with pytest.raises(ValueError, match=r"another UNet .* cross_attention_dim"):
        load_quantized_unet(other, published["folder"])
    assert all(torch.equal(before[k], v) for k, v in pipe.unet.state_dict().items())
