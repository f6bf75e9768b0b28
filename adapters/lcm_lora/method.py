"""LCM-LoRA in hubkit's method registry (entry point ``lcm-lora``): loaded with its scheduler."""

from __future__ import annotations

from typing import Any

from hubkit.methods import Artifact, Method, MethodError

from .serialization import METHOD_NAME, WEIGHT_NAME, call_settings, read_sampling

__all__ = ["LCMLoRAMethod"]


class LCMLoRAMethod(Method):
    """A distilled LoRA applied with ``load_lora_weights`` and its few-step scheduler."""

    name = METHOD_NAME
    kind = "adapter"

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

    def train_command(self):
        from .cli import train_command

        return train_command
