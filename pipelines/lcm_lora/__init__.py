"""Few-step sampling with a distilled LoRA: the LoRA and its scheduler applied in one call."""

from .loading import load_lcm_lora, unload_lcm_lora

__all__ = ["load_lcm_lora", "unload_lcm_lora"]
