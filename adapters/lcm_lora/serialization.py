"""LCM-LoRA files: a plain diffusers LoRA that the stock ``load_lora_weights`` applies, plus the sampling
recipe a LoRA cannot carry by itself.

``pytorch_lora_weights.safetensors`` holds ``unet.<module>.lora_A.weight`` / ``lora_B.weight`` (PEFT names
under the ``unet.`` prefix only: the UNet got its LoRA from ``unet.add_adapter``, never ``get_peft_model``, so
no ``base_model.model.`` prefix sneaks in — the known LCM-LoRA save/load trap) and, in its metadata,
``lora_adapter_metadata`` (the exact ``LoraConfig`` diffusers rebuilds the adapter from), ``hubkit.method``
and ``hubkit.scheduler``. ``hubkit.json`` has the scheduler settings and the distillation config.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from hubkit.files import write_lora_artifact

from .config import LCMLoRAConfig

__all__ = [
    "ADAPTER_NAME",
    "HUBKIT_JSON",
    "METHOD_NAME",
    "WEIGHT_NAME",
    "call_settings",
    "read_sampling",
    "save_lcm_lora",
]

ADAPTER_NAME = "lcm"  # the PEFT adapter name a distilled LoRA gets on a UNet, in training and at loading
WEIGHT_NAME = "pytorch_lora_weights.safetensors"
HUBKIT_JSON = "hubkit.json"
METHOD_NAME = "lcm-lora"


def _jsonable(value: Any) -> Any:
    if isinstance(value, set):
        return sorted(value)
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def lora_state_dict(unet: Any, adapter_name: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """``unet.``-prefixed LoRA tensors of one adapter and its ``LoraConfig`` as diffusers' metadata."""
    from peft.utils import get_peft_model_state_dict

    state = get_peft_model_state_dict(unet, adapter_name=adapter_name)
    tensors = {f"unet.{k}": v.detach().cpu().contiguous() for k, v in state.items()}
    bad = [k for k in tensors if "base_model.model" in k or "lora" not in k]
    if bad:  # would not load with load_lora_weights
        raise ValueError(f"unexpected LoRA keys (e.g. {bad[:2]}): attach the LoRA with unet.add_adapter")
    config = _jsonable(unet.peft_config[adapter_name].to_dict())
    metadata = {f"unet.{k}": v for k, v in config.items()}
    return tensors, metadata


def save_lcm_lora(
    directory: str | os.PathLike[str],
    unet: Any,
    config: LCMLoRAConfig,
    adapter_name: str,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write the LoRA file and ``hubkit.json`` into ``directory``, each file atomically."""
    tensors, lora_metadata = lora_state_dict(unet, adapter_name)
    sampling = config.scheduler_settings()
    metadata = {
        "lora_adapter_metadata": json.dumps(lora_metadata, sort_keys=True),
        "hubkit.method": METHOD_NAME,
        "hubkit.scheduler": json.dumps(sampling, sort_keys=True),
        "hubkit.distill_config": config.to_json(),
    }
    info = {
        "method": METHOD_NAME,
        "variant": config.variant,
        "weight_name": WEIGHT_NAME,
        "scheduler": sampling,
        "config": config.to_dict(),
        **(extra or {}),
    }
    return write_lora_artifact(directory, WEIGHT_NAME, tensors, metadata, info)


def read_sampling(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """The scheduler settings of a distilled LoRA folder (``hubkit.json``, else the weights' metadata);
    LCM-LoRA's published recipe (LCMScheduler, 4 steps, guidance 1) when neither says."""
    directory = Path(directory)
    file = directory / HUBKIT_JSON
    if file.is_file():
        try:
            sampling = json.loads(file.read_text()).get("scheduler")
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f"{file} is not valid JSON: {err}") from err
        if isinstance(sampling, dict):
            return sampling
    weights = directory / WEIGHT_NAME
    if weights.is_file():
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(weights), framework="pt") as f:
                raw = (f.metadata() or {}).get("hubkit.scheduler")
        except (SafetensorError, OSError) as err:
            raise ValueError(f"{weights} is not a readable safetensors file (corrupt or truncated?)") from err
        if raw:
            return json.loads(raw)
    return LCMLoRAConfig().scheduler_settings()


def call_settings(sampling: dict[str, Any]) -> dict[str, Any]:
    """The pipeline-call settings of a sampling recipe: ``pipe(prompt, **call_settings(recipe))``."""
    return {
        "num_inference_steps": int(sampling.get("num_inference_steps", 4)),
        "guidance_scale": float(sampling.get("guidance_scale", 1.0)),
    }
