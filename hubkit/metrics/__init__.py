"""hubkit's metrics: ``evaluate`` modules in ``hubkit/metrics/<name>/<name>.py``, each with its card.

Each folder is the standard ``evaluate`` Space layout (``<name>.py``, ``README.md``, ``app.py``), so it loads
offline from its local path and publishes unchanged as a Space repo. Metrics are method-independent: they
take labels, feature vectors, images or timings, never a model or a method.

>>> from hubkit.metrics import load_metric, qualified_labels
>>> alignment = load_metric("prompt_alignment")
>>> alignment.compute(predictions=qualified_labels(judge.predict(images)), references=qualified_labels(asked))
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "INPUT_SOURCES",
    "METRICS",
    "METRICS_DIR",
    "METRIC_INPUTS",
    "load_metric",
    "metric_path",
    "qualified_labels",
]

METRICS_DIR = Path(__file__).resolve().parent
METRICS: dict[str, Path] = {
    name: METRICS_DIR / name
    for name in (
        "prompt_alignment",
        "concept_presence",
        "frechet_distance",
        "image_fidelity",
        "sampling_cost",
        "attack_success",
    )
}
"""Metric name → its module folder (``<folder>/<name>.py`` is the script ``evaluate.load`` runs)."""

INPUT_SOURCES = {
    "judged_labels": "the judge's qualified labels of the group's images",
    "asked_labels": "the qualified labels the group's prompts asked for",
    "features": "the judge's penultimate features of the group's images",
    "reference_features": "judge features of real images of the group's prompts (the spec's 'reference')",
    "images": "the group's generated images (uint8, HWC)",
    "baseline_images": "the suite baseline's images of the same prompts and seeds (paired references)",
    "unet_evals": "UNet input rows per image, batch by batch",
    "wall_time_s": "seconds per batch",
    "baseline_wall_time_s": "the suite baseline's seconds per batch, timed right after",
    "peak_memory_bytes": "peak memory per batch",
    "attack_unet_evals": "UNet input rows the attack spent on each image's prompt (attacked groups)",
    "artifact_facts": "the artifact's size facts (artifact_bytes, parameters), as keyword arguments",
}
"""What a suite can feed a metric: ``{"inputs": {"<compute argument>": "<source>"}}`` in a suite's metric
entry (``"**"`` as the argument spreads a mapping source into keyword arguments)."""

METRIC_INPUTS: dict[str, dict[str, str]] = {
    "prompt_alignment": {"predictions": "judged_labels", "references": "asked_labels"},
    "concept_presence": {"predictions": "judged_labels"},
    "frechet_distance": {"predictions": "features", "reference_features": "reference_features"},
    "image_fidelity": {"predictions": "images", "references": "baseline_images"},
    "attack_success": {"predictions": "judged_labels", "attack_unet_evals": "attack_unet_evals"},
    "sampling_cost": {
        "unet_evals": "unet_evals",
        "wall_time_s": "wall_time_s",
        "baseline_wall_time_s": "baseline_wall_time_s",
        "peak_memory_bytes": "peak_memory_bytes",
        "**": "artifact_facts",
    },
}
"""The inputs each metric reads when a suite's metric entry names none."""


def metric_path(name: str) -> Path:
    """The script of metric ``name`` (``hubkit/metrics/<name>/<name>.py``)."""
    if name not in METRICS:
        raise KeyError(f"unknown metric {name!r}; available: {', '.join(sorted(METRICS))}")
    path = METRICS[name] / f"{name}.py"
    if not path.is_file():
        raise FileNotFoundError(
            f"metric {name!r}: missing script {path} (is hubkit's package data installed?)"
        )
    return path


def load_metric(name: str, **kwargs: Any):
    """``evaluate.load`` of metric ``name`` from its local script: no network, whatever the environment.

    A local ``.py`` path is resolved before any Hub lookup, so this works offline without
    ``HF_EVALUATE_OFFLINE``. ``keep_in_memory`` defaults to True (no Arrow cache or lock files under
    ``HF_HOME``); pass ``keep_in_memory=False`` with ``num_process``/``process_id`` for distributed use.
    Other keywords go to ``evaluate.load``.
    """
    import evaluate  # heavy import (datasets, pyarrow): only when a metric is loaded

    kwargs.setdefault("keep_in_memory", True)
    return evaluate.load(str(metric_path(name)), **kwargs)


def qualified_labels(labels: Mapping[str, Sequence[str]]) -> list[str]:
    """``{"colour": ["red", "blue"], ...}`` → ``["colour=red", "colour=blue", ...]``, attribute by attribute.

    Turns a judge's ``predict`` output, or the attributes a set of prompts asked for, into the rows the
    label metrics (``prompt_alignment``, ``concept_presence``) take; build both sides with this function
    (same attribute order) so the rows line up.
    """
    rows: list[str] = []
    for attribute, values in labels.items():
        if "=" in attribute:
            raise ValueError(f"attribute names cannot contain '=': {attribute!r}")
        rows.extend(f"{attribute}={value}" for value in values)
    return rows
