"""The LCM-LoRA model card: the adapter template with the sampling recipe and the distillation settings."""

from __future__ import annotations

from typing import Any

from huggingface_hub import ModelCard

from hubkit.cards.render import render_card, settings_table

from .config import LCMLoRAConfig
from .serialization import METHOD_NAME, WEIGHT_NAME

__all__ = ["lcm_lora_card"]

_HELPER = """```python
from diffusers import DiffusionPipeline
from hubkit.pipelines.lcm_lora import load_lcm_lora

pipe = DiffusionPipeline.from_pretrained("{base}")
settings = load_lcm_lora(pipe, "{repo}", fuse=True)  # LoRA + {scheduler} in one call
image = pipe("{prompt}", **settings).images[0]  # {steps} steps, guidance {guidance:g}
```"""

_VARIANTS = {
    "lcm": "latent consistency distillation (LCM-LoRA, Luo et al. 2023)",
    "rg-lcd": "reward-guided latent consistency distillation (RG-LCD, Li et al. 2024) with the reference "
    "world's judge as the reward on the one-step output",
}


def _settings_table(config: LCMLoRAConfig, facts: dict[str, Any]) -> str:
    target = f"EMA of the LoRA, decay {config.ema_decay:g}" if config.ema_decay else "the LoRA (no EMA)"
    rows = [
        ("variant", f"`{config.variant}`: {_VARIANTS[config.variant]}"),
        ("rank / alpha", f"{config.rank} / {config.alpha:g}"),
        ("target modules", ", ".join(f"`{m}`" for m in config.target_modules)),
        ("teacher guidance ω", f"U[{config.w_min:g}, {config.w_max:g}] (diffusers guidance_scale = 1 + ω)"),
        ("solver", f"skipping-step DDIM on a {config.num_ddim_timesteps}-point grid"),
        ("boundary scalings", f"σ_data 0.5, timestep scaling {config.timestep_scaling:g}"),
        ("loss", f"pseudo-Huber, c = {config.huber_c:g}"),
        ("target network", target),
        ("data", f"`{config.dataset}`" if config.dataset else "the reference world's training split"),
        ("steps / batch / lr", f"{config.steps} / {config.batch_size} / {config.lr:g} (AdamW, constant)"),
        ("seed", str(config.seed)),
    ]
    if config.variant == "rg-lcd":
        rows.insert(1, ("reward weight", f"{config.reward_scale:g}"))
    return settings_table(rows, facts, time_label="distillation time")


def lcm_lora_card(
    config: LCMLoRAConfig,
    base_model: str,
    repo_id: str | None = None,
    *,
    prompt: str = "a red circle",
    facts: dict[str, Any] | None = None,
) -> ModelCard:
    """The adapter card of a distilled LoRA (``hubkit-method:lcm-lora``, ``lcm``, ``lora``)."""
    facts = facts or {}
    repo = repo_id or "<namespace>/<this-repo>"
    return render_card(
        "adapter",
        method=METHOD_NAME,
        repo_id=repo_id,
        base_model=base_model,
        weight_name=WEIGHT_NAME,
        prompt=prompt,
        tags=[
            "lcm",
            "lcm-lora",
            "distillation",
            "few-step",
            *(["rg-lcd"] if config.variant == "rg-lcd" else []),
        ],
        description=(
            f"A LoRA distilled from [`{base_model}`](/{base_model}) by {_VARIANTS[config.variant]}: "
            f"the teacher's guided samples in {config.num_inference_steps} steps with `{config.scheduler}` "
            f"and guidance {config.guidance_scale:g} (no classifier-free guidance pass), as a plain "
            "diffusers LoRA."
        ),
        sampling={
            "scheduler": config.scheduler,
            "num_inference_steps": config.num_inference_steps,
            "guidance_scale": config.guidance_scale,
        },
        sections={
            "With hubkit": _HELPER.format(
                base=base_model,
                repo=repo,
                prompt=prompt,
                scheduler=config.scheduler,
                steps=config.num_inference_steps,
                guidance=config.guidance_scale,
            )
            + "\n\n1, 2 and 8 steps work too (see Evaluation: the `shapes-speed` suite sweeps them).",
            "Distillation": _settings_table(config, facts),
        },
        limitations=(
            "Distilled for this base model's UNet only. The guidance range is baked in: use guidance 1.0 "
            "(higher values double the UNet work and over-saturate); negative prompts have no effect. "
            "Quality is measured by the reference world's judge and Fréchet distance (see Evaluation)."
        ),
    )
