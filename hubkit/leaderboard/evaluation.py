"""``hubkit eval``: fetch an artifact like a user would, apply it through its method, run a suite, publish.

The artifact is a Hub snapshot (``snapshot_download`` at a pinned commit) or a local folder; its method
comes from the registry (:mod:`hubkit.methods`), adapters are applied on their base model fetched the same
way. Results go to the results dataset and into the artifact's card (``model-index`` + ``.eval_results/``),
unless ``push=False``.

Under ``accelerate launch`` every process loads the artifact (the main process downloads first) and makes its
share of the suite's images; the main process alone judges them, builds the record and publishes it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from huggingface_hub import CommitOperationAdd, HfApi, ModelCard
from huggingface_hub.errors import HfHubHTTPError

from hubkit.cards import validate_card
from hubkit.cards.validate import looks_like_path
from hubkit.hub.endpoint import HubError, resolve_endpoint, resolve_token
from hubkit.leaderboard import records
from hubkit.leaderboard.runner import run_suite
from hubkit.leaderboard.suite import Suite, load_suite
from hubkit.methods import Artifact, DiffusersPipeline, MethodError, method_for, read_hubkit_json
from hubkit.processes import main_process_first, process_state

DEFAULT_MAX_FILE_BYTES = 4 << 30

__all__ = ["EvalError", "EvalOutcome", "evaluate", "fetch_artifact"]


class EvalError(RuntimeError):
    """An artifact could not be evaluated; the message is the reason (shown as a FAILED request's reason)."""


class EvalOutcome(dict):
    """The results record, plus where it was published (``record_url``, ``card_commit``); ``samples`` holds
    the per-image rows, for a caller that publishes the record itself (``push=False``)."""

    samples: list[dict[str, Any]]


def _card_data(path: Path, strict: bool, source: str) -> dict[str, Any]:
    readme = path / "README.md"
    if not readme.is_file():
        if strict:
            raise EvalError(f"{source} has no model card (README.md)")
        return {}
    text = readme.read_text(encoding="utf-8-sig", errors="replace")
    if strict:
        problems = validate_card(text, repo_type="model")
        if problems:
            raise EvalError(f"{source} has an invalid card: " + "; ".join(str(p) for p in problems))
    try:
        return ModelCard(text, ignore_metadata_errors=True).data.to_dict()
    except (ValueError, TypeError) as err:
        raise EvalError(f"{source}: unreadable card front matter: {err}") from err


def fetch_artifact(
    source: str,
    *,
    api: HfApi | None = None,
    revision: str | None = None,
    strict_card: bool = False,
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
) -> Artifact:
    """A local folder as is, or a Hub repo's snapshot at one commit after checking its files' sizes."""
    if is_local(source):
        path = Path(source).expanduser()
        if not path.is_dir():
            raise EvalError(f"{source} is not a folder")
        card = _card_data(path, strict_card, source)
        return Artifact(source=source, path=path, card_data=card, hubkit_json=_hubkit_json(path, source))
    if api is None:
        raise ValueError("fetching from the Hub needs an HfApi")
    try:
        info = api.model_info(source, revision=revision, files_metadata=True)
    except HfHubHTTPError as err:
        raise EvalError(f"{source}: cannot read the repo on {api.endpoint}: {err}") from err
    too_big = [(s.rfilename, s.size) for s in info.siblings or [] if (s.size or 0) > max_file_bytes]
    if too_big:
        listed = ", ".join(f"{name} ({size / 2**20:.0f} MiB)" for name, size in too_big)
        raise EvalError(f"{source} has files over the {max_file_bytes / 2**20:.0f} MiB limit: {listed}")
    try:
        path = Path(api.snapshot_download(source, revision=info.sha))
    except HfHubHTTPError as err:
        raise EvalError(f"{source}: download failed: {err}") from err
    card = _card_data(path, strict_card, source)
    return Artifact(
        source=source,
        path=path,
        repo_id=source,
        revision=info.sha,
        card_data=card,
        hubkit_json=_hubkit_json(path, source),
    )


def fetch_card_files(api: HfApi, repo_id: str, revision: str | None, folder: Path) -> Artifact:
    """The card and ``hubkit.json`` of a repo, without its weights (to learn its method and suites)."""
    info = api.model_info(repo_id, revision=revision)
    names = {s.rfilename for s in info.siblings or []}
    for name in ("README.md", "hubkit.json"):
        if name in names:
            api.hf_hub_download(repo_id, name, revision=info.sha, local_dir=folder)
    return Artifact(
        source=repo_id,
        path=folder,
        repo_id=repo_id,
        revision=info.sha,
        card_data=_card_data(folder, False, repo_id),
        hubkit_json=_hubkit_json(folder, repo_id),
        remote_files=frozenset(names),
        remote_metadata=lambda name: _remote_safetensors_metadata(api, repo_id, name, info.sha),
    )


def _remote_safetensors_metadata(api: HfApi, repo_id: str, name: str, revision: str) -> dict[str, str] | None:
    """A safetensors file's header metadata read with a range request (no weights downloaded)."""
    from huggingface_hub.errors import SafetensorsParsingError

    try:
        return dict(api.parse_safetensors_file_metadata(repo_id, name, revision=revision).metadata or {})
    except (HfHubHTTPError, SafetensorsParsingError, OSError):
        return None  # unreadable: not recognisably anything


def _hubkit_json(path: Path, source: str) -> dict[str, Any]:
    try:
        return read_hubkit_json(path)
    except MethodError as err:
        raise EvalError(f"{source}: {err}") from err


def _judge_digest(judge) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(judge.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return "sha256:" + digest.hexdigest()


def is_local(source: str) -> bool:
    return Path(source).is_dir() or looks_like_path(source)


@contextlib.contextmanager
def _quiet_libraries() -> Iterator[None]:
    """Loading and upload chatter off (component bars, the BertModel-for-CLIP type note): the suite's own
    progress bar is what a user follows."""
    from diffusers.utils import logging as diffusers_logging
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    verbosity = diffusers_logging.get_verbosity()
    hub_bars_off = are_progress_bars_disabled()
    diffusers_logging.set_verbosity_error()
    diffusers_logging.disable_progress_bar()
    disable_progress_bars()
    try:
        yield
    finally:
        diffusers_logging.set_verbosity(verbosity)
        diffusers_logging.enable_progress_bar()
        if not hub_bars_off:
            enable_progress_bars()


def _load(
    artifact: Artifact, base_id: str | None, hub_api: Callable[[], HfApi], fetch_kwargs: dict[str, Any]
):
    """(method, pipeline with the artifact applied, pipeline to time as the baseline, base artifact)."""
    method = method_for(artifact)
    base_artifact = None
    if method.needs_base:
        base_id = base_id or artifact.base_model
        if not base_id:
            raise EvalError(f"{artifact.source} is an adapter with no base_model in its card: pass --base")
        api = None if is_local(base_id) else hub_api()
        base_artifact = fetch_artifact(base_id, api=api, **fetch_kwargs)
        base = DiffusersPipeline().load(base_artifact, None)
        pipe = method.load(artifact, base)
        baseline = DiffusersPipeline().load(base_artifact, None)
    else:
        pipe = method.load(artifact, None)
        baseline = pipe
    return method, pipe, baseline, base_artifact


def artifact_architecture(artifact: Artifact, base_pipe: Any) -> str | None:
    """The family of the base the artifact was evaluated on (``sd1``, ``sd2``, ``sdxl``), from that base's
    config: what the leaderboard filters by, also for artifacts published before cards recorded it. An
    artifact whose card names another family than the base it was loaded on is refused (a LoRA of another
    family would not have loaded; a stack or quantized UNet might pass unnoticed). None when the base has no
    Stable Diffusion UNet."""
    from hubkit.architectures import architecture_of

    try:
        found = architecture_of(base_pipe)
    except ValueError:
        return artifact.architecture
    declared = artifact.architecture
    if declared and declared != found:
        raise EvalError(
            f"{artifact.source} says its base is {declared} (base_architecture), but the base it was "
            f"loaded on is {found}"
        )
    return found


def _write_json(path: Path, record: dict[str, Any]) -> None:
    """Atomic: a reader sees the old file or the whole new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "wb") as f:
        f.write(records.record_bytes(record))
    os.replace(tmp, path)


def evaluate(
    source: str,
    suite: str | Path | Suite,
    params: dict[str, str] | None = None,
    *,
    base: str | None = None,
    revision: str | None = None,
    push: bool = True,
    json_out: str | Path | None = None,
    endpoint: str | None = None,
    token: str | None = None,
    results_repo: str = records.RESULTS_REPO,
    strict_card: bool = False,
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    progress: bool = True,
) -> EvalOutcome | None:
    """Evaluate ``source`` (repo id or folder) on ``suite`` and return its results record (None on the
    processes other than the main one under ``accelerate launch``: they only generate)."""
    from hubkit.world.judge import load_judge

    state = process_state()
    started = time.perf_counter()
    suite = suite if isinstance(suite, Suite) else load_suite(suite, params)
    apis: list[HfApi] = []

    def hub_api() -> HfApi:
        if not apis:
            hub = resolve_endpoint(endpoint)
            apis.append(HfApi(endpoint=hub.url, token=resolve_token(token, hub)))
        return apis[0]

    fetch_kwargs = {"strict_card": strict_card, "max_file_bytes": max_file_bytes}
    api = None if is_local(source) else hub_api()
    with _quiet_libraries(), main_process_first():  # the others then read the main one's downloads
        artifact = fetch_artifact(source, api=api, revision=revision, **fetch_kwargs)
        artifact.hub_api = hub_api
        try:
            method, pipe, baseline, base_artifact = _load(artifact, base, hub_api, fetch_kwargs)
        except MethodError as err:
            raise EvalError(str(err)) from err
    architecture = artifact_architecture(artifact, baseline)
    judge = load_judge() if state.is_main_process else None
    result = run_suite(
        pipe,
        suite,
        judge,
        method_settings=method.call_settings(artifact),
        baseline_pipe=baseline,
        artifact_facts={"artifact_bytes": artifact.size_bytes, "parameters": artifact.parameters},
        progress=progress,
    )
    if result is None:  # not the main process: its images went to the main one
        return None
    model = records.ModelFacts(
        id=artifact.repo_id or str(artifact.path.resolve()),
        revision=artifact.revision,
        method=method.name,
        kind=method.kind,
        base_model=base_artifact.repo_id if base_artifact else None,
        base_revision=base_artifact.revision if base_artifact else None,
        artifact_bytes=artifact.size_bytes,
        parameters=artifact.parameters,
        architecture=architecture,
    )
    record = EvalOutcome(records.build_record(model, suite, result, _judge_digest(judge), 0.0))
    record.samples = result.samples
    if push and artifact.repo_id and api is not None:
        with _quiet_libraries():
            record["card_commit"] = write_card_results(api, artifact, record, results_repo)
            record["duration_s"] = round(time.perf_counter() - started, 3)
            push_record(api, record, result.samples, results_repo)
    record["duration_s"] = round(time.perf_counter() - started, 3)
    if json_out:
        _write_json(Path(json_out), record)
    return record


def _source_url(api: HfApi, record: dict[str, Any], results_repo: str) -> str:
    path = records.record_path(record["model"]["id"], record["suite"]["key"], record["model"]["revision"])
    return f"{api.endpoint}/datasets/{results_repo}/blob/main/{path}"


def write_card_results(
    api: HfApi, artifact: Artifact, record: dict[str, Any], results_repo: str
) -> str | None:
    """Merge the record into the artifact's card and ``.eval_results/``; one commit (a PR if not allowed).

    Results of other suites already on the card stay; those of the same suite key are replaced. Returns
    the commit sha, or None when the card could not be written (the record still says why not).
    """
    from hubkit.cards.render import set_eval_results

    readme = artifact.path / "README.md"
    if not readme.is_file():
        return None
    card = ModelCard(readme.read_text(encoding="utf-8-sig"), ignore_metadata_errors=True)
    key = record["suite"]["key"]
    url = _source_url(api, record, results_repo)
    kept = [r for r in card.data.eval_results or [] if r.dataset_config != key]
    results = kept + records.eval_results_of(record, url)
    set_eval_results(card, results, model_name=artifact.repo_id.split("/")[-1])
    operations = [
        CommitOperationAdd("README.md", str(card).encode()),
        CommitOperationAdd(f".eval_results/{key}.yaml", records.eval_results_yaml(record, url)),
    ]
    message = card_commit_message(record)
    try:
        info = api.create_commit(
            artifact.repo_id, operations, commit_message=message, parent_commit=artifact.revision
        )
    except HfHubHTTPError as err:
        status = err.response.status_code if err.response is not None else None
        if status == 412:  # the repo moved on since the evaluated commit: its card is not ours to write
            return None
        if status not in (401, 403):
            raise HubError(f"could not write the results into {artifact.repo_id}'s card: {err}") from err
        info = api.create_commit(
            artifact.repo_id,
            operations,
            commit_message=message,
            parent_commit=artifact.revision,
            create_pr=True,
        )
    return info.oid


def card_commit_message(record: dict[str, Any]) -> str:
    """The title of the commit that writes ``record`` into its model's card (how a repeat recognises it)."""
    return f"hubkit eval: {record['suite']['key']} v{record['suite']['version']} results"


def _results_card(results_repo: str) -> bytes:
    from hubkit.cards import render_card

    card = render_card(
        "dataset",
        repo_id=results_repo,
        title=results_repo.split("/")[-1],
        description=(
            "Results of `hubkit eval`: one JSON record per (model, revision, suite) under `results/`, with "
            "the per-image rows as parquet beside it, and `leaderboard.parquet`, the table that the "
            "leaderboard Space shows (written by `hubkit leaderboard run`)."
        ),
        tags=["leaderboard", "evaluation"],
        metadata={"task_categories": ["text-to-image"]},
    )
    return str(card).encode()


def push_record(
    api: HfApi,
    record: dict[str, Any],
    samples: list[dict[str, Any]] | bytes,
    results_repo: str,
    parent_commit: str | None = None,
) -> str:
    """Commit the record and its per-image rows (or their parquet bytes) to the results dataset (created on
    first use); with ``parent_commit``, only on top of that commit (else the Hub answers 412)."""
    api.create_repo(results_repo, repo_type="dataset", exist_ok=True)
    path = records.record_path(record["model"]["id"], record["suite"]["key"], record["model"]["revision"])
    parquet = samples if isinstance(samples, bytes) else records.samples_parquet(samples)
    operations = [
        CommitOperationAdd(path, records.record_bytes(record)),
        CommitOperationAdd(path.removesuffix(".json") + ".samples.parquet", parquet),
    ]
    if not api.file_exists(results_repo, "README.md", repo_type="dataset"):
        operations.append(CommitOperationAdd("README.md", _results_card(results_repo)))
    info = api.create_commit(
        results_repo,
        operations,
        repo_type="dataset",
        commit_message=f"Results of {record['model']['id']} on {record['suite']['key']}",
        parent_commit=parent_commit,
    )
    return info.oid
