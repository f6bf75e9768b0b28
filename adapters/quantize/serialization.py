"""A quantized UNet as a stock diffusers model folder: ``config.json`` with an SDNQ ``quantization_config``
and ``diffusion_pytorch_model.safetensors`` with real integer tensors (int8; int4 packed two per byte),
which ``UNet2DConditionModel.from_pretrained`` loads with the ``sdnq`` package installed, no hubkit.

SDNQ's loader checks neither shapes nor dtypes (a wrong scale shape loads and fails at the first step; an
int16 weight is silently cast), so :func:`check_sdnq_folder` checks every tensor against the config before a
folder is published or loaded by hubkit.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from .weights import QuantizedWeight, QuantizeError, group_size_for, pack_int4, unpack_int4

__all__ = [
    "ACTIVATIONS_NAME",
    "CONFIG_NAME",
    "SUBFOLDER",
    "WEIGHTS_NAME",
    "QuantizedFileError",
    "check_sdnq_folder",
    "read_activation_scales",
    "read_quantized",
    "save_activation_scales",
    "save_sdnq_unet",
]

SUBFOLDER = "unet"  # where an artifact keeps its quantized UNet (the card's `subfolder="unet"`)
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"
ACTIVATIONS_NAME = "hubkit_activations.safetensors"  # static int8 input scales: hubkit's loader reads them
DTYPES = {8: "int8", 4: "int4"}


class QuantizedFileError(QuantizeError):
    """A quantized model folder is corrupt, truncated or does not match its ``quantization_config``."""


def sdnq_config(
    layers: dict[str, torch.nn.Module], quantized: dict[str, QuantizedWeight], bits: int, group_size: int
) -> dict[str, Any]:
    """The ``quantization_config`` for ``quantized`` (path → weight) among every adaptable ``layers``: the
    main dtype and group size; layers at other bits or group sizes per module; float layers listed."""
    paths = sorted(layers)
    keep_float = [f"{p}.weight" for p in paths if p not in quantized]
    other_bits: dict[str, list[str]] = {}
    per_module: dict[str, dict[str, int]] = {}
    for path in paths:
        qw = quantized.get(path)
        if qw is None:
            continue
        if qw.bits != bits:
            other_bits.setdefault(DTYPES[qw.bits], []).append(f"{path}.weight")
        if qw.group_size != group_size_for(qw.shape[1], group_size):
            per_module[f"{path}.weight"] = {"group_size": qw.group_size}
    return {
        "quant_method": "sdnq",
        "weights_dtype": DTYPES[bits],
        "group_size": group_size,
        "quant_conv": True,
        "use_quantized_matmul": False,
        "use_quantized_matmul_conv": False,
        "dequantize_fp32": True,
        "modules_to_not_convert": keep_float,
        "modules_dtype_dict": other_bits,
        "modules_quant_config": per_module,
    }


def save_sdnq_unet(
    unet: Any,
    layers: dict[str, torch.nn.Module],
    quantized: dict[str, QuantizedWeight],
    folder: str | os.PathLike[str],
    bits: int,
    group_size: int,
) -> dict[str, Any]:
    """Write ``unet`` (float) with ``quantized`` layers replaced by their integer tensors into ``folder``
    (which must not exist yet: callers write into a temporary folder and move it); returns the
    ``quantization_config`` written."""
    folder = Path(folder)
    folder.mkdir(parents=True)
    state = {k: v.detach().contiguous() for k, v in unet.state_dict().items()}
    for path, qw in quantized.items():
        state[f"{path}.weight"] = pack_int4(qw.q) if qw.bits == 4 else qw.q
        state[f"{path}.scale"] = qw.scale.float()
    save_file(state, folder / WEIGHTS_NAME, metadata={"format": "pt"})
    config = json.loads(unet.to_json_string())  # diffusers' own serialisation of its config
    quantization = sdnq_config(layers, quantized, bits, group_size)
    config["quantization_config"] = quantization
    (folder / CONFIG_NAME).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return quantization


def expected_tensors(
    shape: tuple[int, ...], bits: int, group_size: int
) -> dict[str, tuple[tuple[int, ...], str]]:
    """name suffix → (shape, dtype) SDNQ expects for a quantized layer of weight ``shape``."""
    cout, cin, taps = shape[0], shape[1], tuple(shape[2:])
    g = group_size_for(cin, group_size)
    if g == -1:
        q_shape, s_shape = shape, (cout, 1, *taps)
    else:
        q_shape, s_shape = (cout, cin // g, g, *taps), (cout, cin // g, 1, *taps)
    numel = 1
    for n in q_shape:
        numel *= n
    weight = ((numel // 2,), "U8") if bits == 4 else (tuple(q_shape), "I8")
    return {"weight": weight, "scale": (tuple(s_shape), "F32")}


def check_sdnq_folder(folder: str | os.PathLike[str], layer_shapes: dict[str, tuple[int, ...]]) -> None:
    """Raise :class:`QuantizedFileError` unless every layer of ``layer_shapes`` (path → float weight shape)
    is listed as float with a float weight, or quantized with exactly the tensors its config implies."""
    folder = Path(folder)
    quant, bits, group = _read_config(folder)
    formats = _formats(quant, bits, group)
    try:
        with safe_open(folder / WEIGHTS_NAME, "pt") as f:
            slices = {name: f.get_slice(name) for name in f.keys()}  # noqa: SIM118 - safe_open is no dict
            present = {name: (tuple(s.get_shape()), s.get_dtype()) for name, s in slices.items()}
    except (OSError, SafetensorError) as err:
        raise QuantizedFileError(f"{folder / WEIGHTS_NAME}: unreadable or truncated ({err})") from err
    for path, shape in layer_shapes.items():
        name = f"{path}.weight"
        layer_format = formats(name)
        if layer_format is None:
            got = present.get(name)
            if got is None or got[0] != tuple(shape) or got[1] not in ("F32", "F16", "BF16"):
                raise QuantizedFileError(f"{name} is listed as float but the file holds {got or 'nothing'}")
            continue
        layer_bits, layer_group = layer_format
        for suffix, want in expected_tensors(shape, layer_bits, layer_group).items():
            got = present.get(f"{path}.{suffix}")
            if got != want:
                raise QuantizedFileError(
                    f"{path}.{suffix}: the quantization_config implies shape {want[0]} {want[1]}, the file "
                    f"holds {'nothing' if got is None else f'{got[0]} {got[1]}'}"
                )


def _formats(quant: dict[str, Any], bits: int, group: int):
    """name → (bits, group size) of each quantized weight under ``quant``, None for the float ones."""
    keep_float = set(quant.get("modules_to_not_convert") or [])
    names = {v: k for k, v in DTYPES.items()}
    other_bits = {p: k for k, listed in (quant.get("modules_dtype_dict") or {}).items() for p in listed}
    unknown = sorted(set(other_bits.values()) - set(names))
    if unknown:
        raise QuantizedFileError(f"unsupported dtype {unknown[0]!r} in modules_dtype_dict (int8 or int4)")
    per_module = quant.get("modules_quant_config") or {}

    def layer_format(name: str) -> tuple[int, int] | None:
        if name in keep_float:
            return None
        layer_bits = names[other_bits[name]] if name in other_bits else bits
        return layer_bits, int(per_module.get(name, {}).get("group_size", group))

    return layer_format


def _read_config(folder: Path) -> tuple[dict[str, Any], int, int]:
    try:
        quant = json.loads((folder / CONFIG_NAME).read_text())["quantization_config"]
        if quant.get("quant_method") != "sdnq":
            raise QuantizedFileError(f"{folder / CONFIG_NAME}: quant_method is not sdnq")
        return quant, {v: k for k, v in DTYPES.items()}[quant["weights_dtype"]], int(quant["group_size"])
    except QuantizedFileError:
        raise
    except (OSError, ValueError, KeyError, TypeError) as err:
        where = folder / CONFIG_NAME
        raise QuantizedFileError(f"{where}: not a readable SDNQ quantization_config ({err})") from err


def read_quantized(
    folder: str | os.PathLike[str], layers: dict[str, torch.nn.Module]
) -> tuple[dict[str, QuantizedWeight], dict[str, torch.Tensor]]:
    """The integer weights of ``layers`` in a folder :func:`check_sdnq_folder` accepted, and every other
    tensor of the file (norms, biases, float layers) by name."""
    folder = Path(folder)
    quant, bits, group = _read_config(folder)
    formats = _formats(quant, bits, group)
    quantized: dict[str, QuantizedWeight] = {}
    with safe_open(folder / WEIGHTS_NAME, "pt") as f:
        tensors = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118 - safe_open is no dict
    for path, module in layers.items():
        layer_format = formats(f"{path}.weight")
        if layer_format is None:
            continue
        layer_bits, layer_group = layer_format
        shape = tuple(module.weight.shape)
        layer_group = group_size_for(shape[1], layer_group)
        scale = tensors.pop(f"{path}.scale")
        q = tensors.pop(f"{path}.weight")
        if layer_bits == 4:
            q_shape = (
                shape if layer_group == -1 else (shape[0], shape[1] // layer_group, layer_group, *shape[2:])
            )
            q = unpack_int4(q, q_shape)
        quantized[path] = QuantizedWeight(q, scale.float(), layer_bits, layer_group, shape)
    return quantized, tensors


def save_activation_scales(
    folder: str | os.PathLike[str], scales: dict[str, torch.Tensor], bounds: list[int]
) -> None:
    """Static int8 input scales (path → one per timestep group starting at ``bounds``) beside the UNet."""
    tensors = {path: s.float().contiguous() for path, s in scales.items()}
    save_file(tensors, Path(folder) / ACTIVATIONS_NAME, metadata={"bounds": json.dumps(bounds)})


def read_activation_scales(
    folder: str | os.PathLike[str],
) -> tuple[dict[str, torch.Tensor], list[int]] | None:
    """What :func:`save_activation_scales` wrote (scales by layer path, timestep-group bounds); None for a
    weight-only folder."""
    file = Path(folder) / ACTIVATIONS_NAME
    if not file.is_file():
        return None
    try:
        with safe_open(file, "pt") as f:
            bounds = json.loads((f.metadata() or {})["bounds"])
            return {name: f.get_tensor(name) for name in f.keys()}, bounds  # noqa: SIM118 - no dict
    except (OSError, SafetensorError, KeyError, ValueError) as err:
        raise QuantizedFileError(f"{file}: unreadable activation scales ({err})") from err
