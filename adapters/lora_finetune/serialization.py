"""The LoRA file in diffusers' format (``unet.<module>.lora_A/B.weight`` + the LoRA config as
``lora_adapter_metadata``), which stock ``load_lora_weights`` applies, and ``hubkit.json``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hubkit.files import write_lora_artifact

__all__ = ["WEIGHT_NAME", "save_lora_finetune"]

WEIGHT_NAME = "pytorch_lora_weights.safetensors"


def save_lora_finetune(folder: Path, unet: Any, adapter_name: str, info: dict[str, Any]) -> Path:
    from peft.utils import get_peft_model_state_dict

    state = get_peft_model_state_dict(unet, adapter_name=adapter_name)
    tensors = {f"unet.{k}": v.detach().cpu().contiguous() for k, v in state.items()}
    config = unet.peft_config[adapter_name].to_dict()
    config = {k: sorted(v) if isinstance(v, set) else v for k, v in config.items()}
    metadata = {
        "lora_adapter_metadata": json.dumps({f"unet.{k}": v for k, v in config.items()}, sort_keys=True)
    }
    return write_lora_artifact(folder, WEIGHT_NAME, tensors, metadata, info)
