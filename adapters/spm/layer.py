"""``SPMLayer``: the membranes on one Linear or Conv2d of the base model.

Each SPM ``i`` adds a rank-r delta ``ΔW_i = (alpha/r)·up_i·down_i``. With several SPMs the layer adds the
*sum of their separate deltas*, each scaled per sample:
``y = W0·x + Σ_i s_i[b]·(alpha_i/r_i)·up_i(down_i(x))``.
(The official code sums the A and B matrices of all SPMs into one adapter, which adds cross terms
``up_i·down_j``; keeping the deltas apart avoids them and lets SPMs of different ranks coexist.)

The layer never replaces the base module: a forward hook adds the delta (kohya-style patching), so the base
model's module tree, state dict and stock loaders are untouched. At inference (no autograd) the delta is added
into the base output in place (``addmm_`` / ``baddbmm_``), which keeps the
per-sample path within a few percent of the base model's time; training takes the out-of-place path.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["SPMLayer"]


class SPMLayer(nn.Module):
    """Rank-r membranes for one base ``nn.Linear`` / ``nn.Conv2d``, one pair of weights per SPM name."""

    def __init__(self, base: nn.Linear | nn.Conv2d):
        super().__init__()
        if isinstance(base, nn.Conv2d) and base.groups != 1:
            raise ValueError("SPM supports Conv2d layers with groups=1 only")
        self.is_conv = isinstance(base, nn.Conv2d)
        self.in_features = base.in_channels if self.is_conv else base.in_features
        self.out_features = base.out_channels if self.is_conv else base.out_features
        if self.is_conv:
            self.kernel_size, self.stride = base.kernel_size, base.stride
            self.padding, self.dilation = base.padding, base.dilation
        self.down = nn.ParameterDict()  # [r, in] or [r, in, k, k]
        self.up = nn.ParameterDict()  # [out, r] or [out, r, 1, 1]
        self.scaling: dict[str, float] = {}

    @property
    def names(self) -> list[str]:
        return list(self.down.keys())

    def down_shape(self, rank: int) -> tuple[int, ...]:
        return (rank, self.in_features, *self.kernel_size) if self.is_conv else (rank, self.in_features)

    def up_shape(self, rank: int) -> tuple[int, ...]:
        return (self.out_features, rank, 1, 1) if self.is_conv else (self.out_features, rank)

    def add(self, name: str, rank: int, alpha: float, dtype: torch.dtype, device: torch.device) -> None:
        """A fresh membrane that starts as the identity: down Kaiming-uniform (a=√5), up zero (as LoRA)."""
        rank = min(rank, self.in_features, self.out_features)
        down = torch.empty(self.down_shape(rank), dtype=dtype, device=device)
        nn.init.kaiming_uniform_(down, a=math.sqrt(5))
        self.down[name] = nn.Parameter(down)
        self.up[name] = nn.Parameter(torch.zeros(self.up_shape(rank), dtype=dtype, device=device))
        self.scaling[name] = alpha / rank

    def load(self, name: str, down: torch.Tensor, up: torch.Tensor, alpha: float) -> None:
        """Set a membrane from saved weights; shapes must fit this layer."""
        rank = down.shape[0]
        if tuple(down.shape) != self.down_shape(rank) or tuple(up.shape) != self.up_shape(rank):
            raise ValueError(
                f"weights of shape {tuple(down.shape)}/{tuple(up.shape)} do not fit a layer expecting "
                f"{self.down_shape(rank)}/{self.up_shape(rank)}"
            )
        self.down[name] = nn.Parameter(down.detach().clone(), requires_grad=False)
        self.up[name] = nn.Parameter(up.detach().clone(), requires_grad=False)
        self.scaling[name] = alpha / rank

    def remove(self, name: str) -> None:
        del self.down[name], self.up[name]
        self.scaling.pop(name, None)

    def ranks(self, names: list[str]) -> tuple[int, ...]:
        return tuple(self.down[n].shape[0] for n in names)

    def delta_weight(self, name: str) -> torch.Tensor:
        """ΔW of one membrane in the base layer's weight shape (for merging into the base weight)."""
        down, up = self.down[name], self.up[name]
        if self.is_conv:
            return torch.einsum("or,rikl->oikl", up.flatten(1), down) * self.scaling[name]
        return (up @ down) * self.scaling[name]

    def stacked(self, names: list[str]) -> tuple[torch.Tensor, torch.Tensor, float]:
        """``down`` of the SPMs ``names`` stacked to ``[R, in(, k, k)]``, their ``up`` to ``[out, R]`` and the
        common scaling (1 when the SPMs' scalings differ: then it is folded into ``up``). Views, no copy, for
        one SPM; never cached, so weights edited in place (training, ``.data``) are always current."""
        scalings = {self.scaling[n] for n in names}
        if len(names) == 1:
            return self.down[names[0]], self.up[names[0]].flatten(1), scalings.pop()
        down = torch.cat([self.down[n] for n in names])
        if len(scalings) == 1:
            return down, torch.cat([self.up[n].flatten(1) for n in names], dim=1), scalings.pop()
        return down, torch.cat([self.up[n].flatten(1) * self.scaling[n] for n in names], dim=1), 1.0

    @torch.no_grad()
    def add_delta_(
        self, output: torch.Tensor, x: torch.Tensor, names: list[str], scales: torch.Tensor
    ) -> None:
        """``output += Σ_i s_i·ΔW_i·x`` in place, without autograd. ``scales`` is ``[R]`` or ``[B, R]``, one
        value per rank row (see :meth:`ranks`), in ``output``'s dtype; ``output`` must be contiguous."""
        down, up, scaling = self.stacked(names)
        rows = down.shape[0]
        if self.is_conv:
            h = F.conv2d(x, down, stride=self.stride, padding=self.padding, dilation=self.dilation)
            batch = h.shape[0]
            h.mul_(scales.view(-1, rows, 1, 1))
            out = output.view(batch, self.out_features, -1)
            out.baddbmm_(up.expand(batch, -1, -1), h.view(batch, rows, -1), alpha=scaling)
            return
        h = F.linear(x, down)  # [..., R]
        if scales.dim() == 2:
            h.view(scales.shape[0], -1, rows).mul_(scales.unsqueeze(1))
        else:
            h.mul_(scales)
        output.view(-1, self.out_features).addmm_(h.view(-1, rows), up.T, alpha=scaling)

    def forward(self, x: torch.Tensor, names: list[str], scales: torch.Tensor) -> torch.Tensor:
        """Σ_i s_i·ΔW_i·x for the membranes ``names``; ``scales`` is ``[n]`` (every sample) or ``[B, n]``."""
        ranks = [self.down[n].shape[0] for n in names]
        if len(names) == 1:
            down, up = self.down[names[0]], self.up[names[0]] * self.scaling[names[0]]
        else:
            down = torch.cat([self.down[n] for n in names])
            up = torch.cat([self.up[n] * self.scaling[n] for n in names], dim=1)
        scales = scales.to(dtype=x.dtype, device=x.device)
        if sum(ranks) != len(names):
            scales = torch.repeat_interleave(scales, torch.tensor(ranks, device=scales.device), dim=-1)
        if self.is_conv:
            h = F.conv2d(x, down, stride=self.stride, padding=self.padding, dilation=self.dilation)
            shape = (-1, h.shape[1], 1, 1) if scales.dim() == 2 else (1, h.shape[1], 1, 1)
            return F.conv2d(h * scales.reshape(shape), up)
        h = F.linear(x, down)
        shape = (-1, *([1] * (h.dim() - 2)), h.shape[-1]) if scales.dim() == 2 else (h.shape[-1],)
        return F.linear(h * scales.reshape(shape), up)
