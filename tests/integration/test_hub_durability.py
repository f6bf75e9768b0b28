"""Durability of the embedded Hub: restarts, ``kill -9`` at bad moments, atomic and concurrent commits.

Rules under test (issue text): restart on the same data dir keeps every repo, branch, tag, commit and byte;
``kill -9`` mid-upload then restart leaves nothing half-saved and the upload can be retried; a commit is
all-or-nothing; 6 threads × 10 commits to one repo: every commit lands or gets a conflict error, and nothing
that landed is lost.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import USERS, HubServer
from huggingface_hub import CommitOperationAdd, CommitOperationDelete
from huggingface_hub.errors import HfHubHTTPError

pytestmark = pytest.mark.integration

MIB = 1 << 20
_cache_counter = itertools.count()


# --------------------------------------------------------------------------- helpers


def client(server: HubServer, user: str = "alice") -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"authorization": f"Bearer {USERS[user]}"}, timeout=60)


def post_commit(http: httpx.Client, repo_id: str, *lines: Any) -> httpx.Response:
    body = b"\n".join(line if isinstance(line, bytes) else json.dumps(line).encode() for line in lines)
    return http.post(
        f"/api/models/{repo_id}/commit/main", content=body, headers={"content-type": "application/x-ndjson"}
    )


def header(summary: str = "x", parent: str | None = None) -> dict:
    value = {"summary": summary} | ({"parentCommit": parent} if parent else {})
    return {"key": "header", "value": value}


def file_line(path: str, data: bytes) -> dict:
    return {
        "key": "file",
        "value": {"path": path, "content": base64.b64encode(data).decode(), "encoding": "base64"},
    }


def lfs_line(path: str, data: bytes) -> dict:
    oid = hashlib.sha256(data).hexdigest()
    return {"key": "lfsFile", "value": {"path": path, "algo": "sha256", "oid": oid, "size": len(data)}}


def blob_names(data_dir: Path) -> set[str]:
    return {p.name for p in (data_dir / "blobs").rglob("*") if p.is_file()}


def tmp_files(data_dir: Path) -> list[Path]:
    return [p for p in (data_dir / "tmp").rglob("*") if p.is_file()]


def download_all(
    server: HubServer, repo_id: str, revision: str, tmp_root: Path, **kwargs: Any
) -> dict[str, bytes]:
    """Every file of a revision, downloaded into a cache of its own (nothing cached can hide a loss)."""
    api = server.api(kwargs.pop("user", "alice"))
    cache = tmp_root / f"cache-{next(_cache_counter)}"
    folder = Path(api.snapshot_download(repo_id, revision=revision, cache_dir=cache, **kwargs))
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def hub_state(server: HubServer, repos: list[tuple[str, str, str]], tmp_root: Path) -> dict:
    """What a restart must keep: per repo, visibility, refs, full history of every ref, and all bytes."""
    state: dict[str, Any] = {}
    for repo_id, repo_type, user in repos:
        api = server.api(user)
        info = api.repo_info(repo_id, repo_type=repo_type)
        refs = api.list_repo_refs(repo_id, repo_type=repo_type)
        named = {f"branch:{b.name}": b.target_commit for b in refs.branches} | {
            f"tag:{t.name}": t.target_commit for t in refs.tags
        }
        revisions = {}
        for ref, target in sorted(named.items()):
            commits = api.list_repo_commits(repo_id, repo_type=repo_type, revision=target)
            tree = api.list_repo_tree(repo_id, repo_type=repo_type, revision=target, recursive=True)
            fields = ("blob_id", "size", "lfs")
            entries = sorted((e.path, *(str(getattr(e, f, None)) for f in fields)) for e in tree)
            revisions[ref] = {
                "target": target,
                "history": [(c.commit_id, c.title, c.message) for c in commits],
                "tree": entries,
                "bytes": download_all(server, repo_id, target, tmp_root, repo_type=repo_type, user=user),
            }
        state[f"{repo_type}:{repo_id}"] = {"sha": info.sha, "private": info.private, "revisions": revisions}
    state["listing"] = sorted(m.id for m in server.api("alice").list_models(author="alice"))
    return state


def wait_for(predicate: Callable[[], bool], timeout: float = 60, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


# --------------------------------------------------------------------------- restart


def test_restart_and_kill9_keep_repos_refs_commits_and_bytes(
    fresh_hub: HubServer, transfer: str, repo_name: str, tmp_path: Path
) -> None:
    alice, bob = fresh_hub.api("alice"), fresh_hub.api("bob")
    model, dataset, private, bobs = (
        f"alice/{repo_name}",
        f"alice/{repo_name}-data",
        f"alice/{repo_name}-private",
        f"bob/{repo_name}",
    )
    weights = os.urandom(3 * MIB + 17)
    extra = os.urandom(MIB)
    alice.create_repo(model)
    first = alice.create_commit(
        model,
        [
            CommitOperationAdd("config.json", b'{"a": 1}'),
            CommitOperationAdd("README.md", b"---\nlicense: mit\n---\n# model\n"),
            CommitOperationAdd("weights.safetensors", weights),
            CommitOperationAdd("sub/extra.bin", extra),
        ],
        commit_message="first",
    )
    alice.create_tag(model, tag="v1", revision=first.oid)
    alice.create_branch(model, branch="dev", revision=first.oid)
    alice.create_commit(
        model,
        [CommitOperationAdd("config.json", b'{"a": 2}'), CommitOperationDelete("sub/extra.bin")],
        commit_message="second",
    )
    alice.upload_file(path_or_fileobj=os.urandom(MIB), path_in_repo="dev.bin", repo_id=model, revision="dev")
    alice.create_repo(dataset, repo_type="dataset")
    alice.upload_file(
        path_or_fileobj=os.urandom(2 * MIB),
        path_in_repo="data/train.parquet",
        repo_id=dataset,
        repo_type="dataset",
    )
    alice.create_repo(private, private=True)
    alice.upload_file(path_or_fileobj=b"secret", path_in_repo="secret.txt", repo_id=private)
    bob.create_repo(bobs)
    bob.upload_file(path_or_fileobj=b"bob's", path_in_repo="bob.txt", repo_id=bobs)
    if transfer == "xet":
        assert any((fresh_hub.data_dir / "xorbs").iterdir()), "the Xet path was not exercised"

    repos = [
        (model, "model", "alice"),
        (dataset, "dataset", "alice"),
        (private, "model", "alice"),
        (bobs, "model", "bob"),
    ]
    before = hub_state(fresh_hub, repos, tmp_path)
    # Sanity of the snapshot itself, so that "equal after restart" means something.
    assert before[f"model:{model}"]["revisions"]["tag:v1"]["bytes"]["weights.safetensors"] == weights
    assert before[f"model:{model}"]["revisions"]["tag:v1"]["bytes"]["sub/extra.bin"] == extra
    assert "sub/extra.bin" not in before[f"model:{model}"]["revisions"]["branch:main"]["bytes"]
    assert before[f"model:{model}"]["revisions"]["branch:main"]["bytes"]["config.json"] == b'{"a": 2}'
    assert len(before[f"model:{model}"]["revisions"]["branch:main"]["history"]) == 3
    assert set(before[f"model:{model}"]["revisions"]) == {"branch:main", "branch:dev", "tag:v1"}
    assert before[f"model:{private}"]["private"] is True

    fresh_hub.restart()
    assert hub_state(fresh_hub, repos, tmp_path) == before

    fresh_hub.kill9()
    fresh_hub.start()
    assert hub_state(fresh_hub, repos, tmp_path) == before
    assert not fresh_hub.api(None).repo_exists(private)
    assert fresh_hub.api("bob").whoami()["name"] == "bob"

    # The restarted server keeps working on top of the old state.
    alice.upload_file(path_or_fileobj=b"after", path_in_repo="after.txt", repo_id=model)
    files = download_all(fresh_hub, model, "main", tmp_path)
    assert files["after.txt"] == b"after"
    assert files["weights.safetensors"] == weights


# --------------------------------------------------------------------------- kill -9 mid-upload


def test_kill9_during_lfs_put_leaves_nothing_and_retry_works(
    fresh_hub: HubServer, repo_name: str, tmp_path: Path
) -> None:
    repo_id = f"alice/{repo_name}"
    alice = fresh_hub.api("alice")
    alice.create_repo(repo_id)
    alice.upload_file(path_or_fileobj=b"old content", path_in_repo="old.txt", repo_id=repo_id)
    repos = [(repo_id, "model", "alice")]
    before = hub_state(fresh_hub, repos, tmp_path)

    data = os.urandom(60 * MIB)
    oid = hashlib.sha256(data).hexdigest()
    with client(fresh_hub) as http:
        batch = http.post(
            f"/{repo_id}.git/info/lfs/objects/batch",
            json={
                "operation": "upload",
                "transfers": ["basic"],
                "objects": [{"oid": oid, "size": len(data)}],
            },
        )
        href = batch.json()["objects"][0]["actions"]["upload"]["href"]

    halfway, release = threading.Event(), threading.Event()
    outcome: dict[str, Any] = {}

    def body() -> Iterator[bytes]:
        for start in range(0, len(data), MIB):
            if start == 30 * MIB:
                halfway.set()
                release.wait(60)
            yield data[start : start + MIB]

    def put() -> None:
        try:
            with httpx.Client(timeout=60) as anon:
                outcome["status"] = anon.put(href, content=body(), headers={"content-length": str(len(data))})
        except httpx.TransportError as err:
            outcome["error"] = err

    thread = threading.Thread(target=put, daemon=True)
    thread.start()
    assert halfway.wait(60)

    def partial_upload_on_disk() -> bool:
        return any(p.stat().st_size >= 16 * MIB for p in tmp_files(fresh_hub.data_dir))

    wait_for(partial_upload_on_disk, what="the server to write part of the upload")
    fresh_hub.kill9()
    release.set()
    thread.join(60)
    assert "error" in outcome, outcome  # the server died mid-request: no answer
    assert oid not in blob_names(fresh_hub.data_dir)  # the half-written file was never adopted

    fresh_hub.start()
    assert tmp_files(fresh_hub.data_dir) == []
    assert oid not in blob_names(fresh_hub.data_dir)
    assert hub_state(fresh_hub, repos, tmp_path) == before
    with client(fresh_hub) as http:
        refused = post_commit(http, repo_id, header(), lfs_line("big.bin", data))
        assert refused.status_code == 422
        # The same signed URL still works after the restart (the signing key is persisted).
        with httpx.Client(timeout=120) as anon:
            assert anon.put(href, content=data).status_code == 200
        assert oid in blob_names(fresh_hub.data_dir)
        assert post_commit(http, repo_id, header("retry"), lfs_line("big.bin", data)).status_code == 200
    files = download_all(fresh_hub, repo_id, "main", tmp_path)
    assert files["big.bin"] == data
    assert files["old.txt"] == b"old content"


def test_kill9_between_upload_and_commit(
    fresh_hub: HubServer, transfer: str, repo_name: str, tmp_path: Path
) -> None:
    """Content uploaded (Xet shard or LFS PUT done) but not committed: after kill -9 the repo is unchanged."""
    repo_id = f"alice/{repo_name}"
    alice = fresh_hub.api("alice")
    alice.create_repo(repo_id)
    alice.upload_file(path_or_fileobj=b"old content", path_in_repo="old.txt", repo_id=repo_id)
    repos = [(repo_id, "model", "alice")]
    before = hub_state(fresh_hub, repos, tmp_path)

    data = os.urandom(2 * MIB + 5)
    sha = hashlib.sha256(data).hexdigest()
    alice.preupload_lfs_files(repo_id, [CommitOperationAdd("model.safetensors", data)])
    assert sha in blob_names(fresh_hub.data_dir)
    assert any((fresh_hub.data_dir / "xorbs").iterdir()) == (transfer == "xet")

    fresh_hub.kill9()
    fresh_hub.start()
    assert hub_state(fresh_hub, repos, tmp_path) == before
    assert sha in blob_names(fresh_hub.data_dir)  # the stored content survived, invisible until committed
    assert tmp_files(fresh_hub.data_dir) == []

    alice.create_commit(
        repo_id, [CommitOperationAdd("model.safetensors", data)], commit_message="late commit"
    )
    files = download_all(fresh_hub, repo_id, "main", tmp_path)
    assert files == {
        ".gitattributes": files[".gitattributes"],
        "old.txt": b"old content",
        "model.safetensors": data,
    }


def test_kill9_during_a_stream_of_commits_keeps_every_acknowledged_commit(
    fresh_hub: HubServer, repo_name: str, tmp_path: Path
) -> None:
    repo_id = f"alice/{repo_name}"
    fresh_hub.api("alice").create_repo(repo_id)
    acknowledged: dict[str, tuple[str, bytes]] = {}  # commit oid -> (path, content)
    attempted: list[str] = []
    stop = threading.Event()

    def committer() -> None:
        with client(fresh_hub) as http:
            for i in itertools.count():
                if stop.is_set():
                    return
                path, content = f"f/{i:05d}.txt", os.urandom(64 + i)
                attempted.append(path)
                try:
                    response = post_commit(http, repo_id, header(f"c{i}"), file_line(path, content))
                except httpx.TransportError:
                    return
                if response.status_code != 200:
                    return
                acknowledged[response.json()["commitOid"]] = (path, content)

    thread = threading.Thread(target=committer, daemon=True)
    thread.start()
    wait_for(lambda: len(acknowledged) >= 25 or not thread.is_alive(), what="25 acknowledged commits")
    fresh_hub.kill9()
    stop.set()
    thread.join(60)
    assert len(acknowledged) >= 25

    fresh_hub.start()
    api = fresh_hub.api("alice")
    history = [c.commit_id for c in api.list_repo_commits(repo_id)]
    assert set(acknowledged) <= set(history)
    files = download_all(fresh_hub, repo_id, "main", tmp_path)
    for path, content in acknowledged.values():
        assert files[path] == content
    acked_paths = {path for path, _ in acknowledged.values()}
    landed = set(files) - {".gitattributes"}
    # At most the one commit in flight at the kill may have landed without being acknowledged.
    assert acked_paths <= landed <= set(attempted)
    assert len(landed - acked_paths) <= 1
    assert len(history) == 1 + len(landed)
    assert tmp_files(fresh_hub.data_dir) == []


# --------------------------------------------------------------------------- atomic commits


@pytest.mark.parametrize(
    "bad_line",
    [
        {"key": "file", "value": {"path": "../evil", "content": "aGk=", "encoding": "base64"}},
        {"key": "file", "value": {"path": "bad-b64.txt", "content": "!!!", "encoding": "base64"}},
        {"key": "lfsFile", "value": {"path": "never.bin", "algo": "sha256", "oid": "ab" * 32, "size": 3}},
        {"key": "deletedFile", "value": {"path": "no-such-file.txt"}},
        {"key": "deletedFolder", "value": {"path": "no-such-folder/"}},
        {"key": "file", "value": {"path": "good.txt/child", "content": "aGk=", "encoding": "base64"}},
        {"key": "mystery", "value": {}},
        b"{not json",
    ],
    ids=[
        "traversal",
        "base64",
        "missing-blob",
        "delete-missing",
        "delete-folder-missing",
        "dir-clash",
        "key",
        "json",
    ],
)
def test_commit_with_one_bad_line_changes_nothing(hub: HubServer, repo_name: str, bad_line: Any) -> None:
    repo_id = f"alice/{repo_name}"
    api = hub.api("alice")
    api.create_repo(repo_id)
    api.upload_file(path_or_fileobj=b"old", path_in_repo="old.txt", repo_id=repo_id)
    head = api.model_info(repo_id).sha
    with client(hub) as http:
        # The good operations come first and would be applied by a non-atomic server.
        response = post_commit(
            http,
            repo_id,
            header("mixed"),
            file_line("good.txt", b"good"),
            {"key": "deletedFile", "value": {"path": "old.txt"}},
            bad_line,
        )
        assert 400 <= response.status_code < 500, response.text
        assert response.json()["error"]
    assert api.model_info(repo_id).sha == head
    assert sorted(api.list_repo_files(repo_id)) == [".gitattributes", "old.txt"]
    assert len(api.list_repo_commits(repo_id)) == 2
    assert not api.file_exists(repo_id, "good.txt")


# --------------------------------------------------------------------------- concurrent commits


def test_concurrent_commits_with_parent_commit_land_or_conflict(hub: HubServer, repo_name: str) -> None:
    repo_id = f"alice/{repo_name}"
    hub.api("alice").create_repo(repo_id)
    landed: dict[str, bytes] = {}
    parents: dict[str, str] = {}  # commit that landed -> the head it was based on
    conflicts: list[str] = []
    unexpected: list[BaseException] = []
    lock = threading.Lock()
    start = threading.Barrier(6)

    def worker(t: int) -> None:
        api = hub.api("alice")
        start.wait()
        for i in range(10):
            path, content = f"t{t}/c{i}.txt", f"thread {t} commit {i} {os.urandom(8).hex()}".encode()
            try:
                parent = api.model_info(repo_id).sha
                info = api.create_commit(
                    repo_id,
                    [CommitOperationAdd(path, content)],
                    commit_message=f"t{t} c{i}",
                    parent_commit=parent,
                )
            except HfHubHTTPError as err:
                with lock:
                    (conflicts if err.response.status_code == 412 else unexpected).append(err)
            except Exception as err:
                with lock:
                    unexpected.append(err)
            else:
                with lock:
                    landed[path] = content
                    parents[info.oid] = parent

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(worker, range(6)))

    assert not unexpected, unexpected[:3]
    assert len(landed) + len(conflicts) == 60
    assert landed, "no commit landed at all"
    api = hub.api("alice")
    assert set(api.list_repo_files(repo_id)) == set(landed) | {".gitattributes"}
    history = [c.commit_id for c in api.list_repo_commits(repo_id)]
    assert len(history) == len(landed) + 1
    # Each commit sits exactly on the head its author read: a stale parent never slipped through.
    actual_parent = dict(itertools.pairwise(history))
    assert {oid: actual_parent.get(oid) for oid in parents} == parents
    with client(hub) as http:
        for path, content in landed.items():
            assert http.get(f"/{repo_id}/resolve/main/{path}").content == content


def test_concurrent_commits_without_parent_all_land(hub: HubServer, repo_name: str, tmp_path: Path) -> None:
    repo_id = f"alice/{repo_name}"
    hub.api("alice").create_repo(repo_id)
    expected = {
        f"t{t}/c{i}.txt": f"thread {t} commit {i}".encode() * (i + 1) for t in range(6) for i in range(10)
    }
    start = threading.Barrier(6)

    def worker(t: int) -> None:
        api = hub.api("alice")
        start.wait()
        for i in range(10):
            path = f"t{t}/c{i}.txt"
            api.create_commit(
                repo_id, [CommitOperationAdd(path, expected[path])], commit_message=f"t{t} c{i}"
            )

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(worker, range(6)))  # re-raises the first failure

    api = hub.api("alice")
    commits = api.list_repo_commits(repo_id)
    assert len(commits) == 61
    assert len({c.commit_id for c in commits}) == 61
    files = download_all(hub, repo_id, "main", tmp_path)
    assert files == expected | {".gitattributes": files[".gitattributes"]}
