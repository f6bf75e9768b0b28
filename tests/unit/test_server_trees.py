"""What a pull request changes and whether it merges: tree comparison, three-way merge, git-style diffs."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from hubkit.server.diffs import tree_diff
from hubkit.server.storage import git_blob_oid
from hubkit.server.trees import merge_trees


def _entry(content: bytes, lfs: bool = False) -> dict:
    import hashlib

    return {"sha256": hashlib.sha256(content).hexdigest(), "size": len(content), "lfs": lfs, "git_oid": None}


def test_merge_trees_applies_disjoint_changes_and_names_conflicts():
    base = {"a": _entry(b"a"), "b": _entry(b"b"), "gone": _entry(b"g")}
    ours = base | {"a": _entry(b"a2")}  # main changed a
    theirs = {"a": _entry(b"a"), "b": _entry(b"b3"), "new/x": _entry(b"x")}  # PR: b changed, gone deleted
    merged = merge_trees(base, ours, theirs)
    assert merged.conflicts == []
    assert merged.tree == {"a": _entry(b"a2"), "b": _entry(b"b3"), "new/x": _entry(b"x")}

    both = merge_trees(base, ours, theirs | {"a": _entry(b"a3")})
    assert both.conflicts == ["a"]
    same_change = merge_trees(base, ours, theirs | {"a": _entry(b"a2")})  # identical on both sides: clean
    assert same_change.conflicts == [] and same_change.tree["a"] == _entry(b"a2")
    # main deleted b while the PR modified it; the PR adds a file where main now has a folder.
    assert merge_trees(base, {"a": _entry(b"a"), "new/x/y": _entry(b"y")}, theirs).conflicts == ["b", "new/x"]


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git to compare with")
def test_tree_diff_is_what_git_diff_prints(tmp_path: Path):
    before = {"keep.txt": b"one\ntwo\nthree\n", "edit.txt": b"a\nb\nc\n", "drop.txt": b"bye\n"}
    after = {"keep.txt": before["keep.txt"], "edit.txt": b"a\nB\nc\nd", "new.txt": b"hello\n"}
    blobs = {}

    def tree(files: dict[str, bytes]) -> dict[str, dict]:
        out = {}
        for path, data in files.items():
            out[path] = _entry(data) | {"git_oid": git_blob_oid(data)}
            blobs[out[path]["sha256"]] = data
        return out

    ours = tree_diff(tree(before), tree(after), blobs.__getitem__)

    def git(*args: str) -> str:
        cmd = ["git", "-c", "core.abbrev=7", "-c", "user.name=t", "-c", "user.email=t@t", *args]
        return subprocess.run(cmd, cwd=tmp_path, check=True, capture_output=True, text=True).stdout

    git("init", "-q")
    for files, message in ((before, "before"), (after, "after")):
        for path in {p.name for p in tmp_path.glob("*.txt")} - set(files):
            (tmp_path / path).unlink()
        for path, data in files.items():
            (tmp_path / path).write_bytes(data)
        git("add", "-A")
        git("commit", "-q", "-m", message)
    assert ours == git("diff", "--no-color", "--no-renames", "HEAD~1", "HEAD")
