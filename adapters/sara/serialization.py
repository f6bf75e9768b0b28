"""SaRA files: ``adapter_config.json`` + ``adapter_model.safetensors`` (indices and values, no pickle), and
optionally the merged UNet (``unet/``, diffusers layout) that stock ``from_pretrained`` loads.

Keys follow peft's layout: ``base_model.model.<module>.sara_indices`` (int32 flat positions in the base
weight) and ``base_model.model.<module>.sara_delta`` (fp32 values added there). Storing the indices makes a
file independent of how the selection broke ties; the metadata records the threshold and a digest of the base
weights the indices were selected on (the official SaRA checkpoints are index-keyed pickles that only load on
the bit-identical base model).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hubkit.files import atomic_file

from .config import PEFT_TYPE, SaraAdapterConfig
from .model import SaraError, sara_layers

__all__ = [
    "CONFIG_NAME",
    "HUBKIT_JSON",
    "MERGED_UNET",
    "WEIGHT_NAME",
    "SaraFile",
    "base_digest",
    "read_sara",
    "sara_state_dict",
    "save_sara",
]

WEIGHT_NAME = "adapter_model.safetensors"
CONFIG_NAME = "adapter_config.json"
HUBKIT_JSON = "hubkit.json"
MERGED_UNET = "unet"
_PREFIX = "base_model.model."
logger = logging.getLogger(__name__)


def base_digest(model: nn.Module, paths: list[str]) -> str:
    """sha256 over the base weights of ``paths`` (shapes and bytes, path order): the base a delta is for."""
    modules = dict(model.named_modules())
    h = hashlib.sha256()
    for path in sorted(paths):
        module = modules[path]
        weight = module.get_base_layer().weight if hasattr(module, "get_base_layer") else module.weight
        h.update(f"{path}:{tuple(weight.shape)};".encode())
        h.update(weight.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def sara_state_dict(model: nn.Module, adapter_name: str = "default") -> dict[str, torch.Tensor]:
    out = {}
    for path, layer in sara_layers(model, adapter_name):
        out[f"{_PREFIX}{path}.sara_indices"] = (
            layer.sara_indices[adapter_name].to(torch.int32).cpu().contiguous()
        )
        out[f"{_PREFIX}{path}.sara_delta"] = (
            layer.sara_delta[adapter_name].detach().float().cpu().contiguous()
        )
    return out


def save_sara(
    folder: Path,
    model: nn.Module,
    config: SaraAdapterConfig,
    adapter_name: str = "default",
    *,
    digest: str = "",
    hubkit_json: dict[str, Any] | None = None,
) -> None:
    """Write the adapter (and ``hubkit.json``) into ``folder``; the caller makes the write atomic."""
    from safetensors.torch import save_file

    tensors = sara_state_dict(model, adapter_name)
    if not tensors:
        raise SaraError(f"the model has no SaRA adapter named {adapter_name!r} to save")
    metadata = {
        "format": "pt",
        "peft_type": PEFT_TYPE,
        "threshold": repr(config.threshold),
        "base_digest": digest,
    }
    atomic_file(folder / WEIGHT_NAME, lambda path: save_file(tensors, path, metadata=metadata))
    (folder / CONFIG_NAME).write_text(json.dumps(_config_dict(config), indent=2, sort_keys=True) + "\n")
    if hubkit_json is not None:
        (folder / HUBKIT_JSON).write_text(json.dumps(hubkit_json, indent=2, sort_keys=True) + "\n")


def _config_dict(config: SaraAdapterConfig) -> dict[str, Any]:
    data = asdict(config)
    data["peft_type"] = PEFT_TYPE
    if isinstance(data.get("target_modules"), set):
        data["target_modules"] = sorted(data["target_modules"])
    return {k: v for k, v in data.items() if not isinstance(v, (set, type(None))) or k == "budget"}


class SaraFile:
    """A read SaRA adapter: its config, per-module (indices, delta), and the base digest it was made on."""

    def __init__(
        self, config: SaraAdapterConfig, weights: dict[str, tuple[torch.Tensor, torch.Tensor]], digest: str
    ):
        self.config, self.weights, self.digest = config, weights, digest

    @property
    def parameters(self) -> int:
        return sum(int(d.numel()) for _, d in self.weights.values())


def read_sara(folder: str | Path) -> SaraFile:
    """Read and check a SaRA folder: every problem (missing or corrupt file, wrong type, mismatched tensors)
    raises :class:`SaraError` naming it."""
    from safetensors import SafetensorError, safe_open

    folder = Path(folder)
    config_file, weight_file = folder / CONFIG_NAME, folder / WEIGHT_NAME
    for file in (config_file, weight_file):
        if not file.is_file():
            raise SaraError(f"{folder} is not a SaRA adapter: {file.name} is missing")
    try:
        data = json.loads(config_file.read_text())
    except (OSError, ValueError) as err:
        raise SaraError(f"{config_file} is corrupt: {err}") from err
    if not isinstance(data, dict) or data.get("peft_type") != PEFT_TYPE:
        found = data.get("peft_type") if isinstance(data, dict) else type(data).__name__
        raise SaraError(
            f"{config_file} is not a SaRA adapter config (peft_type {found!r}, not {PEFT_TYPE!r})"
        )
    known = {f.name for f in fields(SaraAdapterConfig)} - {"peft_type"}
    try:
        config = SaraAdapterConfig(**{k: v for k, v in data.items() if k in known})
    except (TypeError, ValueError) as err:
        raise SaraError(f"{config_file} is invalid: {err}") from err
    try:
        with safe_open(str(weight_file), framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is no dict)
    except (SafetensorError, OSError, ValueError) as err:
        raise SaraError(f"{weight_file} is corrupt or not a safetensors file: {err}") from err
    weights: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for key in tensors:
        if not key.startswith(_PREFIX) or not key.endswith((".sara_indices", ".sara_delta")):
            raise SaraError(f"{weight_file}: unexpected tensor {key!r} in a SaRA adapter")
    for key in tensors:
        if key.endswith(".sara_indices"):
            path = key[len(_PREFIX) : -len(".sara_indices")]
            indices, delta = tensors[key], tensors.get(f"{_PREFIX}{path}.sara_delta")
            if (
                delta is None
                or indices.dtype != torch.int32
                or indices.ndim != 1
                or delta.shape != indices.shape
            ):
                raise SaraError(f"{weight_file}: {path} needs int32 indices and a delta of the same length")
            weights[path] = (indices, delta.float())
    if len(weights) * 2 != len(tensors) or not weights:
        raise SaraError(f"{weight_file}: every sara_delta needs its sara_indices (and there must be some)")
    return SaraFile(config, weights, metadata.get("base_digest", ""))


def check_fits(file: SaraFile, model: nn.Module, source: str) -> None:
    """The adapter's layers exist in ``model`` and its indices fit their weights: else a wrong base model."""
    modules = dict(model.named_modules())
    for path, (indices, _) in file.weights.items():
        module = modules.get(path)
        if module is not None and hasattr(module, "get_base_layer"):
            module = module.get_base_layer()
        if not isinstance(module, (nn.Linear, nn.Conv2d)):
            raise SaraError(
                f"{source} does not fit this base model: it adapts {path}, which the UNet "
                f"({type(model).__name__}) has no Linear/Conv2d at"
            )
        if indices.numel() and int(indices.max()) >= module.weight.numel():
            raise SaraError(
                f"{source} does not fit this base model: {path} has {module.weight.numel()} weights, the "
                f"adapter indexes up to {int(indices.max())}"
            )
    if file.digest:
        digest = base_digest(model, sorted(file.weights))
        if digest != file.digest:
            logger.warning(
                "%s was trained on other base weights (digest %s…, this UNet %s…): the update still applies, "
                "as a LoRA does to a fine-tune of its base",
                source,
                file.digest[:12],
                digest[:12],
            )
