"""Render a standard card for any artifact kind from the Jinja templates in ``hubkit.model_cards``.

Cards go through ``ModelCard`` / ``DatasetCard`` / ``SpaceCard.from_template`` so the YAML block is the one
huggingface_hub writes and parses. The rendered card is validated before it is returned: a method cannot
produce a card that ``hubkit publish`` would later refuse.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from importlib import resources
from typing import Any

from huggingface_hub import (
    DatasetCard,
    DatasetCardData,
    EvalResult,
    ModelCard,
    ModelCardData,
    RepoCard,
    SpaceCard,
    SpaceCardData,
)

from hubkit import __version__
from hubkit.cards.schema import (
    ARCHITECTURE_KEY,
    ARCHITECTURE_LABELS,
    ARCHITECTURE_TAG_PREFIX,
    HUBKIT_KIND_TAG_PREFIX,
    HUBKIT_METHOD_TAG_PREFIX,
    HUBKIT_TAG,
    ArtifactKind,
    CardError,
    KindSchema,
    schema_for,
)
from hubkit.cards.validate import validate_card

__all__ = [
    "ADAPTER_FORMATS",
    "TEMPLATE_PACKAGE",
    "default_tags",
    "render_card",
    "set_architecture",
    "settings_table",
    "template_text",
]

TEMPLATE_PACKAGE = "hubkit.model_cards"
ADAPTER_FORMATS = ("lora", "peft", "stack")  # stack: pinned artifacts applied in order, no weights
"""``lora``: diffusers LoRA file (``pipe.load_lora_weights``); ``peft``: adapter_config.json + weights."""
PLACEHOLDER_REPO = "NAMESPACE/REPO"

_CARD_CLASSES: dict[str, type[RepoCard]] = {
    "ModelCard": ModelCard,
    "DatasetCard": DatasetCard,
    "SpaceCard": SpaceCard,
}
# Front-matter key order for model cards: what people read first (huggingface_hub puts the relation last).
_MODEL_KEY_ORDER = [
    "base_model", "base_model_relation", ARCHITECTURE_KEY, "library_name", "pipeline_tag", "license",
    "license_name", "license_link", "tags", "datasets", "metrics", "language",
]  # fmt: skip
_SPACE_KEY_ORDER = [
    "title", "emoji", "colorFrom", "colorTo", "sdk", "sdk_version", "python_version", "app_file", "pinned",
    "license", "short_description", "models", "datasets", "tags",
]  # fmt: skip
_SPACE_STYLE = {
    ArtifactKind.SPACE: ("🧩", "blue", "indigo"),
    ArtifactKind.METRIC: ("📏", "green", "blue"),
}


def template_text(kind: ArtifactKind | str) -> str:
    """The Jinja source of a kind's template (for people who want to read or copy it)."""
    return resources.files(TEMPLATE_PACKAGE).joinpath(schema_for(kind).template).read_text(encoding="utf-8")


def _unique(items: Iterable[str]) -> list[str]:
    seen: dict[str, None] = {}
    for item in items:
        if item:
            seen.setdefault(item, None)
    return list(seen)


def _as_list(value: str | Sequence[str] | None) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def default_tags(
    kind: ArtifactKind | str,
    *,
    method: str | None = None,
    base_model: str | Sequence[str] | None = None,
    adapter_format: str = "lora",
    pipeline_tag: str | None = None,
) -> list[str]:
    """The tags hubkit puts on a card of this kind before the caller's own (``hubkit``, kind, method...)."""
    kind = ArtifactKind.parse(kind)
    tags = [HUBKIT_TAG, f"{HUBKIT_KIND_TAG_PREFIX}{kind.value}"]
    if method:
        tags.append(f"{HUBKIT_METHOD_TAG_PREFIX}{method}")
    if kind is ArtifactKind.ADAPTER:
        if adapter_format == "lora":
            tags.append("lora")
        # The Hub derives base_model:<relation>:<id> tags too; PEFT writes this one for every adapter.
        tags += [f"base_model:adapter:{base}" for base in _as_list(base_model)]
    if kind is ArtifactKind.METRIC:
        tags += ["evaluate", "metric"]
    if kind.is_model and pipeline_tag:
        tags.append(pipeline_tag)
    return tags


def _py(value: Any) -> str:
    """A Python literal for a usage snippet (double-quoted strings, like the rest of the card's code)."""
    return json.dumps(value) if isinstance(value, str) else repr(value)


def _sampling_vars(sampling: Mapping[str, Any] | None) -> dict[str, Any]:
    """Split sampling settings into the scheduler swap and the pipeline-call keyword arguments."""
    settings = dict(sampling or {})
    scheduler = settings.pop("scheduler", None)
    scheduler_config = dict(settings.pop("scheduler_config", None) or {})
    config_args = "".join(f", {key}={_py(value)}" for key, value in scheduler_config.items())
    rows = [("scheduler", scheduler)] if scheduler else []
    rows += [(f"scheduler: {key}", value) for key, value in scheduler_config.items()]
    rows += list(settings.items())
    return {
        "scheduler_class": scheduler,
        "scheduler_args": config_args,
        "call_args": "".join(f", {key}={_py(value)}" for key, value in settings.items()),
        "sampling_rows": rows,
    }


def _eval_rows(eval_results: Sequence[EvalResult]) -> list[dict[str, Any]]:
    return [
        {
            "metric": result.metric_name or result.metric_type,
            "value": result.metric_value,
            "dataset": result.dataset_name,
            "split": result.dataset_split or "",
            "source": f"[{result.source_name or 'source'}]({result.source_url})" if result.source_url else "",
        }
        for result in eval_results
    ]


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("-") or "model"


def _card_data(
    schema: KindSchema,
    *,
    title: str,
    license: str,
    tags: list[str],
    base_model: str | list[str] | None,
    base_model_relation: str | None,
    library_name: str | None,
    pipeline_tag: str | None,
    datasets: list[str],
    eval_results: Sequence[EvalResult] | None,
    model_name: str,
    space: Mapping[str, Any],
    metadata: Mapping[str, Any],
) -> ModelCardData | DatasetCardData | SpaceCardData:
    kind = schema.kind
    extra = {key: value for key, value in metadata.items() if key != "tags"}
    if kind.is_model:
        fields: dict[str, Any] = {
            "base_model": base_model,
            "library_name": library_name,
            "pipeline_tag": pipeline_tag,
            "license": license,
            "tags": tags,
            "datasets": datasets or None,
            "eval_results": list(eval_results) if eval_results else None,
            "model_name": model_name if eval_results else None,
            "base_model_relation": base_model_relation,
        }
        data = ModelCardData(**{**fields, **extra})
        # Public API side effect: to_yaml(original_order=...) reorders the keys it will dump later.
        data.to_yaml(original_order=_MODEL_KEY_ORDER)
        return data
    if kind is ArtifactKind.DATASET:
        return DatasetCardData(**{"license": license, "pretty_name": title, "tags": tags, **extra})
    fields = {
        "title": title,
        **{key: value for key, value in space.items() if value is not None},
        "license": license,
        "datasets": datasets or None,
        "tags": tags,
    }
    data = SpaceCardData(**{**fields, **extra})
    data.to_yaml(original_order=_SPACE_KEY_ORDER)
    return data


def render_card(
    kind: ArtifactKind | str,
    *,
    method: str | None = None,
    repo_id: str | None = None,
    title: str | None = None,
    description: str | None = None,
    base_model: str | Sequence[str] | None = None,
    base_model_relation: str | None = None,
    license: str | None = None,
    library_name: str | None = None,
    pipeline_tag: str | None = None,
    tags: Iterable[str] = (),
    datasets: str | Sequence[str] | None = None,
    eval_results: Sequence[EvalResult] | None = None,
    model_name: str | None = None,
    architecture: str | None = None,
    adapter_format: str = "lora",
    weight_name: str | None = None,
    component: str = "unet",
    subfolder: str | None = "unet",
    prompt: str = "a photo of a cat",
    sampling: Mapping[str, Any] | None = None,
    quantization: Mapping[str, Any] | None = None,
    requirements: Sequence[str] = (),
    usage: str | None = None,
    sections: Mapping[str, str] | None = None,
    limitations: str | None = None,
    citation: str | None = None,
    emoji: str | None = None,
    color_from: str | None = None,
    color_to: str | None = None,
    sdk: str | None = None,
    sdk_version: str | None = None,
    python_version: str | None = None,
    app_file: str | None = None,
    models: Sequence[str] | None = None,
    short_description: str | None = None,
    pinned: bool | None = None,
    metadata: Mapping[str, Any] | None = None,
    validate: bool = True,
) -> RepoCard:
    """Render the standard card of a ``kind`` artifact (ModelCard, DatasetCard or SpaceCard).

    Missing front-matter values take the kind's defaults (``schema.SCHEMAS[kind].defaults``); tags start
    with ``hubkit``, ``hubkit-kind:<kind>``, ``hubkit-method:<method>`` (and ``lora`` +
    ``base_model:adapter:<base>`` for LoRA adapters), then ``tags``. ``architecture`` (``sd1``, ``sd2``,
    ``sdxl``: the base's family, model cards only) becomes ``base_architecture`` and a
    ``base-architecture:<family>`` tag. ``eval_results`` become ``model-index``
    and an Evaluation section. ``sampling`` (``scheduler``, ``scheduler_config``, call kwargs) and
    ``quantization`` appear as tables and in the usage snippet; ``usage`` replaces the snippet; ``sections``
    (heading → Markdown) add method-specific text; ``metadata`` adds other front-matter keys (``widget``...).

    Raises :class:`CardError` with every problem when the result would not validate (``validate=False``
    skips that) and ``ValueError`` for an unknown kind or adapter format.
    """
    schema = schema_for(kind)
    kind = schema.kind
    if adapter_format not in ADAPTER_FORMATS:
        raise ValueError(
            f"unknown adapter_format {adapter_format!r}; expected one of: {', '.join(ADAPTER_FORMATS)}"
        )
    defaults = schema.defaults
    bases = _as_list(base_model)
    base = bases[0] if len(bases) == 1 else (bases or None)
    if kind.is_model:
        if library_name is None:
            library_name = (
                "peft" if kind is ArtifactKind.ADAPTER and adapter_format == "peft" else "diffusers"
            )
        pipeline_tag = pipeline_tag or str(defaults.get("pipeline_tag", "text-to-image"))
        if base_model_relation is None:
            base_model_relation = defaults.get("base_model_relation")  # type: ignore[assignment]
            if kind is ArtifactKind.PIPELINE and bases:
                base_model_relation = "merge" if len(bases) > 1 else "finetune"
    else:
        library_name = pipeline_tag = base_model_relation = None
    license = license or str(defaults.get("license", "apache-2.0"))
    name = repo_id.rsplit("/", 1)[-1] if repo_id else None
    title = title or name or f"{method or 'hubkit'} {kind.value}"
    metadata = {**(metadata or {}), **_architecture_metadata(architecture, metadata)}
    all_tags = _unique(
        [
            *default_tags(
                kind,
                method=method,
                base_model=bases,
                adapter_format=adapter_format,
                pipeline_tag=pipeline_tag,
            ),
            *tags,
            *_as_list((metadata or {}).get("tags")),
        ]
    )
    style = _SPACE_STYLE.get(kind, (None, None, None))
    space = {
        "emoji": emoji or style[0],
        "colorFrom": color_from or style[1],
        "colorTo": color_to or style[2],
        "sdk": sdk or defaults.get("sdk"),
        "sdk_version": sdk_version,
        "python_version": python_version,
        "app_file": app_file or defaults.get("app_file"),
        "models": list(models) if models else None,
        "short_description": short_description,
        "pinned": pinned if pinned is not None else (False if schema.repo_type == "space" else None),
    }
    data = _card_data(
        schema,
        title=title,
        license=license,
        tags=all_tags,
        base_model=base,
        base_model_relation=base_model_relation,
        library_name=library_name,
        pipeline_tag=pipeline_tag,
        datasets=_as_list(datasets),
        eval_results=eval_results,
        model_name=model_name or name or _slug(title),
        space=space,
        metadata=metadata,
    )
    packages = ["diffusers", "transformers", "accelerate"]
    if kind is ArtifactKind.ADAPTER:
        packages.append("peft")  # load_lora_weights needs the PEFT backend too
    elif kind is ArtifactKind.DATASET:
        packages = ["datasets"]
    elif kind is ArtifactKind.METRIC:
        packages = ["evaluate"]
    template_vars: dict[str, Any] = {
        "kind": kind.value,
        "summary": schema.summary,
        "method": method,
        "repo_id": repo_id or PLACEHOLDER_REPO,
        "title": title,
        "description": description,
        "base_model": base if isinstance(base, str) else None,
        "base_models": bases,
        "base_model_relation": base_model_relation,
        "library_name": library_name,
        "license": license,
        "adapter_format": adapter_format,
        "weight_name": weight_name,
        "component": component,
        "subfolder": subfolder,
        "prompt": prompt,
        "prompt_literal": _py(prompt),
        "quantization": dict(quantization or {}),
        "pip_packages": " ".join(_unique([*packages, *requirements])),
        "usage": usage.strip("\n") if usage else None,
        "sections": dict(sections or {}),
        "limitations": limitations,
        "citation": citation.strip("\n") if citation else None,
        "eval_rows": _eval_rows(eval_results or []),
        "models": list(models or []),
        "datasets": _as_list(datasets),
        "app_file": space["app_file"],
        "hubkit_version": __version__,
        **_sampling_vars(sampling),
    }
    card_class = _CARD_CLASSES[schema.card_class]
    with resources.as_file(resources.files(TEMPLATE_PACKAGE).joinpath(schema.template)) as path:
        card = card_class.from_template(data, template_path=str(path), **template_vars)
    if validate:
        problems = validate_card(card, kind, repo_type=schema.repo_type)
        if problems:
            raise CardError(problems, source=f"the rendered {kind.value} card")
    return card


def _architecture_metadata(architecture: str | None, metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    """The front-matter key and tag that name the base's family (nothing when ``architecture`` is None)."""
    if architecture is None:
        return {}
    tags = [*_as_list((metadata or {}).get("tags")), f"{ARCHITECTURE_TAG_PREFIX}{architecture}"]
    return {ARCHITECTURE_KEY: architecture, "tags": tags}


def set_architecture(card: ModelCard, architecture: str) -> ModelCard:
    """``card`` naming its base's family (``base_architecture`` + the ``base-architecture:`` tag), checked
    again: training adds it to whatever card the method rendered, so no method has to pass it on."""
    tags = [t for t in card.data.tags or [] if not str(t).startswith(ARCHITECTURE_TAG_PREFIX)]
    card.data.tags = _unique([*tags, f"{ARCHITECTURE_TAG_PREFIX}{architecture}"])
    setattr(card.data, ARCHITECTURE_KEY, architecture)
    card.content = f"---\n{card.data.to_yaml(original_order=_MODEL_KEY_ORDER)}\n---\n{card.text}"
    problems = validate_card(card, repo_type="model")
    if problems:
        raise CardError(problems, source=f"the card with base_architecture '{architecture}'")
    return card


_EVAL_SECTION = re.compile(r"^## Evaluation\n.*?(?=^## |\Z)", re.MULTILINE | re.DOTALL)


def set_eval_results(card: ModelCard, results: Sequence[EvalResult], model_name: str) -> ModelCard:
    """Replace ``card``'s evaluation results: the ``model-index`` metadata and the body's Evaluation table.

    Results of other datasets/configs already on the card are the caller's to keep (pass them in
    ``results``). The table is rendered the way ``render_card`` renders it, in place of the old section,
    else before ``## Limitations``, else at the end.
    """
    card.data.eval_results = list(results) or None
    card.data.model_name = model_name if results else None
    rows = _eval_rows(results)
    section = ""
    if rows:
        lines = [
            "## Evaluation",
            "",
            "| metric | value | dataset | split | source |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {r['metric']} | {r['value']} | {r['dataset']} | {r['split']} | {r['source']} |" for r in rows
        ]
        section = "\n".join(lines) + "\n\n"
    text = card.text
    if _EVAL_SECTION.search(text):
        text = _EVAL_SECTION.sub(lambda _: section, text, count=1)
    elif "\n## Limitations" in text:
        text = text.replace("\n## Limitations", "\n" + section + "## Limitations", 1)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    card.text = text
    return card


def settings_table(
    rows: Sequence[tuple[str, str]], facts: Mapping[str, Any] | None = None, time_label: str = "training time"
) -> str:
    """A Markdown ``| setting | value |`` table for a card's training section; ``facts`` (measured while
    training: ``parameters``, ``share``, ``unet_parameters``, ``train_seconds``, ``device``) add rows."""
    rows, facts = list(rows), facts or {}
    if "parameters" in facts:
        share = ""
        if "share" in facts:
            of = f" UNet's {facts['unet_parameters']:,}" if "unet_parameters" in facts else " UNet"
            share = f" ({facts['share'] * 100:.3f} % of the{of})"
        rows.append(("parameters", f"{facts['parameters']:,}{share}"))
    if facts.get("architecture") in ARCHITECTURE_LABELS:
        arch = facts["architecture"]
        rows.append(("base architecture", f"{ARCHITECTURE_LABELS[arch]} (`{arch}`)"))
    if "train_seconds" in facts:
        on = str(facts.get("device", "cpu"))
        if "processes" in facts:  # trained under accelerate launch
            on += f" × {facts['processes']} processes"
        rows.append((time_label, f"{facts['train_seconds']:.0f} s on {on}"))
    if "command" in facts:
        rows.append(("reproduce", f"`{facts['command']}`"))
    return "| setting | value |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows)
