"""LoRA distillers: latent consistency distillation into a plain diffusers LoRA (LCM-LoRA) and its
reward-guided sibling (RG-LCD); few-step loading in ``hubkit.pipelines.lcm_lora``."""

from hubkit.methods import lazy_exports

from .config import DEFAULT_TARGET_MODULES, VARIANTS, LCMLoRAConfig
from .serialization import ADAPTER_NAME, METHOD_NAME, WEIGHT_NAME, read_sampling, save_lcm_lora

# Training code loads on first use: importing the package for inference loads none.
__getattr__ = lazy_exports(
    __name__,
    train=[
        "DistillError",
        "DistillResult",
        "distill_lcm_lora",
        "judge_reward",
        "remove_lora",
        "shapes_batches",
    ],
)

__all__ = [
    "ADAPTER_NAME",
    "DEFAULT_TARGET_MODULES",
    "METHOD_NAME",
    "VARIANTS",
    "WEIGHT_NAME",
    "DistillError",
    "DistillResult",
    "LCMLoRAConfig",
    "distill_lcm_lora",
    "judge_reward",
    "read_sampling",
    "remove_lora",
    "save_lcm_lora",
    "shapes_batches",
]
