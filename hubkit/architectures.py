"""Tiny random-weight Stable Diffusion pipelines with the structure of the published SD 1.5, SD 2.1 (768-v)
and SDXL base 1.0 configs, built offline from configs (no download), seeded, a few MB each; and
:func:`architecture_of`, which names the architecture of any diffusers SD pipeline or UNet config.

What is kept from each published config, scaled down (fewer channels, layers and tokens):

- ``sd15`` (runwayml SD-1.5): ``StableDiffusionPipeline``; UNet with three ``CrossAttnDownBlock2D`` then a
  ``DownBlock2D`` (mirrored up), ``attention_head_dim`` one int (diffusers reads it as the head count),
  ``cross_attention_dim`` = the text encoder's width; ``CLIPTextModel`` (``quick_gelu``); ε-prediction;
  ``PNDMScheduler`` with SD-1.5's schedule; ``AutoencoderKL`` with four blocks (8× down), scaling 0.18215.
- ``sd21`` (stabilityai SD-2.1, 768-v): the same pipeline class and block layout, but ``attention_head_dim``
  a per-block list, ``use_linear_projection`` and ``upcast_attention``; a wider ``CLIPTextModel`` with
  ``gelu`` (OpenCLIP-H as diffusers holds it: its last layer dropped, so the pipeline reads the penultimate
  layer through ``final_layer_norm``); the tokenizer pads with ``"!"``; ``DDIMScheduler`` with
  v-prediction.
- ``sdxl`` (stabilityai SDXL base 1.0): ``StableDiffusionXLPipeline``; ``CLIPTextModel`` (``quick_gelu``) +
  ``CLIPTextModelWithProjection`` (``gelu``, pooled projection) and two tokenizers (the second pads with
  ``"!"``); UNet with a ``DownBlock2D`` first then ``CrossAttnDownBlock2D``s, ``transformer_layers_per_block``
  growing with depth, per-block head counts, linear projections, ``addition_embed_type="text_time"``,
  ``addition_time_embed_dim`` and ``projection_class_embeddings_input_dim`` = pooled width + 6 time ids ×
  ``addition_time_embed_dim``, ``cross_attention_dim`` = the two encoders' widths together;
  ``EulerDiscreteScheduler``; ``force_zeros_for_empty_prompt``; VAE scaling 0.13025.

Tokenizers are ``CLIPTokenizer``s with CLIP's layout (byte alphabet, the same with ``</w>``, merges, then
``<|startoftext|>`` and ``<|endoftext|>`` last) and a byte-level BPE trained here on
:func:`tokenizer_words` (the ``shapes`` world's words and common English: each is one token). Text
encoders keep the published ``bos/eos/pad_token_id`` (0 / 2 / 1: transformers then pools at the highest
token id, ``<|endoftext|>``). Latents are 8 (SD 1.5), 16 (SD 2.1) and 16 (SDXL) pixels wide: 64, 128
and 128 pixel images (the published 512 / 768 / 1024 scaled down).
"""

from __future__ import annotations

import heapq
import json
import os
from collections import Counter
from collections.abc import Mapping
from functools import cache
from itertools import pairwise
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "ARCHITECTURES",
    "FAMILIES",
    "architecture_of",
    "architecture_of_repo",
    "build_tiny_pipeline",
    "build_tokenizer",
    "save_tiny_pipeline",
    "scheduler_config",
    "text_encoder_configs",
    "tokenizer_words",
    "unet_config",
    "vae_config",
]

ARCHITECTURES = ("sd15", "sd21", "sdxl")
"""The tiny pipelines :func:`build_tiny_pipeline` makes."""
FAMILIES = {"sd15": "sd1", "sd21": "sd2", "sdxl": "sdxl"}
"""Each tiny pipeline's family, as :func:`architecture_of` names it."""

MAX_LENGTH = 77  # CLIP's context, as published: prompts are padded to it

_COMMON = """
a an the of on in at to from with without and or but not no is are was be been has have had this that these
those it its one two three some many more most all each other another any every few little big large small
tiny huge tall short long wide thin thick round flat sharp soft hard bright dark light pale deep old new
young good bad best high low left right top bottom middle center front back inside outside above below
over under near far behind beside between around up down here there very really quite just only also
photo photograph picture image painting drawing sketch illustration render art artwork style portrait
landscape scene view close shot detailed realistic abstract simple plain colorful colourful vivid
cartoon anime oil watercolor pencil digital studio lighting shadow sun sky cloud clouds rain snow water
sea ocean river lake beach mountain hill forest tree trees flower flowers grass garden field road street
city town house building room window door wall floor table chair bed car bus train boat plane bike
person people man woman boy girl child baby face hand eyes hair smile dog cat bird horse cow sheep fish
bear lion tiger elephant monkey mouse rabbit duck chicken food apple banana orange cake bread pizza cup
bottle glass book phone computer clock ball toy hat shirt dress shoes bag box star moon night day
morning evening summer winter spring autumn fire ice stone rock wood metal gold silver paper cloth
glowing shiny matte smooth rough pattern texture line lines dot dots shape shapes color colors colour
colours object objects thing things logo icon symbol sign text word letter number background foreground
white black gray grey brown beige
"""


@cache
def _world_words() -> tuple[str, ...]:
    from hubkit.world.shapes import ATTRIBUTES, BACKGROUNDS, CAPTION_TEMPLATES, COLOURS, SIZES, SYNONYMS

    words: list[str] = []
    for values in (*ATTRIBUTES.values(), COLOURS, BACKGROUNDS, SIZES):
        words += list(values)
    for meanings in SYNONYMS.values():
        for synonyms in meanings.values():
            words += [w for s in synonyms for w in s.split()]
    for template in CAPTION_TEMPLATES:
        words += [w for w in template.split() if "{" not in w]
    return tuple(words)


def tokenizer_words() -> tuple[str, ...]:
    """The words the tiny tokenizers hold as single tokens: the ``shapes`` world's (shapes, colours,
    backgrounds, sizes, synonyms, caption words) and a few hundred common English words."""
    return tuple(dict.fromkeys([*_world_words(), *_COMMON.split()]))


# -- tokenizers ---------------------------------------------------------------------------------------


@cache
def _vocabulary() -> tuple[tuple[tuple[str, int], ...], tuple[tuple[str, str], ...]]:
    """CLIP's vocabulary layout with a byte-level BPE learnt on :func:`tokenizer_words`: (vocab, merges).

    The BPE is learnt here, not by ``tokenizers``' trainer, whose ties between equally frequent pairs fall
    differently from run to run: each step merges the most frequent adjacent pair, ties broken by the
    pair's text, until every word is one token."""
    byte = _bytes_to_unicode()
    words = sorted({"".join(byte[b] for b in w.lower().encode()) for w in tokenizer_words()})
    seqs = [[*w[:-1], w[-1] + "</w>"] for w in words]
    counts: Counter[tuple[str, str]] = Counter()
    where: dict[tuple[str, str], set[int]] = {}  # pair -> the words that (may) hold it
    for i, seq in enumerate(seqs):
        for pair in pairwise(seq):
            counts[pair] += 1
            where.setdefault(pair, set()).add(i)
    heap = [(-n, pair) for pair, n in counts.items()]  # (−count, pair): stale entries are skipped
    heapq.heapify(heap)
    merges: list[tuple[str, str]] = []
    while heap:
        n, best = heapq.heappop(heap)
        if counts.get(best, 0) != -n or n == 0:
            continue
        merges.append(best)
        changed = set()
        for i in where.pop(best):
            seq = seqs[i]
            counts.subtract(pairwise(seq))
            changed.update(pairwise(seq))
            seqs[i] = seq = _merged(seq, best)
            counts.update(pairwise(seq))
            for pair in pairwise(seq):
                where.setdefault(pair, set()).add(i)
            changed.update(pairwise(seq))
        counts.pop(best, None)
        for pair in changed:
            heapq.heappush(heap, (-counts[pair], pair))
    # CLIP's order: the 256 byte characters, the same with </w>, one token per merge, the two specials.
    alphabet = list(byte.values())
    tokens = alphabet + [c + "</w>" for c in alphabet] + ["".join(m) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    vocab = tuple((t, i) for i, t in enumerate(dict.fromkeys(tokens)))
    return vocab, tuple(merges)


def _merged(seq: list[str], pair: tuple[str, str]) -> list[str]:
    out, i = [], 0
    while i < len(seq):
        if i + 1 < len(seq) and (seq[i], seq[i + 1]) == pair:
            out.append(seq[i] + seq[i + 1])
            i += 2
        else:
            out.append(seq[i])
            i += 1
    return out


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2 / CLIP's reversible map of bytes to printable characters (the base alphabet's order)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    bs += list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs), strict=True))


def build_tokenizer(pad_token: str = "<|endoftext|>", max_length: int = MAX_LENGTH) -> Any:
    """A ``CLIPTokenizer`` on this module's vocabulary: every word of :func:`tokenizer_words` is one token;
    other words split into pieces. ``pad_token`` ``"!"`` is OpenCLIP's (SD 2.x, SDXL's second tokenizer)."""
    from transformers import CLIPTokenizer

    vocab, merges = _vocabulary()
    return CLIPTokenizer(
        vocab=dict(vocab), merges=list(merges), pad_token=pad_token, model_max_length=max_length
    )


# -- configs ------------------------------------------------------------------------------------------


def _check(arch: str) -> str:
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; one of: {', '.join(ARCHITECTURES)}")
    return arch


def text_encoder_configs(arch: str, vocab_size: int) -> list[dict[str, Any]]:
    """``CLIPTextConfig`` keyword arguments of each text encoder, in pipeline order."""
    _check(arch)
    common = {
        "vocab_size": vocab_size,
        "max_position_embeddings": MAX_LENGTH,
        "layer_norm_eps": 1e-5,
        "bos_token_id": 0,  # the published configs' legacy ids (see the module's docstring)
        "eos_token_id": 2,
        "pad_token_id": 1,
    }
    # CLIP ViT-L/14's text tower (SD 1.x, SDXL's first encoder): 768 wide, 12 layers, quick_gelu.
    vit_l = {**common, "hidden_size": 32, "intermediate_size": 128, "num_hidden_layers": 2}
    vit_l |= {"num_attention_heads": 4, "hidden_act": "quick_gelu", "projection_dim": 32}
    if arch == "sd15":
        return [vit_l]
    if arch == "sd21":
        # OpenCLIP ViT-H/14: 1024 wide, 24 layers (23 kept: the last is dropped), gelu.
        return [
            {**common, "hidden_size": 40, "intermediate_size": 160, "num_hidden_layers": 2}
            | {"num_attention_heads": 4, "hidden_act": "gelu", "projection_dim": 40}
        ]
    # OpenCLIP ViT-bigG/14: 1280 wide, 32 layers, gelu, a 1280-d text projection (the pooled embedding).
    big_g = {**common, "hidden_size": 48, "intermediate_size": 192, "num_hidden_layers": 3}
    big_g |= {"num_attention_heads": 4, "hidden_act": "gelu", "projection_dim": 48}
    return [vit_l, big_g]


def unet_config(arch: str) -> dict[str, Any]:
    """``UNet2DConditionModel`` config: the published one's structure, channels and depth scaled down."""
    _check(arch)
    shared = {
        "in_channels": 4,
        "out_channels": 4,
        "act_fn": "silu",
        "center_input_sample": False,
        "downsample_padding": 1,
        "flip_sin_to_cos": True,
        "freq_shift": 0,
        "mid_block_scale_factor": 1,
        "norm_eps": 1e-5,
        "layers_per_block": 2,
        "norm_num_groups": 8,
    }
    sd_blocks = {
        "down_block_types": ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        "up_block_types": ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    }
    if arch == "sd15":  # block_out_channels (320, 640, 1280, 1280), 8 heads, 768-d text
        return {
            **shared,
            **sd_blocks,
            "sample_size": 8,
            "block_out_channels": (16, 32, 32, 32),
            "attention_head_dim": 4,
            "cross_attention_dim": 32,
        }
    text = text_encoder_configs(arch, 1)
    if arch == "sd21":  # heads (5, 10, 20, 20): 64 per head; 1024-d text; linear proj; upcast attention
        return {
            **shared,
            **sd_blocks,
            "sample_size": 16,
            "block_out_channels": (16, 32, 32, 32),
            "attention_head_dim": (1, 2, 4, 4),
            "cross_attention_dim": text[0]["hidden_size"],
            "use_linear_projection": True,
            "upcast_attention": True,
        }
    time_dim = 8  # addition_time_embed_dim: 256 in SDXL
    return {  # SDXL: (320, 640, 1280), heads (5, 10, 20), transformer layers (1, 2, 10)
        **shared,
        "sample_size": 16,
        "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        "block_out_channels": (16, 32, 32),
        "attention_head_dim": (1, 2, 4),
        "transformer_layers_per_block": (1, 1, 2),
        "cross_attention_dim": text[0]["hidden_size"] + text[1]["hidden_size"],
        "use_linear_projection": True,
        "addition_embed_type": "text_time",
        "addition_embed_type_num_heads": 64,
        "addition_time_embed_dim": time_dim,
        # the pooled text embedding + 6 time ids (original size, crop corner, target size)
        "projection_class_embeddings_input_dim": text[1]["projection_dim"] + 6 * time_dim,
    }


def vae_config(arch: str) -> dict[str, Any]:
    """``AutoencoderKL`` config: four encoder/decoder blocks (8× down) as published, few channels."""
    _check(arch)
    config = {
        "in_channels": 3,
        "out_channels": 3,
        "down_block_types": ("DownEncoderBlock2D",) * 4,
        "up_block_types": ("UpDecoderBlock2D",) * 4,
        "block_out_channels": (8, 16, 16, 16),
        "layers_per_block": 1,
        "latent_channels": 4,
        "norm_num_groups": 4,
        "act_fn": "silu",
        "sample_size": unet_config(arch)["sample_size"] * 8,
        "scaling_factor": 0.18215,
    }
    if arch == "sdxl":
        config |= {"scaling_factor": 0.13025, "force_upcast": True}
    return config


_SCHEDULE = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "trained_betas": None,
    "steps_offset": 1,
}


def scheduler_config(arch: str) -> tuple[str, dict[str, Any]]:
    """The published scheduler: (diffusers class name, config)."""
    _check(arch)
    if arch == "sd15":
        return "PNDMScheduler", _SCHEDULE | {
            "set_alpha_to_one": False,
            "skip_prk_steps": True,
            "prediction_type": "epsilon",
        }
    if arch == "sd21":
        return "DDIMScheduler", _SCHEDULE | {
            "clip_sample": False,
            "set_alpha_to_one": False,
            "prediction_type": "v_prediction",
        }
    return "EulerDiscreteScheduler", _SCHEDULE | {
        "interpolation_type": "linear",
        "prediction_type": "epsilon",
        "timestep_spacing": "leading",
        "use_karras_sigmas": False,
    }


# -- pipelines ----------------------------------------------------------------------------------------


def build_tiny_pipeline(arch: str, seed: int = 0) -> Any:
    """A tiny random-weight pipeline of ``arch`` (one of :data:`ARCHITECTURES`): the same weights for the
    same seed, the caller's global random state untouched; fp32, eval mode, progress bars off."""
    import diffusers
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    _check(arch)
    # CLIP's tokenizer pads with <|endoftext|>, OpenCLIP's (SD 2.x; SDXL's second) with "!"
    pads = {"sd15": ["<|endoftext|>"], "sd21": ["!"], "sdxl": ["<|endoftext|>", "!"]}[arch]
    tokenizers = [build_tokenizer(pad) for pad in pads]
    configs = text_encoder_configs(arch, len(tokenizers[0]))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(**unet_config(arch))
        vae = AutoencoderKL(**vae_config(arch))
        encoders = [CLIPTextModel(CLIPTextConfig(**configs[0]))]
        if arch == "sdxl":
            encoders.append(CLIPTextModelWithProjection(CLIPTextConfig(**configs[1])))
    name, config = scheduler_config(arch)
    scheduler = getattr(diffusers, name).from_config(config)
    for model in (unet, vae, *encoders):
        model.eval().requires_grad_(False)
    if arch == "sdxl":
        pipe = diffusers.StableDiffusionXLPipeline(
            vae=vae,
            text_encoder=encoders[0],
            text_encoder_2=encoders[1],
            tokenizer=tokenizers[0],
            tokenizer_2=tokenizers[1],
            unet=unet,
            scheduler=scheduler,
            force_zeros_for_empty_prompt=True,
            add_watermarker=False,
        )
    else:
        pipe = diffusers.StableDiffusionPipeline(
            vae=vae,
            text_encoder=encoders[0],
            tokenizer=tokenizers[0],
            unet=unet,
            scheduler=scheduler,
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def save_tiny_pipeline(arch: str, folder: str | os.PathLike[str], seed: int = 0) -> Path:
    """:func:`build_tiny_pipeline` saved (safetensors) into ``folder``: a diffusers pipeline folder that the
    stock pipeline class's ``from_pretrained`` loads, tokenizers included. Returns the folder."""
    folder = Path(folder)
    build_tiny_pipeline(arch, seed).save_pretrained(str(folder), safe_serialization=True)
    return folder


# -- naming an architecture ---------------------------------------------------------------------------


def _configs(obj: Any) -> tuple[Mapping[str, Any], str | None]:
    """(UNet config, prediction type or None) of a pipeline, a UNet, a config or a folder."""
    if isinstance(obj, (str, os.PathLike)):
        folder = Path(obj)
        unet_file = folder / "unet" / "config.json"
        if not unet_file.is_file():
            unet_file = folder / "config.json"
        if not unet_file.is_file():
            raise ValueError(f"{folder} has neither unet/config.json nor config.json: not a diffusers UNet")
        sched_file = folder / "scheduler" / "scheduler_config.json"
        prediction = None
        if sched_file.is_file():
            prediction = json.loads(sched_file.read_text()).get("prediction_type")
        return json.loads(unet_file.read_text()), prediction
    if isinstance(obj, Mapping):
        return obj, None
    unet = getattr(obj, "unet", None)
    if unet is not None:  # a pipeline
        scheduler = getattr(obj, "scheduler", None)
        prediction = getattr(getattr(scheduler, "config", None), "prediction_type", None)
        return unet.config, prediction
    config = getattr(obj, "config", None)
    if isinstance(config, Mapping):
        return config, None
    raise ValueError(f"cannot find a UNet config in {type(obj).__name__}")


def architecture_of(obj: Any, prediction_type: str | None = None) -> str:
    """``"sd1"``, ``"sd2"`` or ``"sdxl"``: the Stable Diffusion family of a pipeline, a UNet, a UNet config
    (a mapping) or a pipeline / UNet folder, from structure alone (not from widths, which differ between
    checkpoints of one family): ``addition_embed_type="text_time"`` is SDXL; v-prediction (the pipeline's
    scheduler, or ``prediction_type``), or linear projections with per-block head counts, is SD 2.x;
    any other cross-attention UNet is SD 1.x. ``ValueError`` for a model that is no such UNet."""
    config, found = _configs(obj)
    prediction_type = prediction_type or found
    if config.get("cross_attention_dim") is None or "down_block_types" not in config:
        raise ValueError("not a Stable Diffusion UNet config: no cross_attention_dim / down_block_types")
    if config.get("addition_embed_type") == "text_time":
        return "sdxl"
    heads = config.get("attention_head_dim")
    if prediction_type == "v_prediction" or (
        config.get("use_linear_projection") and isinstance(heads, (list, tuple))
    ):
        return "sd2"
    return "sd1"


def architecture_of_repo(api: Any, repo_id: str, revision: str | None = None) -> str:
    """:func:`architecture_of` a pipeline (or UNet) repo on ``api``'s Hub from its configs alone (the UNet's
    ``config.json`` and the scheduler's, no weights): how artifacts published before hubkit recorded their
    base's family get one. ``ValueError`` naming the repo when it has no SD UNet config or cannot be read."""
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError

    def read(name: str) -> dict[str, Any] | None:
        try:
            path = api.hf_hub_download(repo_id, name, revision=revision)
        except EntryNotFoundError:
            return None
        return json.loads(Path(path).read_text())

    try:
        unet = read("unet/config.json") or read("config.json")
        scheduler = read("scheduler/scheduler_config.json") or {}
    except (HfHubHTTPError, OSError, ValueError) as err:
        raise ValueError(f"{repo_id}: cannot read its configs ({err})") from err
    if unet is None:
        raise ValueError(f"{repo_id} has neither unet/config.json nor config.json: not a diffusers UNet")
    try:
        return architecture_of(unet, scheduler.get("prediction_type"))
    except ValueError as err:
        raise ValueError(f"{repo_id}: {err}") from err
