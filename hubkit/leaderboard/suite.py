"""Evaluation suites as data: which prompts, seeds, settings and metrics, versioned.

A suite is a JSON file (``hubkit/leaderboard/suites/<name>.json``, a method plugin's ``suites/<name>.json``,
or any path): generation settings, seeds,
named prompt *groups* and the metrics computed on each group. Prompts are expanded from the reference
world's vocabulary, so a suite names attribute pairs and templates rather than listing sentences. Change a
suite's content → bump its ``version``: records carry both the version and a digest of the content, and a
test pins the digest of each shipped version.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hubkit.world import shapes

SUITES_DIR = Path(__file__).resolve().parent / "suites"
SUITE_PATH_ENV = "HUBKIT_SUITE_PATH"  # folders of suite files searched after the installed ones

__all__ = [
    "SUITES_DIR",
    "PlotSpec",
    "Prompt",
    "Suite",
    "SuiteError",
    "available_suites",
    "erasure_suites",
    "load_suite",
    "suite_files",
    "suite_key",
]


class SuiteError(ValueError):
    """A suite file or its parameters are invalid; the message names the problem."""


@dataclass(frozen=True)
class Prompt:
    """One prompt of a group and the attribute values it asks for (what the judge should read)."""

    text: str
    labels: dict[str, str]
    seeds: tuple[int, ...]


@dataclass(frozen=True)
class MetricSpec:
    metric: str
    group: str
    outputs: dict[str, str]
    args: dict[str, Any] = field(default_factory=dict)
    reference: dict[str, int] | None = None
    inputs: dict[str, str] = field(default_factory=dict)  # compute argument → source (metrics.INPUT_SOURCES)


@dataclass(frozen=True)
class PlotSpec:
    """A trade-off plot the suite declares (presentation only: not part of the digest).

    One point per leaderboard row of the suite at (``x``, ``y``), two of the suite's metric columns; in a
    suite with a sweep, ``x`` and ``y`` name the metric without its ``@value`` and each row draws a curve
    through its sweep points. ``x_transform`` / ``y_transform`` ``"1-x"`` plots one minus the value (an
    efficacy from a presence); ``colour`` is the id column (``method``, ``kind``, ``model``,
    ``base_model``) or suite parameter that colours the points; ``better`` names the best corner.
    """

    suite: str
    name: str
    title: str
    x: str
    y: str
    x_label: str
    y_label: str
    x_transform: str | None = None
    y_transform: str | None = None
    log_x: bool = False
    log_y: bool = False
    colour: str = "method"
    better: str | None = None
    sweep: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The declaration as the leaderboard publishes it in ``plots.json`` (every key present)."""
        return asdict(self)


@dataclass(frozen=True)
class Suite:
    name: str
    version: int
    description: str
    dataset: str
    params: dict[str, str]
    generation: dict[str, Any]
    sweep: dict[str, list[Any]]
    baseline: dict[str, Any] | None
    groups: dict[str, list[Prompt]]
    metrics: list[MetricSpec]
    digest: str
    plots: tuple[PlotSpec, ...] = ()
    attacks: dict[str, Any] = field(default_factory=dict)  # group → AttackSpec: its images are attacked

    @property
    def key(self) -> str:
        return suite_key(self.name, self.params)

    @property
    def batch_size(self) -> int:
        return int(self.generation.get("batch_size", 16))

    @property
    def call_settings(self) -> dict[str, Any]:
        return {k: v for k, v in self.generation.items() if k != "batch_size"}

    def sweep_points(self) -> list[dict[str, Any]]:
        """Settings of each sweep point (one empty dict when the suite has no sweep)."""
        if not self.sweep:
            return [{}]
        (name, values), *rest = self.sweep.items()
        if rest:
            raise SuiteError(f"suite {self.name}: one swept setting at most, got {list(self.sweep)}")
        return [{name: value} for value in values]

    @property
    def n_images(self) -> int:
        per_point = sum(len(p.seeds) for prompts in self.groups.values() for p in prompts)
        return per_point * len(self.sweep_points())


def suite_key(name: str, params: dict[str, str]) -> str:
    """``shapes-erasure`` + ``{"concept": "red"}`` → ``shapes-erasure_concept-red`` (file- and repo-safe)."""
    return "_".join([name, *(f"{k}-{v}" for k, v in sorted(params.items()))]).replace(" ", "-")


def suite_files() -> dict[str, Path]:
    """Every suite by name: the core's, then each registered method's ``suites/`` folder (a method's suite
    may not shadow another one's name); then the folders of ``HUBKIT_SUITE_PATH`` (``os.pathsep``-separated),
    whose files add suites or replace an installed one of the same name (a cut-down suite for a quick run:
    its records' digest says it is not the installed one)."""
    from hubkit.methods import suite_dirs

    found: dict[str, Path] = {}
    for folder in [SUITES_DIR, *suite_dirs()]:
        for path in sorted(folder.glob("*.json")):
            if path.stem in found and found[path.stem] != path:
                raise SuiteError(f"two suites are named {path.stem!r}: {found[path.stem]} and {path}")
            found[path.stem] = path
    for entry in os.environ.get(SUITE_PATH_ENV, "").split(os.pathsep):
        if entry.strip():
            folder = Path(entry).expanduser()
            if not folder.is_dir():
                raise SuiteError(f"{SUITE_PATH_ENV} names {folder}, which is not a folder")
            found.update((path.stem, path) for path in sorted(folder.glob("*.json")))
    return found


def available_suites() -> list[str]:
    return sorted(suite_files())


def _read(name_or_path: str | Path) -> dict[str, Any]:
    path = Path(name_or_path)
    if path.suffix != ".json":
        files = suite_files()
        if str(name_or_path) not in files:
            raise SuiteError(f"unknown suite {name_or_path!r}; installed suites: {', '.join(sorted(files))}")
        path = files[str(name_or_path)]
    if not path.is_file():
        raise SuiteError(f"suite file {path} does not exist")
    text = path.read_text()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise SuiteError(f"suite file {path} is not valid JSON: {err}") from err
    if not isinstance(data, dict):
        raise SuiteError(f"suite file {path} must hold a JSON object")
    return data


def _digest(data: dict[str, Any], params: dict[str, str], groups: dict[str, list[Prompt]]) -> str:
    """sha256 of everything that shapes the numbers: the file, the parameters and the expanded prompts
    (so a change of the world's vocabulary shows too). The ``plots`` declarations are presentation: not
    part of it, so declaring or changing a plot needs no new version."""
    data = {k: v for k, v in data.items() if k != "plots"}
    expanded = {g: [[p.text, p.labels, list(p.seeds)] for p in prompts] for g, prompts in groups.items()}
    canonical = json.dumps([data, params, expanded], sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def load_suite(name_or_path: str | Path, params: dict[str, str] | None = None) -> Suite:
    """Load a shipped suite by name (``shapes-quality``) or a suite file by path, with its parameters."""
    data = _read(name_or_path)
    for key in ("name", "version", "groups", "metrics"):
        if key not in data:
            raise SuiteError(f"suite {name_or_path}: missing key {key!r}")
    name = str(data["name"])
    params = {str(k): str(v) for k, v in (params or {}).items()}
    declared = data.get("parameters") or {}
    if set(params) != set(declared):
        missing, extra = sorted(set(declared) - set(params)), sorted(set(params) - set(declared))
        raise SuiteError(
            f"suite {name} takes parameters {sorted(declared) or 'none'}"
            + (f"; missing {missing}" if missing else "")
            + (f"; unknown {extra}" if extra else "")
        )
    context = _context(data, params)
    seeds = tuple(int(s) for s in data.get("seeds", [0]))
    groups = {
        group: _expand(name, group, spec, seeds, context) for group, spec in dict(data["groups"]).items()
    }
    metrics = [_metric(name, spec, groups, context) for spec in data["metrics"]]
    attacks = {
        group: _attack(name, group, spec["attack"])
        for group, spec in dict(data["groups"]).items()
        if "attack" in spec
    }
    sweep = {str(k): list(v) for k, v in (data.get("sweep") or {}).items()}
    plots = _plots(name, data.get("plots"), metrics, sorted(declared), next(iter(sweep), None))
    return Suite(
        name=name,
        version=int(data["version"]),
        description=str(data.get("description", "")),
        dataset=str(data.get("dataset", "")),
        params=params,
        generation=dict(data.get("generation") or {}),
        sweep=sweep,
        baseline=data.get("baseline"),
        groups=groups,
        metrics=metrics,
        digest=_digest(data, params, groups),
        plots=plots,
        attacks=attacks,
    )


def _attack(suite: str, group: str, spec: Any) -> Any:
    from hubkit.leaderboard.attacks import AttackSpec

    try:
        return AttackSpec.from_json(spec, f"suite {suite}, group {group}")
    except (TypeError, ValueError) as err:
        raise SuiteError(str(err)) from err


ERASURE_SUITES = ("shapes-erasure", "shapes-attack")
"""What every erasure artifact is ranked on, per erased concept: erasure and leakage, then robustness."""


def erasure_suites(concepts: list[str]) -> list[tuple[str, dict[str, str]]]:
    """``(suite, {"concept": c})`` of :data:`ERASURE_SUITES` for each concept the suites know (an erasure
    method's ``default_suites``); concepts outside the reference world are left out."""
    found = []
    for concept in concepts:
        for name in ERASURE_SUITES:
            try:
                load_suite(name, {"concept": concept})
            except SuiteError:
                continue  # not a concept of the reference world (or the suite is not installed)
            found.append((name, {"concept": concept}))
    return found


def _context(data: dict[str, Any], params: dict[str, str]) -> dict[str, Any]:
    """Parameters plus what follows from them: the concept's attribute and its neighbours."""
    context: dict[str, Any] = dict(params)
    concept = params.get("concept")
    if concept is None:
        return context
    attribute = next((a for a, values in shapes.ATTRIBUTES.items() if concept in values), None)
    if not concept.strip() or attribute not in ("shape", "colour"):
        known = [*shapes.COLOURS, *shapes.SHAPES]
        raise SuiteError(
            f"concept {concept!r} is not a colour or shape of the world; known: {', '.join(known)}"
        )
    neighbours = (data.get("neighbours") or {}).get(concept)
    if not neighbours:
        raise SuiteError(f"suite {data['name']} lists no neighbours for concept {concept!r}")
    context.update(attribute=attribute, neighbours=list(neighbours))
    return context


def _pairs(kind: str) -> list[tuple[str, str]]:
    if kind == "trained":
        return shapes.trained_pairs()
    if kind == "held_out":
        return list(shapes.HELD_OUT_PAIRS)
    if kind == "all":
        return [(s, c) for s in shapes.SHAPES for c in shapes.COLOURS]
    if kind in shapes.SPLITS:  # the world's other splits: novel shapes in the trained / unseen colours...
        return shapes.split_pairs(kind)
    splits = ", ".join(shapes.SPLITS)
    raise SuiteError(f"pairs must be trained, held_out, all or a world split ({splits}), not {kind!r}")


def _select(pairs: list[tuple[str, str]], mode: str | None, context: dict[str, Any]) -> list[tuple[str, str]]:
    """The pairs a group wants relative to the suite's concept (``with``, ``neighbours``, ``unrelated``)."""
    if mode is None:
        return pairs
    if "concept" not in context:
        raise SuiteError("a group selects by concept but the suite has no concept parameter")
    index = 0 if context["attribute"] == "shape" else 1
    concept, neighbours = context["concept"], set(context["neighbours"])
    keep = {
        "with": lambda v: v == concept,
        "neighbours": lambda v: v in neighbours,
        "unrelated": lambda v: v != concept and v not in neighbours,
    }
    if mode not in keep:
        raise SuiteError(f"concept selection must be with, neighbours or unrelated, not {mode!r}")
    return [p for p in pairs if keep[mode](p[index])]


def _expand(
    suite: str, group: str, spec: dict[str, Any], seeds: tuple[int, ...], context: dict[str, Any]
) -> list[Prompt]:
    template = str(spec.get("template", "a {colour} {shape}"))
    group_seeds = tuple(int(s) for s in spec.get("seeds", seeds))
    pairs = _select(_pairs(str(spec.get("pairs", "trained"))), spec.get("concept"), context)
    paraphrase = spec.get("paraphrase")
    if paraphrase == "concept":
        paraphrase = context.get("attribute")
    prompts = []
    for shape, colour in pairs:
        labels = {"shape": shape, "colour": colour}
        variants = [labels]
        if paraphrase is not None:
            if paraphrase not in shapes.SYNONYMS:
                raise SuiteError(f"suite {suite}, group {group}: cannot paraphrase {paraphrase!r}")
            words = shapes.SYNONYMS[paraphrase][labels[paraphrase]][: int(spec.get("per_word", 2))]
            variants = [dict(labels, **{paraphrase: word}) for word in words]
        prompts.extend(Prompt(template.format(**fields), labels, group_seeds) for fields in variants)
    if not prompts:
        raise SuiteError(f"suite {suite}: group {group!r} has no prompts")
    return prompts


def _metric(
    suite: str, spec: dict[str, Any], groups: dict[str, list[Prompt]], context: dict[str, Any]
) -> MetricSpec:
    from hubkit.metrics import INPUT_SOURCES, METRIC_INPUTS, METRICS

    metric, group = spec.get("metric"), spec.get("group")
    if metric not in METRICS:
        raise SuiteError(f"suite {suite}: unknown metric {metric!r}; available: {', '.join(sorted(METRICS))}")
    if group not in groups:
        raise SuiteError(f"suite {suite}: metric {metric} names unknown group {group!r}")
    outputs = spec.get("outputs")
    if not outputs:
        raise SuiteError(f"suite {suite}: metric {metric} on {group} names no outputs")
    args = {k: v.format(**context) if isinstance(v, str) else v for k, v in (spec.get("args") or {}).items()}
    inputs = spec.get("inputs") or METRIC_INPUTS.get(metric)
    if not isinstance(inputs, dict) or not inputs:
        raise SuiteError(f"suite {suite}: metric {metric} names no inputs (e.g. {{'predictions': 'images'}})")
    unknown = sorted(set(inputs.values()) - set(INPUT_SOURCES))
    if unknown:
        raise SuiteError(
            f"suite {suite}: metric {metric} reads unknown input(s) {unknown}; "
            f"sources: {', '.join(INPUT_SOURCES)}"
        )
    return MetricSpec(metric, group, dict(outputs), args, spec.get("reference"), dict(inputs))


PLOT_KEYS = {"name", "title", "x", "y", "x_label", "y_label", "x_transform", "y_transform"}
PLOT_KEYS |= {"log_x", "log_y", "colour", "better"}
PLOT_TRANSFORMS = ("1-x",)
PLOT_CORNERS = ("top right", "top left", "bottom right", "bottom left")
PLOT_COLOUR_COLUMNS = ("method", "kind", "model", "base_model")
ALWAYS_MEASURED = ("unet_evals",)
"""Metric columns the runner adds to every suite's results (UNet evaluations per image)."""


def _plots(
    suite: str, specs: Any, metrics: list[MetricSpec], parameters: list[str], swept: str | None
) -> tuple[PlotSpec, ...]:
    """The suite's ``plots`` declarations, checked against the columns the suite measures."""
    if specs is None:
        return ()
    if not isinstance(specs, list):
        raise SuiteError(f"suite {suite}: 'plots' must be a list of plot declarations (JSON objects)")
    columns = sorted({c for m in metrics for c in m.outputs.values()} | set(ALWAYS_MEASURED))
    colours = [*PLOT_COLOUR_COLUMNS, *parameters]
    plots: list[PlotSpec] = []
    for n, spec in enumerate(specs):
        where = f"suite {suite}, plot {n + 1}"
        if not isinstance(spec, dict):
            raise SuiteError(f"{where}: a plot declaration must be a JSON object, got {spec!r}")
        name = spec.get("name")
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
            raise SuiteError(f"{where}: 'name' must be letters, digits, '_', '-' or '.', got {name!r}")
        where = f"suite {suite}, plot {name!r}"
        if name in {p.name for p in plots}:
            raise SuiteError(f"{where}: declared twice")
        unknown = sorted(set(spec) - PLOT_KEYS)
        if unknown:
            raise SuiteError(f"{where}: unknown keys {unknown}; a plot takes {sorted(PLOT_KEYS)}")
        for axis in ("x", "y"):
            column = spec.get(axis)
            if column not in columns:
                raise SuiteError(
                    f"{where}: {axis} must be a metric column of the suite ({', '.join(columns)})"
                    + (" without its @value (the sweep draws a curve)" if swept else "")
                    + f", got {column!r}"
                )
            transform = spec.get(f"{axis}_transform")
            if transform is not None and transform not in PLOT_TRANSFORMS:
                raise SuiteError(
                    f"{where}: {axis}_transform must be one of {PLOT_TRANSFORMS}, got {transform!r}"
                )
            if not isinstance(spec.get(f"log_{axis}", False), bool):
                raise SuiteError(f"{where}: log_{axis} must be true or false")
            for key in (f"{axis}_label", "title"):
                if not isinstance(spec.get(key, ""), str):
                    raise SuiteError(f"{where}: {key} must be a string")
        colour = spec.get("colour", "method")
        if colour not in colours:
            raise SuiteError(f"{where}: colour must be one of {', '.join(colours)}, got {colour!r}")
        better = spec.get("better")
        if better is not None and better not in PLOT_CORNERS:
            raise SuiteError(f"{where}: better must be one of {', '.join(PLOT_CORNERS)}, got {better!r}")
        labels = {
            axis: spec.get(f"{axis}_label")
            or (f"1 − {spec[axis]}" if spec.get(f"{axis}_transform") else spec[axis])
            for axis in ("x", "y")
        }
        plots.append(
            PlotSpec(
                suite=suite,
                name=name,
                title=spec.get("title") or name,
                x=spec["x"],
                y=spec["y"],
                x_label=labels["x"],
                y_label=labels["y"],
                x_transform=spec.get("x_transform"),
                y_transform=spec.get("y_transform"),
                log_x=spec.get("log_x", False),
                log_y=spec.get("log_y", False),
                colour=colour,
                better=better,
                sweep=swept,
            )
        )
    return tuple(plots)
