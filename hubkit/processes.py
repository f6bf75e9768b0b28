"""Which of several processes this one is, when ``accelerate launch`` (or ``torchrun``) started more than one.

accelerate's ``PartialState`` answers, with one fix for machines without an accelerator: a process that
``torchrun`` started (``accelerate launch --multi_gpu`` runs it) among several on a CPU-only machine joins
them over gloo, where ``PartialState()`` would leave every process training alone. (``accelerate launch
--cpu --num_processes N`` starts N processes only through ``mpirun``; without MPI it starts one.)
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from typing import Any, TypeVar

import torch

__all__ = ["main_process_first", "main_process_only", "process_state", "together"]

T = TypeVar("T")


def _has_accelerator() -> bool:
    accelerator = getattr(torch, "accelerator", None)  # torch >= 2.6
    return bool(accelerator.is_available()) if accelerator is not None else torch.cuda.is_available()


def process_state() -> Any:
    """accelerate's ``PartialState``: this process's index, the number of processes, whether it is the main
    one; a plain ``python`` run is the one main process."""
    from accelerate.state import PartialState

    launched = int(os.environ.get("WORLD_SIZE", "1")) > 1
    return PartialState(cpu=launched and not _has_accelerator())


_alone = False  # inside main_process_only: the other processes are not there to wait with


def main_process_only(work: Callable[[], T]) -> T | None:
    """``work()`` on the main process alone while the others wait for it to end (they get None): for work
    that does not split over processes (a closed-form edit, a calibration). Inside it hubkit's own waits
    for the other processes (:func:`together`) are off."""
    global _alone
    state = process_state()
    result = None
    if state.is_main_process:
        _alone = True
        try:
            result = work()
        finally:
            _alone = False
    state.wait_for_everyone()
    return result


def together() -> bool:
    """Whether every process runs this code (False inside :func:`main_process_only`)."""
    return not _alone


def main_process_first() -> contextlib.AbstractContextManager:
    """accelerate's ``main_process_first`` (the main process runs the body first, e.g. to download, then the
    others), or nothing inside :func:`main_process_only`."""
    return process_state().main_process_first() if together() else contextlib.nullcontext()
