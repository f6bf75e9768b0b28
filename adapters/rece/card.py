"""The RECE model card: the adapter template with the erased concepts, surrogate, rounds and preservation."""

from __future__ import annotations

from typing import Any

from huggingface_hub import ModelCard

from hubkit.cards.render import render_card, settings_table

from .config import RECEConfig
from .serialization import METHOD_NAME, WEIGHT_NAME

__all__ = ["rece_card"]

CROSS_ATTENTION = ("attn2.to_k", "attn2.to_v")
POOLED = "add_embedding.linear_1"  # SDXL's pooled text embedding enters the UNet here


def _settings_table(config: RECEConfig, facts: dict[str, Any]) -> str:
    surrogate = f"`{config.surrogate}`" if config.surrogate else '`""` (the empty prompt)'
    preserved = ", ".join(f"`{c}`" for c in config.preserve) or "none (the ridge alone keeps the rest)"
    ranks = facts.get("ranks") or {}
    rows = [
        ("erased concepts", ", ".join(f"`{c}`" for c in config.concepts)),
        ("surrogate", surrogate),
        ("templates", ", ".join(f"`{t}`" for t in config.templates)),
        ("preserved concepts", preserved),
        ("RECE rounds", f"{config.rounds}" + (" (plain UCE)" if config.rounds == 0 else "")),
        ("preservation weight λ / ridge γ", f"{config.preserve_scale:g} / {config.ridge:g}"),
        (
            "edited layers",
            f"{sum(1 for p in ranks if p.endswith(CROSS_ATTENTION))} cross-attention `to_k` / `to_v` "
            "projections"
            + (", the pooled-text columns of `add_embedding.linear_1` (SDXL)" if POOLED in ranks else "")
            + (f", LoRA rank {min(ranks.values())}–{max(ranks.values())} (exact)" if ranks else ""),
        ),
    ]
    return settings_table(rows, facts, time_label="erasing time")


def rece_card(
    config: RECEConfig,
    base_model: str,
    repo_id: str | None = None,
    *,
    facts: dict[str, Any] | None = None,
) -> ModelCard:
    """The adapter card of a RECE edit (``hubkit-method:rece``, ``concept-erasure``, ``erases:<concept>``)."""
    facts = facts or {}
    concepts = ", ".join(f"`{c}`" for c in config.concepts)
    return render_card(
        "adapter",
        method=METHOD_NAME,
        repo_id=repo_id,
        base_model=base_model,
        weight_name=WEIGHT_NAME,
        tags=["rece", "uce", "concept-erasure", *(f"erases:{c}" for c in config.concepts)],
        prompt=config.templates[0].format(config.concepts[0]),
        description=(
            f"A closed-form erasure (RECE, Gong et al., ECCV 2024, on UCE) of {concepts} from "
            f"[`{base_model}`](/{base_model}): the UNet's cross-attention key and value projections are "
            "edited so that the concept's text embeddings give what the surrogate's give, while the "
            "preserved concepts keep their outputs; then, for each round, the embedding that regenerates "
            "the concept on the edited model is found in closed form and erased too. On SDXL, whose UNet "
            "also reads the pooled text embedding (through `add_embedding.linear_1`), the pooled-text "
            "columns of that layer get the same closed-form edit. No training: seconds of linear algebra. "
            "The edit is exported exactly as a plain diffusers LoRA."
        ),
        sections={
            "Erasure": f"Erased: {concepts}, into "
            + (f"`{config.surrogate}`." if config.surrogate else "the empty prompt."),
            "Settings": _settings_table(config, facts),
        },
        limitations=(
            "Edits only what the text reaches (cross-attention keys and values; on SDXL the pooled "
            "embedding's projection too): prompts whose embeddings "
            "stay far from the erased ones (paraphrases, adversarial soft prompts) can still bring the "
            "concept back; the `shapes-attack` suite measures how often. Measured on the reference world's "
            "judge and prompts (see Evaluation)."
        ),
    )
