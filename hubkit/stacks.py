"""Stacks: one base model and component artifacts pinned to commits, applied in order, as one artifact.

A stack repo holds no weights: ``hubkit.json`` (method ``stack``, the base, its commit and its family, the
components in application order, each with its repo, commit, method and suites) and a card. Loading pulls
each component at its commit and applies it on the base pipeline with its own method
(:meth:`Method.apply_in_stack`). Where a component may go is its method's rule (:attr:`Method.stack_phase`,
:attr:`Method.replaces_unet`): the core checks the rules generically and knows no method. Every component
is made for the stack's base, so for its family too.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

from hubkit.cards.schema import ARCHITECTURE_LABELS
from hubkit.config import JSONConfig
from hubkit.methods import Artifact, DemoArtifact, Method, MethodError, fuse_adapters, get_method, method_for

__all__ = [
    "STACK_METHOD",
    "StackComponent",
    "StackConfig",
    "StackError",
    "StackMethod",
    "create_stack",
    "load_stack",
]

STACK_METHOD = "stack"


class StackError(MethodError):
    """A stack cannot be made or loaded (a missing revision, mixed bases, two UNet replacements...)."""


@dataclass
class StackConfig(JSONConfig):
    """What a stack holds besides its base: the components, in application order."""

    components: list[str] = field(
        default_factory=list,
        metadata={
            "help": "A component: REPO or REPO@REVISION, in application order (repeatable).",
            "cli": "--add",
        },
    )

    def __post_init__(self) -> None:
        if not self.components:
            raise ValueError("a stack needs at least one component (--add REPO[@REVISION])")


@dataclass(frozen=True)
class StackComponent:
    """One component: a repo at one commit, its method, and the suites its method ranks it on."""

    repo: str
    revision: str
    method: str
    suites: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = ()

    @property
    def ref(self) -> str:
        return f"{self.repo}@{self.revision[:12]}"

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["suites"] = [[name, dict(params)] for name, params in self.suites]
        return data

    @classmethod
    def from_json(cls, data: Any, where: str) -> StackComponent:
        try:
            suites = DemoArtifact.suites(*((str(n), dict(p)) for n, p in data.get("suites", [])))
            return cls(str(data["repo"]), str(data["revision"]), str(data["method"]), suites)
        except (AttributeError, KeyError, TypeError, ValueError) as err:
            raise StackError(f"{where}: a component needs repo, revision and method ({err})") from err


def check_order(components: list[tuple[str, Method]]) -> None:
    """The methods' rules over a stack's components (``(ref, method)`` in application order): phases never go
    back, at most one component replaces the UNet, no artifact twice."""
    refs = [ref for ref, _ in components]
    twice = sorted({ref for ref in refs if refs.count(ref) > 1})
    if twice:
        raise StackError(f"{', '.join(twice)} appears twice in the stack")
    for (ref_a, a), (ref_b, b) in pairwise(components):
        if b.stack_phase < a.stack_phase:
            raise StackError(
                f"{ref_b} ({b.name}) cannot come after {ref_a} ({a.name}): {a.name} applies after every "
                f"{b.name}-like component ({a.stack_rule})"
            )
    replacing = [f"{ref} ({m.name})" for ref, m in components if m.replaces_unet]
    if len(replacing) > 1:
        raise StackError(f"a stack has one UNet: {' and '.join(replacing)} each replace it")


def _commit(api: Any, repo: str, revision: str | None) -> str:
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError

    try:
        return str(api.model_info(repo, revision=revision).sha)
    except RevisionNotFoundError as err:
        raise StackError(f"{repo} has no revision {revision!r} on {api.endpoint}") from err
    except RepositoryNotFoundError as err:
        raise StackError(f"{repo}: no such repo on {api.endpoint}") from err
    except HfHubHTTPError as err:
        raise StackError(f"{repo}: the Hub refused to describe it ({err})") from err


def _component(api: Any, ref: str, base: str, architecture: str | None) -> tuple[StackComponent, Method]:
    from hubkit.leaderboard.evaluation import fetch_card_files

    repo, _, revision = ref.partition("@")
    sha = _commit(api, repo, revision or None)
    with tempfile.TemporaryDirectory() as tmp:
        artifact = fetch_card_files(api, repo, sha, Path(tmp))
        method = method_for(artifact)
        if not method.needs_base:
            raise StackError(
                f"{repo} is a whole pipeline ({method.name}): a stack's components go on its base"
            )
        if method.name == STACK_METHOD:
            raise StackError(f"{repo} is a stack itself: add its components instead")
        if artifact.base_model != base:
            raise StackError(
                f"{repo} is made for {artifact.base_model or 'an unnamed base'}, the stack's base is {base}: "
                "a stack has one base"
            )
        made_for = artifact.architecture
        if architecture and made_for and made_for != architecture:
            label = ARCHITECTURE_LABELS.get(made_for, made_for)
            raise StackError(
                f"{repo} was made for an {label} base ({made_for}), the stack's base {base} is "
                f"{ARCHITECTURE_LABELS[architecture]} ({architecture}): a stack has one architecture"
            )
        suites = DemoArtifact.suites(*method.default_suites(artifact))
    return StackComponent(repo, sha, method.name, suites), method


def _base_architecture(api: Any, base: str, revision: str) -> str | None:
    """The base's family from its configs on the Hub; None when it has no Stable Diffusion UNet config."""
    from hubkit.architectures import architecture_of_repo

    try:
        return architecture_of_repo(api, base, revision)
    except ValueError:
        return None


def create_stack(
    out: str | os.PathLike[str],
    base: str,
    components: list[str],
    *,
    repo_id: str | None = None,
    force: bool = False,
    endpoint: str | None = None,
    token: str | None = None,
) -> dict[str, Any]:
    """Write the stack folder ``out`` (``hubkit.json`` + card, whole or not at all) of ``base`` and the
    ``components`` (``repo`` or ``repo@revision``, in application order), each pinned to its commit now.
    Returns the ``hubkit.json`` content."""
    from hubkit.files import atomic_folder

    if not components:
        raise StackError("a stack needs at least one component (--add REPO[@REVISION])")
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not force:
        raise StackError(f"{out} exists and is not empty (pass --force to replace it)")
    api = _api(endpoint, token)
    base_revision = _commit(api, base, None)
    architecture = _base_architecture(api, base, base_revision)
    found = [_component(api, ref, base, architecture) for ref in components]
    check_order([(c.ref, m) for c, m in found])
    info = {
        "method": STACK_METHOD,
        "base_model": base,
        "base_revision": base_revision,
        "architecture": architecture,
        "components": [c.to_json() for c, _ in found],
    }

    def fill(folder: Path) -> None:
        from hubkit.cards.stack import stack_card

        (folder / "hubkit.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
        stack_card(info, repo_id).save(folder / "README.md")

    atomic_folder(out, fill, force=True)
    return info


def read_components(artifact: Artifact) -> list[StackComponent]:
    components = artifact.hubkit_json.get("components")
    if not isinstance(components, list) or not components:
        raise StackError(f"{artifact.source}: a stack whose hubkit.json lists no components")
    return [StackComponent.from_json(c, artifact.source) for c in components]


def _api(endpoint: str | None = None, token: str | None = None) -> Any:
    from huggingface_hub import HfApi

    from hubkit.hub.endpoint import resolve_endpoint, resolve_token

    hub = resolve_endpoint(endpoint)
    return HfApi(endpoint=hub.url, token=resolve_token(token, hub))


def _snapshot(api: Any, repo: str, revision: str | None, patterns: list[str] | None = None) -> Path:
    """A repo's files at ``revision`` from ``api``'s Hub; StackError naming the repo and revision."""
    from hubkit.hub import local_or_snapshot

    return local_or_snapshot(
        repo, patterns or ["*"], revision=revision, token=api.token, endpoint=api.endpoint, error=StackError
    )


def _pull(component: StackComponent, api: Any) -> Artifact:
    """The component's files at its pinned commit, read like any artifact (card, ``hubkit.json``)."""
    from dataclasses import replace

    from hubkit.leaderboard.evaluation import EvalError, fetch_artifact

    folder = _snapshot(api, component.repo, component.revision)
    try:
        artifact = fetch_artifact(str(folder))
    except EvalError as err:
        raise StackError(f"{component.ref}: {err}") from err
    return replace(artifact, source=component.ref, repo_id=component.repo, revision=component.revision)


def load_stack(
    source: str | os.PathLike[str],
    pipe: Any = None,
    *,
    revision: str | None = None,
    endpoint: str | None = None,
    token: str | None = None,
) -> Any:
    """A ready pipeline of the stack ``source`` (a repo or folder): its base at the pinned commit (or
    ``pipe``, which must be that base) with every component applied in order, each at its pinned commit and
    by its own method. ``endpoint``: ``HF_ENDPOINT`` or the embedded Hub by default."""
    from hubkit.methods import read_hubkit_json

    api = _api(endpoint, token)
    folder = Path(source)
    if not folder.is_dir():
        folder = _snapshot(api, str(source), revision, ["hubkit.json", "README.md"])
    artifact = Artifact(str(source), folder, hubkit_json=read_hubkit_json(folder), hub_api=lambda: api)
    if artifact.hubkit_json.get("method") != STACK_METHOD:
        raise StackError(
            f"{source} is not a stack (its hubkit.json says {artifact.hubkit_json.get('method')!r})"
        )
    if pipe is None:
        from diffusers import DiffusionPipeline

        info = artifact.hubkit_json
        pipe = DiffusionPipeline.from_pretrained(
            _snapshot(api, info["base_model"], info.get("base_revision"))
        )
    return StackMethod().load(artifact, pipe)


def _activate_every_adapter(pipe: Any) -> None:
    """diffusers makes the adapter loaded last the only active one; in a stack every component counts."""
    adapters = getattr(pipe, "get_list_adapters", dict)().values()
    names = list(dict.fromkeys(name for group in adapters for name in group))
    if len(names) > 1:
        pipe.set_adapters(names, [1.0] * len(names))


class StackMethod(Method):
    """A stack: its components applied in order on its base, each by its own method."""

    name = STACK_METHOD
    kind = "adapter"
    priority = -150  # recognised by its hubkit.json; late in the registry, so the demo makes its parts first
    config_class = StackConfig
    data_parallel = False  # pins commits: nothing to train

    def __init__(self) -> None:
        self._pulled: dict[str, list[tuple[StackComponent, Artifact]]] = {}

    @classmethod
    def recognizes(cls, artifact: Artifact) -> bool:
        return artifact.hubkit_json.get("method") == STACK_METHOD

    def _components(self, artifact: Artifact) -> list[tuple[StackComponent, Artifact]]:
        """Each component and its files at the pinned commit, pulled once per stack (load and
        call_settings both read them)."""
        key = str(artifact.path.resolve())
        if key not in self._pulled:
            api = artifact.hub_api() if artifact.hub_api is not None else _api()
            self._pulled[key] = [(c, _pull(c, api)) for c in read_components(artifact)]
        return self._pulled[key]

    def load(self, artifact: Artifact, base: Any | None) -> Any:
        if base is None:
            raise StackError(f"{artifact.source} is a stack: it needs its base pipeline (--base)")
        check_order([(c.ref, get_method(c.method)) for c in read_components(artifact)])
        pipe = base
        for component, files in self._components(artifact):
            method = get_method(component.method)
            try:
                pipe = method.apply_in_stack(files, pipe)
            except MethodError as err:
                raise StackError(f"{artifact.source}: {component.ref} ({method.name}): {err}") from err
            _activate_every_adapter(pipe)
        return pipe

    def call_settings(self, artifact: Artifact) -> dict[str, Any]:
        """The components' call settings, later ones over earlier ones (a distiller's steps and guidance)."""
        settings: dict[str, Any] = {}
        for component, files in self._components(artifact):
            settings |= get_method(component.method).call_settings(files)
        return settings

    def default_suites(self, artifact: Artifact) -> list[tuple[str, dict[str, Any]]]:
        """Quality, then each component's own suites (so the leaderboard shows the stack beside its parts)."""
        found: dict[tuple[str, tuple[tuple[str, str], ...]], None] = {("shapes-quality", ()): None}
        for component in read_components(artifact):
            found |= dict.fromkeys(component.suites)
        return [(name, dict(params)) for name, params in found]

    def merged(self, artifact: Artifact, base: Any) -> Any:
        """The stack with its LoRAs fused into the base weights: a plain diffusers pipeline. A stack whose
        UNet is quantized is refused (its integer UNet is no plain diffusers folder)."""
        if any(get_method(c.method).replaces_unet for c in read_components(artifact)):
            raise StackError(
                f"{artifact.source} swaps the UNet (quantized): export the stack without that component, "
                "then quantize the exported pipeline"
            )
        return fuse_adapters(self.load(artifact, base))

    def train(
        self, base: str, config: StackConfig, out: str | os.PathLike[str], **options: Any
    ) -> dict[str, Any]:
        """``hubkit train stack --add ...`` = ``hubkit stack create``: pin the components, write ``out``."""
        info = create_stack(
            out,
            base,
            config.components,
            repo_id=options.get("repo_id"),
            force=bool(options.get("force")),
            endpoint=options.get("endpoint"),
            token=options.get("token"),
        )
        return {
            "components": len(info["components"]),
            "base_revision": info["base_revision"],
            "architecture": info["architecture"],
        }

    def summary(self, config: StackConfig, facts: dict[str, Any]) -> str:
        return f"stack of {facts['components']} components: {', '.join(config.components)}"

    def demo_artifacts(self) -> list[DemoArtifact]:
        """The stacks of the other methods' demo artifacts: erasure with the few-step LoRA, erasure on the
        W8A8 UNet, a fine-tune with an erasure, and all four together — with RECE as the eraser there: the
        SPM under SaRA and the LCM-LoRA together lets red through on 4 of 24 images (bench/stacks.py)."""
        stacks = {
            "stack-spm-red-lcm": ["hubkit/spm-red", "hubkit/lcm-lora-shapes"],
            "stack-spm-red-w8a8": ["hubkit/spm-red", "hubkit/tiny-sd-shapes-w8a8"],
            "stack-sara-spm-red": ["hubkit/sara-heart", "hubkit/spm-red"],
            "stack-full": [
                "hubkit/sara-heart",
                "hubkit/rece-red",
                "hubkit/lcm-lora-shapes",
                "hubkit/tiny-sd-shapes-w8a8",
            ],
        }
        return [DemoArtifact(name, StackConfig(components=parts)) for name, parts in stacks.items()]
