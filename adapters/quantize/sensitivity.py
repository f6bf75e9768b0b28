"""Measured sensitivity: how far quantizing one layer alone moves the UNet's output on its own trajectories,
and which layers to keep at int8 under int4 with it (mixed precision).

Rules of thumb name the time embedding, the first and last convs and the shortcuts as fragile (Q-Diffusion,
TFMQ-DM); measuring finds them, and whatever else is fragile in a given UNet: each layer is quantized alone
(weights at the target bits, its input at int8 with the calibrated scales) and the UNet replayed on the
calibration calls; the relative squared error of its output is that layer's sensitivity.
"""

from __future__ import annotations

import torch
from torch import nn

from .calibrate import ActivationStats
from .model import apply_quantized, remove_quantized
from .weights import QuantizedWeight

__all__ = ["layer_sensitivity", "pick_int8_layers"]


def _outputs(unet: nn.Module, calls) -> list[torch.Tensor]:
    with torch.no_grad():
        return [unet(sample, t, **kwargs).sample for sample, t, kwargs in calls]


def layer_sensitivity(
    unet: nn.Module,
    layers: dict[str, nn.Module],
    quantized: dict[str, QuantizedWeight],
    stats: ActivationStats,
    activations: bool = True,
) -> dict[str, float]:
    """Path → relative squared error of the UNet's output over ``stats.calls`` with only that layer
    quantized (as ``quantized`` holds it, with its int8 input when ``activations``)."""
    if not stats.calls:
        raise ValueError("sensitivity needs the calibration's UNet calls (ActivationStats.calls)")
    reference = _outputs(unet, stats.calls)
    energy = sum(float(r.square().sum()) for r in reference)
    scales = stats.scales() if activations else {}
    sensitivity = {}
    for path, weight in quantized.items():
        act = {path: scales[path]} if path in scales else None
        handle = apply_quantized(unet, {path: layers[path]}, {path: weight}, act, stats.bounds)
        try:
            outputs = _outputs(unet, stats.calls)
        finally:
            remove_quantized(unet, handle)
        error = sum(float((o - r).square().sum()) for o, r in zip(outputs, reference, strict=True))
        sensitivity[path] = error / max(energy, 1e-30)
    return sensitivity


def pick_int8_layers(
    sensitivity: dict[str, float], quantized: dict[str, QuantizedWeight], budget_bytes: int
) -> list[str]:
    """The layers to raise from int4 to int8, most error removed per extra byte first, within
    ``budget_bytes`` (an int8 weight per channel costs ``numel`` bytes plus its scales). Layers already at
    int8 in ``quantized`` cost nothing more and are left out."""
    extra = {}
    for path, weight in quantized.items():
        taps = weight.shape[2] * weight.shape[3] if len(weight.shape) == 4 else 1
        int8_bytes = weight.q.numel() + weight.shape[0] * taps * 4  # values + a scale per channel (per tap)
        extra[path] = max(1, int8_bytes - weight.nbytes)
    chosen, spent = [], 0
    candidates = [p for p in sensitivity if quantized[p].bits < 8]
    for path in sorted(candidates, key=lambda p: sensitivity[p] / extra[p], reverse=True):
        if spent + extra[path] <= budget_bytes:
            chosen.append(path)
            spent += extra[path]
    return chosen
