"""A Linear / Conv2d on integer weights and, optionally, int8 activations with static calibrated scales
per timestep group: the numerics of the quantized UNet, on any CPU (the reference every faster kernel is
tested against).

Activations are quantized symmetric per tensor, ``round(x / s)`` clamped to [-128, 127], with ``s`` the
calibrated scale of the current timestep group, which a :class:`TimestepClock` on the UNet keeps. With int8
activations a layer can run on a real int8 kernel (:mod:`.kernels`) instead of this float reference.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .kernels import KERNEL_MODES, Int8Kernel, cpu_int8_support, faster
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


def _from_base(name: str) -> property:
    return property(lambda self: getattr(self.base, name), doc=f"The wrapped layer's ``{name}``.")


class QuantizedLayer(nn.Module):
    """``base`` (Linear or Conv2d) with its weight replaced by ``weight``'s integers; with ``act_scales``
    (one per timestep group) its input is quantized to int8 first, and ``kernels`` (see
    :data:`.kernels.KERNEL_MODES`) says whether the int8 kernel or the float reference computes it.

    The wrapped layer's shape attributes read through (an AttributeError where ``base`` has none): pipelines
    read them, e.g. SDXL's checks ``unet.add_embedding.linear_1.in_features`` before every call."""

    in_features = _from_base("in_features")
    out_features = _from_base("out_features")
    in_channels = _from_base("in_channels")
    out_channels = _from_base("out_channels")
    kernel_size = _from_base("kernel_size")
    stride = _from_base("stride")
    padding = _from_base("padding")
    dilation = _from_base("dilation")
    groups = _from_base("groups")
    padding_mode = _from_base("padding_mode")

    def __init__(
        self,
        base: nn.Linear | nn.Conv2d,
        weight: QuantizedWeight,
        act_scales: torch.Tensor | None = None,
        clock: TimestepClock | None = None,
        kernels: str = "reference",
    ):
        super().__init__()
        if isinstance(base, nn.Conv2d) and base.padding_mode != "zeros":
            raise ValueError(f"only zero-padded convs are supported, not padding_mode={base.padding_mode!r}")
        if act_scales is not None and clock is None:
            raise ValueError("activation scales per timestep group need a TimestepClock")
        if kernels not in KERNEL_MODES:
            raise ValueError(f"kernels must be one of {', '.join(KERNEL_MODES)}, not {kernels!r}")
        if kernels == "int8" and cpu_int8_support() is None:
            raise RuntimeError(
                "this CPU has no int8 kernels (oneDNN needs VNNI to compute them exactly): use kernels='auto'"
            )
        self.base, self.quantized, self.clock = base, weight, clock
        self._weight_q: torch.Tensor | None = None  # the dequantized weight, made when the reference runs
        self.register_buffer("act_scales", act_scales, persistent=False)
        use_kernel = act_scales is not None and kernels != "reference" and cpu_int8_support() is not None
        self.kernel = Int8Kernel(base, weight) if use_kernel else None
        self.mode = kernels
        self.kernel_wins: dict[torch.Size, bool] = {}  # auto: input shape -> the int8 kernel timed faster
        self.scale_values = [] if act_scales is None else [float(v) for v in act_scales.reshape(-1)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        wins = self.kernel_wins.get(x.shape)  # checked first: the per-call cost of a layer left in float
        if wins is not None and x.dtype == torch.float32:
            return self.kernel(x, self.scale_values[self.clock.group]) if wins else self.reference(x)
        if self.act_scales is None or self.mode == "reference":
            return self.reference(x, None if self.act_scales is None else self.act_scales[self.clock.group])
        runnable = self.kernel is not None and x.dtype == torch.float32
        if not runnable or (torch.is_grad_enabled() and x.requires_grad):
            if self.mode == "int8":
                raise RuntimeError(
                    "the int8 kernel runs fp32 inputs without gradients: use kernels='reference'"
                )
            return self.reference(x)  # auto: float activations where no kernel runs
        scale = self.scale_values[self.clock.group]
        if self.mode == "int8":
            return self.kernel(x, scale)
        wins = self.kernel_wins[x.shape] = faster(lambda: self.kernel(x, scale), lambda: self.reference(x))
        if wins:
            self._weight_q = None  # made again if a later shape needs the float path
        return self.kernel(x, scale) if wins else self.reference(x)

    def reference(self, x: torch.Tensor, scale: torch.Tensor | None = None) -> torch.Tensor:
        """The float path: fake-quantized input (when ``scale`` is given) through the dequantized weight."""
        if scale is not None:
            x = fake_quantize(x, scale.to(x.dtype))
        b = self.base
        if self._weight_q is None:
            self._weight_q = self.quantized.dequantize().to(b.weight.dtype)
        if isinstance(b, nn.Linear):
            return F.linear(x, self._weight_q, b.bias)
        return F.conv2d(x, self._weight_q, b.bias, b.stride, b.padding, b.dilation, b.groups)
