"""Every huggingface_hub call hubkit relies on, against a real ``hubkit serve``, bytes compared exactly."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import httpx
import pytest
from huggingface_hub import (
    CommitOperationAdd,
    CommitOperationCopy,
    CommitOperationDelete,
    hf_hub_download,
    snapshot_download,
)
from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

pytestmark = pytest.mark.integration

CARD = """---
license: mit
library_name: diffusers
pipeline_tag: text-to-image
base_model: hubkit/tiny-sd-shapes
tags:
- hubkit
- hubkit-method:demo
---
# Demo
"""


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "artifact"
    (root / "weights").mkdir(parents=True)
    (root / "README.md").write_text(CARD)
    (root / "config.json").write_text('{"rank": 1}')
    (root / "weights" / "small.safetensors").write_bytes(os.urandom(4096))
    (root / "weights" / "empty.txt").write_bytes(b"")
    return root


def test_whoami(hub):
    assert hub.api("alice").whoami()["name"] == "alice"
    with pytest.raises(HfHubHTTPError):
        hub.api(None).whoami(token="not-a-token")


@pytest.mark.parametrize("repo_type", ["model", "dataset", "space"])
def test_create_info_delete_each_repo_type(hub, repo_type, repo_name, folder):
    api = hub.api("alice")
    url = api.create_repo(
        repo_name, repo_type=repo_type, space_sdk="gradio" if repo_type == "space" else None
    )
    assert url.repo_id == f"alice/{repo_name}"  # namespace filled in from the token
    assert api.repo_exists(url.repo_id, repo_type=repo_type)
    with pytest.raises(HfHubHTTPError) as exc:
        api.create_repo(url.repo_id, repo_type=repo_type, space_sdk="gradio")
    assert exc.value.response.status_code == 409
    api.create_repo(url.repo_id, repo_type=repo_type, space_sdk="gradio", exist_ok=True)

    commit = api.upload_folder(folder_path=folder, repo_id=url.repo_id, repo_type=repo_type)
    info = {"model": api.model_info, "dataset": api.dataset_info, "space": api.space_info}[repo_type](
        url.repo_id, files_metadata=True
    )
    assert info.sha == commit.oid
    assert info.private is False
    assert info.last_modified is not None
    assert {s.rfilename for s in info.siblings} == {".gitattributes", *_files(folder)}
    sizes = {s.rfilename: s.size for s in info.siblings}
    assert sizes["weights/small.safetensors"] == 4096
    assert info.card_data["license"] == "mit"
    assert "hubkit" in info.tags and "license:mit" in info.tags
    if repo_type == "space":
        assert info.sdk == "gradio"

    api.delete_repo(url.repo_id, repo_type=repo_type)
    assert not api.repo_exists(url.repo_id, repo_type=repo_type)
    api.delete_repo(url.repo_id, repo_type=repo_type, missing_ok=True)
    with pytest.raises(RepositoryNotFoundError):
        api.delete_repo(url.repo_id, repo_type=repo_type)


def test_private_repo_is_visible_to_owner(hub, repo_name):
    api = hub.api("alice")
    repo_id = api.create_repo(repo_name, private=True).repo_id
    assert api.model_info(repo_id).private is True
    api.update_repo_settings(repo_id, private=False)
    assert hub.api(None).model_info(repo_id).private is False


def test_upload_and_download_large_file_exact(hub, transfer, repo_name, tmp_path):
    """A 24 MB file through Xet or LFS, then hf_hub_download / snapshot_download, byte for byte."""
    api = hub.api("alice")
    repo_id = api.create_repo(repo_name).repo_id
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(24 * 1024 * 1024))
    xorbs_before = len(list((hub.data_dir / "xorbs").iterdir()))
    api.upload_file(path_or_fileobj=big, path_in_repo="data/big.bin", repo_id=repo_id)
    xorbs_after = len(list((hub.data_dir / "xorbs").iterdir()))
    # The protocol really is the one asked for: Xet stores xorbs, classic LFS does not.
    assert (xorbs_after > xorbs_before) == (transfer == "xet")

    entry = api.get_paths_info(repo_id, ["data/big.bin"])[0]
    assert entry.size == big.stat().st_size
    assert entry.lfs.sha256 == hashlib.sha256(big.read_bytes()).hexdigest()

    path = hf_hub_download(
        repo_id, "data/big.bin", endpoint=hub.url, token=hub.users["alice"], cache_dir=tmp_path / "cache"
    )
    assert Path(path).read_bytes() == big.read_bytes()
    snap = snapshot_download(
        repo_id, endpoint=hub.url, token=hub.users["alice"], cache_dir=tmp_path / "cache2"
    )
    assert (Path(snap) / "data/big.bin").read_bytes() == big.read_bytes()


def test_upload_folder_and_listings(hub, transfer, repo_name, folder, tmp_path):
    api = hub.api("alice")
    repo_id = api.create_repo(repo_name).repo_id
    api.upload_folder(folder_path=folder, repo_id=repo_id)

    assert sorted(api.list_repo_files(repo_id)) == sorted([".gitattributes", *_files(folder)])
    top = {e.path: type(e).__name__ for e in api.list_repo_tree(repo_id)}
    assert top["weights"] == "RepoFolder" and "weights/small.safetensors" not in top
    deep = {e.path for e in api.list_repo_tree(repo_id, recursive=True)}
    assert {"weights", "weights/small.safetensors", "weights/empty.txt"} <= deep
    sub = {e.path for e in api.list_repo_tree(repo_id, path_in_repo="weights")}
    assert sub == {"weights/small.safetensors", "weights/empty.txt"}
    with pytest.raises(EntryNotFoundError):
        list(api.list_repo_tree(repo_id, path_in_repo="nope"))

    infos = {i.path: i for i in api.get_paths_info(repo_id, ["config.json", "weights", "missing.txt"])}
    assert set(infos) == {"config.json", "weights"}
    assert infos["config.json"].size == len('{"rank": 1}')
    git_oid = hashlib.sha1(b"blob 11\0" + b'{"rank": 1}').hexdigest()
    assert infos["config.json"].blob_id == git_oid

    snap = Path(
        snapshot_download(repo_id, endpoint=hub.url, token=hub.users["alice"], cache_dir=tmp_path / "c")
    )
    assert {k: v for k, v in _files(snap).items() if k != ".gitattributes"} == _files(folder)


def test_create_commit_add_delete_copy(hub, transfer, repo_name, tmp_path):
    api = hub.api("alice")
    repo_id = api.create_repo(repo_name).repo_id
    weights = os.urandom(2 * 1024 * 1024)
    first = api.create_commit(
        repo_id,
        operations=[
            CommitOperationAdd("a.txt", b"alpha"),
            CommitOperationAdd("model.safetensors", weights),
            CommitOperationAdd("old/x.txt", b"x"),
        ],
        commit_message="first",
    )
    second = api.create_commit(
        repo_id,
        operations=[
            CommitOperationCopy("a.txt", "copy-of-a.txt"),
            CommitOperationCopy("model.safetensors", "copy/model.safetensors"),
            CommitOperationDelete("old/"),
        ],
        commit_message="second",
        parent_commit=first.oid,
    )
    api.delete_file("a.txt", repo_id)
    files = set(api.list_repo_files(repo_id))
    assert files == {".gitattributes", "model.safetensors", "copy-of-a.txt", "copy/model.safetensors"}
    cache = tmp_path / "cache"
    kw = {"endpoint": hub.url, "token": hub.users["alice"], "cache_dir": cache}
    assert Path(hf_hub_download(repo_id, "copy-of-a.txt", **kw)).read_bytes() == b"alpha"
    assert Path(hf_hub_download(repo_id, "copy/model.safetensors", **kw)).read_bytes() == weights
    # The old revision still holds what it held.
    assert Path(hf_hub_download(repo_id, "old/x.txt", revision=first.oid, **kw)).read_bytes() == b"x"
    assert Path(hf_hub_download(repo_id, "a.txt", revision=second.oid, **kw)).read_bytes() == b"alpha"
    with pytest.raises(EntryNotFoundError):
        api.delete_file("never-existed.txt", repo_id)


def test_unchanged_upload_makes_no_commit(hub, repo_name):
    api = hub.api("alice")
    repo_id = api.create_repo(repo_name).repo_id
    first = api.upload_file(path_or_fileobj=b"same", path_in_repo="f.txt", repo_id=repo_id)
    again = api.upload_file(path_or_fileobj=b"same", path_in_repo="f.txt", repo_id=repo_id)
    assert again.oid == first.oid
    assert len(api.list_repo_commits(repo_id)) == 2  # initial commit + one upload


def test_branches_tags_commits_and_revisions(hub, repo_name, tmp_path):
    api = hub.api("alice")
    repo_id = api.create_repo(repo_name).repo_id
    v1 = api.upload_file(path_or_fileobj=b"v1", path_in_repo="f.txt", repo_id=repo_id, commit_message="one")
    api.create_tag(repo_id, tag="v1.0", tag_message="first release")
    api.create_branch(repo_id, branch="feature/x")
    api.upload_file(path_or_fileobj=b"on-branch", path_in_repo="f.txt", repo_id=repo_id, revision="feature/x")
    v2 = api.upload_file(path_or_fileobj=b"v2", path_in_repo="f.txt", repo_id=repo_id, commit_message="two")

    refs = api.list_repo_refs(repo_id)
    assert {b.name for b in refs.branches} == {"main", "feature/x"}
    assert [(t.name, t.target_commit) for t in refs.tags] == [("v1.0", v1.oid)]
    commits = api.list_repo_commits(repo_id)
    assert [c.commit_id for c in commits][:2] == [v2.oid, v1.oid]
    assert commits[0].title == "two" and commits[0].authors == ["alice"]

    kw = {"endpoint": hub.url, "token": hub.users["alice"], "cache_dir": tmp_path / "c"}
    for revision, expected in [
        ("main", b"v2"),
        ("v1.0", b"v1"),
        ("feature/x", b"on-branch"),
        (v1.oid, b"v1"),
        (v1.oid[:7], b"v1"),
        ("refs/heads/feature/x", b"on-branch"),
    ]:
        assert Path(hf_hub_download(repo_id, "f.txt", revision=revision, **kw)).read_bytes() == expected
        snap = snapshot_download(repo_id, revision=revision, **kw)
        assert (Path(snap) / "f.txt").read_bytes() == expected
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(repo_id, "f.txt", revision="no-such-branch", **kw)

    with pytest.raises(HfHubHTTPError) as exc:
        api.create_branch(repo_id, branch="feature/x")
    assert exc.value.response.status_code == 409
    api.create_branch(repo_id, branch="feature/x", exist_ok=True)
    api.create_tag(repo_id, tag="v1.0", exist_ok=True)
    api.delete_branch(repo_id, branch="feature/x")
    api.delete_tag(repo_id, tag="v1.0")
    refs = api.list_repo_refs(repo_id)
    assert [b.name for b in refs.branches] == ["main"] and refs.tags == []


def test_list_repos_author_search_filter_sort_limit(hub):
    alice, bob = hub.api("alice"), hub.api("bob")
    made = []
    for i, api in enumerate([alice, alice, bob]):
        repo_id = api.create_repo(f"listing-{i}").repo_id
        tag = "listing-even" if i % 2 == 0 else "listing-odd"
        api.upload_file(
            path_or_fileobj=f"---\ntags: [{tag}, hubkit]\nlicense: mit\n---\n".encode(),
            path_in_repo="README.md",
            repo_id=repo_id,
        )
        made.append(repo_id)
    api = hub.api(None)
    assert {m.id for m in api.list_models(search="listing-")} == set(made)
    assert {m.id for m in api.list_models(author="bob", search="listing-")} == {"bob/listing-2"}
    assert {m.id for m in api.list_models(filter="listing-even")} == {"alice/listing-0", "bob/listing-2"}
    assert {m.id for m in api.list_models(filter=["listing-even", "license:mit"])} == {
        "alice/listing-0",
        "bob/listing-2",
    }
    newest = [m.id for m in api.list_models(search="listing-", sort="lastModified")]
    assert newest == ["bob/listing-2", "alice/listing-1", "alice/listing-0"]
    assert len(list(api.list_models(search="listing-", limit=2))) == 2
    with_card = next(iter(api.list_models(search="listing-0", cardData=True)))
    assert with_card.card_data["tags"] == ["listing-even", "hubkit"]
    alice.create_repo("listing-ds", repo_type="dataset")
    alice.create_repo("listing-space", repo_type="space", space_sdk="gradio")
    assert [d.id for d in api.list_datasets(search="listing-")] == ["alice/listing-ds"]
    assert [s.id for s in api.list_spaces(search="listing-")] == ["alice/listing-space"]


def test_file_exists_head_and_range(hub, repo_name):
    api = hub.api("alice")
    repo_id = api.create_repo(repo_name).repo_id
    payload = bytes(range(256)) * 64
    commit = api.upload_file(path_or_fileobj=payload, path_in_repo="blob.bin", repo_id=repo_id)
    assert api.file_exists(repo_id, "blob.bin")
    assert not api.file_exists(repo_id, "nope.bin")
    assert not api.file_exists(f"alice/{repo_name}-missing", "blob.bin")

    url = f"{hub.url}/{repo_id}/resolve/main/blob.bin"
    head = httpx.head(url)
    assert head.status_code == 200
    assert head.headers["X-Repo-Commit"] == commit.oid
    assert head.headers["X-Linked-Size"] == str(len(payload))
    assert head.headers["ETag"].strip('"') == hashlib.sha256(payload).hexdigest()  # LFS files: sha256
    assert int(head.headers["Content-Length"]) == len(payload)
    assert "X-Xet-Hash" not in head.headers  # downloads stay plain HTTP
    part = httpx.get(url, headers={"Range": "bytes=100-299"})
    assert part.status_code == 206
    assert part.content == payload[100:300]
    assert part.headers["Content-Range"] == f"bytes 100-299/{len(payload)}"
    missing = httpx.head(f"{hub.url}/{repo_id}/resolve/main/nope.bin")
    assert missing.status_code == 404
    assert missing.headers["X-Error-Code"] == "EntryNotFound"
    assert missing.headers["X-Repo-Commit"] == commit.oid


def test_offline_cache_behaviour(hub, repo_name, tmp_path):
    api = hub.api("alice")
    repo_id = api.create_repo(repo_name).repo_id
    api.upload_file(path_or_fileobj=b"cached", path_in_repo="c.txt", repo_id=repo_id)
    kw = {"endpoint": hub.url, "token": hub.users["alice"], "cache_dir": tmp_path / "cache"}
    online = hf_hub_download(repo_id, "c.txt", **kw)
    snap = snapshot_download(repo_id, **kw)
    assert Path(hf_hub_download(repo_id, "c.txt", local_files_only=True, **kw)).read_bytes() == b"cached"
    assert snapshot_download(repo_id, local_files_only=True, **kw) == snap
    assert Path(online).read_bytes() == b"cached"
    from huggingface_hub.errors import LocalEntryNotFoundError

    with pytest.raises(LocalEntryNotFoundError):
        hf_hub_download(repo_id, "never-downloaded.txt", local_files_only=True, **kw)


def test_create_pr_commits_to_a_pr_ref(hub, repo_name, tmp_path):
    api = hub.api("alice")
    repo_id = api.create_repo(repo_name).repo_id
    commit = api.upload_file(
        path_or_fileobj=b"proposal", path_in_repo="p.txt", repo_id=repo_id, create_pr=True
    )
    assert commit.pr_revision == "refs/pr/1" and commit.pr_num == 1
    assert "p.txt" not in api.list_repo_files(repo_id)  # main is untouched
    assert "p.txt" in api.list_repo_files(repo_id, revision="refs/pr/1")
    refs = api.list_repo_refs(repo_id, include_pull_requests=True)
    assert [(p.ref, p.target_commit) for p in refs.pull_requests] == [("refs/pr/1", commit.oid)]
    path = hf_hub_download(
        repo_id,
        "p.txt",
        revision="refs/pr/1",
        endpoint=hub.url,
        token=hub.users["alice"],
        cache_dir=tmp_path / "c",
    )
    assert Path(path).read_bytes() == b"proposal"


def _follow(url: str) -> list:
    """Every item of a paginated listing, following ``Link: <…>; rel="next"`` as the client does."""
    items = []
    while url:
        response = httpx.get(url)
        response.raise_for_status()
        items += response.json()
        url = response.links.get("next", {}).get("url")
    return items


def test_listings_paginate(hub, repo_name):
    api = hub.api("alice")
    repo_id = api.create_repo(repo_name).repo_id
    # 1,001 files: more than one tree page (1,000 entries), in one commit of inline files.
    api.create_commit(
        repo_id,
        operations=[CommitOperationAdd(f"many/f{i:04d}.txt", b"x") for i in range(1001)],
        commit_message="many",
    )
    for i in range(3):
        api.upload_file(path_or_fileobj=f"{i}".encode(), path_in_repo="n.txt", repo_id=repo_id)
    assert len(api.list_repo_files(repo_id)) == 1001 + 2  # + .gitattributes, n.txt
    tree = _follow(f"{hub.url}/api/models/{repo_id}/tree/main/many?recursive=true")
    assert len(tree) == 1001 and len({e["path"] for e in tree}) == 1001

    commits = _follow(f"{hub.url}/api/models/{repo_id}/commits/main?limit=2")
    assert [c["id"] for c in commits] == [c.commit_id for c in api.list_repo_commits(repo_id)]
    assert len(commits) == 5  # initial + many + 3 uploads

    api.create_repo(f"{repo_name}-second")
    models = _follow(f"{hub.url}/api/models?author=alice&limit=1")
    assert [m["id"] for m in models] == [m.id for m in api.list_models(author="alice")]
    assert len(models) > 1
