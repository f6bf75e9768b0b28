"""``JSONConfig``: the mixin of every method config (a dataclass stored with its artifact as JSON).

Kept apart from :mod:`hubkit.training` so that loading an artifact (its config included) never imports
training code."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any, TypeVar

__all__ = ["FineTuneConfig", "JSONConfig", "LayerFineTuneConfig", "erasure_concepts"]

C = TypeVar("C", bound="JSONConfig")
PRIOR_TARGETS = ("data", "base")


class JSONConfig:
    """Mixin for a method's config dataclass: stored with the artifact as JSON, read back strictly."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any]) -> C:
        known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown {cls.__name__} field(s): {', '.join(unknown)}")
        return cls(**data)


def erasure_concepts(concepts: list[str], preserve: list[str], method: str) -> tuple[list[str], list[str]]:
    """An erasure config's concepts and preserved concepts, stripped; ValueError for none to erase, an empty
    one, or a preserved concept that is also erased."""
    concepts, preserve = [c.strip() for c in concepts], [c.strip() for c in preserve]
    if not concepts or any(not c for c in concepts):
        raise ValueError(f"{method} needs at least one non-empty concept to erase (got {concepts!r})")
    if any(not c for c in preserve) or set(preserve) & set(concepts):
        raise ValueError(f"preserve must name non-empty concepts other than the erased ones ({preserve!r})")
    return concepts, preserve


@dataclass
class FineTuneConfig(JSONConfig):
    """The data and optimisation settings every denoising fine-tune shares; a method's config adds its own
    fields (its adapter) after these. Defaults suit the reference world (a 2-core CPU)."""

    dataset: str = field(
        default="",
        metadata={
            "help": "Images + captions: a Hub dataset repo or a local folder (imagefolder + metadata)."
        },
    )
    dataset_config: str | None = field(default=None, metadata={"help": "Configuration of the dataset."})
    split: str = field(default="train", metadata={"help": "Split of the dataset."})
    image_column: str = field(default="image", metadata={"help": "Column holding the images."})
    caption_column: str = field(default="caption", metadata={"help": "Column holding the captions."})
    prior_dataset: str = field(
        default="",
        metadata={"help": "Images of what the model already draws, mixed into every batch ('' = none)."},
    )
    prior_config: str | None = field(default=None, metadata={"help": "Configuration of the prior dataset."})
    prior_share: float = field(
        default=0.25, metadata={"help": "Share of each batch drawn from the prior dataset (with one)."}
    )
    prior_target: str = field(
        default="data",
        metadata={
            "help": "What prior images are denoised towards: 'data' (their noise, as DreamBooth) or 'base' "
            "(the base UNet's own prediction: distillation, which keeps what the base model drew)."
        },
    )
    steps: int = field(default=800, metadata={"help": "Optimizer steps."})
    batch_size: int = field(default=32, metadata={"help": "Images per step."})
    gradient_accumulation_steps: int = field(
        default=1, metadata={"help": "Batches whose gradients add up before each optimizer step."}
    )
    lr: float = field(default=1e-3, metadata={"help": "Learning rate (AdamW, cosine schedule)."})
    warmup_steps: int = field(default=20, metadata={"help": "Warm-up steps of the learning rate."})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay of the trained tensors."})
    resolution: int | None = field(
        default=None, metadata={"help": "Pixels; default: the base pipeline's native size."}
    )
    seed: int = field(default=0, metadata={"help": "Random seed."})

    def __post_init__(self) -> None:
        if not self.dataset.strip():
            raise ValueError("fine-tuning needs a dataset of images and captions (--dataset)")
        if not 0 <= self.prior_share < 1:
            raise ValueError(f"prior_share must be in [0, 1), got {self.prior_share}")
        if self.prior_target not in PRIOR_TARGETS:
            choices = ", ".join(PRIOR_TARGETS)
            raise ValueError(f"prior_target must be one of {choices}, got {self.prior_target!r}")
        if self.steps < 1 or self.batch_size < 1 or self.gradient_accumulation_steps < 1:
            raise ValueError("steps, batch_size and gradient_accumulation_steps must be >= 1")
        if self.lr < 0 or self.weight_decay < 0:
            raise ValueError("lr and weight_decay must be >= 0")

    def data_rows(self) -> list[tuple[str, str]]:
        """The card's settings rows for the data and the prior preservation."""
        data = f"`{self.dataset}`" + (f" ({self.dataset_config})" if self.dataset_config else "")
        prior = "none"
        if self.prior_dataset:
            prior = f"`{self.prior_dataset}`, {self.prior_share:.0%} of each batch"
            if self.prior_target == "base":
                prior += ", denoised towards the base UNet's prediction (distillation)"
        return [("data", f"{data}, split `{self.split}`"), ("prior preservation", prior)]


LAYER_TYPES = ("linear", "conv")


@dataclass
class LayerFineTuneConfig(FineTuneConfig):
    """A fine-tune that adapts chosen layers of the UNet: every Linear and (ungrouped) Conv2d of
    ``layer_types``, or only ``target_modules`` (:func:`hubkit.layers.adaptable_layers` picks them)."""

    layer_types: list[str] = field(
        default_factory=lambda: list(LAYER_TYPES),
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
        unknown = set(self.layer_types) - set(LAYER_TYPES)
        if unknown or not self.layer_types:
            raise ValueError(f"layer types must be 'linear' and/or 'conv', got {self.layer_types}")
