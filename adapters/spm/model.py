"""``SPMNetwork``: SPM membranes attached to a UNet, switched on and off and scaled per sample.

Targets are every ``nn.Linear`` / ``nn.Conv2d`` inside the UNet's blocks of the configured types
(``Transformer2DModel`` by default), matched with ``isinstance`` — the official code matches class *names*,
which silently finds nothing when a diffusers version wraps those layers (``LoRACompatibleLinear``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from .config import SPMConfig
from .layer import SPMLayer

__all__ = ["SPMError", "SPMNetwork", "check_pipeline", "find_targets"]


class SPMError(ValueError):
    """An SPM cannot be trained, loaded or applied (wrong base model, corrupt file, bad concept...)."""


def check_pipeline(pipe: Any) -> None:
    """SPMs need a text-to-image pipeline with ``encode_prompt`` and a cross-attention UNet."""
    unet = getattr(pipe, "unet", None)
    if unet is None or not hasattr(pipe, "encode_prompt"):
        raise SPMError(
            f"unsupported base pipeline {type(pipe).__name__}: SPM needs a text-to-image pipeline with a "
            "cross-attention UNet and encode_prompt (e.g. StableDiffusionPipeline)"
        )
    if getattr(unet.config, "cross_attention_dim", None) is None:
        raise SPMError(f"unsupported base architecture {type(unet).__name__}: no cross-attention")


def _block_types(names: Sequence[str]) -> tuple[type, ...]:
    import diffusers

    types = []
    for name in names:
        cls = getattr(diffusers, name, None)
        if not isinstance(cls, type):
            raise SPMError(f"unknown target block type {name!r}: not a class exported by diffusers")
        types.append(cls)
    return tuple(types)


def find_targets(
    unet: nn.Module, target_blocks: Sequence[str] = ("Transformer2DModel",)
) -> dict[str, nn.Module]:
    """Module path → every Linear/Conv2d inside a block of ``target_blocks`` (the SPM's layers)."""
    types = _block_types(target_blocks)
    targets: dict[str, nn.Module] = {}
    for block_name, block in unet.named_modules():
        if not isinstance(block, types):
            continue
        wrapped: list[str] = []  # PEFT layers (a LoRA loaded before the SPM): their insides are not targets
        for name, module in block.named_modules():
            if any(name.startswith(f"{w}.") for w in wrapped):
                continue
            base = getattr(module, "base_layer", None)
            if isinstance(base, (nn.Linear, nn.Conv2d)):  # the layer a LoRA wraps keeps its own path
                wrapped.append(name)
                module = base
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                targets[f"{block_name}.{name}" if block_name else name] = module
    if not targets:
        raise SPMError(
            f"unsupported base architecture {type(unet).__name__}: it has no Linear/Conv2d inside any "
            f"{' / '.join(target_blocks)} block (SPM needs a UNet with cross-attention transformer blocks)"
        )
    return targets


class SPMNetwork(nn.Module):
    """Membranes on one UNet: several named SPMs, each on or off, scaled per sample.

    ``scales`` (set by facilitated transport) is ``None`` (every active SPM at 1), ``[n]`` (one value per
    active SPM for all samples) or ``[B, n]`` (per sample). ``disabled()`` turns every membrane off, which
    gives the frozen base model's prediction from the same UNet (as in training).
    """

    def __init__(self, unet: nn.Module, target_blocks: Sequence[str] = ("Transformer2DModel",)):
        super().__init__()
        targets = find_targets(unet, target_blocks)
        self.paths = list(targets)
        self.layers = nn.ModuleDict({_key(p): SPMLayer(m) for p, m in targets.items()})
        self.configs: dict[str, SPMConfig] = {}
        self.active: list[str] = []
        self._scales: torch.Tensor | None = None
        self._rank_scales: dict[tuple, torch.Tensor] = {}  # ``scales`` per rank layout and dtype, per call
        self.enabled = True
        self._merged: dict[str, torch.Tensor] = {}
        self._merged_scales: list[float] | None = None
        self._handles = [m.register_forward_hook(self._hook(_key(p))) for p, m in targets.items()]
        self._modules_by_path = targets  # plain dict: not registered as submodules of the network
        ref = next(iter(targets.values())).weight
        self._dtype, self._device = ref.dtype, ref.device

    @property
    def scales(self) -> torch.Tensor | None:
        return self._scales

    @scales.setter
    def scales(self, value: torch.Tensor | None) -> None:
        self._scales = value
        self._rank_scales = {}

    def _hook(self, key: str):
        def add_delta(module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor | None:
            if not self.enabled or not self.active or self._merged:
                return None
            scales = self._scales if self._scales is not None else output.new_ones(len(self.active))
            if scales.dim() == 2 and scales.shape[0] != output.shape[0]:
                raise RuntimeError(
                    f"SPM permeability was set for {scales.shape[0]} samples but the UNet runs "
                    f"{output.shape[0]}; set it for this batch (facilitated transport does) or clear it"
                )
            layer = self.layers[key]
            # The in-place path needs the membranes' dtype; under autocast (mixed-precision training) the
            # output is bf16/fp16 and the autograd path casts instead.
            if torch.is_grad_enabled() or not output.is_contiguous() or output.dtype != self._dtype:
                return output + layer(args[0], self.active, scales)
            layer.add_delta_(output, args[0], self.active, self._scales_per_rank(layer, output.dtype))
            return None

        return add_delta

    def _scales_per_rank(self, layer: SPMLayer, dtype: torch.dtype) -> torch.Tensor:
        """``scales`` with each SPM's value repeated over its rank rows, made once per call and layout."""
        ranks = layer.ranks(self.active)
        cached = self._rank_scales.get((tuple(self.active), ranks, dtype))
        if cached is None:
            scales = self._scales if self._scales is not None else torch.ones(len(self.active))
            scales = scales.to(device=self._device, dtype=dtype)
            if sum(ranks) != len(ranks):
                scales = scales.repeat_interleave(torch.tensor(ranks, device=self._device), dim=-1)
            cached = self._rank_scales[(tuple(self.active), ranks, dtype)] = scales
        return cached

    # -- adapters ---------------------------------------------------------------------------------------
    def add_adapter(self, name: str, config: SPMConfig) -> None:
        """A new, trainable SPM that starts as the identity."""
        self._check_new(name)
        for layer in self.layers.values():
            layer.add(name, config.rank, config.alpha, self._dtype, self._device)
        self.configs[name] = config
        self.active.append(name)

    def load_adapter(
        self, name: str, weights: dict[str, tuple[torch.Tensor, torch.Tensor, float]], config: SPMConfig
    ) -> None:
        """A saved SPM: ``weights`` maps each target module path to (down, up, alpha)."""
        self._check_new(name)
        missing = [p for p in self.paths if p not in weights]
        extra = [p for p in weights if p not in self._modules_by_path]
        if missing or extra:
            raise SPMError(
                f"SPM {name!r} was trained for another UNet: {len(extra)} of its layers are not in this UNet "
                f"(e.g. {extra[:2]}) and {len(missing)} of this UNet's targets have no weights "
                f"(e.g. {missing[:2]})"
            )
        try:
            for path, (down, up, alpha) in weights.items():
                self.layers[_key(path)].load(
                    name, down.to(self._device, self._dtype), up.to(self._device, self._dtype), alpha
                )
        except ValueError as err:
            for layer in self.layers.values():
                if name in layer.down:
                    layer.remove(name)
            raise SPMError(f"SPM {name!r} was trained for another UNet shape: {path}: {err}") from err
        self.configs[name] = config
        self.active.append(name)

    def remove_adapter(self, name: str) -> None:
        self.unmerge()
        for layer in self.layers.values():
            layer.remove(name)
        self.configs.pop(name)
        self.active = [n for n in self.active if n != name]
        self.scales = None

    def _check_new(self, name: str) -> None:
        if name in self.configs:
            raise SPMError(f"an SPM named {name!r} is already loaded")

    def adapter_weights(self, name: str) -> dict[str, tuple[torch.Tensor, torch.Tensor, float]]:
        """Module path → (down, up, alpha) of one SPM (detached, on CPU)."""
        out = {}
        for path in self.paths:
            layer = self.layers[_key(path)]
            down, up = layer.down[name].detach().cpu(), layer.up[name].detach().cpu()
            out[path] = (down, up, layer.scaling[name] * down.shape[0])
        return out

    def trainable_parameters(self, name: str) -> list[nn.Parameter]:
        return [p for layer in self.layers.values() for p in (layer.down[name], layer.up[name])]

    def parameter_count(self, name: str) -> int:
        return sum(p.numel() for p in self.trainable_parameters(name))

    # -- switching --------------------------------------------------------------------------------------
    @contextmanager
    def disabled(self) -> Iterator[None]:
        """Every membrane off: the frozen base model's prediction (merged deltas are taken out meanwhile)."""
        merged = self._merged_scales
        self.unmerge()
        previous, self.enabled = self.enabled, False
        try:
            yield
        finally:
            self.enabled = previous
            if merged is not None:
                self.merge(merged)

    @property
    def merged_scales(self) -> list[float] | None:
        """The per-SPM scales merged into the base weights now, or None."""
        return self._merged_scales

    def merge(self, scales: Sequence[float]) -> None:
        """Add Σ_i s_i·ΔW_i into the base weights (one value per active SPM): no per-step cost while merged.
        The original weights are kept and restored exactly by :meth:`unmerge`."""
        self.unmerge()
        with torch.no_grad():
            for path, module in self._modules_by_path.items():
                layer = self.layers[_key(path)]
                delta = sum(
                    float(s) * layer.delta_weight(n)
                    for n, s in zip(self.active, scales, strict=True)
                    if float(s) != 0.0
                )
                if isinstance(delta, torch.Tensor):
                    self._merged[path] = module.weight.detach().clone()
                    module.weight.add_(delta.to(module.weight.dtype))
            if not self._merged:
                self._merged[""] = torch.empty(0)  # marks "merged at scale 0": the hooks stay quiet
        self._merged_scales = [float(s) for s in scales]

    def unmerge(self) -> None:
        with torch.no_grad():
            for path, weight in self._merged.items():
                if path:
                    self._modules_by_path[path].weight.copy_(weight)
        self._merged = {}
        self._merged_scales = None

    def detach_hooks(self) -> None:
        """Remove the membranes from the UNet for good (the base weights are restored first)."""
        self.unmerge()
        for handle in self._handles:
            handle.remove()
        self._handles = []


def _key(path: str) -> str:
    return path.replace(".", "__")
