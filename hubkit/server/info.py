"""Repo info documents (``model_info`` & co.), tree entries and tags derived from the README's YAML."""

from __future__ import annotations

import functools
import re
from datetime import datetime, timezone
from typing import Any

import yaml

from hubkit.server.storage import Commit, Repo, Storage, lfs_pointer, tree_entry_oid

_FRONT_MATTER = re.compile(r"\A\s*---\s*\n(.*?)\n---\s*(\n|\Z)", re.DOTALL)


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def parse_front_matter(text: str) -> dict[str, Any]:
    """The YAML metadata block of a card; raises ``yaml.YAMLError`` or ``ValueError`` when malformed."""
    match = _FRONT_MATTER.match(text)
    if not match:
        return {}
    data = yaml.safe_load(match.group(1))
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError("README.md metadata must be a YAML mapping")
    return data


@functools.lru_cache(maxsize=512)
def _card_data_of_blob(path: str) -> dict[str, Any]:
    # Keyed by blob path, which is content-addressed, so a cached entry can never go stale.
    try:
        with open(path, encoding="utf-8") as fh:
            return parse_front_matter(fh.read(1 << 20))
    except (ValueError, yaml.YAMLError, UnicodeDecodeError):
        return {}


def card_data(storage: Storage, commit: Commit) -> dict[str, Any]:
    entry = commit.tree.get("README.md")
    if entry is None:
        return {}
    return _card_data_of_blob(str(storage.blobs.path(entry["sha256"])))


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value if v is not None]
    return [str(value)]


def repo_tags(repo: Repo, commit: Commit, data: dict[str, Any]) -> list[str]:
    """Tags as the Hub derives them: card tags, library, license, pipeline, base models, datasets, formats."""
    tags = _as_list(data.get("tags"))
    tags += _as_list(data.get("library_name"))
    tags += [f"license:{v}" for v in _as_list(data.get("license"))]
    if repo.type == "model":
        tags += _as_list(data.get("pipeline_tag"))
        relation = data.get("base_model_relation")
        for base in _as_list(data.get("base_model")):
            tags.append(f"base_model:{base}")
            if relation:
                tags.append(f"base_model:{relation}:{base}")
        tags += [f"dataset:{v}" for v in _as_list(data.get("datasets"))]
    tags += _as_list(data.get("language"))
    if any(p.endswith(".safetensors") for p in commit.tree):
        tags.append("safetensors")
    if repo.type == "dataset" and any(p.endswith(".parquet") for p in commit.tree):
        tags.append("format:parquet")
    seen: dict[str, None] = {}
    for tag in tags:
        seen.setdefault(tag, None)
    return list(seen)


def tree_entry(path: str, entry: dict, expand: bool = False, commit: Commit | None = None) -> dict:
    out: dict[str, Any] = {"type": "file", "oid": tree_entry_oid(entry), "size": entry["size"], "path": path}
    if entry["lfs"]:
        out["lfs"] = {
            "oid": entry["sha256"],
            "size": entry["size"],
            "pointerSize": len(lfs_pointer(entry["sha256"], entry["size"])),
        }
    if expand and commit is not None:
        out["lastCommit"] = {"id": commit.oid, "title": commit.title, "date": iso(commit.date)}
        out["securityFileStatus"] = {"status": "safe"}
    return out


def dir_entry(path: str) -> dict:
    return {"type": "directory", "oid": "0" * 40, "size": 0, "path": path}


def list_tree(commit: Commit, prefix: str, recursive: bool, expand: bool) -> list[dict] | None:
    """Entries under ``prefix`` (``""`` = root); ``None`` when the prefix is neither a folder nor a file."""
    base = prefix.strip("/")
    if base and base in commit.tree:
        return [tree_entry(base, commit.tree[base], expand, commit)]
    start = base + "/" if base else ""
    files: list[dict] = []
    dirs: set[str] = set()
    found = False
    for path in sorted(commit.tree):
        if not path.startswith(start):
            continue
        found = True
        rest = path[len(start) :].split("/")
        for depth in range(1, len(rest)):
            if depth > 1 and not recursive:
                break
            dirs.add(start + "/".join(rest[:depth]))
        if recursive or len(rest) == 1:
            files.append(tree_entry(path, commit.tree[path], expand, commit))
    if base and not found:
        return None
    return sorted([dir_entry(d) for d in dirs], key=lambda e: e["path"]) + files


def repo_info(storage: Storage, repo: Repo, commit: Commit, blobs: bool = False) -> dict[str, Any]:
    data = card_data(storage, commit)
    siblings = []
    for path in sorted(commit.tree):
        sib: dict[str, Any] = {"rfilename": path}
        if blobs:
            entry = commit.tree[path]
            sib["size"] = entry["size"]
            sib["blobId"] = tree_entry_oid(entry)
            if entry["lfs"]:
                sib["lfs"] = {
                    "sha256": entry["sha256"],
                    "size": entry["size"],
                    "pointerSize": len(lfs_pointer(entry["sha256"], entry["size"])),
                }
        siblings.append(sib)
    info: dict[str, Any] = {
        "_id": f"{repo.type}-{repo.id}",
        "id": repo.repo_id,
        "author": repo.namespace,
        "sha": commit.oid,
        "lastModified": iso(commit.date),
        "createdAt": iso(repo.created),
        "private": repo.private,
        "gated": False,
        "disabled": False,
        "downloads": 0,
        "likes": 0,
        "tags": repo_tags(repo, commit, data),
        "cardData": data,
        "siblings": siblings,
        "usedStorage": sum(e["size"] for e in commit.tree.values()),
    }
    if repo.type == "model":
        info["modelId"] = repo.repo_id
        info["library_name"] = data.get("library_name")
        info["pipeline_tag"] = data.get("pipeline_tag")
        info["spaces"] = []
    elif repo.type == "dataset":
        info["description"] = None
    elif repo.type == "space":
        info["sdk"] = repo.sdk or data.get("sdk")
        info["subdomain"] = repo.repo_id.replace("/", "-").lower()
    return info
