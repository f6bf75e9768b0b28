"""Real int8 execution of a quantized layer on CPU: oneDNN's u8s8 convolution and matmul, the kernels that
``torch.compile`` with PyTorch's X86 inductor quantizer lowers to, called directly on plain integer tensors
(no deprecated quantized-tensor types, no compile step).

Activations go in as uint8 with zero point 128, the same grid as the reference's symmetric int8
(``round(x / s)`` in [-128, 127]); weights as int8, one scale per output channel, which is what the kernels
take. Int8 per-channel weights (convs share one scale across taps, see :mod:`.weights`) are used as they
are, so the kernel computes what the reference computes; int4 groups are re-gridded to int8 per output
channel from their dequantized values, a rounding step 16x finer than their own.

Whether int8 is faster depends on the CPU (VNNI / AMX or plain AVX2) and on the layer's shape (a oneDNN call
costs ~50-200 us however small the layer), so the choice is made at run time: no kernel on CPUs without
VNNI (their u8s8 path saturates), and in ``"auto"`` mode each layer times the int8 kernel against a float
matmul on its dequantized weight on its first input of a shape and keeps the faster (that first call is the
preparation cost). A layer left in float keeps its activations float: weight-only there, closer to the fp32
model than W8A8.
"""

from __future__ import annotations

import functools
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from .weights import QuantizedWeight

__all__ = ["KERNEL_MODES", "Int8Kernel", "cpu_int8_support", "faster"]

KERNEL_MODES = ("auto", "int8", "reference")
"""auto: int8 kernels where the CPU has them and they time faster, float (weight-only) elsewhere; int8: the
kernel wherever the CPU has one; reference: the float path that fake-quantizes activations (the artifact's
W8A8 numerics everywhere, no speed-up)."""

_ZERO_POINT = 128


@functools.cache
def _has_vnni() -> bool:
    """Whether the CPU has VNNI (AVX512-VNNI, AVX-VNNI or AMX). Without it oneDNN's u8s8 kernels add pairs of
    uint8 x int8 products in int16 (``vpmaddubsw``), which saturates on full-range weights: on an AVX2-only
    CPU the int8 path drifted to 18 dB PSNR against the reference's 40+. Unknown (no /proc/cpuinfo): trust
    an AVX-512 capability only."""
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return torch.backends.cpu.get_cpu_capability().startswith("AVX512")
    return bool(flags & {"avx512_vnni", "avx_vnni", "amx_int8"})


def cpu_int8_support() -> str | None:
    """The CPU's vector capability when oneDNN's int8 kernels run here exactly (``"AVX512"``… with VNNI),
    else None: kernels that saturate would change the artifact's numerics, so the float path runs."""
    capability = torch.backends.cpu.get_cpu_capability()
    usable = (
        capability not in ("DEFAULT", "NO AVX")
        and _has_vnni()
        and torch.backends.mkldnn.is_available()
        and hasattr(torch.ops.onednn, "qconv2d_pointwise")
        and hasattr(torch.ops.onednn, "qlinear_pointwise")
    )
    return capability if usable else None


def _per_channel_int8(weight: QuantizedWeight) -> tuple[torch.Tensor, torch.Tensor]:
    """(int8 weight in the float weight's shape, fp32 scale per output channel)."""
    per_channel = weight.scale.flatten(1)
    if weight.bits == 8 and weight.group_size == -1 and bool((per_channel == per_channel[:, :1]).all()):
        return weight.q.reshape(weight.shape), per_channel[:, 0].float().contiguous()
    w = weight.dequantize()
    scale = w.abs().flatten(1).amax(1).clamp_min(1e-12) / 127
    view = scale.reshape(-1, *([1] * (w.ndim - 1)))
    return torch.clamp(torch.round(w / view), -127, 127).to(torch.int8), scale


class Int8Kernel:
    """One Linear / Conv2d on oneDNN's u8s8 kernel; called with the float input and its activation scale,
    returns the float output (bias added)."""

    def __init__(self, base: nn.Linear | nn.Conv2d, weight: QuantizedWeight):
        q, self.weight_scale = _per_channel_int8(weight)
        self.zero_points = torch.zeros(q.shape[0], dtype=torch.long)
        self.bias = None if base.bias is None else base.bias.detach().float()
        self.conv = isinstance(base, nn.Conv2d)
        if self.conv:
            self.geometry = (list(base.stride), list(base.padding), list(base.dilation), base.groups)
            self.packed = torch.ops.onednn.qconv_prepack(
                q.contiguous(memory_format=torch.channels_last),
                self.weight_scale,
                1.0,
                0,
                *self.geometry,
                None,
            )
        else:
            self.packed = torch.ops.onednn.qlinear_prepack(q.contiguous(), None)

    def __call__(self, x: torch.Tensor, x_scale: float) -> torch.Tensor:
        qx = _to_uint8(x, x_scale)
        if self.conv:
            return torch.ops.onednn.qconv2d_pointwise(
                qx, x_scale, _ZERO_POINT, self.packed, self.weight_scale, self.zero_points, self.bias,
                *self.geometry, 1.0, 0, torch.float32, "none", [], "",
            )  # fmt: skip
        return torch.ops.onednn.qlinear_pointwise(
            qx, x_scale, _ZERO_POINT, self.packed, self.weight_scale, self.zero_points, self.bias,
            1.0, 0, torch.float32, "none", [], "",
        )  # fmt: skip


def _to_uint8(x: torch.Tensor, scale: float) -> torch.Tensor:
    """``round(x / scale) + 128`` clamped to uint8. One fused op where torch still has it (2x faster than
    the four-op formula it falls back to); quantized tensors are deprecated in torch: only the bytes are
    kept."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return torch.quantize_per_tensor(x, scale, _ZERO_POINT, torch.quint8).int_repr()
    except (AttributeError, RuntimeError):
        return torch.round(x * (1.0 / scale)).add_(_ZERO_POINT).clamp_(0, 255).to(torch.uint8)


def faster(
    first: Callable[[], torch.Tensor],
    second: Callable[[], torch.Tensor],
    repeats: int = 3,
    margin: float = 1.1,
) -> bool:
    """Whether ``first`` runs at least ``margin`` times faster than ``second`` (best of ``repeats`` timed
    calls each, after a warm-up call of each). The margin covers timing noise and what a layer's timing
    misses: the int8 conv hands the next op a channels-last tensor."""
    first(), second()
    best = [float("inf"), float("inf")]
    for _ in range(repeats):
        for i, fn in enumerate((first, second)):
            start = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - start)
    return best[0] * margin < best[1]
