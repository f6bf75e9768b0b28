"""``SaraModel``: the SaRA tuner on any torch model (a diffusers UNet here), as a peft ``BaseTuner``.

Selection is global: every target weight's entries with |W0| < θ (one absolute threshold for the whole model,
as the paper), or the θ that selects ``budget`` entries. The training-time extras live here too, outside the
layers: the nuclear-norm penalty on the update (:func:`nuclear_norm`), progressive re-selection
(:func:`freeze_grown`), and the effective rank used to measure what the penalty does (:func:`effective_rank`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar

import torch
from peft.tuners.tuners_utils import BaseTuner
from torch import nn

from hubkit.layers import adaptable_layers, matches_modules

from .config import SaraAdapterConfig
from .layer import SUPPORTED_LAYERS, SaraLayer

__all__ = [
    "SaraError",
    "SaraModel",
    "candidate_layers",
    "effective_rank",
    "freeze_grown",
    "inject_sara",
    "nuclear_norm",
    "sara_layers",
    "threshold_for_budget",
]


class SaraError(ValueError):
    """A SaRA adapter cannot be built, trained or loaded here (bad selection, wrong base, corrupt file...)."""


def candidate_layers(model: nn.Module, config: SaraAdapterConfig) -> dict[str, nn.Module]:
    """Module path → base Linear/Conv2d that ``config`` targets."""
    return adaptable_layers(model, config.layer_types, config.target_modules, config.exclude_modules)


def threshold_for_budget(weights: list[torch.Tensor], budget: int) -> float:
    """The θ with #{|W| < θ} closest to ``budget`` without exceeding it, by bisection on counts (no
    concatenation of all weights: fine for a billion parameters)."""
    total = sum(w.numel() for w in weights)
    if budget >= total:
        raise SaraError(
            f"a budget of {budget:,} entries selects every one of the {total:,} target weights: that is full "
            "fine-tuning, not SaRA; lower the budget"
        )

    def count(theta: float) -> int:
        return sum(int((w.detach().abs() < theta).sum()) for w in weights)

    lo, hi = 0.0, max(float(w.detach().abs().max()) for w in weights) * 2 + 1e-12
    for _ in range(60):
        mid = (lo + hi) / 2
        if count(mid) > budget:
            hi = mid
        else:
            lo = mid
    return lo


def _select(layers: dict[str, nn.Module], threshold: float) -> dict[str, torch.Tensor]:
    return {
        path: torch.nonzero(m.weight.detach().abs().flatten() < threshold).flatten().to(torch.int32)
        for path, m in layers.items()
    }


class SaraModel(BaseTuner):
    """SaRA deltas injected into ``model`` in place (each targeted Linear/Conv2d becomes a ``SaraLayer``).

    The selection is computed on the base weights before injection and recorded in the config (resolved
    threshold, number of selected entries). ``indices`` (module path → flat int32 positions) skips the
    selection: loading a saved adapter uses its stored indices, so it never depends on tie-breaks.
    """

    prefix = "sara_"
    tuner_layer_cls = SaraLayer
    target_module_mapping: ClassVar[dict[str, list[str]]] = {}

    def __init__(
        self,
        model: nn.Module,
        config: SaraAdapterConfig,
        adapter_name: str = "default",
        indices: dict[str, torch.Tensor] | None = None,
    ) -> None:
        self._indices = indices if indices is not None else self._selection(model, config)
        config.target_modules = sorted(self._indices)
        config.selected = sum(int(i.numel()) for i in self._indices.values())
        super().__init__(model, config, adapter_name)
        config.target_modules = sorted(self._indices)  # exact paths (peft shortens long lists to suffixes)

    @staticmethod
    def _selection(model: nn.Module, config: SaraAdapterConfig) -> dict[str, torch.Tensor]:
        layers = candidate_layers(model, config)
        if not layers:
            raise SaraError(
                f"no {' / '.join(config.layer_types)} layer of {type(model).__name__} matches the targets "
                f"{config.target_modules!r}"
            )
        total = sum(m.weight.numel() for m in layers.values())
        if config.budget:
            config.threshold = threshold_for_budget([m.weight for m in layers.values()], config.budget)
        chosen = {p: i for p, i in _select(layers, config.threshold).items() if i.numel()}
        selected = sum(int(i.numel()) for i in chosen.values())
        if selected == 0:
            smallest = min(float(m.weight.detach().abs().min()) for m in layers.values())
            raise SaraError(
                f"threshold {config.threshold:g} selects no weight (the smallest |W| of the {len(layers)} "
                f"target layers is {smallest:.3g}): raise it or give a budget"
            )
        if selected == total:
            raise SaraError(
                f"threshold {config.threshold:g} selects all {total:,} target weights: that is full "
                "fine-tuning, not SaRA; lower it or give a budget"
            )
        return chosen

    def _prepare_adapter_config(
        self, peft_config: SaraAdapterConfig, model_config: dict
    ) -> SaraAdapterConfig:
        return peft_config

    def _check_new_adapter_config(self, config: SaraAdapterConfig) -> None:
        if len(self.peft_config) > 1 and config.modules_to_save:
            raise SaraError("modules_to_save is not supported with several SaRA adapters")

    @staticmethod
    def _check_target_module_exists(config: SaraAdapterConfig, key: str) -> bool:
        return matches_modules(config.target_modules, key)

    def _create_and_replace(
        self,
        peft_config: SaraAdapterConfig,
        adapter_name: str,
        target: nn.Module,
        target_name: str,
        parent: nn.Module,
        current_key: str,
        **kwargs,
    ) -> None:
        indices = self._indices.get(current_key)
        if indices is None:
            return
        if isinstance(target, SaraLayer):
            target.update_layer(adapter_name, indices)
            return
        if not isinstance(target, SUPPORTED_LAYERS):
            raise SaraError(f"{current_key} is a {type(target).__name__}: SaRA adapts Linear and Conv2d only")
        new = SaraLayer(target, adapter_name, indices)
        if adapter_name not in self.active_adapters:
            new.requires_grad_(False)
        self._replace_module(parent, target_name, new, target)

    def _mark_only_adapters_as_trainable(self, model: nn.Module) -> None:
        for name, p in model.named_parameters():
            p.requires_grad_(self.prefix in name)

    def delta_parameters(self, adapter_name: str = "default") -> list[nn.Parameter]:
        return [layer.sara_delta[adapter_name] for _, layer in sara_layers(self.model, adapter_name)]


def inject_sara(
    model: nn.Module,
    config: SaraAdapterConfig,
    adapter_name: str = "default",
    indices: dict[str, torch.Tensor] | None = None,
) -> SaraModel:
    """Put a SaRA adapter on ``model`` (in place); the returned tuner merges, unloads and saves it."""
    if any(isinstance(m, SaraLayer) and adapter_name in m.sara_delta for m in model.modules()):
        raise SaraError(f"the model already has a SaRA adapter named {adapter_name!r}")
    return SaraModel(model, config, adapter_name, indices=indices)


def sara_layers(model: nn.Module, adapter_name: str = "default") -> Iterator[tuple[str, SaraLayer]]:
    for path, module in model.named_modules():
        if isinstance(module, SaraLayer) and adapter_name in module.sara_delta:
            yield path.removeprefix("model."), module


def _as_matrix(layer: SaraLayer, adapter_name: str) -> torch.Tensor:
    delta = layer.get_delta_weight(adapter_name)
    return delta.reshape(delta.shape[0], -1)  # a conv kernel as (out, in·kh·kw)


def eligible_for_rank(model: nn.Module, min_dim: int, adapter_name: str = "default") -> list[SaraLayer]:
    """Layers whose update, as a matrix, has both sides ≥ ``min_dim`` (the paper: Linear, min side > 64)."""
    out = []
    for _, layer in sara_layers(model, adapter_name):
        w = layer.get_base_layer().weight
        if w.shape[0] >= min_dim and w[0].numel() >= min_dim:
            out.append(layer)
    return out


def nuclear_norm(
    layers: list[SaraLayer], count: int, generator: torch.Generator, adapter_name: str = "default"
) -> torch.Tensor:
    """Σ ‖ΔW‖_* over ``count`` layers drawn from ``layers`` (all of them when ``count`` is 0), on the learned
    update ΔW itself: the gradient reaches the deltas the optimizer trains. (The official code takes the norm
    of parameters the optimizer no longer reads, so on its default path the penalty does nothing.)"""
    if not layers:
        raise SaraError("no layer is eligible for the nuclear-norm penalty (lower rank_min_dim)")
    if count and count < len(layers):
        picked = torch.randperm(len(layers), generator=generator)[:count].tolist()
        layers = [layers[i] for i in picked]
    return sum(torch.linalg.svdvals(_as_matrix(layer, adapter_name).float()).sum() for layer in layers)


@torch.no_grad()
def effective_rank(layer: SaraLayer, adapter_name: str = "default", energy: float = 0.9) -> tuple[float, int]:
    """(entropy effective rank exp(H(σ/Σσ)) [Roy & Vetterli 2007], singular values holding ``energy`` of
    Σσ²) of a layer's update; (0, 0) for a zero update."""
    s = torch.linalg.svdvals(_as_matrix(layer, adapter_name).float())
    if float(s.sum()) == 0:
        return 0.0, 0
    p = s / s.sum()
    entropy = -(p[p > 0] * p[p > 0].log()).sum()
    cumulative = (s**2).cumsum(0) / (s**2).sum()
    return float(entropy.exp()), int((cumulative < energy).sum()) + 1


@torch.no_grad()
def freeze_grown(model: nn.Module, threshold: float, adapter_name: str = "default") -> int:
    """Progressive re-selection: entries whose weight W0 + Δ has grown to |·| ≥ θ became "effective" and
    freeze at their current value (they stay in the adapter); the rest keep training. Returns the count."""
    frozen = 0
    for _, layer in sara_layers(model, adapter_name):
        w0 = layer.get_base_layer().weight.reshape(-1)
        index = layer.sara_indices[adapter_name].long()
        grown = (w0[index].float() + layer.sara_delta[adapter_name]).abs() >= threshold
        layer.sara_frozen[adapter_name] |= grown
        frozen += int(grown.sum())
    return frozen


def merged_copy(model: nn.Module, adapter_name: str = "default") -> nn.Module:
    """A copy of ``model`` with the adapter's update merged and the SaRA layers gone (a plain model that
    saves with its own ``save_pretrained``); ``model`` itself is untouched."""
    import copy

    clone = copy.deepcopy(model)
    for path, layer in list(sara_layers(clone, adapter_name)):
        layer.merge(safe_merge=True, adapter_names=[adapter_name])
        parent_path, _, name = path.rpartition(".")
        parent = clone.get_submodule(parent_path) if parent_path else clone
        setattr(parent, name, layer.get_base_layer())
    if hasattr(clone, "peft_config"):
        del clone.peft_config
    return clone
