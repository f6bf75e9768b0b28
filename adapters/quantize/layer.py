"""A Linear / Conv2d on integer weights and, optionally, int8 activations with static calibrated scales
per timestep group: the numerics of the quantized UNet, on any CPU (the reference every faster kernel is
tested against).

Activations are quantized symmetric per tensor, ``round(x / s)`` clamped to [-128, 127], with ``s`` the
calibrated scale of the current timestep group, which a :class:`TimestepClock` on the UNet keeps.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .weights import QuantizedWeight

__all__ = ["QuantizedLayer", "TimestepClock", "fake_quantize"]


def fake_quantize(x: torch.Tensor, scale: torch.Tensor, levels: int = 127) -> torch.Tensor:
    """``x`` on the int8 grid of ``scale`` (symmetric, [-levels - 1, levels]), back in float."""
    return torch.clamp(torch.round(x / scale), -levels - 1, levels) * scale


class TimestepClock:
    """Which timestep group the UNet is in: a forward pre-hook on the UNet reads the call's timestep."""

    def __init__(self, bounds: list[int]):
        self.bounds, self.group = list(bounds), 0

    def attach(self, unet: nn.Module):
        def on_unet(module, args, kwargs):
            t = kwargs.get("timestep", args[1] if len(args) > 1 else None)
            value = float(t.reshape(-1)[0]) if torch.is_tensor(t) else float(t)
            self.group = max(i for i, start in enumerate(self.bounds) if value <= start or i == 0)

        return unet.register_forward_pre_hook(on_unet, with_kwargs=True)


class QuantizedLayer(nn.Module):
    """``base`` (Linear or Conv2d) with its weight replaced by ``weight``'s integers; with ``act_scales``
    (one per timestep group) its input is quantized to int8 first."""

    def __init__(
        self,
        base: nn.Linear | nn.Conv2d,
        weight: QuantizedWeight,
        act_scales: torch.Tensor | None = None,
        clock: TimestepClock | None = None,
    ):
        super().__init__()
        if isinstance(base, nn.Conv2d) and base.padding_mode != "zeros":
            raise ValueError(f"only zero-padded convs are supported, not padding_mode={base.padding_mode!r}")
        if act_scales is not None and clock is None:
            raise ValueError("activation scales per timestep group need a TimestepClock")
        self.base, self.quantized, self.clock = base, weight, clock
        self.register_buffer("weight_q", weight.dequantize().to(base.weight.dtype), persistent=False)
        self.register_buffer("act_scales", act_scales, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.act_scales is not None:
            x = fake_quantize(x, self.act_scales[self.clock.group].to(x.dtype))
        b = self.base
        if isinstance(b, nn.Linear):
            return F.linear(x, self.weight_q, b.bias)
        return F.conv2d(x, self.weight_q, b.bias, b.stride, b.padding, b.dilation, b.groups)
