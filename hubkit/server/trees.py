"""Comparing and merging commit trees (``{path: entry}``) for pull requests: what changed, what conflicts.

A tree entry is identified by its content (``sha256``) and whether it is stored as LFS; two entries with the
same content are the same file whichever route they were uploaded by.
"""

from __future__ import annotations

from dataclasses import dataclass


def same_entry(a: dict | None, b: dict | None) -> bool:
    """Whether two tree entries (or absences) hold the same file."""
    if a is None or b is None:
        return a is b
    return a["sha256"] == b["sha256"] and bool(a["lfs"]) == bool(b["lfs"])


def changed_paths(before: dict[str, dict], after: dict[str, dict]) -> list[str]:
    """Paths added, removed or modified from ``before`` to ``after``, sorted."""
    return sorted(p for p in before.keys() | after.keys() if not same_entry(before.get(p), after.get(p)))


@dataclass(frozen=True)
class TreeMerge:
    """``theirs``' changes since ``base`` applied onto ``ours``; ``conflicts``: paths where that failed."""

    tree: dict[str, dict]
    conflicts: list[str]


def merge_trees(base: dict[str, dict], ours: dict[str, dict], theirs: dict[str, dict]) -> TreeMerge:
    """Three-way merge at file granularity, as git does for files that it cannot merge line by line.

    A path conflicts when both sides changed it since ``base`` and ended with different content (the same
    change on both sides is not a conflict), or when the result would have a path that is both a file and a
    folder.
    """
    ours_changed = set(changed_paths(base, ours))
    theirs_changed = changed_paths(base, theirs)
    conflicts = {
        p for p in theirs_changed if p in ours_changed and not same_entry(ours.get(p), theirs.get(p))
    }
    tree = dict(ours)
    for path in theirs_changed:
        if path in conflicts:
            continue
        if theirs.get(path) is None:
            tree.pop(path, None)
        else:
            tree[path] = theirs[path]
    conflicts.update(_file_folder_clashes(tree, theirs_changed))
    return TreeMerge(tree=tree, conflicts=sorted(conflicts))


def _file_folder_clashes(tree: dict[str, dict], paths: list[str]) -> set[str]:
    """Paths among ``paths`` present in ``tree`` whose parent is a file, or that are also a folder."""
    clashes = set()
    folders = {"/".join(p.split("/")[:i]) for p in tree for i in range(1, p.count("/") + 1)}
    for path in paths:
        if path not in tree:
            continue
        parents = ["/".join(path.split("/")[:i]) for i in range(1, path.count("/") + 1)]
        if path in folders or any(parent in tree for parent in parents):
            clashes.add(path)
    return clashes
