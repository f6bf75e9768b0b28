"""The method registry: how the core loads an artifact without knowing any method.

A method plugin is a :class:`Method` subclass registered under the entry-point group ``hubkit.methods``
(``[project.entry-points."hubkit.methods"]`` in its distribution's ``pyproject.toml``). The core finds an
artifact's method from its card (tag ``hubkit-method:<name>``), its ``hubkit.json`` (``"method"``), or, for
artifacts published without hubkit, by asking each method whether it recognises the files. Adding a method
means adding a folder and one entry-point line; nothing here changes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, ClassVar

from hubkit.cards.schema import HUBKIT_METHOD_TAG_PREFIX

ENTRY_POINT_GROUP = "hubkit.methods"

__all__ = [
    "ENTRY_POINT_GROUP",
    "Artifact",
    "DiffusersLora",
    "DiffusersPipeline",
    "Method",
    "MethodError",
    "available_methods",
    "get_method",
    "method_for",
]


class MethodError(ValueError):
    """An artifact cannot be loaded by its method (unknown method, wrong base, missing files...)."""


@dataclass
class Artifact:
    """An artifact on disk (a Hub snapshot or a local folder) and what its card and ``hubkit.json`` say."""

    source: str  # repo id, or the local path as given
    path: Path
    repo_id: str | None = None
    revision: str | None = None  # commit sha of the snapshot; None for a local folder
    card_data: dict[str, Any] = field(default_factory=dict)
    hubkit_json: dict[str, Any] = field(default_factory=dict)
    remote_files: frozenset[str] | None = None  # the repo's file list when only the card was downloaded

    def has_file(self, name: str) -> bool:
        if self.remote_files is not None:
            return name in self.remote_files
        return (self.path / name).is_file()

    @property
    def tags(self) -> list[str]:
        return [str(t) for t in self.card_data.get("tags") or []]

    @property
    def base_model(self) -> str | None:
        base = self.card_data.get("base_model") or self.hubkit_json.get("base_model")
        if isinstance(base, list):
            base = base[0] if base else None
        return str(base) if base else None

    @property
    def declared_method(self) -> str | None:
        for tag in self.tags:
            if tag.startswith(HUBKIT_METHOD_TAG_PREFIX):
                return tag[len(HUBKIT_METHOD_TAG_PREFIX) :]
        method = self.hubkit_json.get("method")
        return str(method) if method else None

    def safetensors_metadata(self, name: str) -> dict[str, str] | None:
        """The header metadata of one of the artifact's safetensors files; None if absent or unreadable."""
        file = self.path / name
        if not file.is_file():
            return None
        from safetensors import safe_open

        try:
            with safe_open(str(file), framework="pt") as f:
                return dict(f.metadata() or {})
        except Exception:  # an unreadable file is not recognisably anything
            return None

    def files(self) -> list[Path]:
        # A local_dir download keeps its bookkeeping in .cache/huggingface: not part of the artifact.
        return sorted(
            p for p in self.path.rglob("*") if p.is_file() and ".cache" not in p.relative_to(self.path).parts
        )

    @property
    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.files())

    @property
    def parameters(self) -> int:
        """Tensor elements in the artifact's safetensors files (read from their headers only)."""
        from safetensors import safe_open

        total = 0
        for file in self.path.rglob("*.safetensors"):
            with safe_open(str(file), framework="pt") as f:
                for key in f.keys():  # noqa: SIM118 - a safetensors handle, not a dict
                    total += math.prod(f.get_slice(key).get_shape())
        return total


class Method:
    """What the core needs from a method: load its artifact into a pipeline, and say how to evaluate it.

    Subclasses set ``name`` (the ``hubkit-method:`` tag value) and ``kind`` (``pipeline``, ``adapter`` or
    ``quantized``; adapters are applied on a base pipeline) and implement :meth:`load`.
    """

    name: ClassVar[str]
    kind: ClassVar[str] = "adapter"

    @property
    def needs_base(self) -> bool:
        return self.kind != "pipeline"

    @classmethod
    def recognizes(cls, artifact: Artifact) -> bool:
        """Whether files published without hubkit's metadata look like this method's artifact."""
        return False

    def load(self, artifact: Artifact, base: Any | None) -> Any:
        """A ready-to-call diffusers pipeline with the artifact applied (on ``base`` for adapters)."""
        raise NotImplementedError

    def call_settings(self, artifact: Artifact) -> dict[str, Any]:
        """Call settings the artifact needs (e.g. guidance 1.0 for a distilled LoRA); none by default."""
        return {}

    def default_suites(self, artifact: Artifact) -> list[tuple[str, dict[str, Any]]]:
        """The leaderboard's suites for this artifact, as ``(suite name, parameters)``."""
        return [("shapes-quality", {})]

    def train_command(self) -> Callable[..., None] | None:
        """The Typer command behind ``hubkit train <name>``, for methods that train artifacts."""
        return None


class DiffusersPipeline(Method):
    """A whole diffusers pipeline folder (``model_index.json``), loaded with ``DiffusionPipeline``."""

    name = "pipeline"
    kind = "pipeline"

    @classmethod
    def recognizes(cls, artifact: Artifact) -> bool:
        return artifact.has_file("model_index.json")

    def load(self, artifact: Artifact, base: Any | None) -> Any:
        from diffusers import DiffusionPipeline

        index = artifact.path / "model_index.json"
        if not index.is_file():
            raise MethodError(f"{artifact.source} has no model_index.json: not a diffusers pipeline")
        try:
            return DiffusionPipeline.from_pretrained(str(artifact.path))
        except (OSError, ValueError, KeyError, AttributeError, RuntimeError) as err:
            raise MethodError(f"{artifact.source}: diffusers could not load the pipeline: {err}") from err


class DiffusersLora(Method):
    """A plain diffusers LoRA (``pytorch_lora_weights.safetensors``), applied with ``load_lora_weights``."""

    name = "lora"
    kind = "adapter"
    weight_name = "pytorch_lora_weights.safetensors"

    @classmethod
    def recognizes(cls, artifact: Artifact) -> bool:
        return artifact.has_file(cls.weight_name)

    def load(self, artifact: Artifact, base: Any | None) -> Any:
        if base is None:
            raise MethodError(f"{artifact.source} is an adapter: it needs a base pipeline (--base)")
        if not (artifact.path / self.weight_name).is_file():
            raise MethodError(f"{artifact.source} has no {self.weight_name}")
        try:
            base.load_lora_weights(str(artifact.path), weight_name=self.weight_name)
        except (OSError, ValueError, KeyError, RuntimeError) as err:
            raise MethodError(
                f"{artifact.source} does not fit the base model {artifact.base_model or ''}: {err}"
            ) from err
        return base


@cache
def available_methods() -> dict[str, type[Method]]:
    """Every registered method, by name, in entry-point order (hubkit's own first)."""
    methods: dict[str, type[Method]] = {}
    for ep in sorted(
        entry_points(group=ENTRY_POINT_GROUP), key=lambda e: (not e.value.startswith("hubkit."), e.name)
    ):
        cls = ep.load()
        if not (isinstance(cls, type) and issubclass(cls, Method)):
            raise TypeError(f"entry point {ep.name} = {ep.value} is not a hubkit.methods.Method subclass")
        methods[cls.name] = cls
    return methods


def get_method(name: str) -> Method:
    methods = available_methods()
    if name not in methods:
        raise MethodError(
            f"unknown method {name!r}; installed methods: {', '.join(sorted(methods)) or 'none'} "
            f"(entry-point group {ENTRY_POINT_GROUP!r})"
        )
    return methods[name]()


def method_for(artifact: Artifact) -> Method:
    """The artifact's method: declared by its card or ``hubkit.json``, else recognised from its files."""
    declared = artifact.declared_method
    if declared:
        return get_method(declared)
    for cls in available_methods().values():
        if cls.recognizes(artifact):
            return cls()
    raise MethodError(
        f"{artifact.source}: cannot tell which method made it (no hubkit-method tag, no hubkit.json, "
        f"and no installed method recognises its files)"
    )


def read_hubkit_json(path: Path) -> dict[str, Any]:
    file = path / "hubkit.json"
    if not file.is_file():
        return {}
    try:
        data = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise MethodError(f"{file} is not valid JSON: {err}") from err
    if not isinstance(data, dict):
        raise MethodError(f"{file} must hold a JSON object")
    return data
