"""What every method's training command shares: a JSON-serialisable config, the output folder and the base
pipeline checked before any work, so a long run never ends in "the folder exists"."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any, TypeVar

__all__ = ["JSONConfig", "prepare_training", "write_trained_folder"]

C = TypeVar("C", bound="JSONConfig")


class JSONConfig:
    """Mixin for a method's config dataclass: stored with the artifact as JSON, read back strictly."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any]) -> C:
        known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown {cls.__name__} field(s): {', '.join(unknown)}")
        return cls(**data)


def prepare_training(
    base: str,
    out: str | os.PathLike[str],
    *,
    pipe: Any = None,
    force: bool = False,
    endpoint: str | None = None,
    token: str | None = None,
    error: type[Exception] = ValueError,
) -> tuple[Path, Any]:
    """The output folder (refused when non-empty unless ``force``) and the base pipeline (``pipe`` or pulled
    from ``base``); problems raise ``error`` naming them."""
    from hubkit.hub import HubError, pull_pipeline

    out = Path(out)
    if out.exists() and any(out.iterdir()) and not force:
        raise error(f"{out} exists and is not empty (pass --force to replace it)")
    if pipe is None:
        try:
            pipe = pull_pipeline(base, endpoint=endpoint, token=token)
        except HubError as err:
            raise error(str(err)) from err
    return out, pipe


def write_trained_folder(
    out: Path,
    weight_name: str,
    save: Callable[[Path], None],
    card: Callable[[dict[str, Any]], Any],
    facts: dict[str, Any],
) -> None:
    """Write ``out`` whole or not at all: ``save`` puts the weights and ``hubkit.json`` in, ``facts`` gains
    the weights' ``file_bytes``, then ``card(facts)`` (a ``ModelCard``) becomes its README.md."""
    from hubkit.files import atomic_folder

    def fill(folder: Path) -> None:
        save(folder)
        facts["file_bytes"] = (folder / weight_name).stat().st_size
        card(facts).save(str(folder / "README.md"))

    atomic_folder(out, fill, force=True)
