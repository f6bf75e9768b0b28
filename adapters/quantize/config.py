"""``QuantizeConfig``: what ``hubkit train quantize`` takes: bits, calibration, what keeps more precision."""

from __future__ import annotations

from dataclasses import dataclass, field

from hubkit.config import JSONConfig

__all__ = ["QuantizeConfig"]

WEIGHT_BITS = {"int8": 8, "int4": 4}
DEFAULT_GROUP = {8: -1, 4: 32}  # int8 per output channel; int4 in groups of 32 input channels


@dataclass
class QuantizeConfig(JSONConfig):
    """Post-training quantization of a pipeline's UNet (every Linear and Conv2d but ``keep_float``).

    Calibration samples ``calibration_prompts`` captions of ``calibration_dataset`` (or the given
    ``prompts``) with the base pipeline itself, ``calibration_steps`` steps each, and records every layer's
    inputs per timestep group: their ranges are the static int8 activation scales, their per-channel energy
    weights the rounding of the weights."""

    weights: str = field(default="int8", metadata={"help": "Weight integers: int8 or int4."})
    activations: str = field(
        default="int8", metadata={"help": "Activations: int8 (static, calibrated) or none (weight-only)."}
    )
    group_size: int = field(
        default=0,
        metadata={
            "help": "Input channels per weight scale; -1 per output channel; 0: -1 for int8, 32 for int4."
        },
    )
    prompts: list[str] = field(
        default_factory=list,
        metadata={
            "help": "Calibration prompts (repeatable); default: captions of the dataset.",
            "cli": "--prompt",
        },
    )
    calibration_dataset: str = field(
        default="hubkit/shapes", metadata={"help": "Dataset (Hub repo or folder) whose captions calibrate."}
    )
    calibration_config: str | None = field(default=None, metadata={"help": "Configuration of that dataset."})
    caption_column: str = field(default="caption", metadata={"help": "Column holding the captions."})
    calibration_prompts: int = field(
        default=32, metadata={"help": "Distinct captions drawn for calibration."}
    )
    calibration_steps: int = field(default=25, metadata={"help": "Sampling steps of each calibration image."})
    timestep_groups: int = field(
        default=4, metadata={"help": "Activation scales per layer: one per group of timesteps."}
    )
    keep_float: list[str] = field(
        default_factory=list,
        metadata={"help": "Layers kept in float (module paths, repeatable).", "cli": "--keep-float"},
    )
    int8_layers: list[str] = field(
        default_factory=list,
        metadata={
            "help": "Layers kept at int8 when weights are int4, beside the measured ones (repeatable).",
            "cli": "--int8",
        },
    )
    int8_budget: float = field(
        default=0.005,
        metadata={
            "help": "With int4 weights: share of the fp32 UNet's bytes spent keeping the layers whose "
            "quantization moves the output most (measured on the calibration trajectories) at int8; 0: none."
        },
    )
    clip_search: bool = field(
        default=True, metadata={"help": "Search each scale group's clipping (off: round to nearest, as RTN)."}
    )
    seed: int = field(default=0, metadata={"help": "Seed of the calibration prompts and noise."})

    def __post_init__(self) -> None:
        if self.weights not in WEIGHT_BITS:
            raise ValueError(f"weights must be int8 or int4, got {self.weights!r}")
        if self.activations not in ("int8", "none"):
            raise ValueError(f"activations must be int8 or none, got {self.activations!r}")
        if self.group_size < -1 or self.group_size in (1,):
            raise ValueError(f"group_size must be -1, 0 or >= 2 input channels, got {self.group_size}")
        if self.calibration_prompts < 1 or self.calibration_steps < 1:
            raise ValueError("calibration_prompts and calibration_steps must be >= 1")
        if not 1 <= self.timestep_groups <= self.calibration_steps:
            raise ValueError(f"timestep_groups must be in [1, calibration_steps], got {self.timestep_groups}")
        if not 0 <= self.int8_budget < 1:
            raise ValueError(f"int8_budget is a share of the UNet's bytes in [0, 1), got {self.int8_budget}")
        if not self.prompts and not self.calibration_dataset.strip():
            raise ValueError("calibration needs prompts (--prompt) or a dataset with captions")

    @property
    def bits(self) -> int:
        return WEIGHT_BITS[self.weights]

    @property
    def groups(self) -> int:
        """The group size used: ``group_size`` or the default for the bits."""
        return self.group_size or DEFAULT_GROUP[self.bits]
