"""``load_lcm_lora``: a distilled LoRA plus the scheduler it was distilled for, on a stock pipeline.

A LoRA file cannot carry its scheduler (``load_lora_weights`` never touches ``pipe.scheduler``), so hubkit
ships the sampling recipe in ``hubkit.json``; this helper applies both, and ``unload_lcm_lora`` undoes both.
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import Any

from hubkit.adapters.lcm_lora.config import LCMLoRAConfig
from hubkit.adapters.lcm_lora.serialization import (
    ADAPTER_NAME,
    HUBKIT_JSON,
    WEIGHT_NAME,
    call_settings,
    read_sampling,
)

__all__ = ["load_lcm_lora", "unload_lcm_lora"]


def _sampling(source: str | os.PathLike[str], revision: str | None, token: str | None) -> dict[str, Any]:
    path = Path(source)
    if path.is_dir():
        return read_sampling(path)
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError

    try:
        file = hf_hub_download(str(source), HUBKIT_JSON, revision=revision, token=token)
    except EntryNotFoundError:
        return LCMLoRAConfig().scheduler_settings()  # a LoRA published without hubkit: LCM-LoRA's recipe
    except HfHubHTTPError as err:
        raise ValueError(f"{source}: cannot read its {HUBKIT_JSON} from the Hub: {err}") from err
    return read_sampling(Path(file).parent)


def _scheduler(pipe: Any, sampling: dict[str, Any]) -> Any:
    """The named diffusers scheduler, built from the pipeline's noise schedule plus the recipe's settings."""
    import diffusers
    from diffusers import SchedulerMixin

    name = str(sampling.get("class_name", "LCMScheduler"))
    cls = getattr(diffusers, name, None)
    if not (isinstance(cls, type) and issubclass(cls, SchedulerMixin)):
        raise ValueError(f"the LoRA asks for scheduler {name!r}, which is not a diffusers scheduler")
    accepted = inspect.signature(cls.__init__).parameters
    extra = {k: v for k, v in sampling.items() if k in accepted}
    return cls.from_config(pipe.scheduler.config, **extra)


def load_lcm_lora(
    pipe: Any,
    source: str | os.PathLike[str],
    adapter_name: str = ADAPTER_NAME,
    *,
    fuse: bool = False,
    set_scheduler: bool = True,
    weight_name: str = WEIGHT_NAME,
    revision: str | None = None,
    token: str | None = None,
) -> dict[str, Any]:
    """Load a distilled LoRA (Hub repo id or folder) with ``load_lora_weights`` and switch ``pipe`` to its
    scheduler; ``fuse=True`` merges the LoRA into the UNet (no per-step LoRA cost). Returns the call
    settings to sample with: ``pipe(prompt, **settings)``."""
    sampling = _sampling(source, revision, token)
    scheduler = _scheduler(pipe, sampling) if set_scheduler else None
    kwargs = {"revision": revision, "token": token} if not Path(source).is_dir() else {}
    try:
        pipe.load_lora_weights(str(source), weight_name=weight_name, adapter_name=adapter_name, **kwargs)
    except (RuntimeError, ValueError, KeyError) as err:
        if adapter_name in (getattr(pipe.unet, "peft_config", None) or {}):
            pipe.delete_adapters(adapter_name)
        raise ValueError(
            f"{source} does not fit this pipeline's UNet (made for another base?): {err}"
        ) from err
    if scheduler is not None:
        pipe._hubkit_scheduler_before_lcm = pipe.scheduler
        pipe.scheduler = scheduler
    if fuse:
        pipe.fuse_lora(adapter_names=[adapter_name])
        pipe._hubkit_fused_lcm = adapter_name
    return call_settings(sampling)


def unload_lcm_lora(pipe: Any, adapter_name: str = ADAPTER_NAME) -> None:
    """Take the LoRA out (unfusing it first if fused) and give ``pipe`` its previous scheduler back."""
    if getattr(pipe, "_hubkit_fused_lcm", None) == adapter_name:
        pipe.unfuse_lora()
        del pipe._hubkit_fused_lcm
    pipe.delete_adapters(adapter_name)
    before = getattr(pipe, "_hubkit_scheduler_before_lcm", None)
    if before is not None:
        pipe.scheduler = before
        del pipe._hubkit_scheduler_before_lcm
