"""The card schema: what every hubkit artifact kind must carry in its README.md front matter.

The schema is data (one :class:`KindSchema` per :class:`ArtifactKind`), so a new method never touches the
core: it picks a kind, passes its name as ``method`` and gets the same required keys and tags as every
other method of that kind. The Hub validates cards only online (``RepoCard.validate`` posts to the Hub);
these rules are what hubkit checks offline, before anything is uploaded.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum

__all__ = [
    "ARCHITECTURE_KEY",
    "ARCHITECTURE_LABELS",
    "ARCHITECTURE_TAG_PREFIX",
    "BASE_ARCHITECTURES",
    "HUBKIT_KIND_TAG_PREFIX",
    "HUBKIT_METHOD_TAG_PREFIX",
    "HUBKIT_TAG",
    "REPO_TYPES",
    "SCHEMAS",
    "SPACE_COLORS",
    "ArtifactKind",
    "CardError",
    "CardProblem",
    "KindSchema",
    "schema_for",
]

HUBKIT_TAG = "hubkit"
"""Tag carried by every hubkit artifact (lets people filter the Hub for them)."""
HUBKIT_METHOD_TAG_PREFIX = "hubkit-method:"
"""``hubkit-method:<name>`` names the method (plugin) that produced the artifact."""
HUBKIT_KIND_TAG_PREFIX = "hubkit-kind:"
"""``hubkit-kind:<kind>`` names the artifact kind, so validation needs no guessing."""

BASE_ARCHITECTURES = ("sd1", "sd2", "sdxl")
"""The Stable Diffusion families an artifact's base can be (``hubkit.architectures.architecture_of`` names
them from the UNet config): an adapter or a quantized UNet only fits bases of its own family."""
ARCHITECTURE_LABELS = {"sd1": "SD 1.x", "sd2": "SD 2.x", "sdxl": "SDXL"}
ARCHITECTURE_KEY = "base_architecture"
"""Model-card key naming the base's family, one of :data:`BASE_ARCHITECTURES` (the leaderboard filters by
it)."""
ARCHITECTURE_TAG_PREFIX = "base-architecture:"
"""``base-architecture:<family>`` repeats :data:`ARCHITECTURE_KEY` as a tag, so the Hub's tag filter finds
every artifact of one family."""

REPO_TYPES = ("model", "dataset", "space")
SPACE_COLORS = frozenset({"red", "yellow", "green", "blue", "indigo", "purple", "pink", "gray"})
"""Colours the Hub accepts for a Space's ``colorFrom`` / ``colorTo``."""

# All relations the Hub knows for a model tree (hub-docs "Specifying a base model").
BASE_MODEL_RELATIONS = frozenset({"adapter", "merge", "quantized", "finetune"})
# Image pipeline tags a hubkit model may declare (the Hub's list is longer; these are the ones that fit).
IMAGE_PIPELINE_TAGS = frozenset(
    {"text-to-image", "image-to-image", "unconditional-image-generation", "image-classification"}
)

METHOD_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
"""A method name as it appears in ``hubkit-method:<name>``: lowercase, digits, ``.``, ``_``, ``-``."""
LICENSE_ID_RE = re.compile(r"^[a-z0-9][a-z0-9.+-]*$")
"""Shape of a Hub license id (``apache-2.0``, ``creativeml-openrail-m``, ``other``...)."""
LIBRARY_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


class ArtifactKind(str, Enum):
    """What a repo holds; decides which card keys are required and which template renders the card."""

    ADAPTER = "adapter"
    """A LoRA-format or PEFT adapter on top of a base model (``base_model_relation: adapter``)."""
    QUANTIZED = "quantized"
    """A quantized copy of a base model or of one of its components (``base_model_relation: quantized``)."""
    PIPELINE = "pipeline"
    """A full diffusers pipeline or model: a base model, or a full finetune (``finetune``) of one."""
    DATASET = "dataset"
    """A dataset repo (training data, prompts, leaderboard results)."""
    METRIC = "metric"
    """An ``evaluate`` metric module, published as a Space repo."""
    SPACE = "space"
    """A Gradio Space demo."""

    def __str__(self) -> str:
        return self.value

    @classmethod
    def parse(cls, value: ArtifactKind | str) -> ArtifactKind:
        """Turn a user-given string into a kind, with an error that lists the valid ones."""
        if isinstance(value, cls):
            return value
        try:
            return cls(str(value).strip().lower())
        except ValueError:
            valid = ", ".join(kind.value for kind in cls)
            raise ValueError(f"unknown artifact kind {value!r}; expected one of: {valid}") from None

    @property
    def repo_type(self) -> str:
        """The Hub repo type this kind is published as (metrics are Space repos, like ``evaluate``'s)."""
        return SCHEMAS[self].repo_type

    @property
    def is_model(self) -> bool:
        """True for kinds that live in model repos."""
        return self.repo_type == "model"


@dataclass(frozen=True)
class CardProblem:
    """One thing wrong with a card: the YAML key (or ``README.md``, ``yaml``, ``body``) and what is wrong."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class CardError(ValueError):
    """A card (or its source) is not acceptable; ``problems`` lists every reason, not only the first."""

    def __init__(self, problems: Iterable[CardProblem], source: str | None = None) -> None:
        self.problems: list[CardProblem] = list(problems)
        self.source = source
        where = f" in {source}" if source else ""
        count = len(self.problems)
        head = f"{count} card problem{'s' if count != 1 else ''}{where}"
        super().__init__("\n  - ".join([head + ":", *map(str, self.problems)]) if self.problems else head)


@dataclass(frozen=True)
class KindSchema:
    """The card rules of one artifact kind, as data.

    ``required`` keys must be present and non-empty; ``allowed`` restricts the values of a key when it is
    present; ``required_tags`` must appear verbatim in ``tags``; each of ``required_tag_prefixes`` must
    start at least one tag that has a non-empty remainder (``hubkit-method:spm``). ``defaults`` are the
    front-matter values ``render_card`` fills in when the caller gives none.
    """

    kind: ArtifactKind
    repo_type: str
    card_class: str
    template: str
    summary: str
    required: tuple[str, ...]
    allowed: Mapping[str, frozenset[str]] = field(default_factory=dict)
    required_tags: tuple[str, ...] = (HUBKIT_TAG,)
    required_tag_prefixes: tuple[str, ...] = ()
    defaults: Mapping[str, object] = field(default_factory=dict)

    @property
    def reason(self) -> str:
        """Short reason used in messages: ``required for adapter cards``."""
        return f"required for {self.kind.value} cards"


_MODEL_REQUIRED = ("library_name", "pipeline_tag", "license", "tags")

SCHEMAS: dict[ArtifactKind, KindSchema] = {
    ArtifactKind.ADAPTER: KindSchema(
        kind=ArtifactKind.ADAPTER,
        repo_type="model",
        card_class="ModelCard",
        template="adapter.md.jinja",
        summary="adapter (LoRA or PEFT) for a base model",
        required=(*_MODEL_REQUIRED, "base_model", "base_model_relation"),
        allowed={
            "base_model_relation": frozenset({"adapter"}),
            "pipeline_tag": frozenset({"text-to-image", "image-to-image"}),
            "library_name": frozenset({"diffusers", "peft"}),
        },
        required_tag_prefixes=(HUBKIT_METHOD_TAG_PREFIX,),
        defaults={
            "library_name": "diffusers",
            "pipeline_tag": "text-to-image",
            "base_model_relation": "adapter",
            "license": "apache-2.0",
        },
    ),
    ArtifactKind.QUANTIZED: KindSchema(
        kind=ArtifactKind.QUANTIZED,
        repo_type="model",
        card_class="ModelCard",
        template="quantized.md.jinja",
        summary="quantized model",
        required=(*_MODEL_REQUIRED, "base_model", "base_model_relation"),
        allowed={
            "base_model_relation": frozenset({"quantized"}),
            "pipeline_tag": frozenset({"text-to-image", "image-to-image"}),
            "library_name": frozenset({"diffusers"}),
        },
        required_tag_prefixes=(HUBKIT_METHOD_TAG_PREFIX,),
        defaults={
            "library_name": "diffusers",
            "pipeline_tag": "text-to-image",
            "base_model_relation": "quantized",
            "license": "apache-2.0",
        },
    ),
    ArtifactKind.PIPELINE: KindSchema(
        kind=ArtifactKind.PIPELINE,
        repo_type="model",
        card_class="ModelCard",
        template="pipeline.md.jinja",
        summary="diffusers pipeline or model (base model or full finetune)",
        # base_model / base_model_relation are optional: a base model trained from scratch has no base.
        required=_MODEL_REQUIRED,
        allowed={
            "base_model_relation": frozenset({"finetune", "merge"}),
            "pipeline_tag": IMAGE_PIPELINE_TAGS,
        },
        defaults={"library_name": "diffusers", "pipeline_tag": "text-to-image", "license": "apache-2.0"},
    ),
    ArtifactKind.DATASET: KindSchema(
        kind=ArtifactKind.DATASET,
        repo_type="dataset",
        card_class="DatasetCard",
        template="dataset.md.jinja",
        summary="dataset",
        required=("license", "tags"),
        defaults={"license": "apache-2.0"},
    ),
    ArtifactKind.METRIC: KindSchema(
        kind=ArtifactKind.METRIC,
        repo_type="space",
        card_class="SpaceCard",
        template="metric.md.jinja",
        summary="evaluate metric module (Space repo)",
        required=("title", "sdk", "app_file", "license", "tags"),
        allowed={"sdk": frozenset({"gradio"})},
        # `evaluate` + the module type are what evaluate's own module template tags a metric Space with.
        required_tags=(HUBKIT_TAG, "evaluate", "metric"),
        defaults={"sdk": "gradio", "app_file": "app.py", "license": "apache-2.0"},
    ),
    ArtifactKind.SPACE: KindSchema(
        kind=ArtifactKind.SPACE,
        repo_type="space",
        card_class="SpaceCard",
        template="space.md.jinja",
        summary="Gradio Space demo",
        required=("title", "sdk", "license", "tags"),
        allowed={"sdk": frozenset({"gradio", "docker", "static"})},
        defaults={"sdk": "gradio", "app_file": "app.py", "license": "apache-2.0"},
    ),
}


def schema_for(kind: ArtifactKind | str) -> KindSchema:
    """The schema of ``kind`` (a kind or its string value)."""
    return SCHEMAS[ArtifactKind.parse(kind)]
