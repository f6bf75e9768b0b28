"""``load_quantized_unet``: a hubkit quantized UNet (``unet/`` of the artifact) on a stock pipeline, with the
calibrated static int8 activations that no stock backend carries.

Stock diffusers loads the same folder on its own — ``UNet2DConditionModel.from_pretrained(repo,
subfolder="unet")`` with the ``sdnq`` package — and runs it weight-only (dequantized weights, float
activations); this path adds the activation scales of ``unet/hubkit_activations.safetensors``, one per layer
and timestep group, so the images are those the artifact was measured with.
"""

from __future__ import annotations

import json
import os
from typing import Any

import torch
from hubkit.adapters.quantize.kernels import KERNEL_MODES
from hubkit.adapters.quantize.layer import QuantizedLayer
from hubkit.adapters.quantize.model import QuantizeError, apply_quantized, remove_quantized
from hubkit.adapters.quantize.serialization import (
    ACTIVATIONS_NAME,
    CONFIG_NAME,
    SUBFOLDER,
    WEIGHTS_NAME,
    check_sdnq_folder,
    read_activation_scales,
    read_quantized,
)
from hubkit.adapters.quantize.weights import quantize_weight

from hubkit.hub import local_or_snapshot
from hubkit.layers import adaptable_layers

__all__ = ["load_quantized_unet", "unload_quantized_unet"]


def load_quantized_unet(
    pipe: Any,
    source: str | os.PathLike[str],
    *,
    activations: bool = True,
    kernels: str = "auto",
    requantize: bool = False,
    revision: str | None = None,
    token: str | None = None,
) -> Any:
    """Put the quantized UNet of ``source`` (a Hub repo or folder with ``unet/``) into ``pipe`` (in place; the
    pipeline is returned). ``activations=False`` runs weight-only, as the stock loader does. ``kernels``:
    ``"auto"`` runs each W8A8 layer on the CPU's int8 kernel where that times faster than float (the first
    denoising step pays the timing), ``"int8"`` always, ``"reference"`` never (the exact float reference of
    the artifact's numerics). ``requantize=True`` quantizes the pipeline's own UNet weights instead of
    reading the file's, each layer at the file's bits and group size (with its activation scales): the
    artifact applied to a UNet that other edits changed since it was quantized (hubkit.stacks). A folder for
    another UNet, or one whose tensors do not match its config, raises ``QuantizeError`` and leaves ``pipe``
    alone."""
    unet = getattr(pipe, "unet", None)
    if unet is None:
        raise QuantizeError(f"{type(pipe).__name__} has no UNet for a quantized UNet")
    patterns = [f"{SUBFOLDER}/{name}" for name in (CONFIG_NAME, WEIGHTS_NAME, ACTIVATIONS_NAME)]
    folder = local_or_snapshot(source, patterns, revision=revision, token=token, error=QuantizeError)
    folder = folder / SUBFOLDER if (folder / SUBFOLDER).is_dir() else folder
    try:
        config = json.loads((folder / CONFIG_NAME).read_text())
    except (OSError, ValueError) as err:
        raise QuantizeError(f"{source}: no readable {SUBFOLDER}/{CONFIG_NAME} ({err})") from err
    wanted = {k: v for k, v in config.items() if not k.startswith("_") and k != "quantization_config"}
    differs = sorted(k for k, v in wanted.items() if k in unet.config and _plain(unet.config[k]) != _plain(v))
    if differs:
        raise QuantizeError(
            f"{source} quantizes another UNet than this pipeline's: its config differs in "
            f"{', '.join(differs[:5])}"
        )
    if kernels not in KERNEL_MODES:
        raise QuantizeError(f"kernels must be one of {', '.join(KERNEL_MODES)}, not {kernels!r}")
    if _is_quantized(unet):
        raise QuantizeError("a quantized UNet is already loaded here: call unload_quantized_unet first")
    layers = adaptable_layers(unet)
    check_sdnq_folder(folder, {p: tuple(m.weight.shape) for p, m in layers.items()})
    quantized, floats = read_quantized(folder, layers)
    if requantize:  # the UNet's own (edited) weights and floats, at the artifact's precision per layer
        quantized = {p: quantize_weight(layers[p].weight, q.bits, q.group_size) for p, q in quantized.items()}
        floats = {}
    scales, bounds = (read_activation_scales(folder) if activations else None) or (None, None)
    with torch.no_grad():
        state = unet.state_dict()
        for name, tensor in floats.items():
            state[name].copy_(tensor)
    unet._hubkit_quant_hook = apply_quantized(unet, layers, quantized, scales, bounds, kernels=kernels)
    return pipe


def unload_quantized_unet(pipe: Any) -> None:
    """Back to float layers (with the weights the artifact's file held for them)."""
    if not _is_quantized(pipe.unet):
        raise QuantizeError("no quantized UNet is loaded on this pipeline")
    remove_quantized(pipe.unet, getattr(pipe.unet, "_hubkit_quant_hook", None))
    pipe.unet._hubkit_quant_hook = None


def _is_quantized(unet: Any) -> bool:
    return any(isinstance(m, QuantizedLayer) for m in unet.modules())


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple | list) else value
