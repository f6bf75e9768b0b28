"""``LoRAFineTuneConfig``: the shared data and optimisation settings plus the LoRA's own."""

from __future__ import annotations

from dataclasses import dataclass, field

from hubkit.config import LayerFineTuneConfig

__all__ = ["LoRAFineTuneConfig"]


@dataclass
class LoRAFineTuneConfig(LayerFineTuneConfig):
    """A LoRA fine-tune: rank and alpha, on every Linear and Conv2d of the UNet of ``layer_types`` (or only
    ``target_modules``). Defaults as SaRA's data and optimisation, for like-for-like comparisons."""

    rank: int = field(default=4, metadata={"help": "LoRA rank."})
    alpha: float | None = field(default=None, metadata={"help": "LoRA alpha; default: the rank."})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.rank < 1:
            raise ValueError(f"rank must be >= 1, got {self.rank}")
