"""The LoRA fine-tune's card: the adapter template (stock ``load_lora_weights``) with its training data."""

from __future__ import annotations

from typing import Any

from huggingface_hub import ModelCard

from hubkit.cards.render import render_card, settings_table

from .config import LoRAFineTuneConfig
from .serialization import WEIGHT_NAME

__all__ = ["lora_finetune_card"]


def lora_finetune_card(
    config: LoRAFineTuneConfig,
    base_model: str,
    repo_id: str | None = None,
    *,
    facts: dict[str, Any] | None = None,
) -> ModelCard:
    facts = facts or {}
    data = f"`{config.dataset}`" + (f" ({config.dataset_config})" if config.dataset_config else "")
    rows = [
        *config.data_rows(),
        ("rank / alpha", f"{config.rank} / {config.alpha or config.rank:g}"),
        (
            "layers",
            "every " + " and ".join("Linear" if t == "linear" else "Conv2d" for t in config.layer_types),
        ),
        ("steps / batch / lr", f"{config.steps} / {config.batch_size} / {config.lr:g} (AdamW, cosine)"),
        ("seed", str(config.seed)),
    ]
    return render_card(
        "adapter",
        method="lora-finetune",
        repo_id=repo_id,
        base_model=base_model,
        weight_name=WEIGHT_NAME,
        tags=["lora-finetune"],
        description=(
            f"A LoRA fine-tune of [`{base_model}`](/{base_model}) on {data}: rank {config.rank} on the "
            "UNet's layers, trained with the standard denoising loss. A plain diffusers LoRA: stock "
            "`load_lora_weights` applies it."
        ),
        prompt=facts.get("prompt") or "a red heart",
        sections={"Training": settings_table(rows, facts)},
        limitations="Measured on the reference world's judge and prompts (see Evaluation).",
    )
