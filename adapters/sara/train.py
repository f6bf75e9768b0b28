"""SaRA's recipe on the shared training loop: denoising fine-tuning (:mod:`hubkit.finetune`) of the sparse
update only, plus λ·Σ‖ΔW‖_* over a few random eligible layers. After ``progressive_at`` of the steps, entries
whose weight grew past θ freeze (kept after every later update) and training goes on with the rest.

The bench trains its baselines (a peft LoRA at equal trainable parameters, full fine-tuning) with the same
:class:`~hubkit.finetune.DenoisingStep`, on exactly the same batches.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from hubkit.finetune import (
    DenoisingStep,
    ImageCaptions,
    check_pipeline,
    load_fine_tune_data,
)
from hubkit.training import StepContext, run_training, settings_from_config

from .config import SaRAConfig
from .model import (
    SaraModel,
    eligible_for_rank,
    freeze_grown,
    inject_sara,
    nuclear_norm,
    sara_layers,
)

__all__ = ["ADAPTER_NAME", "SaRAStep", "TrainResult", "layer_facts", "train_sara"]

ADAPTER_NAME = "default"


class SaRAStep(DenoisingStep):
    """``DenoisingStep`` training a SaRA adapter, with the nuclear-norm penalty and progressive freeze."""

    description = "SaRA fine-tuning"

    def __init__(self, pipe: Any, config: SaRAConfig, data: ImageCaptions, prior: ImageCaptions | None):
        super().__init__(
            pipe, data, prior, config.batch_size, config.prior_share, self._inject, config.prior_target
        )
        self.config = config
        self.tuner: SaraModel | None = None
        self.frozen_values: list[torch.Tensor] | None = None

    def _inject(self, unet: Any) -> list[torch.nn.Parameter]:
        self.tuner = inject_sara(unet, self.config.adapter_config(), ADAPTER_NAME)
        self.layers = [layer for _, layer in sara_layers(unet, ADAPTER_NAME)]
        self.rank_layers = (
            eligible_for_rank(unet, self.config.rank_min_dim) if self.config.lambda_rank else []
        )
        params = [layer.sara_delta[ADAPTER_NAME] for layer in self.layers]
        for p in params:
            p.requires_grad_(True)
        return params

    @property
    def threshold(self) -> float:
        assert self.tuner is not None
        return float(self.tuner.peft_config[ADAPTER_NAME].threshold)

    def abort(self) -> None:
        if self.tuner is not None:
            self.tuner.unload()  # the base UNet as it was
            self.tuner = None

    def __call__(self, ctx: StepContext) -> dict[str, torch.Tensor]:
        denoising = self.denoising_loss(ctx)
        if not self.config.lambda_rank:
            return {"loss": denoising}
        rank = nuclear_norm(self.rank_layers, self.config.rank_layers, ctx.generator)
        return {
            "loss": denoising + self.config.lambda_rank * rank,
            "denoise": denoising.detach(),
            "nuclear": rank.detach(),
        }

    def after_update(self, step: int) -> None:
        if self.frozen_values is not None:
            with torch.no_grad():  # frozen entries keep their values whatever AdamW's moments say
                for layer, kept in zip(self.layers, self.frozen_values, strict=True):
                    mask = layer.sara_frozen[ADAPTER_NAME]
                    layer.sara_delta[ADAPTER_NAME].copy_(
                        torch.where(mask, kept, layer.sara_delta[ADAPTER_NAME])
                    )
        elif self.config.progressive_step is not None and step + 1 == self.config.progressive_step:
            freeze_grown(self.unet, self.threshold, ADAPTER_NAME)
            self._snapshot()

    def _snapshot(self) -> None:
        self.frozen_values = [layer.sara_delta[ADAPTER_NAME].detach().clone() for layer in self.layers]

    # Checkpoints carry the freeze (masks and kept values), so a resumed run continues the same run.
    def state_tensors(self) -> dict[str, torch.Tensor]:
        if self.frozen_values is None:
            return {}
        out = {f"frozen.{i}": layer.sara_frozen[ADAPTER_NAME] for i, layer in enumerate(self.layers)}
        return out | {f"kept.{i}": v for i, v in enumerate(self.frozen_values)}

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        if not tensors:
            return
        for i, layer in enumerate(self.layers):
            layer.sara_frozen[ADAPTER_NAME].copy_(tensors[f"frozen.{i}"])
        self.frozen_values = [tensors[f"kept.{i}"].to(self.device) for i in range(len(self.layers))]


@dataclass
class TrainResult:
    tuner: SaraModel
    config: SaRAConfig
    seconds: float
    selected: int
    threshold: float
    frozen: int = 0
    losses: list[float] = field(default_factory=list)


def train_sara(
    pipe: Any,
    config: SaRAConfig,
    *,
    data: ImageCaptions | None = None,
    prior: ImageCaptions | None = None,
    **loop: Any,
) -> TrainResult:
    """Fine-tune a SaRA adapter on ``pipe``'s UNet (left attached, unfused, as adapter ``default``).

    ``data`` / ``prior`` replace the config's datasets (already loaded); ``loop``: :func:`run_training`'s
    options (``progress``, ``out``, ``checkpoint_every``, ``resume``). A failed run takes the adapter off."""
    check_pipeline(pipe, "SaRA")
    if data is None:
        data, prior = load_fine_tune_data(config, pipe)
    step = SaRAStep(pipe, config, data, prior)
    settings = settings_from_config(config, lr=config.learning_rate, schedule="cosine")
    run = run_training(step, **settings, **loop)
    pipe.unet.eval()
    assert step.tuner is not None
    adapter = step.tuner.peft_config[ADAPTER_NAME]
    return TrainResult(
        step.tuner,
        config,
        run.seconds,
        int(adapter.selected or 0),
        float(adapter.threshold),
        sum(int(layer.sara_frozen[ADAPTER_NAME].sum()) for layer in step.layers),
        run.history.get("loss", []),
    )


def layer_facts(unet: Any, config: SaRAConfig) -> dict[str, Any]:
    """What the card reports about the learned update: adapted layers, and the mean effective rank (entropy
    and 90 %-energy) of ΔW over the layers eligible for the nuclear norm."""
    from .model import effective_rank

    layers = [layer for _, layer in sara_layers(unet, ADAPTER_NAME)]
    eligible = eligible_for_rank(unet, config.rank_min_dim)
    ranks = [effective_rank(layer) for layer in eligible]
    out: dict[str, Any] = {"layers": len(layers)}
    if ranks:
        out["effective_rank"] = sum(r for r, _ in ranks) / len(ranks)
        out["rank90"] = sum(k for _, k in ranks) / len(ranks)
    return out
