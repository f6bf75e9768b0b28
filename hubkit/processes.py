"""Which of several processes this one is, when ``accelerate launch`` (or ``torchrun``) started more than one.

accelerate's ``PartialState`` answers, with one fix for machines without an accelerator: a process that
``torchrun`` started (``accelerate launch --multi_gpu`` runs it) among several on a CPU-only machine joins
them over gloo, where ``PartialState()`` would leave every process training alone. (``accelerate launch
--cpu --num_processes N`` starts N processes only through ``mpirun``; without MPI it starts one.)
"""

from __future__ import annotations

import os
from typing import Any

import torch

__all__ = ["process_state"]


def _has_accelerator() -> bool:
    accelerator = getattr(torch, "accelerator", None)  # torch >= 2.6
    return bool(accelerator.is_available()) if accelerator is not None else torch.cuda.is_available()


def process_state() -> Any:
    """accelerate's ``PartialState``: this process's index, the number of processes, whether it is the main
    one; a plain ``python`` run is the one main process."""
    from accelerate.state import PartialState

    launched = int(os.environ.get("WORLD_SIZE", "1")) > 1
    return PartialState(cpu=launched and not _has_accelerator())
