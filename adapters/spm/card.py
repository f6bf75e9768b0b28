"""The SPM model card: the adapter template with the erased concepts, surrogate and training settings."""

from __future__ import annotations

from typing import Any

from huggingface_hub import ModelCard

from hubkit.cards.render import render_card, settings_table

from .config import SPMConfig
from .serialization import WEIGHT_NAME

__all__ = ["spm_card"]

_USAGE = """from diffusers import DiffusionPipeline

pipe = DiffusionPipeline.from_pretrained("{base}")

# Stock diffusers: the SPM as a plain LoRA, applied to every prompt.
pipe.load_lora_weights("{repo}")
image = pipe("{prompt}").images[0]

# hubkit: facilitated transport, each prompt lets the SPM through by its similarity to the erased concepts.
pipe.unload_lora_weights()
from hubkit.pipelines.spm import load_spm

load_spm(pipe, "{repo}")
print(pipe.spm.permeability(["{prompt}", "a photo"]))
image = pipe("{prompt}").images[0]"""


def _settings_table(config: SPMConfig, facts: dict[str, Any]) -> str:
    rows = [
        ("erased concepts", ", ".join(f"`{c}`" for c in config.concepts)),
        (
            "surrogate",
            f"`{config.surrogate!r}`" if config.surrogate else '`""` (the unconditional prediction)',
        ),
        ("rank / alpha", f"{config.rank} / {config.alpha:g}"),
        (
            "target layers",
            f"every Linear/Conv2d in the UNet's {', '.join(config.target_blocks)} blocks"
            + (f" ({facts['layers']} layers)" if "layers" in facts else ""),
        ),
        ("erasing scale η", f"{config.erasing_scale:g}"),
        (
            "latent anchoring",
            f"λ = {config.anchoring_strength:g}, the empty prompt + "
            + (f"{', '.join(config.preserve)} (preserved) + " if config.preserve else "")
            + f"{config.anchors_per_step} {config.anchor_source} anchors per step",
        ),
        (
            "steps / batch / lr",
            f"{config.steps} / {config.batch_size} / {config.lr:g} (AdamW, cosine, "
            f"{config.warmup_steps} warm-up)",
        ),
        (
            "x_t sampling",
            f"{config.sampling_steps} DDIM steps, guidance {config.sampling_guidance:g}, SPM on",
        ),
        ("seed", str(config.seed)),
    ]
    return settings_table(rows, facts)


def spm_card(
    config: SPMConfig,
    base_model: str,
    repo_id: str | None = None,
    *,
    prompt: str | None = None,
    facts: dict[str, Any] | None = None,
) -> ModelCard:
    """The adapter card of an SPM (``base_model_relation: adapter``, tags ``hubkit-method:spm``, ``spm``)."""
    facts = facts or {}
    concepts = ", ".join(f"`{c}`" for c in config.concepts)
    prompt = prompt or f"a {config.concepts[0]}"
    repo = repo_id or "<namespace>/<this-repo>"
    return render_card(
        "adapter",
        method="spm",
        repo_id=repo_id,
        base_model=base_model,
        weight_name=WEIGHT_NAME,
        tags=["spm", "concept-erasure", *(f"erases:{c}" for c in config.concepts)],
        description=(
            f"An SPM (concept semi-permeable membrane, Lyu et al., CVPR 2024) for "
            f"[`{base_model}`](/{base_model}) "
            f"that erases {concepts}: a rank-{config.rank} adapter on the UNet's transformer blocks, trained "
            "data-free with an erasure loss plus latent anchoring. Loaded as a plain LoRA it erases on every "
            "prompt; with hubkit's facilitated transport each prompt lets it through by its similarity to "
            "the "
            "erased concepts, so unrelated prompts are left alone."
        ),
        usage=_USAGE.format(base=base_model, repo=repo, prompt=prompt),
        sections={
            "Erasure": f"Erased: {concepts}. Surrogate: "
            + (f"`{config.surrogate}`." if config.surrogate else "the empty prompt (unconditional)."),
            "Training": _settings_table(config, facts),
            "Facilitated transport": (
                "Permeability m = max over the erased concepts of max(cosine of the text encoder's hidden "
                "states, token overlap); the delta applied is m² · ΔW (the official code's behaviour; "
                "`load_spm(..., power=1)` gives m · ΔW). Several SPMs add their own deltas."
            ),
        },
        limitations=(
            "Erasure is measured by the reference world's judge on its own prompts (see Evaluation); "
            "paraphrases "
            "and neighbouring concepts can leak. Transfers without retraining to checkpoints with the same "
            "UNet "
            "architecture (fine-tunes of the base), not to other architectures."
        ),
    )
