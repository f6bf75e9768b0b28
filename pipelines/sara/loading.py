"""``load_sara``: a SaRA adapter (indices + values) on a stock pipeline's UNet, fused or switchable.

No stock loader carries a sparse update of Linear *and* Conv2d layers (peft's sparse tuners are Linear-only
and pick a fixed count per layer; SaRA's global threshold picks a different count in every layer), so this is
the documented path; artifacts published with their merged UNet also load with stock
``UNet2DConditionModel.from_pretrained(repo, subfolder="unet")``.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from hubkit.adapters.sara.model import SaraError, inject_sara
from hubkit.adapters.sara.serialization import CONFIG_NAME, HUBKIT_JSON, WEIGHT_NAME, check_fits, read_sara

from hubkit.hub import local_or_snapshot

__all__ = ["load_sara", "unload_sara"]


def load_sara(
    pipe: Any,
    source: str | os.PathLike[str],
    *,
    fuse: bool = True,
    adapter_name: str = "sara",
    revision: str | None = None,
    token: str | None = None,
) -> Any:
    """Apply the SaRA adapter at ``source`` (a folder or Hub repo id) to ``pipe.unet``; returns ``pipe``.

    ``fuse=True`` adds the update into the UNet's weights (no cost per step; the UNet stays a plain diffusers
    UNet, so LoRAs load on top as usual). ``fuse=False`` keeps it as a switchable peft-style adapter
    (``pipe.sara``: ``disable_adapter_layers()`` / :func:`unload_sara`), at the cost of one ``scatter_add``
    per adapted layer per call. A file that does not fit the UNet raises ``SaraError`` and leaves it alone.
    """
    unet = getattr(pipe, "unet", None)
    if unet is None:
        raise SaraError(f"{type(pipe).__name__} has no UNet for a SaRA adapter")
    patterns = [WEIGHT_NAME, CONFIG_NAME, HUBKIT_JSON]
    folder = local_or_snapshot(source, patterns, revision=revision, token=token, error=SaraError)
    file = read_sara(folder)
    check_fits(file, unet, str(source))
    indices = {path: idx for path, (idx, _) in file.weights.items()}
    tuner = inject_sara(unet, file.config, adapter_name, indices=indices)
    modules = dict(unet.named_modules())
    with torch.no_grad():
        for path, (_, delta) in file.weights.items():
            layer = modules[path]
            target = layer.sara_delta[adapter_name]
            target.copy_(delta.to(target.device, target.dtype))
            target.requires_grad_(False)
    if fuse:
        tuner.merge_and_unload(safe_merge=True)
        return pipe
    pipe.sara = tuner
    return pipe


def unload_sara(pipe: Any) -> None:
    """Take an unfused SaRA adapter off: the UNet's layers and weights are the base model's again."""
    tuner = getattr(pipe, "sara", None)
    if tuner is None:
        raise SaraError("no unfused SaRA adapter is loaded on this pipeline")
    tuner.unload()
    del pipe.sara
