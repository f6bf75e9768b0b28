"""SaRA in hubkit's method registry (entry point ``sara``): how the core trains, loads and evaluates it."""

from __future__ import annotations

import os
from typing import Any

from hubkit.methods import Artifact, DemoArtifact, Method, MethodError

from .config import PEFT_TYPE, SaRAConfig
from .model import SaraError
from .serialization import CONFIG_NAME, WEIGHT_NAME

__all__ = ["SaRAMethod"]

DEMO_DATASET = "hubkit/shapes"


class SaRAMethod(Method):
    """A sparse update of the base UNet's small-magnitude weights, fused into the base on load."""

    name = "sara"
    kind = "adapter"
    config_class = SaRAConfig

    @classmethod
    def recognizes(cls, artifact: Artifact) -> bool:
        return artifact.json_file(CONFIG_NAME).get("peft_type") == PEFT_TYPE

    def load(self, artifact: Artifact, base: Any | None) -> Any:
        from hubkit.pipelines.sara import load_sara

        if base is None:
            raise MethodError(f"{artifact.source} is a SaRA adapter: it needs a base pipeline (--base)")
        try:
            return load_sara(base, artifact.path, fuse=True)
        except SaraError as err:
            raise MethodError(str(err)) from err

    def merged(self, artifact: Artifact, base: Any) -> Any:
        return self.load(artifact, base)  # load_sara fuses: the UNet is a plain diffusers UNet again

    def default_suites(self, artifact: Artifact) -> list[tuple[str, dict[str, Any]]]:
        return [("shapes-quality", {}), ("shapes-acquisition", {})]

    def train(
        self, base: str, config: SaRAConfig, out: str | os.PathLike[str], **options: Any
    ) -> dict[str, Any]:
        """Fine-tune a SaRA adapter on ``config.dataset``; write ``out`` (adapter, ``hubkit.json``, card and,
        with ``save_merged_unet``, the merged UNet) whole or not at all; ``options``: ``Method.train``'s."""
        from hubkit.finetune import check_pipeline, load_fine_tune_data
        from hubkit.training import start_training

        from .card import sara_card
        from .train import layer_facts, train_sara

        job = start_training(self.name, base, config, out, error=SaraError, **options)
        check_pipeline(job.pipe, "SaRA")
        data, prior = load_fine_tune_data(config, job.pipe, job.endpoint, job.token)
        result = train_sara(job.pipe, config, data=data, prior=prior, **job.loop)
        unet = job.pipe.unet
        facts = job.facts(
            result.selected,
            sum(p.numel() for n, p in unet.named_parameters() if "sara_" not in n),
            result.seconds,
            unet.device,
            threshold=result.threshold,
            frozen=result.frozen,
            final_loss=sum(result.losses[-20:]) / max(1, len(result.losses[-20:])),
            merged_unet=config.save_merged_unet,
            **layer_facts(unet, config),
        )

        def save(folder):
            from .model import merged_copy, sara_layers
            from .serialization import MERGED_UNET, base_digest, save_sara

            adapter = result.tuner.peft_config["default"]
            paths = [path for path, _ in sara_layers(unet)]
            info = {"method": self.name, "base_model": base, "facts": facts}
            save_sara(folder, unet, adapter, digest=base_digest(unet, paths), hubkit_json=info)
            if config.save_merged_unet:
                merged_copy(unet).save_pretrained(folder / MERGED_UNET, safe_serialization=True)

        try:
            job.write(WEIGHT_NAME, save, sara_card, facts)
        finally:
            result.tuner.unload()  # the caller's pipeline back as it was
        return facts

    def summary(self, config: SaRAConfig, facts: dict[str, Any]) -> str:
        return (
            f"SaRA on {config.dataset}: {facts['parameters']:,} trainable entries "
            f"({facts['share'] * 100:.2f} % "
            f"of the UNet, θ = {facts['threshold']:.3g}), {facts['file_bytes']:,} bytes, trained in "
            f"{facts['train_seconds']:.0f} s"
        )

    def demo_artifacts(self) -> list[DemoArtifact]:
        """SaRA teaching the base model the novel shape (the heart) from the ``novel`` config of the world's
        dataset, shown in half of the colours; the base model's acquisition row beside it."""
        config = SaRAConfig(
            dataset=DEMO_DATASET, dataset_config="novel", prior_dataset=DEMO_DATASET, save_merged_unet=False
        )  # the sparse file only (4.8 MB; the merged UNet adds 40 MB): `hubkit export --merged` makes one
        return [DemoArtifact("sara-heart", config, DemoArtifact.suites(("shapes-acquisition", {})))]
