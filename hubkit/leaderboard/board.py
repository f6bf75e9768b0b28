"""The leaderboard: discover hubkit repos, queue and run their evaluations, aggregate a table and plots.

Two dataset repos, as in the Hub's leaderboard template: requests (``requests/<ns>/<name>.json``, status
PENDING → RUNNING → FINISHED | FAILED with a reason) and results (records under ``results/``, the
aggregated ``leaderboard.parquet`` / ``leaderboard.md``, ``plots.json`` (the plots the table's suites
declare) and ``plots/`` at the top). A broken repo fails its own request and never stops the others.

A model is identified by the revision of its weights: a commit that changes only its card (README.md,
``hubkit.json``, ``.eval_results/``), like the one each evaluation makes to write its results into the
card, stands for the commit the weights came in (``weights_revisions``).
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi
from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, RepositoryNotFoundError
from huggingface_hub.hf_api import RepoFile

from hubkit.cards import HUBKIT_TAG
from hubkit.leaderboard import records
from hubkit.methods import Artifact, MethodError, method_for

REQUEST_SCHEMA_VERSION = 1
ID_COLUMNS = [
    "model",
    "revision",
    "method",
    "kind",
    "base_model",
    "architecture",
    "suite",
    "suite_version",
    "params",
    "date",
    "hubkit_version",
]
CARD_FILES = ("README.md", "hubkit.json")
NOT_WEIGHTS = (*CARD_FILES, ".gitattributes")
"""Files (besides ``.eval_results/``) whose changes leave a model's weights, so its identity, as they were."""

__all__ = ["ID_COLUMNS", "Leaderboard", "RunSummary", "of_architecture", "records_table", "to_markdown"]


def request_path(model: str) -> str:
    return f"requests/{model}.json"


@dataclass
class RunSummary:
    finished: list[str]
    failed: dict[str, str]
    skipped: list[str]
    table: pd.DataFrame


class Leaderboard:
    """The leaderboard's two dataset repos on one Hub, and the work that fills them."""

    def __init__(
        self,
        api: HfApi,
        results_repo: str = records.RESULTS_REPO,
        requests_repo: str = records.REQUESTS_REPO,
    ):
        self.api, self.results_repo, self.requests_repo = api, results_repo, requests_repo
        self._fingerprints: dict[tuple[str, str], str | None] = {}
        self._architectures: dict[tuple[str, str | None], str | None] = {}

    # -- model identity ------------------------------------------------------------------------------
    def weights_revisions(
        self, all_records: list[dict[str, Any]], heads: dict[str, str] | None = None
    ) -> dict[tuple[str, str | None], str | None]:
        """``(model, revision) → the revision of its weights`` for every record's revision (and ``heads``).

        Records link each evaluated revision to the card commit its evaluation made
        (``records.weights_revision``); commits that are not so linked but hold the same files apart from
        the card (someone edited the README) are merged too, by comparing their file trees on the Hub. Of
        the commits holding the same weights, the oldest stands for them.
        """
        by_model: dict[str, list[dict[str, Any]]] = {}
        for record in all_records:
            by_model.setdefault(record["model"]["id"], []).append(record)
        for model in heads or {}:
            by_model.setdefault(model, [])
        found: dict[tuple[str, str | None], str | None] = {}
        for model, mine in by_model.items():
            revisions = {r["model"]["revision"] for r in mine} | {(heads or {}).get(model)}
            chain = {rev: records.weights_revision(rev, mine) for rev in revisions if rev is not None}
            roots = sorted(set(chain.values()))
            if len(roots) > 1:
                same: dict[str, list[str]] = {}
                for root in roots:
                    same.setdefault(self._fingerprint(model, root) or root, []).append(root)
                age = self._commit_ages(model)
                oldest = {
                    r: min(group, key=lambda c: (age.get(c, math.inf), c))
                    for group in same.values()
                    for r in group
                }
                chain = {rev: oldest[root] for rev, root in chain.items()}
            found.update({(model, rev): root for rev, root in chain.items()})
            if None in {r["model"]["revision"] for r in mine}:
                found[(model, None)] = None  # a local folder
        return found

    def _fingerprint(self, model: str, revision: str) -> str | None:
        """A digest of the files of ``model`` at ``revision`` other than its card; None if unreadable."""
        if (model, revision) not in self._fingerprints:
            try:
                tree = self.api.list_repo_tree(model, revision=revision, recursive=True)
                files = sorted(
                    (f.path, f.blob_id)
                    for f in tree
                    if isinstance(f, RepoFile)
                    and f.path not in NOT_WEIGHTS
                    and not f.path.startswith(".eval_results/")
                )
            except HfHubHTTPError:
                files = None
            digest = hashlib.sha256(json.dumps(files).encode()).hexdigest() if files is not None else None
            self._fingerprints[(model, revision)] = digest
        return self._fingerprints[(model, revision)]

    def _commit_ages(self, model: str) -> dict[str, int]:
        """``{commit: n}`` along the main branch of ``model``, 0 for the first commit."""
        try:
            commits = self.api.list_repo_commits(model)
        except HfHubHTTPError:
            return {}
        return {c.commit_id: n for n, c in enumerate(reversed(commits))}

    # -- requests ------------------------------------------------------------------------------------
    def requests(self) -> dict[str, dict[str, Any]]:
        """Every request, by model id."""
        found = {}
        for path in self._files(self.requests_repo, "requests/"):
            if path.endswith(".json"):
                request = json.loads(self._download(self.requests_repo, path))
                found[request["model"]] = request
        return found

    def file_request(self, model: str, revision: str | None, submitted_by: str) -> dict[str, Any]:
        now = records.utc_now()
        request = {
            "schema_version": REQUEST_SCHEMA_VERSION,
            "model": model,
            "revision": revision,
            "status": "PENDING",
            "submitted_time": now,
            "updated_time": now,
            "reason": None,
            "submitted_by": submitted_by,
        }
        self._put_request(request, f"Request evaluation of {model}")
        return request

    def set_status(self, request: dict[str, Any], status: str, reason: str | None = None) -> None:
        request.update(status=status, reason=reason, updated_time=records.utc_now())
        self._put_request(request, f"{request['model']}: {status}")

    def _put_request(self, request: dict[str, Any], message: str) -> None:
        self.api.create_repo(self.requests_repo, repo_type="dataset", exist_ok=True)
        self.api.upload_file(
            path_or_fileobj=(json.dumps(request, indent=2) + "\n").encode(),
            path_in_repo=request_path(request["model"]),
            repo_id=self.requests_repo,
            repo_type="dataset",
            commit_message=message,
        )

    # -- discovery -----------------------------------------------------------------------------------
    def candidates(self) -> dict[str, str]:
        """hubkit text-to-image repos on the Hub: ``{repo id: head sha}``."""
        return {
            m.id: m.sha
            for m in self.api.list_models(filter=HUBKIT_TAG)
            if "text-to-image" in (m.tags or []) or m.pipeline_tag == "text-to-image"
        }

    def light_artifact(self, model: str, revision: str | None, folder: Path) -> Artifact:
        """The card and ``hubkit.json`` only: enough to know the method and its suites, without weights."""
        from hubkit.leaderboard.evaluation import fetch_card_files

        return fetch_card_files(self.api, model, revision, folder)

    def suites_of(self, model: str, revision: str | None) -> list[tuple[str, dict[str, Any]]]:
        with tempfile.TemporaryDirectory(prefix="hubkit-card-") as tmp:
            artifact = self.light_artifact(model, revision, Path(tmp))
            return method_for(artifact).default_suites(artifact)

    def is_fresh(self, model: str, head: str, all_records: list[dict[str, Any]]) -> bool:
        """Whether every default suite of ``model`` has a current-version record for its head commit."""
        from hubkit.leaderboard.suite import load_suite

        try:
            wanted = [load_suite(name, params) for name, params in self.suites_of(model, head)]
        except (MethodError, ValueError, HfHubHTTPError):
            return False  # let the evaluation fail with the full reason
        mine = [r for r in all_records if r["model"]["id"] == model]
        weights = self.weights_revisions(mine, {model: head})
        return all(
            any(
                r["suite"]["key"] == suite.key
                and r["suite"]["version"] == suite.version
                and weights[(model, r["model"]["revision"])] == weights[(model, head)]
                for r in mine
            )
            for suite in wanted
        )

    def queue_stale(self, on_event: Callable[[str], None] = print) -> list[str]:
        """File a PENDING request for each hubkit repo without fresh results (and none already open)."""
        requests, all_records, queued = self.requests(), self.records(), []
        for model, head in sorted(self.candidates().items()):
            open_request = requests.get(model)
            if open_request and open_request["status"] in ("PENDING", "RUNNING"):
                continue
            if open_request and open_request["status"] == "FAILED" and open_request["revision"] == head:
                continue  # failed at this very commit: a new commit or a new submission retries it
            if self.is_fresh(model, head, all_records):
                continue
            self.file_request(model, head, submitted_by="leaderboard")
            on_event(f"queued   {model} @ {head[:12]}")
            queued.append(model)
        return queued

    # -- evaluation ----------------------------------------------------------------------------------
    def run(
        self,
        evaluate_fn: Callable[..., dict[str, Any]] | None = None,
        *,
        max_file_bytes: int | None = None,
        on_event: Callable[[str], None] = print,
        progress: bool = True,
        poll_every: float = 5.0,
    ) -> RunSummary:
        """Queue stale repos, work through the queue until nothing is PENDING or RUNNING (one worker of
        :mod:`hubkit.leaderboard.workers`: other workers may share the queue), then publish the table."""
        from hubkit.leaderboard.workers import Worker

        self.queue_stale(on_event)
        skipped = sorted(m for m, r in self.requests().items() if r["status"] != "PENDING")
        worker = Worker(
            self,
            evaluate_fn,
            max_file_bytes=max_file_bytes,
            on_event=on_event,
            progress=progress,
            poll_every=poll_every,
        )
        summary = worker.work(exit_when_empty=True)
        table = self.publish_table()
        return RunSummary(summary.finished, summary.failed, skipped, table)

    # -- results -------------------------------------------------------------------------------------
    def records(self) -> list[dict[str, Any]]:
        return [
            json.loads(self._download(self.results_repo, path))
            for path in self._files(self.results_repo, "results/")
            if path.endswith(".json")
        ]

    def table(self) -> pd.DataFrame:
        all_records = [self.with_architecture(r) for r in self.records()]
        return records_table(all_records, self.weights_revisions(all_records))

    def with_architecture(self, record: dict[str, Any]) -> dict[str, Any]:
        """``record`` with its base's family: as recorded, or, for records written before evaluations
        recorded it, derived from the configs of the base at its revision (of the model itself when it is
        a whole pipeline) on the Hub; None when they name no Stable Diffusion UNet."""
        model = record["model"]
        if model.get("architecture") or (model["revision"] is None and not model.get("base_model")):
            return record
        repo, revision = model.get("base_model"), model.get("base_revision")
        if not repo:
            repo, revision = model["id"], model["revision"]
        if (repo, revision) not in self._architectures:
            from hubkit.architectures import architecture_of_repo

            try:
                self._architectures[(repo, revision)] = architecture_of_repo(self.api, repo, revision)
            except ValueError:
                self._architectures[(repo, revision)] = None
        return {**record, "model": {**model, "architecture": self._architectures[(repo, revision)]}}

    def publish_table(self) -> pd.DataFrame:
        """Write ``leaderboard.parquet``, ``leaderboard.md``, ``plots.json`` (the plots the table's suites
        declare, which the Space draws) and the plots as PNG to the results repo, one commit; PNGs of
        plots no longer declared go."""
        from hubkit.leaderboard.plots import PLOTS_FILE, declared_plots, plot_all, plots_json

        table = self.table()
        buffer = io.BytesIO()
        table.to_parquet(buffer, index=False)
        declarations = declared_plots(table)
        pngs = {f"plots/{name}": png for name, png in plot_all(table, declarations).items()}
        operations = [
            CommitOperationAdd("leaderboard.parquet", buffer.getvalue()),
            CommitOperationAdd("leaderboard.md", to_markdown(table).encode()),
            CommitOperationAdd(PLOTS_FILE, plots_json(declarations)),
        ]
        operations += [CommitOperationAdd(path, png) for path, png in pngs.items()]
        operations += [
            CommitOperationDelete(p) for p in self._files(self.results_repo, "plots/") if p not in pngs
        ]
        self.api.create_repo(self.results_repo, repo_type="dataset", exist_ok=True)
        self.api.create_commit(
            self.results_repo, operations, repo_type="dataset", commit_message="Update the leaderboard table"
        )
        return table

    def published_table(self) -> pd.DataFrame:
        """The table as last published (``leaderboard.parquet``), empty if there is none yet."""
        try:
            table = pd.read_parquet(io.BytesIO(self._download(self.results_repo, "leaderboard.parquet")))
        except (EntryNotFoundError, RepositoryNotFoundError):
            return records_table([])
        missing = [c for c in ID_COLUMNS if c not in table.columns]  # a table from an older hubkit
        return table.assign(**dict.fromkeys(missing)) if missing else table

    # -- helpers -------------------------------------------------------------------------------------
    def _files(self, repo: str, prefix: str) -> list[str]:
        try:
            files = self.api.list_repo_files(repo, repo_type="dataset")
        except RepositoryNotFoundError:
            return []
        return sorted(f for f in files if f.startswith(prefix))

    def _download(self, repo: str, path: str) -> bytes:
        return Path(self.api.hf_hub_download(repo, path, repo_type="dataset")).read_bytes()


def records_table(
    all_records: list[dict[str, Any]], weights: dict[tuple[str, str | None], str | None] | None = None
) -> pd.DataFrame:
    """One row per (model, revision of its weights, suite key): its newest record; id columns, then metric
    columns. ``revision`` is the weights' revision, from ``weights`` (``Leaderboard.weights_revisions``)
    or else from the records alone (``records.weights_revision``): the commits that only wrote evaluation
    results into the card do not make rows of their own."""
    by_model: dict[str, list[dict[str, Any]]] = {}
    for record in all_records:
        by_model.setdefault(record["model"]["id"], []).append(record)
    newest: dict[tuple[str, str | None, str], tuple[str | None, dict[str, Any]]] = {}
    for model, mine in by_model.items():
        for record in mine:
            revision = record["model"]["revision"]
            of_weights = (weights or {}).get((model, revision)) or records.weights_revision(revision, mine)
            key = (model, of_weights, record["suite"]["key"])
            if key not in newest or record["date"] >= newest[key][1]["date"]:
                newest[key] = (of_weights, record)
    rows = [
        {
            "model": r["model"]["id"],
            "revision": weights,
            "method": r["model"]["method"],
            "kind": r["model"]["kind"],
            "base_model": r["model"]["base_model"],
            "architecture": r["model"].get("architecture"),
            "suite": r["suite"]["name"],
            "suite_version": int(r["suite"]["version"]),
            "params": json.dumps(r["suite"]["params"], sort_keys=True),
            "date": r["date"],
            "hubkit_version": r["env"]["hubkit"],
            **{name: float(value) for name, value in r["metrics"].items()},
        }
        for weights, r in sorted(
            newest.values(), key=lambda wr: (wr[1]["suite"]["key"], wr[1]["model"]["id"], wr[1]["date"])
        )
    ]
    table = pd.DataFrame(rows, columns=ID_COLUMNS if not rows else None)
    metric_columns = [c for c in table.columns if c not in ID_COLUMNS]
    return table[ID_COLUMNS + metric_columns]


@dataclass
class SuiteSection:
    """One suite's rows of the table, as shown: its title, columns (metrics last) and formatted cells."""

    title: str
    columns: list[str]
    metrics: list[str]
    cells: list[list[str]]


def suite_sections(table: pd.DataFrame) -> list[SuiteSection]:
    """The table split by suite, each with only the metric columns that suite has."""
    sections = []
    for suite, rows in table.groupby("suite", sort=True):
        metrics = [c for c in rows.columns if c not in ID_COLUMNS and rows[c].notna().any()]
        columns = ["model", "revision", "method", "architecture", "params", *metrics]
        cells = [[format_cell(row[c], c) for c in columns] for _, row in rows.iterrows()]
        title = f"{suite} (v{int(rows['suite_version'].iloc[0])})"
        sections.append(SuiteSection(title, columns, metrics, cells))
    return sections


def of_architecture(table: pd.DataFrame, architecture: str | None) -> pd.DataFrame:
    """The rows of artifacts whose base is of ``architecture`` (``sd1``, ``sd2``, ``sdxl``; None: every row).
    A table published before the column existed has no row of any family."""
    if architecture is None:
        return table
    if "architecture" not in table.columns:
        return table.iloc[0:0]
    return table[table["architecture"] == architecture]


def to_markdown(table: pd.DataFrame) -> str:
    """The table as GitHub Markdown, one section per suite, only the metrics that suite has."""
    if table.empty:
        return "# hubkit leaderboard\n\nNo results yet: run `hubkit leaderboard run`.\n"
    lines = ["# hubkit leaderboard", ""]
    for section in suite_sections(table):
        lines += [f"## {section.title}", ""]
        lines += ["| " + " | ".join(section.columns) + " |", "|" + "---|" * len(section.columns)]
        lines += ["| " + " | ".join(cells) + " |" for cells in section.cells]
        lines.append("")
    return "\n".join(lines)


def format_cell(value: Any, column: str) -> str:
    if column == "revision":
        return str(value or "local")[:7]
    if column == "architecture":
        return "" if value is None or pd.isna(value) else str(value)
    if isinstance(value, float):
        return "" if pd.isna(value) else f"{value:.4f}"
    return str(value)
