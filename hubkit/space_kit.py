"""Helpers every hubkit Space (``spaces/*/app.py``) shares: read its settings from the environment,
check the repo ids a visitor types, and turn a failure into one line for the page.

A Space installs hubkit (its ``requirements.txt``), so it imports these instead of carrying a copy; gradio,
diffusers, pandas and PIL are imported only inside the helpers that need them, so the core never does.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = [
    "LoadError",
    "base_pipeline",
    "card_base_model",
    "device",
    "empty_table",
    "enlarged",
    "env_list",
    "first_line",
    "hub_name",
    "hub_token",
    "refused",
    "repo_id",
    "repo_selection",
    "serve",
    "timed",
    "whole",
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


def card_base_model(repo: str, what: str) -> str | None:
    """The ``base_model`` of ``repo``'s card (None without one, or with several); :class:`LoadError` when the
    repo cannot be read."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

    try:
        info = HfApi(token=hub_token()).model_info(repo)
    except RepositoryNotFoundError as err:
        raise LoadError(
            f"Cannot load the {what} `{repo}`: no such repo on {hub_name()} (or it is private and the "
            "Space's token cannot see it)"
        ) from err
    except HfHubHTTPError as err:
        raise LoadError(f"Cannot read the {what} `{repo}` from {hub_name()}: {first_line(err)}") from err
    found = getattr(info.card_data, "base_model", None) if info.card_data else None
    if isinstance(found, list):
        found = found[0] if len(found) == 1 else None
    return found if isinstance(found, str) and found.strip() else None


def whole(value: float | int | str | None, default: int, low: int, high: int, what: str) -> int:
    """``value`` (``default`` when empty) as an int; a :func:`refused` error unless it is a whole number in
    [low, high]."""
    try:
        number = float(default if value is None or value == "" else value)
    except (TypeError, ValueError):
        number = float("nan")
    if not number.is_integer() or not low <= number <= high:
        raise refused(f"{what} must be a whole number from {low} to {high}, got {value}.", "Bad input")
    return int(number)


def device() -> str:
    """Where a Space runs its pipelines: the GPU when there is one."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def base_pipeline(repo: str, pipeline_class: Any = None) -> Any:
    """``repo`` loaded with the stock ``from_pretrained`` of ``pipeline_class`` (``DiffusionPipeline`` by
    default) and the Space's token, progress bars off, on :func:`device`; :class:`LoadError` names the
    repo."""
    if pipeline_class is None:
        from diffusers import DiffusionPipeline as pipeline_class
    try:
        pipe = pipeline_class.from_pretrained(repo, token=hub_token())
    except Exception as err:
        raise LoadError(f"Cannot load the base model `{repo}` from {hub_name()}: {first_line(err)}") from err
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device())


def enlarged(image: Any, width: int) -> Any:
    """A PIL ``image`` at ``width`` pixels wide, every pixel a square (nearest neighbour)."""
    from PIL import Image

    return image.resize((width, round(width * image.height / image.width)), Image.Resampling.NEAREST)


def empty_table(columns: dict[str, str]) -> Any:
    """A pandas table with ``columns`` (name → gradio datatype: ``number`` is float, the rest text) and no
    rows."""
    import pandas as pd

    dtypes = {name: "float64" if kind == "number" else "object" for name, kind in columns.items()}
    return pd.DataFrame({name: pd.Series(dtype=dtype) for name, dtype in dtypes.items()})


def timed(pipe: Any, prompt: str, steps: int, guidance: float, seed: int) -> tuple[Any, float]:
    """One image of ``pipe`` for ``prompt`` from ``seed`` and the wall-clock seconds the call took."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    started = time.perf_counter()
    with torch.no_grad():
        out = pipe(prompt, num_inference_steps=steps, guidance_scale=guidance, generator=generator)
    return out.images[0], time.perf_counter() - started


def serve(demo: Any, warm_up: Callable[[], None]) -> None:
    """Launch a Space's Blocks on ``GRADIO_SERVER_NAME``:``GRADIO_SERVER_PORT`` (127.0.0.1:7860), running
    ``warm_up`` (loading its default models) in the background meanwhile."""
    threading.Thread(target=warm_up, name="warm-up", daemon=True).start()
    port = int(os.environ.get("GRADIO_SERVER_PORT") or 7860)
    demo.launch(server_name=os.environ.get("GRADIO_SERVER_NAME") or "127.0.0.1", server_port=port)
