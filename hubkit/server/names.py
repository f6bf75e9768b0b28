"""Validation of repo names and file paths: everything a client sends is checked here before use."""

from __future__ import annotations

import re

from hubkit.server.storage import BadRequest, is_text

_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?$")
MAX_PATH_LEN = 1024


def check_repo_name(part: str, what: str = "name") -> str:
    """Hub rules: letters, digits, ``-``, ``_``, ``.``; no ``--`` or ``..``; at most 96 characters."""
    if not isinstance(part, str) or not _NAME.match(part) or "--" in part or ".." in part:
        raise BadRequest(
            f"Invalid repo {what} {part!r}: use letters, digits, '-', '_' and '.', start and end with a "
            "letter or digit, no '--' or '..', at most 96 characters"
        )
    if part.endswith(".git"):
        raise BadRequest(f"Invalid repo {what} {part!r}: must not end with .git")
    return part


def check_path(path: object) -> str:
    """A file path inside a repo: relative, ``/``-separated, no ``..``/``.``/empty parts, NUL or backslash."""
    if not isinstance(path, str) or not path:
        raise BadRequest("File path must be a non-empty string")
    problems = []
    if len(path) > MAX_PATH_LEN:
        problems.append(f"longer than {MAX_PATH_LEN} characters")
    if "\0" in path:
        problems.append("contains NUL")
    if not is_text(path):
        problems.append("is not valid Unicode")
    if "\\" in path:
        problems.append("contains a backslash")
    if path.startswith("/"):
        problems.append("is absolute")
    if any(ord(c) < 0x20 or c == "\x7f" for c in path.replace("\0", "")):
        problems.append("contains control characters")
    parts = path.split("/")
    if any(p in ("", ".", "..") for p in parts):
        problems.append("has empty, '.' or '..' parts")
    if parts[0] == ".git":
        problems.append("is inside .git")
    if problems:
        raise BadRequest(f"Invalid file path {path!r}: " + ", ".join(problems))
    return path
