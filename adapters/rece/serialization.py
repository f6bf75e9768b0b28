"""A RECE edit on disk: the exact LoRA export of each projection's delta in diffusers' LoRA format
(``unet.<path>.lora_A/B.weight``, per-layer ranks in ``lora_adapter_metadata``, scale 1), which stock
``load_lora_weights`` applies, plus ``hubkit.json``."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from hubkit.files import write_lora_artifact

from .config import RECEConfig
from .edit import delta_to_lora

__all__ = ["METHOD_NAME", "WEIGHT_NAME", "lora_tensors", "save_rece"]

METHOD_NAME = "rece"
WEIGHT_NAME = "pytorch_lora_weights.safetensors"


def lora_tensors(deltas: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, int]]:
    """Each delta as ``unet.``-prefixed LoRA factors (``lora_B @ lora_A == delta``), and its rank."""
    tensors, ranks = {}, {}
    for path, delta in sorted(deltas.items()):
        down, up = delta_to_lora(delta)
        tensors[f"unet.{path}.lora_A.weight"] = down.float().cpu().contiguous()
        tensors[f"unet.{path}.lora_B.weight"] = up.float().cpu().contiguous()
        ranks[path] = int(down.shape[0])
    return tensors, ranks


def _lora_config(ranks: dict[str, int]) -> dict[str, Any]:
    """The ``LoraConfig`` diffusers rebuilds the adapter from: per-layer rank, alpha = rank (scale 1)."""
    from peft import LoraConfig

    top = max(ranks.values())
    config = LoraConfig(
        r=top,
        lora_alpha=top,
        target_modules=sorted(ranks),
        rank_pattern=dict(ranks),
        alpha_pattern={path: float(rank) for path, rank in ranks.items()},
        init_lora_weights=False,
    ).to_dict()
    return {k: sorted(v) if isinstance(v, set) else v for k, v in config.items()}


def save_rece(
    directory: str | os.PathLike[str],
    deltas: dict[str, torch.Tensor],
    config: RECEConfig,
    info: dict[str, Any],
) -> Path:
    """Write the LoRA file and ``hubkit.json`` into ``directory``, each file atomically."""
    tensors, ranks = lora_tensors(deltas)
    lora = _lora_config(ranks)
    metadata = {
        "lora_adapter_metadata": json.dumps({f"unet.{k}": v for k, v in lora.items()}, sort_keys=True),
        "hubkit.method": METHOD_NAME,
        "hubkit.concepts": json.dumps(config.concepts),
    }
    info = {
        "method": METHOD_NAME,
        "weight_name": WEIGHT_NAME,
        "concepts": config.concepts,
        "surrogate": config.surrogate,
        "ranks": ranks,
        "config": config.to_dict(),
        **info,
    }
    return write_lora_artifact(directory, WEIGHT_NAME, tensors, metadata, info)
