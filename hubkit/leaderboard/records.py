"""Results records: their schema, where they live in the results dataset, and the card write-back.

One JSON record per (model, revision, suite key) at ``results/<ns>/<name>/<suite key>/<revision>.json`` in
the dataset repo ``hubkit/leaderboard-results``, with the per-image rows beside it as parquet. The
evaluated model's card gets the same numbers as ``model-index`` and ``.eval_results/<suite key>.yaml``, in
one commit.
"""

from __future__ import annotations

import io
import json
import platform
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import yaml

from hubkit import __version__

SCHEMA_VERSION = 1
RESULTS_REPO = "hubkit/leaderboard-results"
REQUESTS_REPO = "hubkit/leaderboard-requests"
TASK_TYPE = "text-to-image"
SOURCE_NAME = "hubkit eval"

__all__ = [
    "REQUESTS_REPO",
    "RESULTS_REPO",
    "SCHEMA_VERSION",
    "build_record",
    "eval_results_of",
    "record_path",
    "utc_now",
    "weights_revision",
]


def utc_now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def record_path(repo_id: str, suite_key: str, revision: str) -> str:
    return f"results/{repo_id}/{suite_key}/{revision}.json"


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {"hubkit": __version__, "python": platform.python_version()}
    for name in ("torch", "diffusers", "transformers", "peft", "evaluate", "huggingface_hub"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found


@dataclass(frozen=True)
class ModelFacts:
    id: str
    revision: str | None
    method: str
    kind: str
    base_model: str | None
    base_revision: str | None
    artifact_bytes: int
    parameters: int
    architecture: str | None = None  # the base's family (sd1, sd2, sdxl); None when not an SD UNet


def build_record(
    model: ModelFacts, suite, result, judge_digest: str, duration_s: float, card_commit: str | None = None
) -> dict[str, Any]:
    """The results record (schema v1; see the README's "Evaluate" section)."""
    return {
        "schema_version": SCHEMA_VERSION,
        "model": {
            "id": model.id,
            "revision": model.revision,
            "method": model.method,
            "kind": model.kind,
            "base_model": model.base_model,
            "base_revision": model.base_revision,
            "artifact_bytes": model.artifact_bytes,
            "parameters": model.parameters,
            "architecture": model.architecture,
        },
        "suite": {
            "name": suite.name,
            "version": suite.version,
            "key": suite.key,
            "params": suite.params,
            "digest": suite.digest,
            "dataset": suite.dataset,
        },
        "settings": {**result.settings, "judge": judge_digest},
        "metrics": result.metrics,
        "details": result.details,
        "env": _versions(),
        "date": utc_now(),
        "duration_s": round(duration_s, 3),
        "card_commit": card_commit,
    }


def weights_revision(revision: str | None, records: list[dict[str, Any]]) -> str | None:
    """The commit whose weights ``revision`` holds: the first commit of its chain of card commits.

    Writing an evaluation's results into a card (README.md and ``.eval_results/``) makes a commit that
    changes nothing else; each record names the revision it evaluated and that card commit, so following
    ``card_commit`` → evaluated revision back from ``revision`` reaches the commit that brought the weights.
    ``records`` must be one model's.
    """
    evaluated_at = {r["card_commit"]: r["model"]["revision"] for r in records if r.get("card_commit")}
    seen = {revision}
    while revision in evaluated_at and evaluated_at[revision] not in seen:
        revision = evaluated_at[revision]
        seen.add(revision)
    return revision


def record_bytes(record: dict[str, Any]) -> bytes:
    return (json.dumps(record, indent=2, sort_keys=False) + "\n").encode()


def samples_parquet(samples: list[dict[str, Any]]) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(samples), buffer)
    return buffer.getvalue()


def eval_results_of(record: dict[str, Any], source_url: str | None):
    """The record's metrics as ``huggingface_hub.EvalResult`` rows (one per metric; dataset = the suite)."""
    from huggingface_hub import EvalResult

    suite = record["suite"]
    return [
        EvalResult(
            task_type=TASK_TYPE,
            dataset_type=suite["dataset"] or RESULTS_REPO,
            dataset_name=f"{suite['key']} v{suite['version']}",
            dataset_config=suite["key"],
            dataset_revision=None,
            metric_type=name,
            metric_name=name,
            metric_value=round(float(value), 6),
            metric_config=f"v{suite['version']}",
            source_name=SOURCE_NAME if source_url else None,
            source_url=source_url,
        )
        for name, value in record["metrics"].items()
    ]


def eval_results_yaml(record: dict[str, Any], source_url: str | None) -> bytes:
    """``.eval_results/<suite key>.yaml``: the Hub's decentralised eval-results format, one entry a metric."""
    from huggingface_hub import EvalResultEntry, eval_result_entries_to_yaml

    suite = record["suite"]
    entries = [
        EvalResultEntry(
            dataset_id=suite["dataset"] or RESULTS_REPO,
            task_id=f"{suite['key']}/{name}",
            value=round(float(value), 6),
            date=record["date"],
            source_url=source_url,
            source_name=SOURCE_NAME if source_url else None,
            notes=f"suite {suite['name']} v{suite['version']} ({suite['digest']}), "
            f"hubkit {record['env']['hubkit']}",
        )
        for name, value in record["metrics"].items()
    ]
    return yaml.safe_dump(eval_result_entries_to_yaml(entries), sort_keys=False).encode()
