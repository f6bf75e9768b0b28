"""Noise-offset fine-tuning (Guttenberg, 2023) into a diffusers LoRA, as a hubkit method plugin.

Training noise gets a per-image, per-channel constant added (``noise + offset · N(0, 1)[B, C, 1, 1]``), so
the model learns to move an image's mean brightness, which plain ε-prediction training barely can. The LoRA
is a stock diffusers LoRA (``pipe.load_lora_weights`` loads it); the plugin marks its weights' metadata so
hubkit recognises them even when published without a card.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from hubkit.config import JSONConfig
from hubkit.methods import Artifact, Method, MethodError
from hubkit.training import StepContext, TrainingStep

WEIGHT_NAME = "pytorch_lora_weights.safetensors"
ADAPTER_NAME = "noise_offset"
MARK = "hubkit_noise_offset.config"  # safetensors metadata key that says "this is a noise-offset LoRA"


@dataclass
class NoiseOffsetConfig(JSONConfig):
    rank: int = field(default=4, metadata={"help": "LoRA rank (alpha = rank)."})
    noise_offset: float = field(default=0.1, metadata={"help": "Std of the per-channel noise offset."})
    steps: int = field(default=60, metadata={"help": "Training steps."})
    batch_size: int = field(default=8, metadata={"help": "Images per step."})
    lr: float = field(default=1e-4, metadata={"help": "Learning rate."})
    seed: int = field(default=0, metadata={"help": "Random seed."})

    def __post_init__(self) -> None:
        if self.rank < 1 or self.steps < 1 or self.batch_size < 1:
            raise ValueError("rank, steps and batch_size must be >= 1")
        if self.noise_offset < 0:
            raise ValueError(f"noise_offset must be >= 0, got {self.noise_offset}")


class NoiseOffsetStep(TrainingStep):
    """ε-prediction loss on the reference world's training images, with offset noise, LoRA on attention."""

    description = "noise-offset LoRA"

    def __init__(self, pipe: Any, config: NoiseOffsetConfig):
        self.pipe, self.config = pipe, config

    def setup(self, device: torch.device) -> None:
        from peft import LoraConfig

        pipe = self.pipe.to(device)
        for module in (pipe.unet, pipe.vae, pipe.text_encoder):
            module.requires_grad_(False)
        lora = LoraConfig(
            r=self.config.rank,
            lora_alpha=self.config.rank,
            init_lora_weights="gaussian",
            target_modules=["to_q", "to_k", "to_v", "to_out.0"],
        )
        pipe.unet.add_adapter(lora, adapter_name=ADAPTER_NAME)
        self.params = [p for n, p in pipe.unet.named_parameters() if "lora_" in n]
        for p in self.params:
            p.requires_grad_(True)

    def parameters(self) -> list[torch.nn.Parameter]:
        return self.params

    def __call__(self, ctx: StepContext) -> dict[str, torch.Tensor]:
        from hubkit.world.shapes import CAPTION_TEMPLATES, render_batch, sample_specs

        pipe, config, g = self.pipe, self.config, ctx.generator
        specs = sample_specs(config.batch_size, seed=int(torch.randint(2**31, (), generator=g)))
        images = torch.from_numpy(render_batch(specs)).permute(0, 3, 1, 2).float().div(127.5).sub(1)
        captions = [s.caption(int(s.seed) % len(CAPTION_TEMPLATES)) for s in specs]
        with torch.no_grad():
            latents = pipe.vae.encode(images.to(ctx.device)).latent_dist.mean * pipe.vae.config.scaling_factor
            text = pipe.encode_prompt(captions, ctx.device, 1, False)[0]
        noise = torch.randn(latents.shape, generator=g)
        noise += config.noise_offset * torch.randn((*latents.shape[:2], 1, 1), generator=g)
        noise = noise.to(ctx.device)
        t = torch.randint(pipe.scheduler.config.num_train_timesteps, (latents.shape[0],), generator=g)
        noisy = pipe.scheduler.add_noise(latents, noise, t.to(ctx.device))
        prediction = pipe.unet(noisy, t.to(ctx.device), text).sample
        return {"loss": F.mse_loss(prediction.float(), noise.float())}


class NoiseOffsetLoRA(Method):
    """A LoRA fine-tuned with offset noise: wider brightness range, loaded with stock load_lora_weights."""

    name = "noise-offset"
    kind = "adapter"
    priority = 10  # its files are LoRA files: asked before the generic LoRA
    config_class = NoiseOffsetConfig

    @classmethod
    def recognizes(cls, artifact: Artifact) -> bool:
        return MARK in (artifact.safetensors_metadata(WEIGHT_NAME) or {})

    def load(self, artifact: Artifact, base: Any | None) -> Any:
        if base is None:
            raise MethodError(f"{artifact.source} is a LoRA: it needs a base pipeline")
        try:
            base.load_lora_weights(str(artifact.path), weight_name=WEIGHT_NAME)
        except (OSError, ValueError, KeyError, RuntimeError) as err:
            raise MethodError(f"{artifact.source} does not fit its base model: {err}") from err
        return base

    def default_suites(self, artifact: Artifact) -> list[tuple[str, dict[str, Any]]]:
        return [("noise-offset-dark", {})]

    def train(
        self, base: str, config: NoiseOffsetConfig, out: str | os.PathLike[str], **options: Any
    ) -> dict[str, Any]:
        """Fine-tune a noise-offset LoRA on ``base``; ``options``: :meth:`hubkit.methods.Method.train`'s."""
        from peft.utils import get_peft_model_state_dict

        from hubkit.files import write_lora_artifact
        from hubkit.training import run_training, settings_from_config, start_training

        job = start_training(self.name, base, config, out, error=MethodError, **options)
        step = NoiseOffsetStep(job.pipe, config)
        run = run_training(step, **settings_from_config(config), **job.loop)
        state = get_peft_model_state_dict(job.pipe.unet, adapter_name=ADAPTER_NAME)
        tensors = {f"unet.{k}": v.detach().contiguous() for k, v in state.items()}
        job.pipe.unet.delete_adapters(ADAPTER_NAME)
        losses = run.history["loss"][-10:]
        facts = job.facts(
            sum(t.numel() for t in tensors.values()),
            sum(p.numel() for p in job.pipe.unet.parameters()),
            run.seconds,
            job.pipe.unet.device,
            final_loss=sum(losses) / len(losses),
        )
        info = {"method": self.name, "base_model": base, "config": config.to_dict(), "facts": facts}
        job.write(
            WEIGHT_NAME,
            lambda folder: write_lora_artifact(folder, WEIGHT_NAME, tensors, {MARK: config.to_json()}, info),
            _card,
            facts,
        )
        return facts


def _card(config: NoiseOffsetConfig, base: str, repo_id: str | None, *, facts: dict[str, Any]) -> Any:
    from hubkit.cards.render import render_card, settings_table

    rows = [("rank", str(config.rank)), ("noise offset", f"{config.noise_offset:g}")]
    rows.append(("steps / batch / lr", f"{config.steps} / {config.batch_size} / {config.lr:g}"))
    return render_card(
        "adapter",
        method=NoiseOffsetLoRA.name,
        repo_id=repo_id,
        base_model=base,
        weight_name=WEIGHT_NAME,
        tags=["noise-offset", "lora"],
        description=f"A noise-offset LoRA for [`{base}`](/{base}): fine-tuned with offset training noise.",
        sections={"Training": settings_table(rows, facts)},
    )
