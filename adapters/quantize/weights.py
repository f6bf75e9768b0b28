"""Integer weights of a Linear / Conv2d in SDNQ's geometry, so that stock diffusers (its ``sdnq`` backend)
loads them: symmetric int8 or int4, one scale per output channel (per kernel tap for convs, as SDNQ) or per
group of ``group_size`` input channels (at each kernel tap for convs). An int8 conv per channel shares one
scale across its taps (written once per tap, as SDNQ reads it): that is the layout the CPU's int8 conv
kernels execute, so the fast path computes exactly what the file holds.

Round-to-nearest from the absolute maximum (what every stock backend does) wastes int4's 16 levels on rare
outliers; :func:`quantize_weight` instead picks, for every scale group, the clipping ratio with the least
squared error (a grid search, as in AWQ's clip search and llama.cpp's k-quants) — optionally weighted by the
calibrated mean square of each input channel, so channels that carry large activations are rounded best.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["QuantizeError", "QuantizedWeight", "pack_int4", "quantize_weight", "unpack_int4"]

LEVELS = {8: 127, 4: 7}  # symmetric: int8 [-128, 127] and int4 [-8, 7], scale from the positive side
LOWEST = {8: -128, 4: -8}
CLIP_GRID = tuple(1.0 - 0.025 * i for i in range(29))  # clipping ratios 1.0 .. 0.3


class QuantizeError(ValueError):
    """A UNet cannot be quantized, or a quantized one loaded, here (wrong base, bad settings, bad file...)."""


@dataclass
class QuantizedWeight:
    """``q`` (int8 tensor; int4 values in [-8, 7]) in SDNQ's quantized shape and its fp32 ``scale``:
    per channel ``q`` has the weight's shape and ``scale`` (Cout, 1[, kh, kw]); grouped, ``q`` is
    (Cout, Cin/g, g[, kh, kw]) and ``scale`` (Cout, Cin/g, 1[, kh, kw])."""

    q: torch.Tensor
    scale: torch.Tensor
    bits: int
    group_size: int  # -1: per output channel (per tap)
    shape: tuple[int, ...]  # the float weight's shape

    def dequantize(self) -> torch.Tensor:
        return (self.q.float() * self.scale).reshape(self.shape)

    @property
    def nbytes(self) -> int:
        """Bytes on disk: packed values (int4: two per byte) plus fp32 scales."""
        return self.q.numel() * self.bits // 8 + self.scale.numel() * 4


def group_size_for(in_channels: int, group_size: int) -> int:
    """The group size SDNQ uses for a layer: per channel (-1) when the groups would not split the input
    channels evenly or would hold them all."""
    if group_size <= 0 or group_size >= in_channels or in_channels % group_size:
        return -1
    return group_size


def _grouped(weight: torch.Tensor, group_size: int) -> torch.Tensor:
    """(Cout, G, g[, kh, kw]) view with the reduction axis at 2 (per channel: G = 1, g = Cin)."""
    cin = weight.shape[1]
    g = cin if group_size == -1 else group_size
    return weight.unflatten(1, (cin // g, g))


def quantize_weight(
    weight: torch.Tensor,
    bits: int,
    group_size: int = -1,
    *,
    clip_search: bool = True,
    importance: torch.Tensor | None = None,
) -> QuantizedWeight:
    """Symmetric ``bits``-bit quantization of a Linear (Cout, Cin) or Conv2d (Cout, Cin, kh, kw) weight.

    ``clip_search``: per scale group, the clipping ratio of the absolute maximum (1.0 … 0.3) with the least
    (``importance``-weighted) squared rounding error; off, it is round-to-nearest from the absolute maximum.
    ``importance``: per input channel (Cin,), e.g. the calibrated mean square of that channel's input.
    """
    if bits not in LEVELS:
        raise ValueError(f"weights can be int8 or int4, not {bits}-bit")
    if weight.ndim not in (2, 4):
        raise ValueError(f"a Linear or Conv2d weight is 2-D or 4-D, got shape {tuple(weight.shape)}")
    group_size = group_size_for(weight.shape[1], group_size)
    if weight.ndim == 4 and bits == 8 and group_size == -1:
        return _conv_one_scale(weight, clip_search, importance)
    w = _grouped(weight.detach().float(), group_size)  # (Cout, G, g, ...)
    levels, lowest = LEVELS[bits], LOWEST[bits]
    amax = w.abs().amax(dim=2, keepdim=True).clamp_min(1e-12)
    weights_err = None
    if importance is not None:
        imp = importance.float().clamp_min(0).reshape(-1)
        if imp.numel() != weight.shape[1]:
            raise ValueError(f"importance has {imp.numel()} entries for {weight.shape[1]} input channels")
        shape = [1] * w.ndim
        shape[1], shape[2] = w.shape[1], w.shape[2]
        weights_err = (imp / imp.mean().clamp_min(1e-12)).reshape(shape)
    best_scale = amax / levels
    if clip_search:
        best_err = None
        for ratio in CLIP_GRID:
            scale = amax * ratio / levels
            err = (torch.clamp(torch.round(w / scale), lowest, levels) * scale - w).square()
            if weights_err is not None:
                err = err * weights_err
            err = err.sum(dim=2, keepdim=True)
            if best_err is None:
                best_err, best_scale = err, scale
            else:
                better = err < best_err
                best_err = torch.where(better, err, best_err)
                best_scale = torch.where(better, scale, best_scale)
    q = torch.clamp(torch.round(w / best_scale), lowest, levels).to(torch.int8)
    if group_size == -1:  # SDNQ's per-channel layout: no group axis
        q, best_scale = q.flatten(1, 2), best_scale.flatten(1, 2)
    return QuantizedWeight(q.contiguous(), best_scale.contiguous(), bits, group_size, tuple(weight.shape))


def _conv_one_scale(
    weight: torch.Tensor, clip_search: bool, importance: torch.Tensor | None
) -> QuantizedWeight:
    """Int8 conv, one scale per output channel over all taps: quantized as the (Cout, Cin·kh·kw) matrix it
    is to the kernel, the scale then repeated per tap in SDNQ's (Cout, 1, kh, kw)."""
    cout, cin, kh, kw = weight.shape
    taps = kh * kw
    flat_importance = None
    if importance is not None:
        if importance.numel() != cin:
            raise ValueError(f"importance has {importance.numel()} entries for {cin} input channels")
        flat_importance = importance.reshape(-1).repeat_interleave(taps)
    matrix = quantize_weight(
        weight.reshape(cout, -1), 8, -1, clip_search=clip_search, importance=flat_importance
    )
    scale = matrix.scale.reshape(cout, 1, 1, 1).expand(cout, 1, kh, kw).contiguous()
    return QuantizedWeight(matrix.q.reshape(weight.shape), scale, 8, -1, tuple(weight.shape))


def pack_int4(q: torch.Tensor) -> torch.Tensor:
    """SDNQ's int4 storage: values + 8 as unsigned nibbles, row-major, two per byte (low nibble first)."""
    if q.numel() % 2:
        raise ValueError("int4 packing needs an even number of values")
    u = (q.to(torch.int16) + 8).to(torch.uint8).reshape(-1, 2)
    return (u[:, 0] | (u[:, 1] << 4)).contiguous()


def unpack_int4(packed: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """Inverse of :func:`pack_int4` into int8 values of ``shape``."""
    low, high = packed & 0x0F, packed >> 4
    return torch.stack([low, high], dim=1).reshape(shape).to(torch.int16).sub(8).to(torch.int8)
