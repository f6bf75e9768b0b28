"""The SaRA model card: the adapter template with the selection, regularisers, data and measured facts."""

from __future__ import annotations

from typing import Any

from huggingface_hub import ModelCard

from hubkit.cards.render import render_card, settings_table

from .config import SaRAConfig
from .serialization import MERGED_UNET, WEIGHT_NAME

__all__ = ["sara_card"]

_USAGE = """from diffusers import DiffusionPipeline
from hubkit.pipelines.sara import load_sara

pipe = DiffusionPipeline.from_pretrained("{base}")
load_sara(pipe, "{repo}")  # fuse=True: the update goes into the UNet's weights, no cost per step
image = pipe("{prompt}").images[0]"""

_STOCK = """

# Stock diffusers, no hubkit: this repo also carries the merged UNet.
from diffusers import UNet2DConditionModel

unet = UNet2DConditionModel.from_pretrained("{repo}", subfolder="unet")
pipe = DiffusionPipeline.from_pretrained("{base}", unet=unet)"""


def _settings(config: SaRAConfig, facts: dict[str, Any]) -> str:
    theta = facts.get("threshold", config.threshold)
    selection = f"base weights of magnitude below θ = {theta:.4g} (one global threshold)"
    if config.budget:
        selection += f", θ chosen for a budget of {config.budget:,} entries"
    rows = [
        *config.data_rows(),
        (
            "layers",
            f"every {' and '.join(t.title() if t == 'linear' else 'Conv2d' for t in config.layer_types)}"
            + (f" ({facts['layers']} layers)" if "layers" in facts else ""),
        ),
        ("selection", selection),
        (
            "nuclear norm",
            f"λ = {config.lambda_rank:g} on ΔW, {config.rank_layers or 'all'} random layers per step"
            if config.lambda_rank
            else "off",
        ),
        (
            "progressive re-selection",
            f"after {config.progressive_at:.0%} of the steps"
            + (f": {facts['frozen']:,} grown entries froze" if "frozen" in facts else "")
            if config.progressive_at
            else "off",
        ),
        (
            "steps / batch / lr",
            f"{config.steps} / {config.batch_size} / {config.learning_rate:.3g} (AdamW, cosine, "
            f"{config.warmup_steps} warm-up, weight decay {config.weight_decay:g} toward W0)",
        ),
        ("seed", str(config.seed)),
    ]
    if "effective_rank" in facts:
        rows.append(("effective rank of ΔW", f"{facts['effective_rank']:.2f} (mean over eligible layers)"))
    return settings_table(rows, facts)


def sara_card(
    config: SaRAConfig, base_model: str, repo_id: str | None = None, *, facts: dict[str, Any] | None = None
) -> ModelCard:
    """The adapter card of a SaRA fine-tune (``base_model_relation: adapter``, tag ``hubkit-method:sara``)."""
    facts = facts or {}
    repo = repo_id or "<namespace>/<this-repo>"
    prompt = facts.get("prompt") or "a red heart"
    usage = _USAGE.format(base=base_model, repo=repo, prompt=prompt)
    if facts.get("merged_unet"):
        usage += _STOCK.format(base=base_model, repo=repo)
    share = facts.get("share")
    return render_card(
        "adapter",
        method="sara",
        repo_id=repo_id,
        base_model=base_model,
        adapter_format="peft",
        library_name="diffusers",  # what it plugs into; peft has no SaRA to load it
        weight_name=WEIGHT_NAME,
        requirements=["hubkit"],
        tags=["sara", "sparse-fine-tuning"],
        description=(
            f"A SaRA fine-tune (progressive sparse low-rank adaptation, Hu et al., ICLR 2025) of "
            f"[`{base_model}`](/{base_model}): only the base weights whose magnitude is below a threshold "
            "were trained"
            + (f" ({share * 100:.2f} % of the UNet)" if share is not None else "")
            + ", as a sparse update (int32 indices + values in safetensors) kept low-rank by a nuclear-norm "
            "penalty."
        ),
        usage=usage,
        sections={
            "Training": _settings(config, facts),
            "Files": (
                f"`{WEIGHT_NAME}`: per layer `base_model.model.<module>.sara_indices` (int32 flat positions "
                "in the base weight) and `.sara_delta` (fp32 values added there); `adapter_config.json`: the "
                "selection (peft-style, `peft_type: SARA`, loaded by `hubkit.pipelines.sara.load_sara`: peft "
                "has no SaRA and its sparse tuners are Linear-only with a fixed count per layer)."
                + (
                    f" `{MERGED_UNET}/`: the UNet with the update merged, for stock `from_pretrained`."
                    if facts.get("merged_unet")
                    else ""
                )
            ),
        },
        limitations=(
            "Measured on the reference world's judge and prompts (see Evaluation). The update is relative to "
            "the base weights it was trained on: it applies to that base (and, as a LoRA does, to fine-tunes "
            "of it with the same architecture)."
        ),
    )
