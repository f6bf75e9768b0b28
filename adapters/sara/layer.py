"""``SaraLayer``: a sparse update on one frozen ``nn.Linear`` / ``nn.Conv2d``, as a PEFT tuner layer.

Modelled on peft's ``SupertuningLayer`` (zero-initialised 1-D values at int32 flat indices, applied with
``scatter_add``), extended to Conv2d. Per adapter:

- ``sara_indices`` (buffer, int32): flat positions of the selected entries of the base weight;
- ``sara_delta`` (parameter, 1-D, zero at start): what is added there, so the effective weight is
  ``W0.flatten().scatter_add(0, indices, delta)``;
- ``sara_frozen`` (buffer, bool, same length): entries progressive re-selection froze (they stop training;
  their delta is kept).

Only the delta receives gradients (the base weight has ``requires_grad=False``), so gradients and AdamW state
exist for the selected entries alone. In training, :class:`_SparseUpdate` also keeps the *effective weight*
out of autograd's saved tensors: plain ``F.linear(x, W0 + scatter(Δ))`` would hold a full copy of every
adapted weight from forward to backward (the whole UNet's weights again); here the backward recomputes each
layer's weight and its dense gradient transiently, one layer at a time. (The official SaRA optimizer gets
the same effect by writing into the parameters' storage in place, swapping ``nn.Parameter`` objects for graph
nodes and pairing values with sources by position; here the optimizer simply holds the deltas.)
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from peft.tuners._buffer_dict import BufferDict
from peft.tuners.tuners_utils import BaseTunerLayer, check_adapters_to_merge
from torch import nn

__all__ = ["SUPPORTED_LAYERS", "SaraLayer"]

SUPPORTED_LAYERS = (nn.Linear, nn.Conv2d)


def _compose(base: nn.Module, indices: list[torch.Tensor], deltas: list[torch.Tensor]) -> torch.Tensor:
    weight = base.weight
    flat = weight.reshape(-1)
    for index, delta in zip(indices, deltas, strict=True):
        flat = flat.scatter_add(0, index.long(), delta.to(weight.dtype))
    return flat.view_as(weight)


def _apply(base: nn.Module, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    if isinstance(base, nn.Conv2d):
        return base._conv_forward(x, weight, base.bias)
    return F.linear(x, weight, base.bias)


class _SparseUpdate(torch.autograd.Function):
    """``base(x)`` with ``W0 + Σ scatter(Δ_i)`` as its weight, saving only ``x`` and the deltas for backward:
    the effective weight and the dense weight gradient exist during one layer's backward only."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, base: nn.Module, indices: list[torch.Tensor], *deltas: torch.Tensor):
        ctx.base, ctx.indices = base, indices
        ctx.save_for_backward(x, *deltas)
        with torch.no_grad():
            return _apply(base, x, _compose(base, indices, list(deltas)))

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        x, *deltas = ctx.saved_tensors
        base, wants_x = ctx.base, ctx.needs_input_grad[0]
        weight = _compose(base, ctx.indices, [d.detach() for d in deltas])
        grad_x, grad_weight = _input_and_weight_grads(base, x, weight, grad_out, wants_x)
        dense = grad_weight.reshape(-1)
        grad_deltas = [dense[index.long()].to(d.dtype) for index, d in zip(ctx.indices, deltas, strict=True)]
        return (grad_x, None, None, *grad_deltas)


def _input_and_weight_grads(
    base: nn.Module, x: torch.Tensor, weight: torch.Tensor, grad_out: torch.Tensor, wants_x: bool
) -> tuple[torch.Tensor | None, torch.Tensor]:
    """Gradients of ``base``'s op with ``weight`` w.r.t. its input and weight, without redoing the forward."""
    if isinstance(base, nn.Linear):
        go = grad_out.reshape(-1, grad_out.shape[-1])
        grad_weight = go.t().mm(x.reshape(-1, x.shape[-1]).to(go.dtype))
        return (grad_out.matmul(weight.to(grad_out.dtype)) if wants_x else None), grad_weight
    if base.padding_mode == "zeros" and not isinstance(base.padding, str):
        conv = {
            "stride": base.stride,
            "padding": base.padding,
            "dilation": base.dilation,
            "groups": base.groups,
        }
        grad_weight = torch.nn.grad.conv2d_weight(x, weight.shape, grad_out, **conv)
        grad_x = torch.nn.grad.conv2d_input(x.shape, weight, grad_out, **conv) if wants_x else None
        return grad_x, grad_weight
    with torch.enable_grad():  # other paddings: let autograd do it
        weight = weight.detach().requires_grad_(True)
        x = x.detach().requires_grad_(wants_x)
        grads = torch.autograd.grad(_apply(base, x, weight), (x, weight) if wants_x else (weight,), grad_out)
    return (grads[0] if wants_x else None), grads[-1]


class SaraLayer(nn.Module, BaseTunerLayer):
    """One base Linear/Conv2d with SaRA deltas, one per adapter name (deltas of several adapters add up)."""

    adapter_layer_names = ("sara_delta",)
    other_param_names = ("sara_indices", "sara_frozen")

    def __init__(self, base_layer: nn.Module, adapter_name: str, indices: torch.Tensor) -> None:
        super().__init__()
        if not isinstance(base_layer, SUPPORTED_LAYERS):
            raise TypeError(f"SaRA supports nn.Linear and nn.Conv2d, not {type(base_layer).__name__}")
        self.base_layer = base_layer
        self.sara_delta = nn.ParameterDict({})
        self.sara_indices = BufferDict(persistent=True)
        self.sara_frozen = BufferDict(persistent=True)
        self._disable_adapters = False
        self.merged_adapters: list[str] = []
        self._active_adapter = adapter_name
        self.update_layer(adapter_name, indices)

    @property
    def weight(self) -> torch.Tensor:
        return self.get_base_layer().weight

    def update_layer(self, adapter_name: str, indices: torch.Tensor) -> None:
        """A zero delta at ``indices`` (flat positions in the base weight) for ``adapter_name``."""
        weight = self.get_base_layer().weight
        indices = indices.to(device=weight.device, dtype=torch.int32).flatten()
        if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= weight.numel()):
            raise ValueError(f"SaRA indices out of range for a weight of {weight.numel()} entries")
        self.sara_indices[adapter_name] = indices
        self.sara_frozen[adapter_name] = torch.zeros(indices.numel(), dtype=torch.bool, device=weight.device)
        self.sara_delta[adapter_name] = nn.Parameter(
            torch.zeros(indices.numel(), dtype=torch.float32, device=weight.device)
        )
        self.set_adapter(self.active_adapters)

    # -- the delta ---------------------------------------------------------------------------------------
    def get_delta_weight(self, adapter_name: str) -> torch.Tensor:
        """The dense update ``ΔW`` (zeros outside the selected entries), shaped like the base weight."""
        weight = self.get_base_layer().weight
        flat = torch.zeros(weight.numel(), dtype=weight.dtype, device=weight.device)
        index = self.sara_indices[adapter_name].long()
        return flat.scatter_add(0, index, self.sara_delta[adapter_name].to(weight.dtype)).view_as(weight)

    def effective_weight(self, adapter_names: list[str]) -> torch.Tensor:
        weight = self.get_base_layer().weight
        flat = weight.reshape(-1)
        for name in adapter_names:
            flat = flat.scatter_add(0, self.sara_indices[name].long(), self.sara_delta[name].to(weight.dtype))
        return flat.view_as(weight)

    # -- merge -------------------------------------------------------------------------------------------
    def merge(self, safe_merge: bool = False, adapter_names: list[str] | None = None) -> None:
        """Add the deltas into the base weight in place (``safe_merge`` checks the result is finite first)."""
        adapter_names = check_adapters_to_merge(self, adapter_names)
        weight = self.get_base_layer().weight
        for name in adapter_names:
            if name not in self.sara_delta:
                continue
            index, values = self.sara_indices[name].long(), self.sara_delta[name].detach().to(weight.dtype)
            if safe_merge:
                merged = weight.data.reshape(-1).scatter_add(0, index, values)
                if not torch.isfinite(merged).all():
                    raise ValueError(f"the SaRA adapter {name!r} has non-finite values: not merged")
                weight.data.copy_(merged.view_as(weight))
            else:
                weight.data.view(-1).scatter_add_(0, index, values)
            self.merged_adapters.append(name)

    def unmerge(self) -> None:
        weight = self.get_base_layer().weight
        while self.merged_adapters:
            name = self.merged_adapters.pop()
            if name in self.sara_delta:
                values = self.sara_delta[name].detach().to(weight.dtype)
                weight.data.view(-1).scatter_add_(0, self.sara_indices[name].long(), -values)

    # -- forward -----------------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        base = self.get_base_layer()
        if self.disable_adapters:
            if self.merged:
                self.unmerge()
            return base(x, *args, **kwargs)
        active = [a for a in self.active_adapters if a in self.sara_delta]
        if self.merged or not active:
            return base(x, *args, **kwargs)
        deltas = [self.sara_delta[a] for a in active]
        if torch.is_grad_enabled() and any(d.requires_grad for d in deltas):
            return _SparseUpdate.apply(x, base, [self.sara_indices[a] for a in active], *deltas)
        return _apply(base, x, self.effective_weight(active))

    def __repr__(self) -> str:
        return "sara." + super().__repr__()
