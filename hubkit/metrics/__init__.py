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

__all__ = ["METRICS", "METRICS_DIR", "load_metric", "metric_path", "qualified_labels"]

METRICS_DIR = Path(__file__).resolve().parent
METRICS: dict[str, Path] = {
    name: METRICS_DIR / name
    for name in (
        "prompt_alignment",
        "concept_presence",
        "frechet_distance",
        "image_fidelity",
        "sampling_cost",
    )
}
"""Metric name → its module folder (``<folder>/<name>.py`` is the script ``evaluate.load`` runs)."""


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
