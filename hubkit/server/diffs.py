"""Git-style unified diffs between two commit trees, as the Hub shows a pull request's changes.

A file stored as LFS is diffed as its pointer file, which is what git (and the Hub) show for it. A regular
file that is not UTF-8 text, or too big to show, gets git's one-line ``Binary files ... differ`` instead.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable

from hubkit.server.storage import lfs_pointer, tree_entry_oid
from hubkit.server.trees import changed_paths

MAX_TEXT_BYTES = 1 << 20  # bigger regular files are summarised, not diffed line by line
NO_OID = "0" * 7
FILE_MODE = "100644"


def tree_diff(before: dict[str, dict], after: dict[str, dict], read: Callable[[str], bytes]) -> str:
    """The unified diff from ``before`` to ``after``; ``read(sha256)`` returns a blob's content."""
    return "".join(
        _file_diff(path, before.get(path), after.get(path), read) for path in changed_paths(before, after)
    )


def _file_diff(path: str, old: dict | None, new: dict | None, read: Callable[[str], bytes]) -> str:
    header = [f"diff --git a/{path} b/{path}\n"]
    old_oid = tree_entry_oid(old)[:7] if old else NO_OID
    new_oid = tree_entry_oid(new)[:7] if new else NO_OID
    if old is None:
        header += [f"new file mode {FILE_MODE}\n", f"index {old_oid}..{new_oid}\n"]
    elif new is None:
        header += [f"deleted file mode {FILE_MODE}\n", f"index {old_oid}..{new_oid}\n"]
    else:
        header += [f"index {old_oid}..{new_oid} {FILE_MODE}\n"]
    old_name, new_name = (f"a/{path}" if old else "/dev/null"), (f"b/{path}" if new else "/dev/null")
    old_text, new_text = _text(old, read), _text(new, read)
    if old_text is None or new_text is None:
        return "".join(header) + f"Binary files {old_name} and {new_name} differ\n"
    lines = difflib.unified_diff(
        old_text.splitlines(keepends=True), new_text.splitlines(keepends=True), old_name, new_name, n=3
    )
    return "".join(header) + "".join(_terminated(line) for line in lines)


def _text(entry: dict | None, read: Callable[[str], bytes]) -> str | None:
    """The entry's content as text ("" when absent), or None when it cannot be shown as text."""
    if entry is None:
        return ""
    if entry["lfs"]:
        return lfs_pointer(entry["sha256"], entry["size"]).decode()
    if entry["size"] > MAX_TEXT_BYTES:
        return None
    try:
        return read(entry["sha256"]).decode("utf-8")
    except UnicodeDecodeError:
        return None


def _terminated(line: str) -> str:
    """A diff line ends with a newline; a file's last line without one gets git's marker after it."""
    if line.endswith("\n"):
        return line
    return line + "\n\\ No newline at end of file\n"
