"""hubkit.conditioning on the tiny SD 1.5 / SD 2.1 / SDXL pipelines: prompts encoded as each pipeline encodes
them (SDXL's pooled embedding kept), the unconditional branch the pipeline guides with, and UNet keyword
arguments equal to those the pipeline itself passes to its UNet."""

from __future__ import annotations

import pytest
import torch

from hubkit.architectures import ARCHITECTURES, build_tiny_pipeline
from hubkit.conditioning import (
    TextConditioning,
    encode,
    text_encoders,
    unconditional,
    unet_kwargs,
)


@pytest.fixture(scope="module")
def pipes():
    return {arch: build_tiny_pipeline(arch) for arch in ARCHITECTURES}


def _pipeline_unet_call(pipe, **call):
    """(sample, keyword arguments) of the first UNet call of a pipeline run."""
    seen = []

    def hook(module, args, kwargs):
        if not seen:
            seen.append((args[0].clone(), dict(kwargs)))

    handle = pipe.unet.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        with torch.no_grad():
            pipe("a red circle", num_inference_steps=1, output_type="latent", **call)
    finally:
        handle.remove()
    return seen[0]


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_encode_is_the_pipelines_own_encoding_with_sdxl_pooled(pipes, arch):
    pipe = pipes[arch]
    with torch.no_grad():
        cond = encode(pipe, ["a red circle", "a blue square"])
        out = pipe.encode_prompt(
            prompt=["a red circle", "a blue square"],
            device="cpu",
            num_images_per_prompt=1,
            do_classifier_free_guidance=False,
        )
    assert torch.equal(cond.embeds, out[0]) and len(cond) == 2
    if arch == "sdxl":
        assert cond.pooled is not None and torch.equal(cond.pooled, out[2])
        assert cond.pooled.shape == (2, pipe.text_encoder_2.config.projection_dim)
        assert cond.embeds.shape[-1] == pipe.unet.config.cross_attention_dim
    else:
        assert cond.pooled is None


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_unconditional_is_what_guidance_subtracts(pipes, arch):
    pipe = pipes[arch]
    with torch.no_grad():
        uncond, empty = unconditional(pipe), encode(pipe, [""])
    assert uncond.embeds.shape == empty.embeds.shape
    if arch == "sdxl":  # force_zeros_for_empty_prompt
        assert not uncond.embeds.any() and uncond.pooled is not None and not uncond.pooled.any()
        assert empty.embeds.any() and empty.pooled is not None and empty.pooled.any()
    else:
        assert torch.equal(uncond.embeds, empty.embeds) and uncond.pooled is None


@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize("size", [None, 64])
def test_unet_kwargs_equal_the_pipelines_own_unet_call(pipes, arch, size):
    pipe = pipes[arch]
    sample, theirs = _pipeline_unet_call(pipe, guidance_scale=1.0, height=size, width=size)
    with torch.no_grad():
        ours = unet_kwargs(pipe, encode(pipe, ["a red circle"]), sample)
    assert torch.equal(ours["encoder_hidden_states"], theirs["encoder_hidden_states"])
    if arch == "sdxl":
        for key in ("text_embeds", "time_ids"):
            assert torch.equal(ours["added_cond_kwargs"][key], theirs["added_cond_kwargs"][key]), key
        side = size or pipe.unet.config.sample_size * pipe.vae_scale_factor
        assert ours["added_cond_kwargs"]["time_ids"].tolist() == [[side, side, 0, 0, side, side]]
    else:
        assert set(ours) == {"encoder_hidden_states"} and theirs.get("added_cond_kwargs") is None


def test_guided_sdxl_call_conditions_its_unconditional_half_as_unconditional_says(pipes):
    pipe = pipes["sdxl"]
    sample, theirs = _pipeline_unet_call(pipe, guidance_scale=5.0)
    with torch.no_grad():
        both = TextConditioning.cat([unconditional(pipe), encode(pipe, ["a red circle"])])
    ours = unet_kwargs(pipe, both, sample)
    assert torch.equal(ours["encoder_hidden_states"], theirs["encoder_hidden_states"])
    for key in ("text_embeds", "time_ids"):
        assert torch.equal(ours["added_cond_kwargs"][key], theirs["added_cond_kwargs"][key]), key


def test_sdxl_unet_kwargs_refuse_a_conditioning_without_pooled(pipes):
    pipe = pipes["sdxl"]
    cond = TextConditioning(torch.zeros(1, 77, pipe.unet.config.cross_attention_dim))
    with pytest.raises(ValueError, match="needs the pooled text embedding"):
        unet_kwargs(pipe, cond, torch.zeros(1, 4, 16, 16))


def test_text_encoders_lists_every_encoder_in_order(pipes):
    assert text_encoders(pipes["sd15"]) == [pipes["sd15"].text_encoder]
    assert text_encoders(pipes["sdxl"]) == [pipes["sdxl"].text_encoder, pipes["sdxl"].text_encoder_2]


def test_rows_operations_keep_embeds_and_pooled_together():
    embeds = torch.arange(2 * 3 * 4.0).reshape(2, 3, 4)
    pooled = torch.tensor([[1.0, 1.0], [2.0, 2.0]])
    cond = TextConditioning(embeds, pooled)
    assert cond[1].embeds.shape == (1, 3, 4) and cond[1].pooled.tolist() == [[2.0, 2.0]]
    assert cond[-1].pooled.tolist() == [[2.0, 2.0]]
    assert cond.repeat(2).pooled[:, 0].tolist() == [1, 2, 1, 2]
    assert cond.repeat_interleave(2).pooled[:, 0].tolist() == [1, 1, 2, 2]
    assert torch.equal(cond.repeat_interleave(2).embeds, embeds.repeat_interleave(2, dim=0))
    assert cond[0].expand(3).pooled[:, 0].tolist() == [1, 1, 1]
    joined = TextConditioning.cat([cond, cond[:0], cond[0]])
    assert len(joined) == 3 and joined.pooled[:, 0].tolist() == [1, 2, 1]
    with pytest.raises(ValueError, match="with and without a pooled"):
        TextConditioning.cat([cond, TextConditioning(embeds)])
