"""Publish and pull artifacts, through huggingface_hub only, with errors that say what went wrong."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from huggingface_hub import HfApi, snapshot_download
from huggingface_hub.errors import (
    HfHubHTTPError,
    LocalTokenNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from hubkit.hub.endpoint import Endpoint, HubError, resolve_endpoint, resolve_token

REPO_TYPES = ("model", "dataset", "space")
# Never part of an artifact: Python's bytecode caches (e.g. next to a metric script that was imported).
BUILD_LEFTOVERS = ["*.pyc", "__pycache__/*", "*/__pycache__/*"]


@dataclass(frozen=True)
class PublishResult:
    repo_id: str
    commit: str
    url: str


def _explain(err: Exception, repo_id: str, endpoint: Endpoint, action: str) -> HubError:
    """Translate a huggingface_hub error into one sentence a user can act on."""
    if isinstance(err, LocalTokenNotFoundError):
        return HubError(f"No token to {action} {repo_id} on {endpoint.url}: pass --token or set HF_TOKEN.")
    if isinstance(err, RevisionNotFoundError):
        return HubError(f"{repo_id} on {endpoint.url} has no such revision ({action}).")
    if isinstance(err, RepositoryNotFoundError):
        return HubError(
            f"No such repo {repo_id} on {endpoint.url} (or it is private and your token cannot see it)."
        )
    if isinstance(err, HfHubHTTPError) and err.response is not None:
        status = err.response.status_code
        server_says = err.response.headers.get("X-Error-Message") or str(err).splitlines()[0]
        if status == 401:
            return HubError(f"The token was rejected by {endpoint.url} ({action} {repo_id}): {server_says}")
        if status == 403:
            return HubError(f"Not allowed to {action} {repo_id} on {endpoint.url}: {server_says}")
        return HubError(f"Could not {action} {repo_id} on {endpoint.url} (HTTP {status}): {server_says}")
    return HubError(f"Could not {action} {repo_id} on {endpoint.url}: {err}")


def _check_args(repo_id: str, repo_type: str) -> None:
    if repo_type not in REPO_TYPES:
        raise HubError(f"repo type must be one of {', '.join(REPO_TYPES)}, not {repo_type!r}")
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise HubError(f"repo id must be namespace/name, not {repo_id!r}")


def publish(
    folder: str | Path,
    repo_id: str,
    *,
    repo_type: str = "model",
    private: bool = False,
    message: str | None = None,
    endpoint: str | None = None,
    token: str | None = None,
    check_card: bool = True,
) -> PublishResult:
    """Upload ``folder`` to ``repo_id`` (created if missing) after checking its card offline."""
    folder = Path(folder)
    _check_args(repo_id, repo_type)
    if not folder.is_dir():
        raise HubError(f"{folder} is not a folder")
    if check_card:
        from hubkit.cards import check_folder

        problems = check_folder(folder, repo_type=repo_type)
        if problems:
            listed = "\n".join(f"  - {p}" for p in problems)
            raise HubError(f"{folder}/README.md is not a valid hubkit card; fix these first:\n{listed}")
    hub = resolve_endpoint(endpoint)
    api = HfApi(endpoint=hub.url, token=resolve_token(token, hub))
    try:
        space_sdk = "gradio" if repo_type == "space" else None
        api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True, space_sdk=space_sdk)
        info = api.upload_folder(
            folder_path=folder,
            repo_id=repo_id,
            repo_type=repo_type,
            commit_message=message or f"Publish {folder.name} with hubkit",
            ignore_patterns=BUILD_LEFTOVERS,
        )
    except (HfHubHTTPError, LocalTokenNotFoundError) as err:
        raise _explain(err, repo_id, hub, "publish") from err
    return PublishResult(repo_id=repo_id, commit=info.oid, url=info.commit_url)


def pull(
    repo_id: str,
    *,
    revision: str | None = None,
    repo_type: str = "model",
    local_dir: str | Path | None = None,
    endpoint: str | None = None,
    token: str | None = None,
) -> Path:
    """Download a repo snapshot (Hugging Face cache layout) and return its local folder."""
    _check_args(repo_id, repo_type)
    hub = resolve_endpoint(endpoint)
    try:
        path = snapshot_download(
            repo_id,
            repo_type=repo_type,
            revision=revision,
            local_dir=local_dir,
            endpoint=hub.url,
            token=resolve_token(token, hub),
        )
    except HfHubHTTPError as err:
        raise _explain(err, repo_id, hub, "pull") from err
    return Path(path)


def local_or_snapshot(
    source: str | os.PathLike[str],
    allow_patterns: Sequence[str],
    *,
    revision: str | None = None,
    token: str | None = None,
    endpoint: str | None = None,
    error: type[Exception] = HubError,
) -> Path:
    """``source`` itself when it exists here, else a snapshot of the Hub repo ``source`` (only
    ``allow_patterns``) from ``endpoint`` (default ``HF_ENDPOINT``, as diffusers' own loaders read it);
    failures raise ``error`` with one sentence (a path that looks local is never sent to the Hub)."""
    path = Path(source)
    if path.exists():
        return path
    if os.path.isabs(str(source)) or str(source).startswith("."):
        raise error(f"{source}: no such file or folder")
    try:
        return Path(
            snapshot_download(
                str(source),
                revision=revision,
                token=token,
                allow_patterns=list(allow_patterns),
                endpoint=endpoint,
            )
        )
    except (RepositoryNotFoundError, RevisionNotFoundError) as err:
        named = f" {revision!r}" if revision else ""
        raise error(f"{source}: no such repo or revision{named} on the Hub ({type(err).__name__})") from err
    except HfHubHTTPError as err:
        raise error(f"{source}: the Hub refused the download: {err}") from err


def pull_pipeline(source: str, *, endpoint: str | None = None, token: str | None = None) -> Any:
    """A diffusers pipeline from a local folder, or pulled from the Hub (the embedded one by default), with
    its progress bars off; ``HubError`` names the source when it is missing or not a pipeline."""
    from diffusers import DiffusionPipeline

    local = Path(source).expanduser()
    if local.exists() and not local.is_dir():
        raise HubError(f"cannot load the base pipeline {source!r}: it is a file, not a pipeline folder")
    if not local.exists() and (local.is_absolute() or source.startswith((".", "~")) or source.count("/") > 1):
        raise HubError(f"cannot load the base pipeline {source!r}: no such folder")
    try:
        path = str(local) if local.is_dir() else pull(source, endpoint=endpoint, token=token)
        pipe = DiffusionPipeline.from_pretrained(path)
    except Exception as err:  # HubError, or one of the many types diffusers raises for a foreign folder
        raise HubError(f"cannot load the base pipeline {source!r}: {err}") from err
    pipe.set_progress_bar_config(disable=True)
    return pipe
