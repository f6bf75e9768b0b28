"""A whole UNet quantized: integer weights for every chosen layer, and the UNet rewired to run on them
(:func:`apply_quantized`, with static int8 activations when calibrated scales are given)."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import torch
from torch import nn

from .calibrate import ActivationStats
from .layer import QuantizedLayer, TimestepClock
from .weights import QuantizedWeight, QuantizeError, quantize_weight

__all__ = ["QuantizeError", "apply_quantized", "quantize_weights", "remove_quantized"]


def quantize_weights(
    layers: dict[str, nn.Module],
    bits: int,
    group_size: int,
    *,
    stats: ActivationStats | None = None,
    keep_float: Collection[str] = (),
    int8_layers: Collection[str] = (),
    clip_search: bool = True,
) -> dict[str, QuantizedWeight]:
    """Path → integer weight of every layer but ``keep_float``; ``int8_layers`` at 8 bits per channel
    whatever ``bits`` is (mixed precision); rounding weighted by the calibrated channel importance."""
    quantized = {}
    for path, module in layers.items():
        if path in keep_float:
            continue
        layer_bits, layer_group = (8, -1) if path in int8_layers else (bits, group_size)
        importance = stats.channel_ms.get(path) if stats is not None else None
        quantized[path] = quantize_weight(
            module.weight, layer_bits, layer_group, clip_search=clip_search, importance=importance
        )
    return quantized


def apply_quantized(
    unet: nn.Module,
    layers: dict[str, nn.Module],
    quantized: dict[str, QuantizedWeight],
    act_scales: dict[str, torch.Tensor] | None = None,
    bounds: list[int] | None = None,
    kernels: str = "reference",
) -> Any:
    """Swap each quantized layer of ``unet`` for a :class:`QuantizedLayer` (in place); with ``act_scales``
    (path → one scale per timestep group starting at ``bounds``) its input is int8 too, computed by an int8
    kernel as ``kernels`` says (:data:`.kernels.KERNEL_MODES`). Returns the clock's hook handle
    (``remove_quantized`` takes it off)."""
    clock = TimestepClock(bounds or [0]) if act_scales is not None else None
    for path, qw in quantized.items():
        parent_path, _, name = path.rpartition(".")
        parent = unet.get_submodule(parent_path) if parent_path else unet
        scales = act_scales.get(path) if act_scales is not None else None
        layer = QuantizedLayer(layers[path], qw, scales, clock if scales is not None else None, kernels)
        setattr(parent, name, layer)
    return clock.attach(unet) if clock is not None else None


def remove_quantized(unet: nn.Module, handle: Any = None) -> None:
    """Put the float layers back (the inverse of :func:`apply_quantized`)."""
    for path, module in list(unet.named_modules()):
        if isinstance(module, QuantizedLayer):
            parent_path, _, name = path.rpartition(".")
            setattr(unet.get_submodule(parent_path) if parent_path else unet, name, module.base)
    if handle is not None:
        handle.remove()
