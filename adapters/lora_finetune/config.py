"""``LoRAFineTuneConfig``: the shared data and optimisation settings plus the LoRA's own."""

from __future__ import annotations

from dataclasses import dataclass, field

from hubkit.config import FineTuneConfig

__all__ = ["LoRAFineTuneConfig"]


@dataclass
class LoRAFineTuneConfig(FineTuneConfig):
    """A LoRA fine-tune: rank and alpha, on every Linear and Conv2d of the UNet of ``layer_types`` (or only
    ``target_modules``). Defaults as SaRA's data and optimisation, for like-for-like comparisons."""

    rank: int = field(default=4, metadata={"help": "LoRA rank."})
    alpha: float | None = field(default=None, metadata={"help": "LoRA alpha; default: the rank."})
    layer_types: list[str] = field(
        default_factory=lambda: ["linear", "conv"],
        metadata={"help": "Layer types to adapt (repeatable).", "cli": "--layer-type"},
    )
    target_modules: list[str] = field(
        default_factory=list,
        metadata={
            "help": "Only these module paths (suffix match; repeatable; default all).",
            "cli": "--target",
        },
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.rank < 1:
            raise ValueError(f"rank must be >= 1, got {self.rank}")
        unknown = set(self.layer_types) - {"linear", "conv"}
        if unknown or not self.layer_types:
            raise ValueError(f"layer types must be 'linear' and/or 'conv', got {self.layer_types}")
