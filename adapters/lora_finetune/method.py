"""LoRA fine-tuning in hubkit's method registry (entry point ``lora-finetune``): a plain diffusers LoRA file,
trained by the shared denoising fine-tune; stock ``load_lora_weights`` applies it."""

from __future__ import annotations

import os
from typing import Any

from hubkit.methods import Artifact, DemoArtifact, DiffusersLora, MethodError

from .config import LoRAFineTuneConfig

__all__ = ["LoRAFineTuneMethod"]

ADAPTER_NAME = "finetune"
DEMO_DATASET = "hubkit/shapes"


def target_paths(unet: Any, config: LoRAFineTuneConfig) -> list[str]:
    """Exact module paths of the Linear/Conv2d layers the LoRA adapts."""
    from hubkit.layers import adaptable_layers

    paths = list(adaptable_layers(unet, config.layer_types, config.target_modules or None))
    if not paths:
        raise MethodError(
            f"no {' / '.join(config.layer_types)} layer of the UNet matches {config.target_modules}"
        )
    return paths


class LoRAFineTuneMethod(DiffusersLora):
    """A LoRA taught new images (loaded as any diffusers LoRA; recognised by its card or ``hubkit.json``)."""

    name = "lora-finetune"
    priority = 0
    config_class = LoRAFineTuneConfig

    @classmethod
    def recognizes(cls, artifact: Artifact) -> bool:
        return artifact.hubkit_json.get("method") == cls.name

    def default_suites(self, artifact: Artifact) -> list[tuple[str, dict[str, Any]]]:
        return [("shapes-quality", {}), ("shapes-acquisition", {})]

    def train(
        self, base: str, config: LoRAFineTuneConfig, out: str | os.PathLike[str], **options: Any
    ) -> dict[str, Any]:
        """Fine-tune a LoRA on ``config.dataset``; write ``out`` (LoRA file, ``hubkit.json``, card) whole or
        not at all; the caller's UNet is left as it was. ``options``: ``Method.train``'s."""
        from functools import partial

        from hubkit.finetune import DenoisingStep, FineTuneError, check_pipeline, load_fine_tune_data
        from hubkit.training import run_training, settings_from_config, start_training

        from .card import lora_finetune_card
        from .serialization import WEIGHT_NAME, save_lora_finetune

        job = start_training(self.name, base, config, out, error=FineTuneError, **options)
        check_pipeline(job.pipe, "LoRA fine-tuning")
        data, prior = load_fine_tune_data(config, job.pipe, job.endpoint, job.token)
        unet = job.pipe.unet

        def add_lora(unet: Any) -> list[Any]:
            from peft import LoraConfig

            rank = config.rank
            lora = LoraConfig(
                r=rank, lora_alpha=config.alpha or rank, target_modules=target_paths(unet, config)
            )
            unet.add_adapter(lora, adapter_name=ADAPTER_NAME)
            params = [p for n, p in unet.named_parameters() if f".{ADAPTER_NAME}." in n and "lora_" in n]
            for p in params:
                p.requires_grad_(True)
            return params

        step = DenoisingStep(
            job.pipe, data, prior, config.batch_size, config.prior_share, add_lora, config.prior_target
        )
        step.description = "LoRA fine-tuning"
        step.abort = lambda: _remove(unet)  # type: ignore[method-assign]
        run = run_training(step, **settings_from_config(config, schedule="cosine"), **job.loop)
        unet.eval()
        facts = job.facts(
            sum(p.numel() for p in step.params),
            sum(p.numel() for n, p in unet.named_parameters() if "lora_" not in n),
            run.seconds,
            unet.device,
            final_loss=sum(run.history["loss"][-20:]) / len(run.history["loss"][-20:]),
        )
        info = {"method": self.name, "base_model": base, "facts": facts, "config": config.to_dict()}
        try:
            save = partial(save_lora_finetune, unet=unet, adapter_name=ADAPTER_NAME, info=info)
            job.write(WEIGHT_NAME, save, lora_finetune_card, facts)
        finally:
            _remove(unet)
        return facts

    def summary(self, config: LoRAFineTuneConfig, facts: dict[str, Any]) -> str:
        return (
            f"LoRA (rank {config.rank}) on {config.dataset}: {facts['parameters']:,} parameters "
            f"({facts['share'] * 100:.2f} % of the UNet), {facts['file_bytes']:,} bytes, trained in "
            f"{facts['train_seconds']:.0f} s"
        )

    def demo_artifacts(self) -> list[DemoArtifact]:
        """The SaRA demo's baseline: the same data and steps, a LoRA with about SaRA's parameter count (rank
        7 on every Linear and Conv2d of the world's UNet: 559,384 vs SaRA's 593,989)."""
        config = LoRAFineTuneConfig(
            dataset=DEMO_DATASET, dataset_config="novel", prior_dataset=DEMO_DATASET, rank=7
        )
        return [DemoArtifact("lora-heart", config, DemoArtifact.suites(("shapes-acquisition", {})))]


def _remove(unet: Any) -> None:
    if ADAPTER_NAME in (getattr(unet, "peft_config", None) or {}):
        unet.delete_adapters(ADAPTER_NAME)
        if not getattr(unet, "peft_config", None):
            unet.unload_lora()
