"""Calibration on the base model's own sampling trajectories: what each layer's input looks like at each stage
of denoising (Q-Diffusion's observation: activation ranges drift with the timestep, so calibration must be
spread over the whole trajectory, not drawn at one timestep or from training noise).

:func:`calibrate` runs the pipeline on calibration prompts and records, per layer,
- the mean square of every input channel over all steps (the weight rounding's ``importance``), and
- the absolute range of its input per timestep group (early / middle / late steps): the static int8
  activation scale of that group, from a high quantile rather than the maximum, so one outlier pixel does not
  waste the 256 levels;

and keeps the UNet's own inputs at one step of each timestep group of the first batch (``calls``, with every
keyword the pipeline passed: SDXL's ``added_cond_kwargs`` too): what :mod:`.sensitivity` replays to measure
how much each layer's quantization moves the UNet's output.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from tqdm.auto import tqdm

from .layer import TimestepClock

__all__ = ["ActivationStats", "calibrate"]

QUANTILE = 0.9999
SAMPLE = 1 << 16  # values drawn per call for the quantile (torch.quantile is O(n log n) and capped at 16M)


@dataclass
class ActivationStats:
    """Per layer path: ``channel_ms`` (Cin,) mean square of each input channel, ``ranges`` (groups,) the
    clipping range of the input per timestep group; ``bounds``: the timestep where each group starts
    (descending: group 0 holds the noisiest steps)."""

    bounds: list[int]
    channel_ms: dict[str, torch.Tensor] = field(default_factory=dict)
    ranges: dict[str, torch.Tensor] = field(default_factory=dict)
    calls: list[tuple[torch.Tensor, torch.Tensor, dict[str, Any]]] = field(default_factory=list)
    """(sample, timestep, the other keyword arguments: ``encoder_hidden_states``, SDXL's
    ``added_cond_kwargs``…) of UNet calls on the trajectories, one per timestep group."""

    def scales(self, levels: int = 127) -> dict[str, torch.Tensor]:
        """Static activation scales per layer and timestep group."""
        return {path: (r / levels).clamp_min(1e-8) for path, r in self.ranges.items()}


def _kept(value: Any) -> Any:
    """A copy of a UNet call's argument (tensors cloned, dicts and sequences walked), to replay later."""
    if torch.is_tensor(value):
        return value.detach().clone()
    if isinstance(value, dict):
        return {k: _kept(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_kept(v) for v in value)
    return value


def _channels_last(x: torch.Tensor, conv: bool) -> torch.Tensor:
    return (x.movedim(1, -1) if conv else x).reshape(-1, x.shape[1] if conv else x.shape[-1])


def calibrate(
    pipe,
    layers: dict[str, torch.nn.Module],
    prompts: Sequence[str],
    *,
    steps: int = 25,
    guidance_scale: float = 7.5,
    seed: int = 0,
    timestep_groups: int = 4,
    batch_size: int = 8,
    progress: bool = True,
) -> ActivationStats:
    """Sample ``prompts`` with the base pipeline (``steps`` steps, seeded) and record every layer's inputs."""
    if not prompts:
        raise ValueError("calibration needs at least one prompt")
    if timestep_groups < 1 or timestep_groups > steps:
        raise ValueError(f"timestep_groups must be in [1, steps={steps}], got {timestep_groups}")
    pipe.scheduler.set_timesteps(steps)
    timesteps = [float(t) for t in pipe.scheduler.timesteps]
    per_group = -(-len(timesteps) // timestep_groups)
    stats = ActivationStats(bounds=[int(timesteps[i]) for i in range(0, len(timesteps), per_group)])
    count: dict[str, int] = {}
    clock = TimestepClock(stats.bounds)
    generator = torch.Generator().manual_seed(seed)

    def on_layer(path: str, conv: bool):
        def hook(module, args):
            x = _channels_last(args[0].detach().float(), conv)
            ms = x.square().sum(dim=0)
            stats.channel_ms[path] = stats.channel_ms.get(path, 0) + ms
            count[path] = count.get(path, 0) + x.shape[0]
            flat = x.abs().reshape(-1)
            if flat.numel() > SAMPLE:
                flat = flat[torch.randint(flat.numel(), (SAMPLE,), generator=generator)]
            edge = torch.quantile(flat, QUANTILE)
            ranges = stats.ranges.setdefault(path, torch.zeros(len(stats.bounds)))
            ranges[clock.group] = torch.maximum(ranges[clock.group], edge)

        return hook

    def on_unet(module, args, kwargs):  # runs after the clock's hook: clock.group is this call's group
        if clock.group != len(stats.calls):  # keep the first call of each group, once
            return
        call = dict(inspect.signature(module.forward).bind(*args, **kwargs).arguments)
        sample, t = call.pop("sample"), call.pop("timestep")
        call.pop("return_dict", None)
        stats.calls.append((sample.detach().clone(), torch.as_tensor(t).clone(), _kept(call)))

    handles = [clock.attach(pipe.unet), pipe.unet.register_forward_pre_hook(on_unet, with_kwargs=True)]
    for path, module in layers.items():
        handles.append(module.register_forward_pre_hook(on_layer(path, isinstance(module, torch.nn.Conv2d))))
    try:
        batches = [list(prompts[i : i + batch_size]) for i in range(0, len(prompts), batch_size)]
        for n, batch in enumerate(tqdm(batches, desc="calibrating", disable=not progress)):
            generators = [torch.Generator().manual_seed(seed + n * batch_size + i) for i in range(len(batch))]
            with torch.no_grad():
                pipe(batch, num_inference_steps=steps, guidance_scale=guidance_scale, generator=generators,
                     output_type="latent")  # fmt: skip
    finally:
        for handle in handles:
            handle.remove()
    stats.channel_ms = {p: ms / max(1, count[p]) for p, ms in stats.channel_ms.items()}
    return stats
