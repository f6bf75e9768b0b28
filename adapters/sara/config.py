"""SaRA's two configs: :class:`SaraAdapterConfig` (the tuner, ``adapter_config.json``) and
:class:`SaRAConfig` (what ``hubkit train sara`` takes: selection, regularisers, data, optimisation)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from peft.config import PeftConfig

from hubkit.config import LayerFineTuneConfig

__all__ = ["PEFT_TYPE", "SaRAConfig", "SaraAdapterConfig", "auto_lr"]

PEFT_TYPE = "SARA"
"""Not a member of peft's closed ``PeftType`` enum (peft can't register out-of-tree tuners): the tuner is
instantiated directly and saved/loaded by hubkit (``hubkit.adapters.sara.serialization``)."""


@dataclass
class SaraAdapterConfig(PeftConfig):
    """The SaRA tuner: which layers and entries (|W0| < ``threshold``), kept in ``adapter_config.json``.

    ``target_modules`` are exact module paths (suffix match, as peft) or a regex; None means every
    ``nn.Linear`` and ``nn.Conv2d`` of ``layer_types``. The threshold is global and absolute, as in the paper;
    ``budget`` (if set) replaced it at training time by the threshold that selects that many entries.
    """

    target_modules: list[str] | str | None = field(default=None, metadata={"help": "Layers to adapt."})
    exclude_modules: list[str] | str | None = field(default=None, metadata={"help": "Layers to skip."})
    layer_types: list[str] = field(default_factory=lambda: ["linear", "conv"])
    threshold: float = field(default=2e-3, metadata={"help": "Entries with |W0| < threshold train."})
    budget: int | None = field(default=None, metadata={"help": "Trainable entries wanted (sets threshold)."})
    selected: int | None = field(default=None, metadata={"help": "Entries selected (filled at injection)."})
    modules_to_save: list[str] | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        self.peft_type = PEFT_TYPE
        self.target_parameters = None
        if not self.threshold > 0 or not math.isfinite(self.threshold):
            raise ValueError(f"threshold must be a positive number, got {self.threshold}")
        unknown = set(self.layer_types) - {"linear", "conv"}
        if unknown or not self.layer_types:
            raise ValueError(f"layer_types must be 'linear' and/or 'conv', got {self.layer_types}")
        if self.budget is not None and self.budget < 1:
            raise ValueError(f"budget must be >= 1 trainable entries, got {self.budget}")


def auto_lr(threshold: float) -> float:
    """The official rule: lr = 1e-3 · exp(−350 θ) (≈ 4.97e-4 at θ = 2e-3)."""
    return 1e-3 * math.exp(-350 * threshold)


@dataclass
class SaRAConfig(LayerFineTuneConfig):
    """Settings of one SaRA fine-tune: the data, optimisation and layers
    (:class:`~hubkit.config.LayerFineTuneConfig`), then the sparse adapter and its regularisers.

    Defaults are tuned on the reference world (``tiny-sd-shapes``, a 2-core CPU) to teach a new shape in
    minutes; on Stable Diffusion start from the paper's 5000 steps at batch 4, θ = 2e-3, ``lr`` 0 (its rule).
    """

    lr: float = field(
        default=2e-3,
        metadata={"help": "Learning rate (AdamW, cosine); 0 = the paper's rule 1e-3·exp(−350θ)."},
    )
    threshold: float = field(default=2e-3, metadata={"help": "θ: entries with |W0| < θ are trained."})
    budget: int = field(
        default=0, metadata={"help": "Trainable entries wanted; > 0 picks θ to select that many."}
    )
    lambda_rank: float = field(
        default=1e-4, metadata={"help": "Weight of the nuclear-norm penalty on the update; 0 = off."}
    )
    rank_layers: int = field(
        default=8, metadata={"help": "Random eligible layers penalised per step (0 = all of them)."}
    )
    rank_min_dim: int = field(
        default=32,
        metadata={"help": "A layer is eligible for the penalty when both matrix sides are >= this."},
    )
    progressive_at: float = field(
        default=0.5,
        metadata={"help": "Fraction of the steps after which entries grown past θ freeze; 0 = off."},
    )
    save_merged_unet: bool = field(
        default=True,
        metadata={"help": "Also save the merged UNet (unet/), which stock from_pretrained loads."},
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.threshold > 0:
            raise ValueError(f"threshold must be > 0, got {self.threshold}")
        if self.budget < 0:
            raise ValueError(f"budget must be >= 0, got {self.budget}")
        if not 0 <= self.progressive_at < 1:
            raise ValueError(
                f"progressive_at must be in [0, 1) (a fraction of the steps; 0 turns it off), "
                f"got {self.progressive_at}"
            )
        if self.lambda_rank < 0 or self.rank_layers < 0 or self.rank_min_dim < 1:
            raise ValueError("lambda_rank and rank_layers must be >= 0, rank_min_dim >= 1")

    @property
    def learning_rate(self) -> float:
        return self.lr or auto_lr(self.threshold)

    @property
    def progressive_step(self) -> int | None:
        """The optimizer step after which the entries that grew past θ freeze (None: never)."""
        return round(self.progressive_at * self.steps) if self.progressive_at else None

    def adapter_config(self, base: str = "") -> SaraAdapterConfig:
        return SaraAdapterConfig(
            base_model_name_or_path=base or None,
            target_modules=list(self.target_modules) or None,
            layer_types=list(self.layer_types),
            threshold=self.threshold,
            budget=self.budget or None,
        )
