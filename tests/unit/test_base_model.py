"""tiny-sd-shapes: the shipped pipeline assembles offline, samples deterministically with stock defaults,
round-trips through save_pretrained/from_pretrained, and the training recipe runs (tiny configs)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hubkit.world import base_model

pytestmark = pytest.mark.filterwarnings("ignore")

SHIPPED = base_model.WEIGHTS_DIR

TINY_UNET = {
    "sample_size": 8,
    "in_channels": 4,
    "out_channels": 4,
    "down_block_types": ("CrossAttnDownBlock2D", "DownBlock2D"),
    "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D"),
    "block_out_channels": (16, 16),
    "layers_per_block": 1,
    "cross_attention_dim": 384,
    "attention_head_dim": 8,
    "norm_num_groups": 8,
}
TINY_VAE = dict(base_model.vae_config(), block_out_channels=(8, 8, 8), norm_num_groups=4)


@pytest.fixture(scope="module")
def pipe():
    return base_model.assemble_pipeline()


def _sample(pipe, prompts, seed=0, steps=None):
    kwargs = {} if steps is None else {"num_inference_steps": steps}
    return pipe(prompts, generator=torch.Generator().manual_seed(seed), output_type="np", **kwargs).images


def test_tokenizer_and_text_encoder_match_the_pipeline():
    tok = base_model.load_tokenizer()
    assert tok.model_max_length == base_model.MAX_LENGTH
    te = base_model.load_text_encoder()
    assert te.config.use_attention_mask and not te.training
    assert not any(p.requires_grad for p in te.parameters())


def test_shipped_weights_small_and_fp16():
    from safetensors import safe_open

    files = [SHIPPED / n / "diffusion_pytorch_model.safetensors" for n in ("unet", "vae")]
    assert sum(f.stat().st_size for f in files) <= 25_000_000
    for f in files:
        with safe_open(f, "pt") as st:
            assert all(st.get_slice(k).get_dtype() == "F16" for k in st.keys())  # noqa: SIM118


def test_encode_captions_equals_pipeline_encode_prompt(pipe):
    from hubkit.world.train import training_captions

    caps = ["a red circle on a white background", "blue box", ""]
    ours = base_model.encode_captions(caps, pipe.tokenizer, pipe.text_encoder)
    theirs, neg = pipe.encode_prompt(caps[:2], "cpu", 1, True)
    torch.testing.assert_close(ours[:2], theirs)
    torch.testing.assert_close(ours[2:].expand_as(neg), neg)
    assert training_captions()[0] == ""


def test_default_generation_shape_dtype_and_determinism(pipe):
    assert pipe.unet.config.sample_size * pipe.vae_scale_factor == 32
    prompts = ["a red circle on a white background", "blue square"]
    a = _sample(pipe, prompts, steps=4)
    b = _sample(pipe, prompts, steps=4)
    assert a.shape == (2, 32, 32, 3) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a[0], a[1])


def test_save_pretrained_round_trip_identical(pipe, tmp_path):
    from diffusers import StableDiffusionPipeline

    pipe.save_pretrained(tmp_path)
    loaded = StableDiffusionPipeline.from_pretrained(tmp_path)
    loaded.set_progress_bar_config(disable=True)
    assert loaded.unet.dtype == torch.float32 and loaded.text_encoder.config.use_attention_mask
    assert loaded.tokenizer.model_max_length == base_model.MAX_LENGTH
    assert type(loaded.scheduler) is type(pipe.scheduler)
    prompts = ["a green triangle on a black background"]
    np.testing.assert_array_equal(_sample(pipe, prompts, steps=3), _sample(loaded, prompts, steps=3))


def test_tiny_training_smoke(tmp_path):
    from diffusers import AutoencoderKL, UNet2DConditionModel

    from hubkit.world import train

    vae = train.train_vae(tmp_path / "vae", steps=2, batch_size=4, config=TINY_VAE, log_every=1)
    assert vae.config.scaling_factor > 0
    train.train_unet(tmp_path / "unet", vae, steps=2, batch_size=4, config=TINY_UNET, log_every=1)
    train.base_model.scheduler().save_pretrained(tmp_path / "scheduler")
    assert isinstance(AutoencoderKL.from_pretrained(tmp_path / "vae"), AutoencoderKL)
    assert isinstance(UNet2DConditionModel.from_pretrained(tmp_path / "unet"), UNet2DConditionModel)
    ship = train.save_shipped(tmp_path, tmp_path / "ship")
    p = base_model.assemble_pipeline(ship)
    out = _sample(p, ["red circle"], steps=2)
    assert out.shape == (1, 32, 32, 3) and np.isfinite(out).all()


def test_train_all_tiny(tmp_path):
    from hubkit.world import train

    timings = train.train_all(
        tmp_path / "run",
        vae_steps=1,
        unet_steps=2,
        vae_kwargs={"config": TINY_VAE, "batch_size": 2},
        unet_kwargs={"config": TINY_UNET, "batch_size": 2},
        ship_to=tmp_path / "ship",
    )
    assert set(timings) == {"vae_s", "unet_s", "total_s"}
    for name in ("vae", "unet", "scheduler"):
        assert (tmp_path / "ship" / name).is_dir()
    assert sum(run for _, run, _ in train.SHIPPED_UNET_PHASES) == 1550
