"""SPM files: diffusers LoRA format out (stock ``load_lora_weights`` applies them), diffusers or official in.

``pytorch_lora_weights.safetensors`` holds ``unet.<module>.lora_A.weight`` / ``lora_B.weight`` per target
layer, and in its metadata: ``lora_adapter_metadata`` (the LoRA config diffusers rebuilds the adapter from:
rank, alpha, exact target modules), ``prompts`` / ``rank`` / ``alpha`` as official SPM files have them, and
``hubkit.spm_config`` (the whole :class:`SPMConfig`). ``hubkit.json`` repeats the method data for the Hub.

Official SPM checkpoints (kohya keys ``lora_unet_<path>.lora_down/lora_up/alpha``, concepts in ``prompts``)
are read too, so they get facilitated transport and the leaderboard like hubkit's own.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from hubkit.files import write_lora_artifact

from .config import SPMConfig
from .model import SPMError

__all__ = ["WEIGHT_NAME", "SPMFile", "read_spm", "save_spm", "spm_state_dict"]

WEIGHT_NAME = "pytorch_lora_weights.safetensors"
HUBKIT_JSON = "hubkit.json"
Weights = dict[str, tuple[torch.Tensor, torch.Tensor, float]]  # module path -> (down, up, alpha)


class SPMFile:
    """A read SPM: its per-layer weights (by module path) and its config."""

    def __init__(self, weights: Weights, config: SPMConfig, source: str):
        self.weights, self.config, self.source = weights, config, source

    @property
    def concepts(self) -> list[str]:
        return self.config.concepts


def spm_state_dict(weights: Weights) -> dict[str, torch.Tensor]:
    """diffusers LoRA keys for the UNet (``unet.<path>.lora_A.weight`` = down, ``lora_B`` = up)."""
    out = {}
    for path, (down, up, _alpha) in weights.items():
        out[f"unet.{path}.lora_A.weight"] = down.contiguous()
        out[f"unet.{path}.lora_B.weight"] = up.contiguous()
    return out


def _lora_metadata(weights: Weights, config: SPMConfig) -> dict[str, Any]:
    ranks = {down.shape[0] for down, _, _ in weights.values()}
    rank = max(ranks)
    return {
        "unet.r": rank,
        "unet.lora_alpha": config.alpha * rank / config.rank,
        "unet.target_modules": sorted(weights),
        "unet.init_lora_weights": True,
        "unet.use_dora": False,
        "unet.lora_dropout": 0.0,
        "unet.bias": "none",
        # layers clipped to a smaller rank than the config's (rank ≤ min(in, out)) keep scale alpha/rank
        "unet.rank_pattern": {p: w[0].shape[0] for p, w in weights.items() if w[0].shape[0] != rank},
        "unet.alpha_pattern": {},
    }


def save_spm(
    directory: str | os.PathLike[str],
    weights: Weights,
    config: SPMConfig,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write the weights file and ``hubkit.json`` into ``directory`` atomically (each file appears whole)."""
    metadata = {
        "lora_adapter_metadata": json.dumps(_lora_metadata(weights, config), sort_keys=True),
        "prompts": ",".join(config.concepts),
        "rank": str(config.rank),
        "alpha": str(config.alpha),
        "hubkit.method": "spm",
        "hubkit.spm_config": config.to_json(),
    }
    info = {
        "method": "spm",
        "weight_name": WEIGHT_NAME,
        "concepts": config.concepts,
        "surrogate": config.surrogate,
        "config": config.to_dict(),
        **(extra or {}),
    }
    return write_lora_artifact(directory, WEIGHT_NAME, spm_state_dict(weights), metadata, info)


def _weights_file(source: Path) -> Path:
    if source.is_file():
        return source
    if (source / WEIGHT_NAME).is_file():
        return source / WEIGHT_NAME
    found = sorted(source.glob("*.safetensors"))
    if len(found) == 1:
        return found[0]
    raise SPMError(f"{source}: no {WEIGHT_NAME} (and not exactly one .safetensors file to read instead)")


def read_spm(source: str | os.PathLike[str], concepts: list[str] | None = None) -> SPMFile:
    """Read an SPM file or folder (hubkit / diffusers format, or an official kohya-format SPM)."""
    from safetensors import SafetensorError, safe_open

    path = _weights_file(Path(source))
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - a safetensors handle
    except (SafetensorError, OSError, ValueError) as err:
        raise SPMError(f"{path} is not a readable safetensors file (corrupt or truncated?): {err}") from err
    config = _config_of(metadata, concepts, path)
    if any(k.startswith("lora_unet_") for k in tensors):
        weights = _from_kohya(tensors, metadata)
    else:
        weights = _from_diffusers(tensors, metadata, config)
    if not weights:
        raise SPMError(f"{path} holds no UNet LoRA weights (expected unet.*.lora_A/B or lora_unet_* keys)")
    return SPMFile(weights, config, str(path))


def _config_of(metadata: dict[str, str], concepts: list[str] | None, path: Path) -> SPMConfig:
    if "hubkit.spm_config" in metadata:
        try:
            data = json.loads(metadata["hubkit.spm_config"])
            if concepts:
                data["concepts"] = concepts
            return SPMConfig.from_dict(data)
        except (json.JSONDecodeError, TypeError, ValueError) as err:
            raise SPMError(f"{path}: bad hubkit.spm_config metadata: {err}") from err
    found = concepts or [c.strip() for c in metadata.get("prompts", "").split(",") if c.strip()]
    if not found:
        raise SPMError(
            f"{path} does not say which concepts it erases (no 'prompts' metadata): pass concepts=[...]"
        )
    try:
        return SPMConfig(
            concepts=found, rank=int(float(metadata.get("rank", 1))), alpha=float(metadata.get("alpha", 1.0))
        )
    except ValueError as err:
        raise SPMError(f"{path}: bad SPM metadata: {err}") from err


def _from_diffusers(tensors: dict[str, torch.Tensor], metadata: dict[str, str], config: SPMConfig) -> Weights:
    lora = {}
    if "lora_adapter_metadata" in metadata:
        lora = json.loads(metadata["lora_adapter_metadata"])
    weights: Weights = {}
    for key, down in tensors.items():
        if not key.endswith(".lora_A.weight"):
            continue
        path = key.removesuffix(".lora_A.weight").removeprefix("unet.")
        up = tensors.get(key.replace(".lora_A.", ".lora_B."))
        if up is None:
            raise SPMError(f"{key} has no matching lora_B weight")
        rank = down.shape[0]
        base_rank = lora.get("unet.r", config.rank)
        alpha = float(lora.get("unet.lora_alpha", config.alpha)) * rank / base_rank
        weights[path] = (down, up, alpha)
    return weights


def _from_kohya(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> Weights:
    """Official keys use the module path with '.' → '_'; the path is recovered when it is applied."""
    weights: Weights = {}
    for key, down in tensors.items():
        if not key.endswith(".lora_down.weight"):
            continue
        stem = key.removesuffix(".lora_down.weight")
        up = tensors.get(f"{stem}.lora_up.weight")
        if up is None:
            raise SPMError(f"{key} has no matching lora_up weight")
        alpha_t = tensors.get(f"{stem}.alpha")
        alpha = float(alpha_t) if alpha_t is not None else float(metadata.get("alpha", down.shape[0]))
        weights["kohya:" + stem.removeprefix("lora_unet_")] = (down, up, alpha)
    return weights


def resolve_kohya_paths(weights: Weights, paths: list[str]) -> Weights:
    """Map ``kohya:<path with underscores>`` keys to this UNet's module paths."""
    if not any(k.startswith("kohya:") for k in weights):
        return weights
    by_flat = {p.replace(".", "_"): p for p in paths}
    out: Weights = {}
    for key, value in weights.items():
        flat = key.removeprefix("kohya:")
        out[by_flat.get(flat, flat)] = value
    return out
