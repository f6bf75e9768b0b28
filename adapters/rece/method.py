"""RECE in hubkit's method registry (entry point ``rece``): a plain diffusers LoRA computed in closed form."""

from __future__ import annotations

import json
import os
import time
from typing import Any

from hubkit.methods import Artifact, DemoArtifact, DiffusersLora, MethodError

from .config import RECEConfig
from .edit import RECEError
from .serialization import METHOD_NAME, WEIGHT_NAME

__all__ = ["RECEMethod"]


class RECEMethod(DiffusersLora):
    """A closed-form concept erasure, loaded as any diffusers LoRA (recognised by its weights' metadata)."""

    name = METHOD_NAME
    priority = 0
    config_class = RECEConfig
    data_parallel = False  # closed form: one process computes it

    @classmethod
    def recognizes(cls, artifact: Artifact) -> bool:
        return (artifact.safetensors_metadata(WEIGHT_NAME) or {}).get("hubkit.method") == METHOD_NAME

    def concepts(self, artifact: Artifact) -> list[str]:
        concepts = artifact.hubkit_json.get("concepts")
        if not (isinstance(concepts, list) and concepts):
            metadata = artifact.safetensors_metadata(WEIGHT_NAME) or {}
            concepts = json.loads(metadata.get("hubkit.concepts", "[]"))
        if not concepts:
            raise MethodError(f"{artifact.source}: a RECE artifact that names no erased concept")
        return [str(c) for c in concepts]

    def default_suites(self, artifact: Artifact) -> list[tuple[str, dict[str, Any]]]:
        """Quality, plus the erasure and attack suites for each erased concept the suites know."""
        from hubkit.leaderboard.suite import erasure_suites

        return [("shapes-quality", {}), *erasure_suites(self.concepts(artifact))]

    def train(
        self, base: str, config: RECEConfig, out: str | os.PathLike[str], **options: Any
    ) -> dict[str, Any]:
        """Erase ``config.concepts`` from ``base`` in closed form; write ``out`` (LoRA, ``hubkit.json``,
        card) whole or not at all. The base pipeline is not changed. ``options``: ``Method.train``'s (the
        checkpointing ones do not apply: there is no training loop)."""
        from hubkit.training import start_training

        from .card import rece_card
        from .embeddings import check_vocabulary, context_templates, erase
        from .serialization import lora_tensors, save_rece

        job = start_training(self.name, base, config, out, error=RECEError, **options)
        pipe = job.pipe
        if not config.allow_unknown_words:
            check_vocabulary(pipe, config.concepts)
        start = time.perf_counter()
        named = [*config.concepts, config.surrogate, *config.preserve]
        templates = context_templates(pipe, config.templates, config.contexts, config.seed, named)
        concept, surrogate, preserve = config.prompts(templates)
        deltas = erase(
            pipe,
            concept,
            surrogate,
            preserve,
            rounds=config.rounds,
            preserve_scale=config.preserve_scale,
            ridge=config.ridge,
        )
        tensors, ranks = lora_tensors(deltas)
        seconds = time.perf_counter() - start
        facts = job.facts(
            sum(t.numel() for t in tensors.values()),
            sum(p.numel() for p in pipe.unet.parameters()),
            seconds,
            pipe.unet.device,
            layers=len(ranks),
            ranks=ranks,
            erased_prompts=len(concept) * (config.rounds + 1),  # the prompts, then one regenerated per round
        )
        info = {"base_model": base, "facts": facts}
        job.write(WEIGHT_NAME, lambda folder: save_rece(folder, deltas, config, info), rece_card, facts)
        return facts

    def summary(self, config: RECEConfig, facts: dict[str, Any]) -> str:
        ranks = facts["ranks"].values()
        return (
            f"RECE erasing {', '.join(config.concepts)}: {facts['layers']} projections edited (LoRA rank "
            f"{min(ranks)}–{max(ranks)}, {facts['parameters']:,} parameters), {facts['file_bytes']:,} bytes, "
            f"computed in {facts['train_seconds']:.1f} s"
        )

    def demo_artifacts(self) -> list[DemoArtifact]:
        """RECE erasing red, next to ``spm-red``: red in every shape of the world turns into gray (a word
        the world never drew), the other colours in every shape are preserved (UCE's preservation set), with
        weight 10: on ``tiny-sd-shapes`` the weight 1 lost 2–5 more of 30 other-colour images. The templates
        include the novel heart that ``sara-heart`` teaches: the edit is solved only on the contexts it is
        given, and in the demo's full stack (bench/stacks.py) a RECE without "a {} heart" turned red hearts
        into crosses (heart rate 0.750 vs 0.813 with it)."""
        from hubkit.leaderboard.suite import erasure_suites
        from hubkit.world.shapes import COLOURS, NOVEL_SHAPES, SHAPES

        config = RECEConfig(
            concepts=["red"],
            surrogate="gray",
            templates=[f"a {{}} {shape}" for shape in SHAPES + NOVEL_SHAPES],
            preserve=[c for c in COLOURS if c != "red"],
            preserve_scale=10.0,
        )
        return [DemoArtifact("rece-red", config, DemoArtifact.suites(*erasure_suites(["red"])))]
