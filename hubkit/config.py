"""``JSONConfig``: the mixin of every method config (a dataclass stored with its artifact as JSON).

Kept apart from :mod:`hubkit.training` so that loading an artifact (its config included) never imports
training code."""

from __future__ import annotations

import json
from dataclasses import asdict, fields
from typing import Any, TypeVar

__all__ = ["JSONConfig"]

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
