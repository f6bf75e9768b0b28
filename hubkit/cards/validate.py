"""Offline card validation: every problem of a card at once, with the key it concerns.

``RepoCard.validate`` only posts the card to the Hub, so it cannot run here and reports one error at a time.
These checks follow :mod:`hubkit.cards.schema` (what each kind requires) plus the Hub's own front-matter
rules that can be checked locally (model-index shape, license ``other``, Space colours...).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from huggingface_hub import RepoCard, hf_hub_download
from huggingface_hub import constants as hf_constants
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    HFValidationError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
)
from huggingface_hub.repocard import REGEX_YAML_BLOCK
from huggingface_hub.repocard_data import model_index_to_eval_results
from huggingface_hub.utils import validate_repo_id

from hubkit.cards.schema import (
    ARCHITECTURE_KEY,
    ARCHITECTURE_TAG_PREFIX,
    BASE_ARCHITECTURES,
    BASE_MODEL_RELATIONS,
    HUBKIT_KIND_TAG_PREFIX,
    HUBKIT_TAG,
    LIBRARY_NAME_RE,
    LICENSE_ID_RE,
    METHOD_NAME_RE,
    REPO_TYPES,
    SPACE_COLORS,
    ArtifactKind,
    CardError,
    CardProblem,
    KindSchema,
    schema_for,
)

__all__ = [
    "CardReport",
    "check_card_source",
    "check_folder",
    "infer_kind",
    "inspect_card",
    "inspect_card_source",
    "inspect_folder",
    "validate_card",
]

README = "README.md"

# Expected YAML types of well-known keys; a wrong type is reported and the key's value checks are skipped.
_STR = (str,)
_KEY_TYPES: dict[str, tuple[str, tuple[type, ...]]] = {
    "library_name": ("a string", _STR),
    "pipeline_tag": ("a string", _STR),
    "base_model_relation": ("a string", _STR),
    ARCHITECTURE_KEY: ("a string", _STR),
    "license_name": ("a string", _STR),
    "license_link": ("a string", _STR),
    "title": ("a string", _STR),
    "emoji": ("a string", _STR),
    "colorFrom": ("a string", _STR),
    "colorTo": ("a string", _STR),
    "sdk": ("a string", _STR),
    "sdk_version": ("a string", _STR),
    "python_version": ("a string", _STR),
    "app_file": ("a string", _STR),
    "short_description": ("a string", _STR),
    "pretty_name": ("a string", _STR),
    "pinned": ("true or false", (bool,)),
    "app_port": ("an integer", (int,)),
}
_STR_OR_LIST = ("base_model", "datasets", "models", "language")
SHORT_DESCRIPTION_MAX = 60  # the Hub rejects longer Space short descriptions
_DATASET_ONLY_KEYS = ("task_categories", "size_categories", "configs", "pretty_name", "dataset_info")


@dataclass(frozen=True)
class CardReport:
    """Outcome of a check: the kind the card was checked as (None if unknown) and all its problems."""

    kind: ArtifactKind | None
    problems: list[CardProblem] = field(default_factory=list)
    source: str | None = None

    @property
    def ok(self) -> bool:
        """True when the card has no problem."""
        return not self.problems


# --------------------------------------------------------------------------------------------- parsing


def _card_text(text_or_card: str | RepoCard | os.PathLike[str]) -> str:
    if isinstance(text_or_card, RepoCard):
        return str(text_or_card)
    if isinstance(text_or_card, os.PathLike):
        return Path(text_or_card).read_text(encoding="utf-8-sig")
    if isinstance(text_or_card, str):
        return text_or_card
    raise TypeError(f"expected card text, a RepoCard or a path, got {type(text_or_card).__name__}")


def _split_front_matter(text: str, problems: list[CardProblem]) -> tuple[dict[str, Any] | None, str]:
    """Parse the YAML block exactly where the Hub finds it (its own regex); record why it cannot be used."""
    match = REGEX_YAML_BLOCK.search(text)
    if match is None:
        problems.append(
            CardProblem("yaml", "no front matter: README.md must start with a YAML block between '---' lines")
        )
        return None, text
    body = text[match.end() :]
    try:
        data = yaml.safe_load(match.group(2))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 2}" if mark is not None else ""  # +1 for 0-based, +1 for the '---'
        reason = getattr(err, "problem", None) or str(err).splitlines()[0]
        problems.append(CardProblem("yaml", f"front matter is not valid YAML{where}: {reason}"))
        return None, body
    if data is None:
        data = {}
    if not isinstance(data, dict):
        problems.append(
            CardProblem(
                "yaml", f"front matter must be a mapping of keys to values, got {type(data).__name__}"
            )
        )
        return None, body
    return data, body


def _tags(meta: Mapping[str, Any]) -> list[str]:
    tags = meta.get("tags")
    if isinstance(tags, str):
        return [tags]
    if isinstance(tags, list):
        return [tag for tag in tags if isinstance(tag, str)]
    return []


def _kind_tags(meta: Mapping[str, Any]) -> list[str]:
    return [t[len(HUBKIT_KIND_TAG_PREFIX) :] for t in _tags(meta) if t.startswith(HUBKIT_KIND_TAG_PREFIX)]


def _guess_repo_type(meta: Mapping[str, Any]) -> str:
    if "sdk" in meta or "app_file" in meta:
        return "space"
    if any(key in meta for key in _DATASET_ONLY_KEYS):
        return "dataset"
    return "model"


def infer_kind(meta: Mapping[str, Any], repo_type: str | None = None) -> ArtifactKind:
    """Which kind a card describes: its ``hubkit-kind:`` tag, else its ``base_model_relation``, else the repo.

    Without a repo type the front matter decides (``sdk`` → Space, dataset-only keys → dataset, else model).
    """
    for value in _kind_tags(meta):
        try:
            return ArtifactKind.parse(value)
        except ValueError:
            continue
    relation = meta.get("base_model_relation")
    if relation == "adapter":
        return ArtifactKind.ADAPTER
    if relation == "quantized":
        return ArtifactKind.QUANTIZED
    if relation in ("finetune", "merge"):
        return ArtifactKind.PIPELINE
    tags = _tags(meta)
    repo_type = repo_type or _guess_repo_type(meta)
    if repo_type == "space":
        return ArtifactKind.METRIC if ("metric" in tags or "evaluate" in tags) else ArtifactKind.SPACE
    if repo_type == "dataset":
        return ArtifactKind.DATASET
    if "lora" in tags or meta.get("library_name") == "peft":
        return ArtifactKind.ADAPTER
    return ArtifactKind.PIPELINE


# ---------------------------------------------------------------------------------------------- checks


def _is_empty(value: Any) -> bool:
    return value is None or (
        isinstance(value, (str, list, dict)) and not (value.strip() if isinstance(value, str) else value)
    )


def _typename(value: Any) -> str:
    return type(value).__name__


def _wrong_type(key: str, expected: str, value: Any) -> CardProblem:
    hint = " (quote it in YAML)" if expected == "a string" and isinstance(value, (int, float)) else ""
    return CardProblem(key, f"must be {expected}{hint}, got {_typename(value)} {value!r}")


def _check_types(meta: Mapping[str, Any], schema: KindSchema, problems: list[CardProblem]) -> set[str]:
    """Report keys of the wrong YAML type; return them so later checks skip them."""
    bad: set[str] = set()
    for key, (expected, types) in _KEY_TYPES.items():
        value = meta.get(key)
        if value is None:
            continue
        if not isinstance(value, types) or (types == (int,) and isinstance(value, bool)):
            problems.append(_wrong_type(key, expected, value))
            bad.add(key)
    for key in _STR_OR_LIST:
        value = meta.get(key)
        if value is None or isinstance(value, str):
            continue
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            problems.append(_wrong_type(key, "a string or a list of strings", value))
            bad.add(key)
    license_ = meta.get("license")
    if license_ is not None:
        if schema.kind is ArtifactKind.DATASET and isinstance(license_, list):
            if not all(isinstance(item, str) for item in license_):
                problems.append(_wrong_type("license", "a license id or a list of license ids", license_))
                bad.add("license")
        elif not isinstance(license_, str):
            problems.append(_wrong_type("license", "a string (a license id such as apache-2.0)", license_))
            bad.add("license")
    tags = meta.get("tags")
    if tags is not None and (not isinstance(tags, list) or not all(isinstance(t, str) and t for t in tags)):
        problems.append(_wrong_type("tags", "a list of non-empty strings", tags))
        bad.add("tags")
    return bad


def _required_tags_text(schema: KindSchema) -> str:
    wanted = [f"'{tag}'" for tag in schema.required_tags]
    wanted += [f"'{prefix}<name>'" for prefix in schema.required_tag_prefixes]
    return ", ".join(wanted)


def _check_required(
    meta: Mapping[str, Any], schema: KindSchema, bad: set[str], problems: list[CardProblem]
) -> None:
    for key in schema.required:
        if key in bad or (key in meta and not _is_empty(meta[key])):
            continue
        hint = ""
        allowed = schema.allowed.get(key)
        if allowed is not None and len(allowed) == 1:
            hint = f"; set it to '{next(iter(allowed))}'"
        elif key == "tags":
            hint = f"; must include {_required_tags_text(schema)}"
        problems.append(CardProblem(key, f"missing ({schema.reason}{hint})"))


def _one_of(values: frozenset[str]) -> str:
    ordered = sorted(values)
    return f"'{ordered[0]}'" if len(ordered) == 1 else "one of " + ", ".join(ordered)


def _check_values(
    meta: Mapping[str, Any], schema: KindSchema, bad: set[str], problems: list[CardProblem]
) -> None:
    relation = meta.get("base_model_relation")
    relation_known = True
    if (
        isinstance(relation, str)
        and "base_model_relation" not in bad
        and relation not in BASE_MODEL_RELATIONS
    ):
        relation_known = False
        problems.append(
            CardProblem(
                "base_model_relation",
                f"'{relation}' is not a relation the Hub knows; expected {_one_of(BASE_MODEL_RELATIONS)}",
            )
        )
    for key, allowed in schema.allowed.items():
        value = meta.get(key)
        if key in bad or not isinstance(value, str) or value in allowed:
            continue
        if key == "base_model_relation" and not relation_known:
            continue
        problems.append(
            CardProblem(
                key, f"'{value}' is not valid for {schema.kind.value} cards; expected {_one_of(allowed)}"
            )
        )
    if schema.kind in (ArtifactKind.SPACE, ArtifactKind.METRIC):
        for key in ("colorFrom", "colorTo"):
            value = meta.get(key)
            if key not in bad and isinstance(value, str) and value not in SPACE_COLORS:
                problems.append(
                    CardProblem(key, f"'{value}' is not a Space colour; expected {_one_of(SPACE_COLORS)}")
                )


def _check_license(meta: Mapping[str, Any], bad: set[str], problems: list[CardProblem]) -> None:
    if "license" in bad:
        return
    value = meta.get("license")
    ids = value if isinstance(value, list) else [value] if isinstance(value, str) and value else []
    for license_id in ids:
        if not LICENSE_ID_RE.match(license_id):
            problems.append(
                CardProblem(
                    "license", f"'{license_id}' is not a license id (lowercase, like 'apache-2.0' or 'mit')"
                )
            )
    if "other" in ids:
        for key in ("license_name", "license_link"):
            if _is_empty(meta.get(key)):
                problems.append(CardProblem(key, "missing (required when license is 'other')"))


def _base_models(meta: Mapping[str, Any], bad: set[str]) -> list[str]:
    if "base_model" in bad:
        return []
    value = meta.get("base_model")
    if isinstance(value, str):
        return [value] if value.strip() else []
    return list(value) if isinstance(value, list) else []


def _check_base_model(
    meta: Mapping[str, Any], schema: KindSchema, bad: set[str], problems: list[CardProblem]
) -> None:
    if not schema.kind.is_model:
        return
    bases = _base_models(meta, bad)
    for base in bases:
        try:
            validate_repo_id(base)
        except HFValidationError as err:
            local = base.startswith(("/", ".", "~")) or "\\" in base or base.count("/") > 1
            reason = "looks like a local path, not a Hub repo id" if local else str(err).rstrip(".")
            problems.append(
                CardProblem("base_model", f"'{base}' {reason}" if local else f"'{base}': {reason}")
            )
    relation = meta.get("base_model_relation")
    if relation in ("adapter", "quantized") and len(bases) > 1:
        problems.append(
            CardProblem(
                "base_model", f"must be a single repo id for base_model_relation '{relation}', got a list"
            )
        )
    if schema.kind is ArtifactKind.PIPELINE:
        has_relation = not _is_empty(relation)
        if bases and not has_relation and "base_model_relation" not in bad:
            problems.append(
                CardProblem(
                    "base_model_relation",
                    "missing (required when base_model is set; use 'finetune' or 'merge')",
                )
            )
        if has_relation and not bases and "base_model" not in bad:
            problems.append(CardProblem("base_model", "missing (required when base_model_relation is set)"))


def _check_tags(
    meta: Mapping[str, Any], schema: KindSchema, bad: set[str], kind_given: bool, problems: list[CardProblem]
) -> None:
    if "tags" in bad or _is_empty(meta.get("tags")):
        return  # already reported (wrong type, or missing with the list of what it must hold)
    tags = _tags(meta)
    for tag in schema.required_tags:
        if tag not in tags:
            why = "every hubkit artifact carries it" if tag == HUBKIT_TAG else schema.reason
            problems.append(CardProblem("tags", f"missing '{tag}' ({why})"))
    for prefix in schema.required_tag_prefixes:
        if not any(t.startswith(prefix) and len(t) > len(prefix) for t in tags):
            problems.append(
                CardProblem(
                    "tags", f"missing '{prefix}<name>' ({schema.reason}: names the method that made it)"
                )
            )
    for tag in tags:
        if tag.startswith("hubkit-method:") and not METHOD_NAME_RE.match(tag[len("hubkit-method:") :]):
            problems.append(
                CardProblem("tags", f"'{tag}': method names are lowercase letters, digits, '.', '_' or '-'")
            )
    kinds = _kind_tags(meta)
    for value in kinds:
        try:
            tagged = ArtifactKind.parse(value)
        except ValueError as err:
            problems.append(CardProblem("tags", f"'{HUBKIT_KIND_TAG_PREFIX}{value}': {err}"))
            continue
        if tagged is not schema.kind:
            source = "the kind asked for" if kind_given else "the kind it was checked as"
            problems.append(
                CardProblem(
                    "tags", f"'{HUBKIT_KIND_TAG_PREFIX}{value}' does not match {source} ({schema.kind.value})"
                )
            )
    if schema.kind is ArtifactKind.ADAPTER:
        bases = _base_models(meta, bad)
        if "lora" in tags:
            for base in bases:
                if f"base_model:adapter:{base}" not in tags:
                    problems.append(
                        CardProblem(
                            "tags",
                            f"missing 'base_model:adapter:{base}' (LoRA adapters carry it next to 'lora' "
                            "so the Hub and inference providers find the base)",
                        )
                    )
        for tag in tags:
            if (
                tag.startswith("base_model:adapter:")
                and bases
                and tag[len("base_model:adapter:") :] not in bases
            ):
                problems.append(
                    CardProblem("tags", f"'{tag}' does not match base_model ({', '.join(bases)})")
                )


def _check_architecture(
    meta: Mapping[str, Any], schema: KindSchema, bad: set[str], problems: list[CardProblem]
) -> None:
    """``base_architecture`` and its ``base-architecture:`` tag: a known family, the two agreeing, on model
    cards only. Both are optional (cards written before hubkit recorded them have neither), but one without
    the other is a half-written card: the Hub's tag filter and the leaderboard would disagree."""
    value = meta.get(ARCHITECTURE_KEY)
    tagged = [t[len(ARCHITECTURE_TAG_PREFIX) :] for t in _tags(meta) if t.startswith(ARCHITECTURE_TAG_PREFIX)]
    if value is None and not tagged:
        return
    if not schema.kind.is_model:
        where = ARCHITECTURE_KEY if value is not None else "tags"
        problems.append(CardProblem(where, f"only model cards name a base architecture, not {schema.kind}"))
        return
    known = ", ".join(BASE_ARCHITECTURES)
    if ARCHITECTURE_KEY not in bad and value is not None and value not in BASE_ARCHITECTURES:
        problems.append(
            CardProblem(
                ARCHITECTURE_KEY, f"'{value}' is not an architecture hubkit knows; expected one of {known}"
            )
        )
    for arch in tagged:
        if arch not in BASE_ARCHITECTURES:
            problems.append(
                CardProblem(
                    "tags", f"'{ARCHITECTURE_TAG_PREFIX}{arch}': expected one of {known} after the prefix"
                )
            )
    if ARCHITECTURE_KEY in bad or (value is not None and value not in BASE_ARCHITECTURES):
        return
    if value is None:
        problems.append(
            CardProblem(
                ARCHITECTURE_KEY, f"missing (the card is tagged '{ARCHITECTURE_TAG_PREFIX}{tagged[0]}')"
            )
        )
    elif not tagged:
        problems.append(
            CardProblem(
                "tags", f"missing '{ARCHITECTURE_TAG_PREFIX}{value}' ({ARCHITECTURE_KEY} is '{value}')"
            )
        )
    elif set(tagged) != {value}:
        shown = ", ".join(f"'{ARCHITECTURE_TAG_PREFIX}{a}'" for a in tagged)
        problems.append(CardProblem("tags", f"{shown} does not match {ARCHITECTURE_KEY} '{value}'"))


def _check_model_index(index: Any, problems: list[CardProblem]) -> None:
    """Check the model-index shape key by key (hub-docs modelcard.md), so each hole is named."""
    root = "model-index"
    found: list[CardProblem] = []
    if not isinstance(index, list) or not index:
        problems.append(CardProblem(root, "must be a non-empty list of {name, results} entries"))
        return
    for i, entry in enumerate(index):
        at = f"{root}[{i}]"
        if not isinstance(entry, dict):
            found.append(CardProblem(at, "must be a mapping with 'name' and 'results'"))
            continue
        if _is_empty(entry.get("name")) or not isinstance(entry.get("name"), str):
            found.append(CardProblem(f"{at}.name", "missing (the model's name, usually the repo name)"))
        results = entry.get("results")
        if not isinstance(results, list) or not results:
            found.append(
                CardProblem(f"{at}.results", "missing or empty (a list of {task, dataset, metrics})")
            )
            continue
        for j, result in enumerate(results):
            _check_result(f"{at}.results[{j}]", result, found)
    problems.extend(found)
    if not found:
        try:
            model_index_to_eval_results(index)
        except Exception as err:  # the library's own parser is the last word on what loads
            problems.append(CardProblem(root, f"cannot be parsed into EvalResults: {err}"))


def _check_result(at: str, result: Any, found: list[CardProblem]) -> None:
    if not isinstance(result, dict):
        found.append(CardProblem(at, "must be a mapping with 'task', 'dataset' and 'metrics'"))
        return
    task = result.get("task")
    if not isinstance(task, dict) or _is_empty(task.get("type")):
        found.append(CardProblem(f"{at}.task.type", "missing (e.g. text-to-image)"))
    dataset = result.get("dataset")
    for key, example in (("type", "a dataset repo id"), ("name", "a display name")):
        if not isinstance(dataset, dict) or _is_empty(dataset.get(key)):
            found.append(CardProblem(f"{at}.dataset.{key}", f"missing ({example})"))
    metrics = result.get("metrics")
    if not isinstance(metrics, list) or not metrics:
        found.append(CardProblem(f"{at}.metrics", "missing or empty (a list of {type, value})"))
    else:
        for k, metric in enumerate(metrics):
            mat = f"{at}.metrics[{k}]"
            if not isinstance(metric, dict):
                found.append(CardProblem(mat, "must be a mapping with 'type' and 'value'"))
                continue
            if _is_empty(metric.get("type")):
                found.append(CardProblem(f"{mat}.type", "missing (the metric id, e.g. fid)"))
            value = metric.get("value")
            if value is None:
                found.append(CardProblem(f"{mat}.value", "missing"))
            elif isinstance(value, (dict, list)):
                found.append(
                    CardProblem(f"{mat}.value", f"must be a number or a string, got {_typename(value)}")
                )
    source = result.get("source")
    if source is not None and (not isinstance(source, dict) or _is_empty(source.get("url"))):
        found.append(CardProblem(f"{at}.source.url", "missing (required when 'source' is given)"))


def _check_space(
    meta: Mapping[str, Any], schema: KindSchema, bad: set[str], problems: list[CardProblem]
) -> None:
    if schema.repo_type != "space":
        return
    sdk = meta.get("sdk")
    if (
        schema.kind is ArtifactKind.SPACE
        and sdk in ("gradio", "streamlit")
        and "app_file" not in schema.required
        and _is_empty(meta.get("app_file"))
    ):
        problems.append(CardProblem("app_file", f"missing (required for {sdk} Spaces)"))
    if meta.get("app_port") is not None and sdk != "docker":
        problems.append(CardProblem("app_port", "only used by docker Spaces"))
    short = meta.get("short_description")
    if "short_description" not in bad and isinstance(short, str) and len(short) > SHORT_DESCRIPTION_MAX:
        problems.append(
            CardProblem(
                "short_description", f"{len(short)} characters; the Hub allows {SHORT_DESCRIPTION_MAX}"
            )
        )


def _check_other(
    meta: Mapping[str, Any], schema: KindSchema, bad: set[str], problems: list[CardProblem]
) -> None:
    library = meta.get("library_name")
    if (
        "library_name" not in bad
        and isinstance(library, str)
        and library
        and not LIBRARY_NAME_RE.match(library)
    ):
        problems.append(
            CardProblem("library_name", f"'{library}' is not a library id (lowercase, like 'diffusers')")
        )
    if "model-index" in meta:
        if schema.kind.is_model:
            _check_model_index(meta["model-index"], problems)
        else:
            problems.append(
                CardProblem(
                    "model-index", f"only model cards carry evaluation results, not {schema.kind.value}"
                )
            )


def _check_body(body: str, problems: list[CardProblem]) -> None:
    if not body.strip():
        problems.append(
            CardProblem("body", "empty: describe the artifact and how to load it below the front matter")
        )
    elif "{{" in body or "{%" in body:
        problems.append(CardProblem("body", "contains unrendered template markup ('{{' or '{%')"))


def _inspect(
    text: str, kind: ArtifactKind | str | None, repo_type: str | None
) -> tuple[ArtifactKind | None, dict[str, Any] | None, list[CardProblem]]:
    problems: list[CardProblem] = []
    if repo_type is not None and repo_type not in REPO_TYPES:
        raise ValueError(f"unknown repo type {repo_type!r}; expected one of: {', '.join(REPO_TYPES)}")
    wanted = ArtifactKind.parse(kind) if kind is not None else None
    meta, body = _split_front_matter(text, problems)
    if meta is None:
        _check_body(body, problems)
        return wanted, None, problems
    resolved = wanted or infer_kind(meta, repo_type)
    schema = schema_for(resolved)
    if repo_type is not None and repo_type != schema.repo_type:
        problems.append(
            CardProblem(
                "kind", f"{resolved.value} cards belong in a {schema.repo_type} repo, not a {repo_type} repo"
            )
        )
    bad = _check_types(meta, schema, problems)
    _check_required(meta, schema, bad, problems)
    _check_values(meta, schema, bad, problems)
    _check_license(meta, bad, problems)
    _check_base_model(meta, schema, bad, problems)
    _check_tags(meta, schema, bad, wanted is not None, problems)
    _check_architecture(meta, schema, bad, problems)
    _check_space(meta, schema, bad, problems)
    _check_other(meta, schema, bad, problems)
    _check_body(body, problems)
    return resolved, meta, problems


# ------------------------------------------------------------------------------------------ public API


def inspect_card(
    text_or_card: str | RepoCard | os.PathLike[str],
    kind: ArtifactKind | str | None = None,
    *,
    repo_type: str | None = None,
) -> CardReport:
    """Validate a card offline; also say which kind it was checked as (``validate_card`` omits that)."""
    resolved, _meta, problems = _inspect(_card_text(text_or_card), kind, repo_type)
    return CardReport(resolved, problems)


def validate_card(
    text_or_card: str | RepoCard | os.PathLike[str],
    kind: ArtifactKind | str | None = None,
    *,
    repo_type: str | None = None,
) -> list[CardProblem]:
    """Every problem of a card (README text, a ``RepoCard`` or a path to one); ``[]`` when it is valid.

    ``kind=None`` infers the kind (``hubkit-kind:`` tag, else ``base_model_relation``, else the repo type).
    ``repo_type``, when given, must match the kind (an adapter card in a Space repo is a problem).
    """
    return inspect_card(text_or_card, kind, repo_type=repo_type).problems


def inspect_folder(
    folder: str | os.PathLike[str], repo_type: str | None = "model", *, kind: ArtifactKind | str | None = None
) -> CardReport:
    """Check ``folder/README.md`` and, for Spaces, that the ``app_file`` it names is there."""
    folder = Path(folder)
    wanted = ArtifactKind.parse(kind) if kind is not None else None
    source = str(folder / README)
    if not folder.is_dir():
        return CardReport(wanted, [CardProblem(README, f"{folder} is not a folder")], source)
    readme = folder / README
    if not readme.is_file():
        return CardReport(
            wanted,
            [CardProblem(README, f"missing: {readme} not found (render one with hubkit.cards.render_card)")],
            source,
        )
    try:
        text = readme.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        return CardReport(
            wanted, [CardProblem(README, f"not valid UTF-8 ({err.reason} at byte {err.start})")], source
        )
    resolved, meta, problems = _inspect(text, wanted, repo_type)
    if meta is not None and resolved is not None and schema_for(resolved).repo_type == "space":
        app_file = meta.get("app_file")
        if isinstance(app_file, str) and app_file and not (folder / app_file).is_file():
            problems.append(CardProblem("app_file", f"'{app_file}' is named in the card but not in {folder}"))
    return CardReport(resolved, problems, source)


def check_folder(
    folder: str | os.PathLike[str], repo_type: str | None = "model", *, kind: ArtifactKind | str | None = None
) -> list[CardProblem]:
    """Problems of the card of an artifact folder (a missing README.md is one); ``hubkit publish`` runs it."""
    return inspect_folder(folder, repo_type, kind=kind).problems


def looks_like_path(value: str) -> bool:
    """A repo id has at most one '/', never starts with '.', '/' or '~' and is not a .md file name."""
    return value.startswith((".", "/", "~")) or value.endswith(".md") or "\\" in value or value.count("/") > 1


def inspect_card_source(
    path_or_repo: str | os.PathLike[str],
    *,
    repo_type: str | None = "model",
    endpoint: str | None = None,
    token: str | None = None,
    kind: ArtifactKind | str | None = None,
) -> CardReport:
    """Check a local README.md or artifact folder, or the README.md of a Hub repo (via hf_hub_download).

    ``repo_type=None`` checks a local card as whatever repo type its kind needs and a repo id as a model repo.
    Raises :class:`CardError` when there is no card to check at all: a path that does not exist and is not a
    repo id, a repo that does not exist (or is private without a token), or a Hub that cannot be reached.
    """
    if repo_type is not None and repo_type not in REPO_TYPES:
        raise ValueError(f"unknown repo type {repo_type!r}; expected one of: {', '.join(REPO_TYPES)}")
    raw = os.fspath(path_or_repo)
    path = Path(raw).expanduser()
    if path.is_dir():
        return inspect_folder(path, repo_type, kind=kind)
    if path.is_file():
        if path.name == README:
            return inspect_folder(path.parent, repo_type, kind=kind)
        try:
            text = path.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError as err:
            problem = CardProblem(README, f"{path} is not valid UTF-8 ({err.reason} at byte {err.start})")
            return CardReport(ArtifactKind.parse(kind) if kind is not None else None, [problem], str(path))
        resolved, _meta, problems = _inspect(text, kind, repo_type)
        return CardReport(resolved, problems, str(path))
    if looks_like_path(raw):
        raise CardError([CardProblem(README, f"{raw}: no such file or folder")], source=raw)
    try:
        validate_repo_id(raw)
    except HFValidationError as err:
        problem = CardProblem("repo", f"{raw!r} is neither an existing path nor a repo id ({err})")
        raise CardError([problem], source=raw) from None
    repo_type = repo_type or "model"
    where = endpoint or hf_constants.ENDPOINT
    source = f"{repo_type} repo {raw} at {where}"
    try:
        local = hf_hub_download(raw, README, repo_type=repo_type, endpoint=endpoint, token=token)
    except GatedRepoError as err:
        raise CardError(
            [CardProblem("repo", f"{source} is gated: pass a token with access")], source
        ) from err
    except RepositoryNotFoundError as err:
        message = (
            f"no local path {raw!r}, and no {repo_type} repo of that name at {where} "
            "(check the name and the repo type; private repos need a token)"
        )
        raise CardError([CardProblem("repo", message)], source) from err
    except LocalEntryNotFoundError as err:
        raise CardError([CardProblem("repo", f"cannot fetch README.md from {where}: {err}")], source) from err
    except EntryNotFoundError:
        wanted = ArtifactKind.parse(kind) if kind is not None else None
        return CardReport(wanted, [CardProblem(README, f"missing in {repo_type} repo {raw}")], source)
    except (OSError, ValueError) as err:  # HTTP errors, offline mode, connection failures
        raise CardError([CardProblem("repo", f"cannot fetch README.md from {where}: {err}")], source) from err
    resolved, _meta, problems = _inspect(Path(local).read_text(encoding="utf-8-sig"), kind, repo_type)
    return CardReport(resolved, problems, source)


def check_card_source(
    path_or_repo: str | os.PathLike[str],
    *,
    repo_type: str | None = "model",
    endpoint: str | None = None,
    token: str | None = None,
    kind: ArtifactKind | str | None = None,
) -> list[CardProblem]:
    """Problems of the card at a local path or in a Hub repo; :class:`CardError` if there is none to check."""
    return inspect_card_source(
        path_or_repo, repo_type=repo_type, endpoint=endpoint, token=token, kind=kind
    ).problems
