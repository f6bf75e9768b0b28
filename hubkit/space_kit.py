"""Helpers every hubkit Space (``spaces/*/app.py``) shares: read its settings from the environment,
check the repo ids a visitor types, and turn a failure into one line for the page.

A Space installs hubkit (its ``requirements.txt``), so it imports these instead of carrying a copy; gradio is
imported only by :func:`refused`, so the core never needs it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

__all__ = [
    "LoadError",
    "env_list",
    "first_line",
    "hub_name",
    "hub_token",
    "refused",
    "repo_id",
    "repo_selection",
]


class LoadError(Exception):
    """A base model or artifact cannot be loaded; the message says which and why, for the page."""


def first_line(err: BaseException) -> str:
    """The first line of an exception's message (its class name when it has none)."""
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


def hub_token() -> str | None:
    """The Space's token (``HF_TOKEN``), read at call time."""
    return os.environ.get("HF_TOKEN") or None


def hub_name() -> str:
    """Where artifacts come from, for messages: ``HF_ENDPOINT`` or "the Hub"."""
    return os.environ.get("HF_ENDPOINT") or "the Hub"


def env_list(name: str, default: str) -> list[str]:
    """The comma-separated environment variable ``name`` (``default`` when unset) as a list without blanks
    or duplicates; set and empty means an empty list."""
    raw = os.environ.get(name)
    raw = default if raw is None else raw
    return list(dict.fromkeys(s.strip() for s in raw.split(",") if s.strip()))


def repo_id(value: str, what: str) -> str:
    """``value`` stripped; :class:`LoadError` unless it is a Hub repo id ``namespace/name`` — never a path on
    the Space's disk, which loaders would read before asking the Hub."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    repo = value.strip()
    try:
        if repo.count("/") != 1:
            raise HFValidationError("it must have the form namespace/name")
        validate_repo_id(repo)
    except HFValidationError as err:
        raise LoadError(f"`{repo}` is not a valid {what} repo id: {first_line(err)}") from err
    if Path(repo).exists():
        raise LoadError(f"`{repo}` names a folder on the Space's disk, not a Hub repo: refused")
    return repo


def repo_selection(repos: list[str] | str | None, what: str, limit: int) -> list[str]:
    """The repos a visitor asked for (a list or a comma-separated string): checked ids, in order, without
    duplicates, at most ``limit``."""
    if isinstance(repos, str):
        repos = repos.split(",")
    chosen = list(dict.fromkeys(repo_id(r, what) for r in repos or [] if r and r.strip()))
    if len(chosen) > limit:
        raise LoadError(f"{len(chosen)} {what}s selected: at most {limit} at a time")
    return chosen


def refused(message: str, title: str) -> Any:
    """The ``gr.Error`` a page raises for bad input (gradio_client raises it too); no traceback in the log."""
    import gradio as gr

    return gr.Error(message, title=title, print_exception=False)
