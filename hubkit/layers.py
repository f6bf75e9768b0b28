"""Which layers of a model an adapter may wrap: shared by every method that adapts chosen Linear / Conv2d
layers (SaRA, a LoRA fine-tune...), with peft's ``target_modules`` matching rule. Import-light: loading an
artifact uses it without importing training code."""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch

from hubkit.config import LAYER_TYPES

__all__ = ["adaptable_layers", "matches_modules"]


def matches_modules(patterns: list[str] | str | None, path: str) -> bool:
    """peft's ``target_modules`` rule: None matches all, a string is a full regex, a list matches exact module
    paths or their dotted suffixes."""
    if patterns is None:
        return True
    if isinstance(patterns, str):
        return re.fullmatch(patterns, path) is not None
    return any(path == p or path.endswith(f".{p}") for p in patterns)


def adaptable_layers(
    model: torch.nn.Module,
    layer_types: Sequence[str] = LAYER_TYPES,
    targets: list[str] | str | None = None,
    exclude: list[str] | str | None = None,
) -> dict[str, torch.nn.Module]:
    """Module path → the plain Linear / Conv2d layers of ``layer_types`` that match ``targets`` and not
    ``exclude``; grouped convs (their weight layout differs) and layers a peft tuner already wraps are left
    out, so an adapter never stacks on another one's wrapper."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    kinds = {"linear": torch.nn.Linear, "conv": torch.nn.Conv2d}
    types = tuple(kinds[t] for t in layer_types)
    found: dict[str, torch.nn.Module] = {}
    for path, module in model.named_modules():
        if isinstance(module, BaseTunerLayer) or not isinstance(module, types):
            continue
        if (isinstance(module, torch.nn.Conv2d) and module.groups != 1) or path.endswith(".base_layer"):
            continue
        if matches_modules(targets, path) and not (exclude is not None and matches_modules(exclude, path)):
            found[path] = module
    return found
