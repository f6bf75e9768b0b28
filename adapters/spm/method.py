"""SPM in hubkit's method registry (entry point ``spm``): how the core loads and evaluates an SPM."""

from __future__ import annotations

import os
from typing import Any

from hubkit.methods import Artifact, DemoArtifact, DiffusersLora, Method, MethodError

from .config import SPMConfig
from .model import SPMError
from .serialization import WEIGHT_NAME

DEMO_BASE = "hubkit/tiny-sd-shapes"

__all__ = ["SPMMethod"]


class SPMMethod(Method):
    """An SPM applied with facilitated transport on its base pipeline."""

    name = "spm"
    kind = "adapter"
    config_class = SPMConfig

    @classmethod
    def recognizes(cls, artifact: Artifact) -> bool:
        """Official SPM files (published without hubkit) carry the erased concepts as ``prompts`` metadata."""
        return "prompts" in (artifact.safetensors_metadata(WEIGHT_NAME) or {})

    def concepts(self, artifact: Artifact) -> list[str]:
        concepts = artifact.hubkit_json.get("concepts")
        if isinstance(concepts, list) and concepts:
            return [str(c) for c in concepts]
        from .serialization import read_spm

        try:
            return read_spm(artifact.path).concepts
        except SPMError as err:
            raise MethodError(f"{artifact.source}: {err}") from err

    def load(self, artifact: Artifact, base: Any | None) -> Any:
        from hubkit.pipelines.spm import load_spm

        if base is None:
            raise MethodError(f"{artifact.source} is an SPM adapter: it needs a base pipeline (--base)")
        try:
            load_spm(base, artifact.path, adapter_name="spm", transport=True)
        except SPMError as err:
            raise MethodError(
                f"{artifact.source} does not fit the base model {artifact.base_model or ''}: {err}"
            ) from err
        return base

    def apply_in_stack(self, artifact: Artifact, pipe: Any) -> Any:
        """In a stack the SPM is its stock LoRA, on every prompt: facilitated transport gates it per prompt,
        which a later component that fuses or quantizes the UNet could not keep."""
        return DiffusersLora().load(artifact, pipe)

    def train(
        self, base: str, config: SPMConfig, out: str | os.PathLike[str], **options: Any
    ) -> dict[str, Any]:
        """Train an SPM erasing ``config.concepts`` from ``base``; write ``out`` (weights, ``hubkit.json``,
        card) whole or not at all. ``options``: :meth:`Method.train`'s."""
        from hubkit.training import start_training

        from .card import spm_card
        from .serialization import save_spm
        from .train import ADAPTER_NAME, train_spm

        job = start_training(self.name, base, config, out, error=SPMError, **options)
        result = train_spm(job.pipe, config, **job.loop)
        network = result.network
        facts = job.facts(
            network.parameter_count(ADAPTER_NAME),
            sum(p.numel() for p in job.pipe.unet.parameters()),
            result.seconds,
            job.pipe.unet.device,
            layers=len(network.paths),
            final_erasure_loss=sum(result.erasure_losses[-20:]) / len(result.erasure_losses[-20:]),
        )
        weights = network.adapter_weights(ADAPTER_NAME)
        network.detach_hooks()
        info = {"base_model": base, "facts": facts}
        job.write(WEIGHT_NAME, lambda folder: save_spm(folder, weights, config, info), spm_card, facts)
        return facts

    def summary(self, config: SPMConfig, facts: dict[str, Any]) -> str:
        return (
            f"SPM erasing {', '.join(config.concepts)}: {facts['parameters']:,} parameters "
            f"({facts['share'] * 100:.3f} % of the UNet), {facts['file_bytes']:,} bytes, trained in "
            f"{facts['train_seconds']:.0f} s"
        )

    def demo_artifacts(self) -> list[DemoArtifact]:
        """SPMs erasing red (keeping purple, which is red + blue) and triangle, with the base model's erasure
        rows beside them."""
        from hubkit.leaderboard.suite import erasure_suites

        return [
            DemoArtifact(
                f"spm-{concept}",
                SPMConfig(concepts=[concept], preserve=preserve),
                DemoArtifact.suites(*erasure_suites([concept])),
            )
            for concept, preserve in (("red", ["purple"]), ("triangle", []))
        ]

    def default_suites(self, artifact: Artifact) -> list[tuple[str, dict[str, Any]]]:
        """Quality, plus the erasure and attack suites for each erased concept the suites know."""
        from hubkit.leaderboard.suite import erasure_suites

        return [("shapes-quality", {}), *erasure_suites(self.concepts(artifact))]
