"""The tiny SD 1.5 / SD 2.1 / SDXL pipelines (:mod:`hubkit.architectures`): the published configs' structure,
seeded weights, a few MB, stock loading without hubkit, and :func:`architecture_of`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hubkit.architectures import (
    ARCHITECTURES,
    FAMILIES,
    architecture_of,
    build_tiny_pipeline,
    build_tokenizer,
    tokenizer_words,
    unet_config,
)


@pytest.fixture(scope="module")
def pipes():
    return {arch: build_tiny_pipeline(arch) for arch in ARCHITECTURES}


def test_structure_follows_the_published_configs(pipes):
    sd15, sd21, sdxl = (pipes[a] for a in ARCHITECTURES)
    assert type(sd15).__name__ == type(sd21).__name__ == "StableDiffusionPipeline"
    assert type(sdxl).__name__ == "StableDiffusionXLPipeline"
    for pipe in (sd15, sd21):
        u = pipe.unet.config
        assert u.down_block_types == ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",)
        assert u.up_block_types == ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3
        assert u.cross_attention_dim == pipe.text_encoder.config.hidden_size
        assert pipe.vae_scale_factor == 8
    assert isinstance(sd15.unet.config.attention_head_dim, int) and not sd15.unet.config.use_linear_projection
    assert sd15.text_encoder.config.hidden_act == "quick_gelu"
    assert type(sd15.scheduler).__name__ == "PNDMScheduler"
    assert sd15.scheduler.config.prediction_type == "epsilon"
    u = sd21.unet.config
    assert isinstance(u.attention_head_dim, tuple) and len(set(u.attention_head_dim)) > 1
    assert u.use_linear_projection and u.upcast_attention
    assert sd21.text_encoder.config.hidden_act == "gelu" and sd21.tokenizer.pad_token == "!"
    assert sd21.scheduler.config.prediction_type == "v_prediction"
    u = sdxl.unet.config
    assert u.down_block_types == ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D")
    assert u.addition_embed_type == "text_time" and u.use_linear_projection
    assert list(u.transformer_layers_per_block) == sorted(u.transformer_layers_per_block)
    te1, te2 = sdxl.text_encoder, sdxl.text_encoder_2
    assert type(te1).__name__ == "CLIPTextModel" and type(te2).__name__ == "CLIPTextModelWithProjection"
    assert u.cross_attention_dim == te1.config.hidden_size + te2.config.hidden_size
    pooled_and_time_ids = te2.config.projection_dim + 6 * u.addition_time_embed_dim
    assert u.projection_class_embeddings_input_dim == pooled_and_time_ids
    assert sdxl.tokenizer.pad_token == "<|endoftext|>" and sdxl.tokenizer_2.pad_token == "!"
    assert type(sdxl.scheduler).__name__ == "EulerDiscreteScheduler"
    assert sdxl.config.force_zeros_for_empty_prompt
    for arch, pipe in pipes.items():
        assert architecture_of(pipe) == architecture_of(pipe.unet) == FAMILIES[arch]
        assert architecture_of(dict(pipe.unet.config)) == FAMILIES[arch]


def test_seeded_and_leaves_the_global_generator_alone():
    state = torch.random.get_rng_state()
    a, b = build_tiny_pipeline("sd15", seed=1), build_tiny_pipeline("sd15", seed=1)
    assert torch.equal(torch.random.get_rng_state(), state)
    c = build_tiny_pipeline("sd15", seed=2)
    for name in ("unet", "vae", "text_encoder"):
        wa, wb, wc = (dict(getattr(p, name).state_dict()) for p in (a, b, c))
        assert all(torch.equal(wa[k], wb[k]) for k in wa)
        assert not all(torch.equal(wa[k], wc[k]) for k in wa)
    with pytest.raises(ValueError, match="unknown architecture 'sd3'"):
        build_tiny_pipeline("sd3")


def test_tokenizer_holds_the_world_words_as_single_tokens():
    tokenizer = build_tokenizer()
    assert all(len(tokenizer.tokenize(w)) == 1 for w in tokenizer_words())
    assert {"red", "circle", "heart", "crimson", "gray", "photo"} <= set(tokenizer_words())
    ids = tokenizer("a red zqxj", padding="max_length", max_length=tokenizer.model_max_length).input_ids
    assert len(ids) == 77 and ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.pad_token_id
    assert tokenizer.eos_token_id == len(tokenizer) - 1  # CLIP's layout: the text encoder pools at argmax


def test_architecture_of_folders_configs_and_errors(tiny_arch_folder, tmp_path):
    from hubkit.world.base_model import unet_config as world_unet

    for arch in ARCHITECTURES:
        assert architecture_of(tiny_arch_folder(arch)) == FAMILIES[arch]
        assert architecture_of(tiny_arch_folder(arch) / "unet") == FAMILIES[arch]
    assert architecture_of(world_unet()) == "sd1"  # the reference world's tiny-sd-shapes
    assert architecture_of(unet_config("sd15"), prediction_type="v_prediction") == "sd2"
    with pytest.raises(ValueError, match="not a Stable Diffusion UNet"):
        architecture_of({"block_out_channels": [32]})
    with pytest.raises(ValueError, match=r"neither unet/config\.json"):
        architecture_of(tmp_path)


STOCK = """
import json, sys
import torch
from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

torch.set_num_threads(1)
out = {}
for arch, folder in json.loads(sys.argv[1]).items():
    cls = StableDiffusionXLPipeline if arch == "sdxl" else StableDiffusionPipeline
    pipe = cls.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    image = pipe("a red circle", num_inference_steps=2, output_type="np",
                 generator=torch.Generator().manual_seed(0)).images
    names = [type(pipe).__name__, type(pipe.tokenizer).__name__]
    out[arch] = [*names, list(image.shape), bool(abs(image).sum() > 0)]
assert "hubkit" not in sys.modules
print(json.dumps(out))
"""


def test_saved_folders_load_with_the_stock_classes_without_hubkit(tiny_arch_folder):
    folders = {arch: str(tiny_arch_folder(arch)) for arch in ARCHITECTURES}
    for folder in folders.values():
        size = sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())
        assert size < 5_000_000, (folder, size)  # a whole pipeline in a few MB
    proc = subprocess.run(
        [sys.executable, "-c", STOCK, json.dumps(folders)], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    for arch in ARCHITECTURES:
        pixels = unet_config(arch)["sample_size"] * 8
        cls = "StableDiffusionXLPipeline" if arch == "sdxl" else "StableDiffusionPipeline"
        assert out[arch] == [cls, "CLIPTokenizer", [1, pixels, pixels, 3], True]
