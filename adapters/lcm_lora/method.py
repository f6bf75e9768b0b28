"""LCM-LoRA in hubkit's method registry (entry point ``lcm-lora``): loaded with its scheduler."""

from __future__ import annotations

import os
from typing import Any

from hubkit.methods import Artifact, DemoArtifact, Method, MethodError

from .config import LCMLoRAConfig
from .serialization import METHOD_NAME, WEIGHT_NAME, call_settings, read_sampling

__all__ = ["LCMLoRAMethod"]


class LCMLoRAMethod(Method):
    """A distilled LoRA applied with ``load_lora_weights`` and its few-step scheduler."""

    name = METHOD_NAME
    kind = "adapter"
    config_class = LCMLoRAConfig

    @classmethod
    def recognizes(cls, artifact: Artifact) -> bool:
        """hubkit's distilled LoRAs say so in their weights' metadata even without a card or hubkit.json."""
        return (artifact.safetensors_metadata(WEIGHT_NAME) or {}).get("hubkit.method") == METHOD_NAME

    def load(self, artifact: Artifact, base: Any | None) -> Any:
        from hubkit.pipelines.lcm_lora import load_lcm_lora

        if base is None:
            raise MethodError(f"{artifact.source} is a distilled LoRA: it needs a base pipeline (--base)")
        try:
            load_lcm_lora(base, artifact.path)
        except (OSError, ValueError, KeyError, RuntimeError) as err:
            raise MethodError(
                f"{artifact.source} does not fit the base model {artifact.base_model or ''}: {err}"
            ) from err
        return base

    def call_settings(self, artifact: Artifact) -> dict[str, Any]:
        """The distilled recipe's steps and guidance (a steps sweep overrides the steps)."""
        try:
            sampling = read_sampling(artifact.path)
        except ValueError as err:
            raise MethodError(f"{artifact.source}: {err}") from err
        return call_settings(sampling)

    def default_suites(self, artifact: Artifact) -> list[tuple[str, dict[str, Any]]]:
        return [("shapes-quality", {}), ("shapes-speed", {})]

    def train(
        self, base: str, config: LCMLoRAConfig, out: str | os.PathLike[str], **options: Any
    ) -> dict[str, Any]:
        """Distil a few-step LoRA from ``base``; write ``out`` (LoRA, ``hubkit.json``, card) whole or not
        at all. The caller's pipeline gets its UNet back as it was. ``options``: :meth:`Method.train`'s."""
        from functools import partial

        from hubkit.training import start_training

        from .card import lcm_lora_card
        from .serialization import ADAPTER_NAME, save_lcm_lora
        from .train import DistillError, distill_lcm_lora, remove_lora

        job = start_training(self.name, base, config, out, error=DistillError, **options)
        result = distill_lcm_lora(job.pipe, config, endpoint=job.endpoint, token=job.token, **job.loop)
        unet = result.unet
        facts = job.facts(
            sum(p.numel() for n, p in unet.named_parameters() if f".{ADAPTER_NAME}." in n and "lora_" in n),
            sum(p.numel() for n, p in unet.named_parameters() if "lora_" not in n),
            result.seconds,
            unet.device,
            final_loss=sum(result.losses[-50:]) / len(result.losses[-50:]),
        )
        info = {"base_model": base, "facts": facts}
        save = partial(save_lcm_lora, unet=unet, config=config, adapter_name=ADAPTER_NAME, extra=info)
        try:
            job.write(WEIGHT_NAME, save, lcm_lora_card, facts)
            return facts
        finally:
            remove_lora(unet)  # the caller's UNet as it was

    def summary(self, config: LCMLoRAConfig, facts: dict[str, Any]) -> str:
        return (
            f"{config.variant.upper()} LoRA: {facts['parameters']:,} parameters "
            f"({facts['share'] * 100:.2f} % of the UNet), {facts['file_bytes']:,} bytes, distilled in "
            f"{facts['train_seconds']:.0f} s; sample with {config.scheduler}, {config.num_inference_steps} "
            f"steps, guidance {config.guidance_scale:g}"
        )

    def demo_artifacts(self) -> list[DemoArtifact]:
        """The few-step LoRA of the base model (the defaults), with the base model's steps sweep beside it."""
        return [DemoArtifact("lcm-lora-shapes", LCMLoRAConfig(), DemoArtifact.suites(("shapes-speed", {})))]
