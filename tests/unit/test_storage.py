"""Storage rules without HTTP: commits, refs, conflicts, blobs, names, paths, pull requests and merges."""

from __future__ import annotations

import hashlib

import pytest

from hubkit.server.names import check_path, check_repo_name
from hubkit.server.storage import (
    BadRequest,
    BlobMissing,
    Conflict,
    EntryNotFound,
    FileChange,
    MergeConflict,
    RevisionNotFound,
    StaleParent,
    Storage,
    git_blob_oid,
)


@pytest.fixture
def storage(tmp_path):
    return Storage(tmp_path / "data")


def _add(storage: Storage, path: str, data: bytes) -> FileChange:
    sha = storage.blobs.put_bytes(data)
    return FileChange("add", path, sha256=sha, size=len(data), git_oid=git_blob_oid(data))


def test_git_blob_oid_matches_git():
    # `printf hello | git hash-object --stdin`
    assert git_blob_oid(b"hello") == "b6fc4c620b67d95f953a5c1c1230aaab5db5a1b0"


def test_new_repo_has_initial_commit_and_main(storage):
    repo = storage.create_repo("model", "alice", "r", private=False, author="alice")
    head = storage.resolve(repo, "main")
    assert list(storage.commit(repo, head).tree) == [".gitattributes"]
    with pytest.raises(Conflict):
        storage.create_repo("model", "alice", "r", private=False, author="alice")
    # Same name, other repo type: a different repo.
    storage.create_repo("dataset", "alice", "r", private=False, author="alice")


def test_commit_parent_guard_and_history(storage):
    repo = storage.create_repo("model", "alice", "r", private=False, author="alice")
    base = storage.resolve(repo, "main")
    first = storage.apply_commit(
        repo, "main", [_add(storage, "a.txt", b"a")], "one", "", "alice", parent=base
    )
    with pytest.raises(StaleParent):
        storage.apply_commit(repo, "main", [_add(storage, "b.txt", b"b")], "two", "", "alice", parent=base)
    assert [c.oid for c in storage.history(repo, storage.resolve(repo, "main"))] == [first.oid, base]
    assert storage.resolve(repo, first.oid[:7]) == first.oid


def test_failed_commit_changes_nothing(storage):
    repo = storage.create_repo("model", "alice", "r", private=False, author="alice")
    head = storage.resolve(repo, "main")
    missing = FileChange("add", "ghost.bin", sha256="0" * 64, size=1, lfs=True)
    with pytest.raises(BlobMissing):
        storage.apply_commit(repo, "main", [_add(storage, "ok.txt", b"ok"), missing], "x", "", "alice")
    with pytest.raises(EntryNotFound):
        storage.apply_commit(repo, "main", [FileChange("delete", "nope.txt")], "x", "", "alice")
    assert storage.resolve(repo, "main") == head


def test_file_and_folder_cannot_share_a_name(storage):
    repo = storage.create_repo("model", "alice", "r", private=False, author="alice")
    storage.apply_commit(repo, "main", [_add(storage, "a/b.txt", b"x")], "one", "", "alice")
    with pytest.raises(BadRequest):
        storage.apply_commit(repo, "main", [_add(storage, "a", b"y")], "two", "", "alice")
    with pytest.raises(BadRequest):
        storage.apply_commit(repo, "main", [_add(storage, "a/b.txt/c", b"z")], "three", "", "alice")


def test_refs(storage):
    repo = storage.create_repo("model", "alice", "r", private=False, author="alice")
    head = storage.resolve(repo, "main")
    storage.create_ref(repo, "branch", "dev", head)
    storage.create_ref(repo, "tag", "v1", head)
    assert storage.resolve(repo, "refs/heads/dev") == storage.resolve(repo, "refs/tags/v1") == head
    with pytest.raises(Conflict):
        storage.create_ref(repo, "tag", "v1", head)
    with pytest.raises(BadRequest):
        storage.delete_ref(repo, "branch", "main")
    storage.delete_ref(repo, "tag", "v1")
    with pytest.raises(RevisionNotFound):
        storage.resolve(repo, "v1")


def test_state_survives_reopen(tmp_path):
    first = Storage(tmp_path / "data")
    repo = first.create_repo("model", "alice", "r", private=True, author="alice")
    first.set_user("alice", "tok-12345678")
    oid = first.apply_commit(repo, "main", [_add(first, "a.txt", b"a")], "one", "", "alice").oid
    (first.blobs.tmp / "up-partial").write_bytes(b"half an upload")
    second = Storage(tmp_path / "data")
    again = second.get_repo("model", "alice", "r")
    assert again.private and second.resolve(again, "main") == oid
    assert second.user_for_token("tok-12345678") == "alice"
    assert list(second.blobs.tmp.iterdir()) == []  # leftovers of interrupted uploads are dropped


def test_blobs_are_content_addressed(storage):
    sha = storage.blobs.put_bytes(b"content")
    assert sha == hashlib.sha256(b"content").hexdigest()
    assert storage.blobs.path(sha).read_bytes() == b"content"
    assert storage.blobs.put_bytes(b"content") == sha


@pytest.mark.parametrize(
    "path",
    [
        "../x",
        "a/../b",
        "/abs",
        "a\\b",
        "a\0b",
        "./x",
        "a//b",
        ".git/config",
        "a/",
        "",
        "x" * 2000,
        "tab\there",
    ],
)
def test_bad_paths_are_refused(path):
    with pytest.raises(BadRequest):
        check_path(path)


@pytest.mark.parametrize(
    "path",
    ["README.md", "unet/diffusion_pytorch_model.safetensors", "a b/ünï.txt", ".gitattributes", "x.y/z"],
)
def test_good_paths_pass(path):
    assert check_path(path) == path


@pytest.mark.parametrize("name", ["a--b", "a..b", "-a", "a-", "x.git", "", "a/b", "a" * 97])
def test_bad_repo_names_are_refused(name):
    with pytest.raises(BadRequest):
        check_repo_name(name)


def _setup(storage: Storage):
    repo = storage.create_repo("model", "alice", "r", private=False, author="alice")
    storage.apply_commit(
        repo, "main", [_add(storage, "a.txt", b"a"), _add(storage, "b.txt", b"b")], "ab", "", "alice"
    )
    return repo, storage.resolve(repo, "main")


def test_pull_requests_share_numbers_and_merge_fast_forward(storage, tmp_path):
    repo, base = _setup(storage)
    discussion = storage.create_discussion(repo, "bob", "A question", "Why?", pull_request=False)
    number, result = storage.commit_pull_request(
        repo, "main", base, [_add(storage, "a.txt", b"a by bob")], "Fix a", "details", "bob"
    )
    draft = storage.create_discussion(repo, "alice", "Draft", "", pull_request=True)
    assert (discussion.num, number, draft.num) == (1, 2, 3)
    assert storage.refs(repo)["pr"] == {"2": result.oid, "3": base}
    assert [(d.num, d.is_pr, d.status) for d in storage.list_discussions(repo)] == [
        (3, True, "draft"),
        (2, True, "open"),
        (1, False, "open"),
    ]
    with pytest.raises(BadRequest, match="draft"):
        storage.merge_pull_request(repo, 3, "alice")

    event, merged = storage.merge_pull_request(repo, number, "alice", comment="Thanks!")
    assert merged == result.oid == storage.resolve(repo, "main")  # main had not moved: fast-forward
    assert (event.type, event.data) == ("status-change", {"status": "merged"})
    pr = storage.get_discussion(repo, number)
    assert (pr.status, pr.merge_oid, pr.comments) == ("merged", merged, 2)
    events = [(e.type, e.author) for e in storage.discussion_events(repo, number)]
    assert events == [("comment", "bob"), ("commit", "bob"), ("comment", "alice"), ("status-change", "alice")]
    with pytest.raises(BadRequest, match="merged"):
        storage.apply_commit(repo, f"refs/pr/{number}", [_add(storage, "c.txt", b"c")], "late", "", "bob")

    reopened = Storage(tmp_path / "data")  # everything is on disk, as after a restart
    assert reopened.get_discussion(repo, number) == pr
    assert reopened.discussion_events(repo, number) == storage.discussion_events(repo, number)


def test_merge_on_moved_branch_applies_disjoint_changes_and_refuses_conflicts(storage):
    repo, base = _setup(storage)
    edit_a, _ = storage.commit_pull_request(
        repo, "main", base, [_add(storage, "a.txt", b"a1")], "a", "", "bob"
    )
    edit_b, _ = storage.commit_pull_request(
        repo, "main", base, [_add(storage, "b.txt", b"b1")], "b", "", "bob"
    )
    moved = storage.apply_commit(
        repo, "main", [_add(storage, "a.txt", b"a by alice")], "alice a", "", "alice"
    )
    events_before = storage.discussion_events(repo, edit_a)

    with pytest.raises(MergeConflict, match=r"a\.txt"):
        storage.merge_pull_request(repo, edit_a, "alice")
    assert storage.resolve(repo, "main") == moved.oid
    assert storage.get_discussion(repo, edit_a).status == "open"
    assert storage.discussion_events(repo, edit_a) == events_before
    assert storage.conflicting_files(repo, storage.get_discussion(repo, edit_a)) == ["a.txt"]

    _, merged = storage.merge_pull_request(repo, edit_b, "alice")
    commit = storage.commit(repo, merged)
    assert commit.parent == moved.oid and commit.author == "bob" and commit.title == "b (#2)"
    contents = {
        p: storage.blobs.path(e["sha256"]).read_bytes()
        for p, e in commit.tree.items()
        if p != ".gitattributes"
    }
    assert contents == {"a.txt": b"a by alice", "b.txt": b"b1"}


def test_duplicate_repo_copies_main_with_its_history(storage):
    repo, head = _setup(storage)
    copy = storage.duplicate_repo(repo, "bob", "r-copy", private=True)
    assert (copy.repo_id, copy.private) == ("bob/r-copy", True)
    assert storage.resolve(copy, "main") == head
    assert [c.oid for c in storage.history(copy, head)] == [c.oid for c in storage.history(repo, head)]
    size, _ = storage.repo_usage(copy)
    assert size == sum(e["size"] for e in storage.commit(repo, head).tree.values())
