"""SPM in hubkit's method registry (entry point ``spm``): how the core loads and evaluates an SPM."""

from __future__ import annotations

from typing import Any

from hubkit.methods import Artifact, Method, MethodError

from .model import SPMError
from .serialization import WEIGHT_NAME

__all__ = ["SPMMethod"]


class SPMMethod(Method):
    """An SPM applied with facilitated transport on its base pipeline."""

    name = "spm"
    kind = "adapter"

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

    def train_command(self):
        from .cli import train_command

        return train_command

    def default_suites(self, artifact: Artifact) -> list[tuple[str, dict[str, Any]]]:
        """Quality, plus the erasure suite for each erased concept the suite knows."""
        from hubkit.leaderboard.suite import SuiteError, load_suite

        suites: list[tuple[str, dict[str, Any]]] = [("shapes-quality", {})]
        for concept in self.concepts(artifact):
            try:
                load_suite("shapes-erasure", {"concept": concept})
            except SuiteError:
                continue  # not a concept of the reference world
            suites.append(("shapes-erasure", {"concept": concept}))
        return suites
