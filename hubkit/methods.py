"""The method registry: how the core loads an artifact without knowing any method.

A method plugin is a :class:`Method` subclass registered under the entry-point group ``hubkit.methods``
(``[project.entry-points."hubkit.methods"]`` in its distribution's ``pyproject.toml``). The core finds an
artifact's method from its card (tag ``hubkit-method:<name>``), its ``hubkit.json`` (``"method"``), or, for
artifacts published without hubkit, by asking each method whether it recognises the files. Adding a method
means adding a folder and one entry-point line; nothing here changes.
"""

from __future__ import annotations

import inspect
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, ClassVar

from hubkit.cards.schema import (
    ARCHITECTURE_KEY,
    ARCHITECTURE_TAG_PREFIX,
    BASE_ARCHITECTURES,
    HUBKIT_METHOD_TAG_PREFIX,
)

ENTRY_POINT_GROUP = "hubkit.methods"

__all__ = [
    "ENTRY_POINT_GROUP",
    "Artifact",
    "DemoArtifact",
    "DiffusersLora",
    "DiffusersPipeline",
    "Method",
    "MethodError",
    "available_methods",
    "fuse_adapters",
    "get_method",
    "lazy_exports",
    "method_for",
    "suite_dirs",
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
    # Reads a remote safetensors file's header metadata (``HfApi.get_safetensors_metadata``) when only the
    # card was downloaded, so a method can recognise its files without the weights.
    remote_metadata: Callable[[str], dict[str, str] | None] | None = None
    # The Hub the artifact is used against (an ``HfApi``, made on first use), for a method that pulls more
    # from it (a stack's components); None: ``HF_ENDPOINT`` or the embedded Hub.
    hub_api: Callable[[], Any] | None = None

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
    def architecture(self) -> str | None:
        """The base's family (``sd1``, ``sd2``, ``sdxl``) as the artifact records it: its card's
        ``base_architecture`` (or tag), else ``hubkit.json``'s ``architecture``. None for artifacts made
        before hubkit recorded it: callers derive it from the base's config (``hubkit.architectures``)."""
        tagged = [
            t[len(ARCHITECTURE_TAG_PREFIX) :] for t in self.tags if t.startswith(ARCHITECTURE_TAG_PREFIX)
        ]
        value = self.card_data.get(ARCHITECTURE_KEY) or next(iter(tagged), None)
        value = value or self.hubkit_json.get("architecture")
        return str(value) if value else None

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
            if self.remote_metadata is not None and self.has_file(name):
                return self.remote_metadata(name)
            return None
        from safetensors import safe_open

        try:
            with safe_open(str(file), framework="pt") as f:
                return dict(f.metadata() or {})
        except Exception:  # an unreadable file is not recognisably anything
            return None

    def json_file(self, name: str) -> dict[str, Any]:
        """One of the artifact's JSON files (e.g. ``adapter_config.json``) as a dict; empty if absent,
        unreadable or not an object, so a method can recognise its files without guarding every read."""
        try:
            data = json.loads((self.path / name).read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

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


@dataclass(frozen=True)
class DemoArtifact:
    """One artifact ``make demo`` publishes for a method: trained with ``config`` on the demo base model, or
    shipped ready-made as package data in ``<method folder>/demo/<name>/`` (``make demo RETRAIN=1`` trains
    it anew). ``baseline_suites`` are the suites the base model runs on so the leaderboard compares like with
    like."""

    name: str  # repo name under the demo namespace, e.g. "spm-red"
    config: Any
    baseline_suites: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = ()

    @staticmethod
    def suites(*suites: tuple[str, dict[str, str]]) -> tuple[tuple[str, tuple[tuple[str, str], ...]], ...]:
        """``("shapes-erasure", {"concept": "red"})`` pairs in the hashable form ``baseline_suites`` keeps."""
        return tuple((name, tuple(sorted(params.items()))) for name, params in suites)


class Method:
    """What the core needs from a method plugin; the core asks, the plugin never needs the core to know it.

    Subclasses set ``name`` (the ``hubkit-method:`` tag value), ``kind`` (``pipeline``, ``adapter`` or
    ``quantized``; adapters are applied on a base pipeline) and ``priority`` (recognition order of untagged
    artifacts: specific formats first, generic ones such as a plain LoRA last), and implement :meth:`load`.
    A method that trains sets ``config_class`` (a dataclass whose fields carry ``metadata={"help": ...}``:
    ``hubkit train <name>`` is generated from it) and implements :meth:`train`. Suites shipped in a
    ``suites/`` folder beside the method's module are found by ``load_suite``; demo artifacts in ``demo/``.
    ``architectures`` lists the base families it trains on; training refuses others with
    :meth:`architecture_gap`'s reason.
    """

    name: ClassVar[str]
    kind: ClassVar[str] = "adapter"
    priority: ClassVar[int] = 0
    config_class: ClassVar[type | None] = None
    # Where the method's artifact goes in a stack (hubkit.stacks): components apply in order and a later one
    # never has a lower phase; 0 is for edits of the base weights and adapters, higher phases apply after
    # them (a quantizer: it quantizes what the edits leave). ``stack_rule`` says why, for the error message.
    stack_phase: ClassVar[int] = 0
    stack_rule: ClassVar[str] = "it edits the base weights or adds an adapter"
    replaces_unet: ClassVar[bool] = False  # a stack holds at most one component that swaps the UNet
    # The Stable Diffusion families (hubkit.architectures.architecture_of) the method trains on.
    architectures: ClassVar[tuple[str, ...]] = BASE_ARCHITECTURES
    # Whether ``train`` runs on the shared loop (hubkit.training.run_training), so that under ``accelerate
    # launch`` every process trains on its own micro-batches. A method without gradient training (closed
    # form, calibration) sets False: ``hubkit train`` then runs it on the main process while the others wait.
    data_parallel: ClassVar[bool] = True

    @property
    def needs_base(self) -> bool:
        return self.kind != "pipeline"

    # -- recognising and loading ---------------------------------------------------------------------
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

    def merged(self, artifact: Artifact, base: Any) -> Any:
        """``base`` with the artifact fused into its weights: a plain diffusers pipeline that ``hubkit export
        --merged`` saves and stock ``from_pretrained`` loads. Methods whose effect is not a weight update
        (per-prompt switching, another scheduler...) refuse."""
        raise MethodError(
            f"{artifact.source} is a {self.name} artifact: it cannot be merged into a plain pipeline"
        )

    def apply_in_stack(self, artifact: Artifact, pipe: Any) -> Any:
        """``pipe`` with the artifact applied after the stack's earlier components (see :mod:`hubkit.stacks`);
        by default as :meth:`load` applies it. A method whose artifact would undo or miss the earlier
        components (a UNet quantized from the base's weights) overrides this."""
        return self.load(artifact, pipe)

    # -- evaluating ----------------------------------------------------------------------------------
    def default_suites(self, artifact: Artifact) -> list[tuple[str, dict[str, Any]]]:
        """The leaderboard's suites for this artifact, as ``(suite name, parameters)``."""
        return [("shapes-quality", {})]

    @classmethod
    def package_dir(cls) -> Path:
        """The folder of the module that defines the method (its suites/ and demo/ live there)."""
        return Path(inspect.getfile(cls)).resolve().parent

    @classmethod
    def suites_dir(cls) -> Path | None:
        folder = cls.package_dir() / "suites"
        return folder if folder.is_dir() else None

    # -- training ------------------------------------------------------------------------------------
    @classmethod
    def architecture_gap(cls, architecture: str) -> str | None:
        """What the method lacks to train on a base of ``architecture`` (``sd1``, ``sd2``, ``sdxl``), or None
        when it can: training refuses with this reason before any work. A method overrides it to name the
        missing piece ("its step passes SDXL's UNet no pooled text embeddings"); by default only
        :attr:`architectures` are supported."""
        if architecture in cls.architectures:
            return None
        return f"it supports only {', '.join(cls.architectures)}"

    def train(
        self,
        base: str,
        config: Any,
        out: str | os.PathLike[str],
        *,
        repo_id: str | None = None,
        pipe: Any = None,
        progress: bool = True,
        force: bool = False,
        resume: bool = False,
        checkpoint_every: int | None = None,
        endpoint: str | None = None,
        token: str | None = None,
    ) -> dict[str, Any]:
        """Train on ``base`` (a repo id or folder; ``pipe`` if already loaded) and write ``out`` whole or not
        at all: weights, ``hubkit.json`` and the card. Returns the facts measured (``parameters``,
        ``file_bytes``, ``train_seconds``...). ``resume`` continues from the checkpoints in ``out``."""
        raise MethodError(f"method {self.name!r} does not train artifacts")

    def summary(self, config: Any, facts: dict[str, Any]) -> str:
        """One line ``hubkit train`` prints about a trained artifact."""
        size = f", {facts['file_bytes']:,} bytes" if "file_bytes" in facts else ""
        seconds = f", trained in {facts['train_seconds']:.0f} s" if "train_seconds" in facts else ""
        return f"{self.name}: {facts.get('parameters', 0):,} parameters{size}{seconds}"

    # -- the demo ------------------------------------------------------------------------------------
    def demo_artifacts(self) -> list[DemoArtifact]:
        """What ``make demo`` publishes for this method (none by default)."""
        return []

    @classmethod
    def shipped_demo(cls, demo: DemoArtifact) -> Path | None:
        """The ready-made folder of ``demo`` shipped with the plugin, if any."""
        folder = cls.package_dir() / "demo" / demo.name
        return folder if (folder / "README.md").is_file() else None


class DiffusersPipeline(Method):
    """A whole diffusers pipeline folder (``model_index.json``), loaded with ``DiffusionPipeline``."""

    name = "pipeline"
    kind = "pipeline"
    priority = -200  # the most generic format: asked last

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
    priority = -100  # any pytorch_lora_weights.safetensors: asked after the methods that ship LoRA files
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

    def merged(self, artifact: Artifact, base: Any) -> Any:
        """The LoRA fused into the base weights (``fuse_lora``), its adapter layers then removed."""
        return fuse_adapters(self.load(artifact, base))


def fuse_adapters(pipe: Any) -> Any:
    """``pipe`` with its active LoRA adapters fused into the weights (``fuse_lora``) and the adapter layers
    removed: plain diffusers modules again. A pipeline without adapters is returned as it is."""
    if any(getattr(pipe, "get_list_adapters", dict)().values()):
        pipe.fuse_lora()
        pipe.unload_lora_weights()
    return pipe


@cache
def available_methods() -> dict[str, type[Method]]:
    """Every registered method, by name, in recognition order: highest ``priority`` first, then by name."""
    methods: dict[str, type[Method]] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        cls = ep.load()
        if not (isinstance(cls, type) and issubclass(cls, Method)):
            raise TypeError(f"entry point {ep.name} = {ep.value} is not a hubkit.methods.Method subclass")
        if cls.name in methods and methods[cls.name] is not cls:
            raise TypeError(f"two methods are named {cls.name!r}: {methods[cls.name]} and {cls}")
        methods[cls.name] = cls
    return dict(sorted(methods.items(), key=lambda item: (-item[1].priority, item[0])))


def suite_dirs() -> list[Path]:
    """The ``suites/`` folders of every registered method, in registry order."""
    return [d for cls in available_methods().values() if (d := cls.suites_dir()) is not None]


def get_method(name: str) -> Method:
    methods = available_methods()
    if name not in methods:
        raise MethodError(
            f"unknown method {name!r}; installed methods: {', '.join(sorted(methods)) or 'none'} "
            f"(entry-point group {ENTRY_POINT_GROUP!r})"
        )
    return methods[name]()


def method_for(artifact: Artifact) -> Method:
    """The artifact's method: declared by its card or ``hubkit.json``, else the first method, by priority,
    that recognises its files (specific formats before generic ones)."""
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


def lazy_exports(package: str, **modules: list[str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that imports ``names`` from a submodule on first use: a method package can
    re-export its training API (``lazy_exports(__name__, train=["train_spm"])``) while importing the package
    for inference loads no training code."""
    import importlib

    where = {name: submodule for submodule, names in modules.items() for name in names}

    def __getattr__(name: str) -> Any:
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{where[name]}"), name)

    return __getattr__


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
