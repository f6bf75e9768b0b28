"""What every method's training shares: a JSON-serialisable config; the output folder and the base pipeline
checked before any work, so a long run never ends in "the folder exists"; one training loop
(:func:`run_training`, on ``accelerate``) that a method feeds with its step (:class:`TrainingStep`); and the
atomic final write (:func:`write_trained_folder`)."""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from hubkit.config import JSONConfig  # re-exported: method configs import it from hubkit.config
from hubkit.processes import main_process_first, process_state, together  # process_state re-exported

__all__ = [
    "CHECKPOINTS_KEPT",
    "JSONConfig",
    "StepContext",
    "TrainingJob",
    "TrainingRun",
    "TrainingSettings",
    "TrainingStep",
    "base_architecture",
    "checkpoint_dir",
    "checkpoints",
    "choose_mixed_precision",
    "native_cpu_bf16",
    "prepare_training",
    "process_state",
    "remove_checkpoints",
    "run_training",
    "settings_from_config",
    "start_training",
    "write_trained_folder",
]


def prepare_training(
    base: str,
    out: str | os.PathLike[str],
    *,
    pipe: Any = None,
    force: bool = False,
    resume: bool = False,
    endpoint: str | None = None,
    token: str | None = None,
    error: type[Exception] = ValueError,
) -> tuple[Path, Any]:
    """The output folder (refused when non-empty unless ``force`` or ``resume``: the final write replaces it
    atomically) and the base pipeline (``pipe`` or pulled from ``base``); problems raise ``error`` naming
    them."""
    from hubkit.hub import HubError, pull_pipeline

    out = Path(out)
    if out.exists() and any(out.iterdir()) and not (force or resume):
        raise error(f"{out} exists and is not empty (pass --force to replace it)")
    if pipe is None:
        # Under ``accelerate launch`` the main process downloads first; the others then read its cache.
        with main_process_first():
            try:
                pipe = pull_pipeline(base, endpoint=endpoint, token=token)
            except HubError as err:
                raise error(str(err)) from err
    return out, pipe


def base_architecture(method: str, base: str, pipe: Any, error: type[Exception] = ValueError) -> str | None:
    """The family of ``pipe`` (``sd1``, ``sd2``, ``sdxl``; None for a model that is no Stable Diffusion UNet,
    which the method judges itself), after asking the registered ``method`` whether it trains on it: a
    family it lacks something for is refused with ``error`` and one line naming the family and what is
    missing (:meth:`hubkit.methods.Method.architecture_gap`), before any work."""
    from hubkit.architectures import architecture_of
    from hubkit.cards.schema import ARCHITECTURE_LABELS
    from hubkit.methods import available_methods

    try:
        arch = architecture_of(pipe)
    except ValueError:
        return None
    cls = available_methods().get(method)
    gap = cls.architecture_gap(arch) if cls is not None else None
    if gap:
        raise error(f"{method} cannot train on {base}, an {ARCHITECTURE_LABELS[arch]} base ({arch}): {gap}")
    return arch


@dataclass
class TrainingJob:
    """A method's ``train`` call sorted out: the base pipeline, the output folder, the options for
    :func:`run_training` (``loop``: ``progress``, ``out``, ``resume``, ``checkpoint_every``) and what the
    final write needs to name the artifact (method, base, its family ``architecture``, config, the repo id
    its card uses)."""

    method: str
    base: str
    config: Any
    out: Path
    pipe: Any
    repo_id: str | None
    loop: dict[str, Any]
    endpoint: str | None = None  # where the base came from: a method pulls its data from the same Hub
    token: str | None = None
    architecture: str | None = None  # sd1 / sd2 / sdxl; None when the base is no Stable Diffusion UNet

    @staticmethod
    def facts(
        parameters: int, base_parameters: int, seconds: float, device: Any, **more: Any
    ) -> dict[str, Any]:
        """The facts every trained artifact states (its card shows them): trained parameters and their share
        of the base model's UNet, training seconds, device (and the number of ``processes`` when
        ``accelerate launch`` started more than one); ``more`` are the method's own."""
        processes = process_state().num_processes if together() else 1  # else the main process's alone
        return {
            "parameters": parameters,
            "unet_parameters": base_parameters,
            "share": parameters / base_parameters,
            "train_seconds": round(seconds, 1),
            "device": str(device),
            **({"processes": processes} if processes > 1 else {}),
            **more,
        }

    def write(
        self,
        weight_name: str,
        save: Callable[[Path], None],
        card: Callable[..., Any],
        facts: dict[str, Any],
    ) -> None:
        """:func:`write_trained_folder` with the card ``card(config, base, repo_id, facts=facts)`` and the
        ``hubkit train`` command that reproduces the artifact. The base's family goes into the facts, the
        top of ``hubkit.json`` and the card (``base_architecture`` + tag) here, for every method."""
        from hubkit.cards.render import set_architecture

        arch = self.architecture
        if arch is not None:
            facts["architecture"] = arch

        def save_all(folder: Path) -> None:
            save(folder)
            info = folder / "hubkit.json"
            if arch is not None and info.is_file():
                data = json.loads(info.read_text())
                info.write_text(json.dumps({**data, "architecture": arch}, indent=2, sort_keys=True) + "\n")

        def make_card(facts: dict[str, Any]) -> Any:
            made = card(self.config, self.base, self.repo_id, facts=facts)
            return set_architecture(made, arch) if arch is not None else made

        write_trained_folder(
            self.out, weight_name, save_all, make_card, facts, command=(self.method, self.config, self.base)
        )


def start_training(
    method: str,
    base: str,
    config: Any,
    out: str | os.PathLike[str],
    *,
    error: type[Exception] = ValueError,
    repo_id: str | None = None,
    pipe: Any = None,
    progress: bool = True,
    force: bool = False,
    resume: bool = False,
    checkpoint_every: int | None = None,
    endpoint: str | None = None,
    token: str | None = None,
) -> TrainingJob:
    """What every ``Method.train`` does first, with :meth:`hubkit.methods.Method.train`'s options (a method
    passes them on as ``**options``, so it repeats none of them): :func:`prepare_training`, the base's
    family checked against the method's (:func:`base_architecture`), then the job that carries the loop's
    options and writes the artifact at the end."""
    out, pipe = prepare_training(
        base, out, pipe=pipe, force=force, resume=resume, endpoint=endpoint, token=token, error=error
    )
    arch = base_architecture(method, base, pipe, error)
    loop = {"progress": progress, "out": out, "resume": resume, "checkpoint_every": checkpoint_every}
    return TrainingJob(method, base, config, out, pipe, repo_id, loop, endpoint, token, arch)


def write_trained_folder(
    out: Path,
    weight_name: str,
    save: Callable[[Path], None],
    card: Callable[[dict[str, Any]], Any],
    facts: dict[str, Any],
    *,
    command: tuple[str, Any, str] | None = None,
) -> None:
    """Write ``out`` whole or not at all: ``save`` puts the weights and ``hubkit.json`` in, ``facts`` gains
    the weights' ``file_bytes`` (and, given ``command = (method, config, base)``, the ``hubkit train``
    command that reproduces the artifact), then ``card(facts)`` (a ``ModelCard``) becomes its README.md.
    Once ``out`` is in place the run's checkpoints (``<out>.checkpoints``) are removed: nothing is left to
    resume; until then a failed write leaves them for ``--resume``.

    Under ``accelerate launch`` only the main process writes (every process holds the same weights); the
    others wait until the folder is in place and read its size into their ``facts``."""
    from hubkit.files import atomic_folder

    state = process_state()
    if command is not None:
        from hubkit.cli_train import command_line

        processes = state.num_processes if together() else 1
        facts["command"] = command_line(*command, out=out.name, processes=processes)

    def fill(folder: Path) -> None:
        save(folder)
        facts["file_bytes"] = (folder / weight_name).stat().st_size
        card(facts).save(str(folder / "README.md"))

    if state.is_main_process:
        atomic_folder(out, fill, force=True)
        remove_checkpoints(out)
    if together():
        state.wait_for_everyone()
    if not state.is_main_process:
        facts["file_bytes"] = (out / weight_name).stat().st_size


# -- the shared training loop ----------------------------------------------------------------------------

CHECKPOINTS_KEPT = 2
_TENSORS, _STATE = "state.safetensors", "state.json"


@dataclass
class StepContext:
    """What one micro-batch of a step gets from the loop.

    ``generator`` is seeded from (seed, ``index``) alone, so a step that draws all its randomness from it
    (noise, timesteps, data order) draws the same numbers whether the run was resumed or not: no generator
    state needs saving. The loop also re-seeds torch's global generator the same way before each micro-batch,
    for code the step does not control (e.g. a VAE sampling its latents).

    Under ``accelerate launch`` with N processes each process draws its own micro-batches: process ``r``
    gets ``index`` = (step · accumulation + micro) · N + r. A step's N · accumulation micro-batches are thus
    exactly those of one process accumulating N times as many, and a step that reads ``index`` or
    ``generator`` needs no change to train data-parallel (``batch_size`` is per process, as in diffusers'
    training scripts)."""

    step: int  # optimizer step, from 0
    micro: int  # micro-batch within the step, 0 .. gradient_accumulation_steps - 1
    index: int  # micro-batches before this one in the whole run, over all processes (see above)
    generator: torch.Generator  # on the CPU
    device: torch.device


class TrainingStep:
    """A method's training step: what :func:`run_training` asks of it (a method writes only its maths).

    :meth:`setup` gets the device before anything else (build the network, move the frozen model, encode
    prompts); :meth:`parameters` are the tensors the optimizer trains; ``__call__`` computes one micro-batch's
    losses: ``"loss"`` is back-propagated, every other entry is logged (progress bar, history). A step with
    state beside its parameters (an EMA target network...) returns it from :meth:`state_tensors` so that
    checkpoints carry it, and takes it back in :meth:`load_state_tensors`."""

    description = "training"

    def setup(self, device: torch.device) -> None:
        """Called once, first, with the device the loop trains on."""

    def parameters(self) -> list[torch.nn.Parameter]:
        raise NotImplementedError

    def __call__(self, ctx: StepContext) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def start(self, index: int) -> None:
        """Called before the first micro-batch with its ``index`` (0, or where a resumed run continues):
        position data iterators there."""

    def after_update(self, step: int) -> None:
        """Called after each optimizer step (e.g. to move an EMA towards the parameters)."""

    def abort(self) -> None:
        """Called when the run fails or is interrupted: undo what :meth:`setup` did to the caller's model
        (take adapters off), so a failed run leaves it as it was."""

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return {}

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        if tensors:
            raise ValueError(
                f"{type(self).__name__} has no state for checkpoint tensors {sorted(tensors)[:3]}"
            )


@dataclass
class TrainingRun:
    """What :func:`run_training` did: every logged value per optimizer step (a resumed run's history
    includes the steps done before the interruption), the seconds this process trained and where it began."""

    history: dict[str, list[float]] = field(default_factory=dict)
    seconds: float = 0.0
    start_step: int = 0


def native_cpu_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX). On AVX2-only CPUs bf16 is emulated and
    several times slower than fp32. ``get_cpu_capability`` says which kernels torch runs; the instruction
    flags (Linux) say whether the AVX-512 unit has the bf16 extension."""
    if "AVX512" not in torch.backends.cpu.get_cpu_capability().upper():
        return False
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return False
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def choose_mixed_precision(device: torch.device, requested: str | None = None) -> str:
    """accelerate's ``mixed_precision`` for ``device``: on CUDA bf16 where supported, else fp16; on a CPU
    fp32 ("no"). bf16 autocast on a CPU is taken only when asked for, and refused without native bf16
    (:func:`native_cpu_bf16`). Even with it, fp32 stays the default: on the reference CPU (AVX512-BF16, one
    thread, ``tiny-sd-shapes``) an SPM step took 1.56 CPU-s in bf16 against 1.23–1.41 in fp32, an LCM-LoRA
    step 0.93 against 0.96–1.02 (a tie within noise): autocast's casts cost what the bf16 matmuls save on
    layers this small."""
    if device.type == "cuda":
        if requested in (None, "bf16"):
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return requested
    if requested == "bf16" and not native_cpu_bf16():
        raise ValueError(
            f"bf16 was asked for but this CPU ({torch.backends.cpu.get_cpu_capability()}) has no native "
            "bf16: it would be several times slower than fp32"
        )
    if requested == "fp16":
        raise ValueError("fp16 mixed precision needs a CUDA device")
    return requested or "no"


def _accelerator(gradient_accumulation_steps: int, mixed_precision: str | None) -> Any:
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs

    device = process_state().device
    # A step may leave a trained tensor out of a micro-batch (a branch it skips): DDP then marks it ready
    # instead of waiting for its gradient, whose bucket would otherwise never be averaged.
    ddp = DistributedDataParallelKwargs(find_unused_parameters=True)
    return Accelerator(
        gradient_accumulation_steps=gradient_accumulation_steps,
        mixed_precision=choose_mixed_precision(device, mixed_precision),
        kwargs_handlers=[ddp],
    )


def _seeded(seed: int, index: int, stream: int) -> int:
    """A 64-bit seed for micro-batch ``index`` of a run seeded ``seed`` (``stream`` keeps the step's
    generator and the global one apart)."""
    return (seed * 0x9E3779B97F4A7C15 + index * 0xBF58476D1CE4E5B9 + stream) % 2**64


def _schedule(optimizer: torch.optim.Optimizer, schedule: str, warmup_steps: int, steps: int) -> Any:
    """A plain LambdaLR stepped once per optimizer step (not prepared: accelerate would step a prepared one
    once per process)."""
    from diffusers.optimization import get_scheduler

    names = {"constant": "constant_with_warmup", "cosine": "cosine"}
    if schedule not in names:
        raise ValueError(f"unknown learning-rate schedule {schedule!r}; one of: {', '.join(names)}")
    return get_scheduler(names[schedule], optimizer, num_warmup_steps=warmup_steps, num_training_steps=steps)


@dataclass(frozen=True)
class TrainingSettings:
    """How the loop trains (:func:`run_training`'s settings), recorded in every checkpoint so that a
    checkpoint resumes only its own run."""

    steps: int
    lr: float
    seed: int = 0
    warmup_steps: int = 0
    schedule: str = "constant"
    max_grad_norm: float | None = None
    gradient_accumulation_steps: int = 1
    weight_decay: float = 0.0
    mixed_precision: str | None = None
    config: dict[str, Any] | None = None
    processes: int = 1  # accelerate's num_processes: each draws its own micro-batches (StepContext.index)


def settings_from_config(config: Any, **overrides: Any) -> dict[str, Any]:
    """:func:`run_training`'s settings that a method's config dataclass names (``steps``, ``lr``, ``seed``,
    ``warmup_steps``, ``gradient_accumulation_steps``, ``max_grad_norm``...), plus ``overrides``, with the
    whole config recorded: ``run_training(step, **settings_from_config(config, schedule="cosine"))``."""
    own = {f.name for f in fields(TrainingSettings)} - {"config", "processes"}
    values = {k: v for k, v in asdict(config).items() if k in own}
    return {**values, **overrides, "config": asdict(config)}


def run_training(
    step_impl: TrainingStep,
    *,
    steps: int,
    lr: float,
    seed: int = 0,
    warmup_steps: int = 0,
    schedule: str = "constant",
    max_grad_norm: float | None = None,
    gradient_accumulation_steps: int = 1,
    weight_decay: float = 0.0,
    mixed_precision: str | None = None,
    config: dict[str, Any] | None = None,
    out: str | os.PathLike[str] | None = None,
    checkpoint_every: int | None = None,
    resume: bool = False,
    progress: bool = True,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
) -> TrainingRun:
    """Train ``step_impl``'s parameters for ``steps`` optimizer steps: AdamW at ``lr`` (``weight_decay``),
    a ``schedule`` ("constant" or "cosine") after ``warmup_steps``, gradients accumulated over
    ``gradient_accumulation_steps`` micro-batches and clipped to ``max_grad_norm`` (None: not clipped),
    ``mixed_precision`` chosen from the hardware unless given (:func:`choose_mixed_precision`); a progress bar
    of the step's own losses, ``on_step(step, losses)`` after each step, and (with ``out``, the artifact
    folder the caller writes) checkpoints in ``<out>.checkpoints/step-<N>/`` every ``checkpoint_every``
    steps, the latest :data:`CHECKPOINTS_KEPT` kept. A failure calls ``step_impl.abort()`` (the caller's
    model back as it was) and leaves the checkpoints. ``config`` (the method's, as a dict) is recorded.

    ``resume`` continues from the latest checkpoint (from the start when there is none); its settings and
    config must be this run's. A resumed run ends with the same parameters as an uninterrupted one, **bit for
    bit** on a CPU: parameters, optimizer moments, schedule and the step's state are restored exactly
    (safetensors + JSON, no pickle) and every random number comes from generators seeded by (seed,
    micro-batch index), so nothing depends on what ran before in the process. (On CUDA, non-deterministic
    kernels can make two runs differ within float tolerance, resumed or not.)

    Under ``accelerate launch --num_processes N`` every process runs the step on its own micro-batches
    (:class:`StepContext`), the trained tensors are one module accelerate prepares, so DDP averages their
    gradients once per optimizer step (not on the accumulation micro-batches before it) and every process's
    optimizer takes the same update: N processes train what one process accumulating N times as many
    micro-batches trains, within float tolerance. The logged values are averaged over processes, the progress
    bar and the checkpoints are the main process's, and a checkpoint resumes only with its number of
    processes.

    The loop writes no artifact: the method writes it with :func:`write_trained_folder` (the main process
    alone), which then removes the checkpoints."""
    if (checkpoint_every or resume) and out is None:
        raise ValueError("checkpoints and --resume need the output folder (out)")
    if checkpoint_every is not None and checkpoint_every < 1:
        raise ValueError(f"checkpoint_every must be >= 1, got {checkpoint_every}")
    settings = TrainingSettings(
        steps, lr, seed, warmup_steps, schedule, max_grad_norm, gradient_accumulation_steps, weight_decay,
        mixed_precision, config, process_state().num_processes,
    )  # fmt: skip
    try:
        loop = _Loop(step_impl, settings)
        return loop.run(Path(out) if out is not None else None, checkpoint_every, resume, progress, on_step)
    except BaseException:
        step_impl.abort()
        raise


class _Trained(torch.nn.Module):
    """A step's trained tensors as one module whose forward is the step, so that accelerate can prepare it:
    under several processes it becomes DDP, which starts every process from the main process's values and
    averages the gradients of these tensors (wherever they sit: membranes, LoRA layers in the UNet...)."""

    def __init__(self, step_impl: TrainingStep, params: list[torch.nn.Parameter]) -> None:
        super().__init__()
        for i, p in enumerate(params):
            if not isinstance(p, torch.nn.Parameter):
                raise TypeError(
                    f"{type(step_impl).__name__}.parameters() must return torch.nn.Parameter objects, got "
                    f"a {type(p).__name__} at position {i}"
                )
            self.register_parameter(f"trained_{i}", p)
        self._step = (step_impl,)  # a tuple: the step is no submodule

    def forward(self, ctx: StepContext) -> dict[str, torch.Tensor]:
        return self._step[0](ctx)


class _Loop:
    """One run: its accelerator, optimizer and schedule; the steps, and the checkpoints."""

    def __init__(self, step_impl: TrainingStep, settings: TrainingSettings) -> None:
        self.step_impl, self.settings = step_impl, settings
        self.accelerator = _accelerator(settings.gradient_accumulation_steps, settings.mixed_precision)
        step_impl.setup(self.accelerator.device)
        self.params = list(step_impl.parameters())
        adamw = torch.optim.AdamW(self.params, lr=settings.lr, weight_decay=settings.weight_decay)
        self.model, self.optimizer = self.accelerator.prepare(_Trained(step_impl, self.params), adamw)
        self.scheduler = _schedule(adamw, settings.schedule, settings.warmup_steps, settings.steps)

    def run(
        self, out: Path | None, checkpoint_every: int | None, resume: bool, progress: bool, on_step
    ) -> TrainingRun:
        import time

        from tqdm.auto import tqdm

        steps, run = self.settings.steps, TrainingRun()
        if resume:
            run.start_step, run.history = self.restore(out)  # type: ignore[arg-type]
        self.step_impl.start(self._index(run.start_step, 0))
        bar = tqdm(
            range(run.start_step, steps),
            initial=run.start_step,
            total=steps,
            desc=self.step_impl.description,
            disable=not progress or not self.accelerator.is_local_main_process,
        )
        started = time.perf_counter()
        for step in bar:
            logged = self.optimizer_step(step)
            for key, value in logged.items():
                run.history.setdefault(key, []).append(value)
            bar.set_postfix({k: f"{v:.4g}" for k, v in logged.items()})
            if on_step is not None:
                on_step(step, logged)
            if checkpoint_every and (step + 1) % checkpoint_every == 0 and step + 1 < steps:
                self.save(out, step + 1, run.history)  # type: ignore[arg-type]
        run.seconds = time.perf_counter() - started
        for p in self.params:
            p.requires_grad_(False)
        return run

    def _index(self, step: int, micro: int) -> int:
        """The run-wide index of this process's micro-batch ``micro`` of ``step`` (:class:`StepContext`)."""
        acc = self.accelerator
        k = self.settings.gradient_accumulation_steps
        return (step * k + micro) * acc.num_processes + acc.process_index

    def optimizer_step(self, step: int) -> dict[str, float]:
        """``gradient_accumulation_steps`` micro-batches (``accelerator.backward`` divides each loss by
        their number, so gradients add up to a bigger batch's mean; with several processes DDP averages
        them on the last micro-batch, ``accumulate`` skipping the sync before), then one update; returns
        the mean of each logged value over the micro-batches of every process."""
        acc, k, seed = self.accelerator, self.settings.gradient_accumulation_steps, self.settings.seed
        logged: dict[str, float] = {}
        for micro in range(k):
            index = self._index(step, micro)
            generator = torch.Generator().manual_seed(_seeded(seed, index, 0))
            torch.manual_seed(_seeded(seed, index, 1))
            with acc.accumulate(self.model):
                with acc.autocast():
                    losses = self.model(StepContext(step, micro, index, generator, acc.device))
                if "loss" not in losses:
                    raise KeyError(
                        f"{type(self.step_impl).__name__} returned no 'loss' (got {sorted(losses)})"
                    )
                acc.backward(losses["loss"])
            for key, value in losses.items():
                logged[key] = logged.get(key, 0.0) + float(value.detach()) / k
        if self.settings.max_grad_norm:
            acc.clip_grad_norm_(self.params, self.settings.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step_impl.after_update(step)
        return self._across_processes(logged)

    def _across_processes(self, logged: dict[str, float]) -> dict[str, float]:
        """The logged values averaged over the processes: the history one process would log."""
        if self.accelerator.num_processes == 1:
            return logged
        keys = sorted(logged)
        mean = self.accelerator.reduce(torch.tensor([logged[k] for k in keys], dtype=torch.float64), "mean")
        return dict(zip(keys, mean.tolist(), strict=True))

    # -- checkpoints ------------------------------------------------------------------------------------
    def save(self, out: Path, step: int, history: dict[str, list[float]]) -> None:
        """``<out>.checkpoints/step-<N>/``: tensors in safetensors, the rest in JSON, written atomically;
        older checkpoints beyond the latest :data:`CHECKPOINTS_KEPT` are removed."""
        from safetensors.torch import save_file

        from hubkit.files import atomic_folder

        if not self.accelerator.is_main_process:
            return
        tensors, state = self._state()
        state |= {"step": step, "history": history, "settings": asdict(self.settings)}
        root = checkpoint_dir(out)

        def fill(folder: Path) -> None:
            save_file(tensors, str(folder / _TENSORS))
            (folder / _STATE).write_text(json.dumps(state, indent=1, sort_keys=True))

        atomic_folder(root / f"step-{step:08d}", fill, force=True)
        for old in checkpoints(out)[:-CHECKPOINTS_KEPT]:
            shutil.rmtree(old, ignore_errors=True)

    def _state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        optimizer = self.optimizer.optimizer.state_dict()
        tensors = {f"param.{i}": p.detach() for i, p in enumerate(self.params)}
        tensors |= {f"step.{k}": v.detach() for k, v in self.step_impl.state_tensors().items()}
        plain: dict[str, dict[str, Any]] = {}
        for i, values in optimizer["state"].items():
            for key, value in values.items():
                if isinstance(value, torch.Tensor):
                    tensors[f"optimizer.{i}.{key}"] = value
                else:
                    plain.setdefault(str(i), {})[key] = value
        tensors = {k: v.cpu().contiguous() for k, v in tensors.items()}
        state = {
            "optimizer_param_groups": optimizer["param_groups"],
            "optimizer_state": plain,
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.accelerator.scaler.state_dict() if self.accelerator.scaler is not None else None,
        }
        return tensors, state

    def restore(self, out: Path) -> tuple[int, dict[str, list[float]]]:
        """Load the latest checkpoint of ``out`` into the run: (the step it continues at, the history)."""
        from safetensors.torch import load_file

        found = checkpoints(out)
        if not found:
            print(
                f"--resume: no checkpoint in {checkpoint_dir(out)}; starting from the first step",
                file=sys.stderr,
            )
            return 0, {}
        folder = found[-1]
        state = json.loads((folder / _STATE).read_text())
        _check_same_settings(folder, state["settings"], asdict(self.settings))
        tensors = load_file(str(folder / _TENSORS))
        with torch.no_grad():
            for i, p in enumerate(self.params):
                p.copy_(tensors[f"param.{i}"])
        self.step_impl.load_state_tensors(
            {k.removeprefix("step."): v for k, v in tensors.items() if k.startswith("step.")}
        )
        per_param: dict[int, dict[str, Any]] = {}
        for key, value in tensors.items():
            if key.startswith("optimizer."):
                _, i, name = key.split(".", 2)
                per_param.setdefault(int(i), {})[name] = value
        for i, values in state["optimizer_state"].items():
            per_param.setdefault(int(i), {}).update(values)
        self.optimizer.load_state_dict({"state": per_param, "param_groups": state["optimizer_param_groups"]})
        self.scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler") and self.accelerator.scaler is not None:
            self.accelerator.scaler.load_state_dict(state["scaler"])
        return int(state["step"]), {k: list(v) for k, v in state["history"].items()}


def _check_same_settings(folder: Path, saved: dict[str, Any], now: dict[str, Any]) -> None:
    """A checkpoint continues only the run that wrote it: any other setting or config field is an error."""

    def flat(settings: dict[str, Any]) -> dict[str, Any]:
        config = settings.get("config") or {}
        return {
            "processes": 1,  # checkpoints written before multi-process training were one process's
            **{k: v for k, v in settings.items() if k != "config"},
            **{f"config.{k}": v for k, v in config.items()},
        }

    before, after = flat(saved), flat(json.loads(json.dumps(now)))  # compared as JSON reads them back
    differ = [k for k in sorted(set(before) | set(after)) if before.get(k) != after.get(k)]
    if differ:
        shown = "; ".join(f"{k}: {before.get(k)!r} there, {after.get(k)!r} now" for k in differ[:4])
        raise ValueError(
            f"{folder} was written by a run with other settings ({shown}): match them or drop --resume"
        )


def checkpoint_dir(out: str | os.PathLike[str]) -> Path:
    """Where the checkpoints of a run writing ``out`` go: the sibling folder ``<out>.checkpoints``."""
    out = Path(out)
    return out.with_name(out.name + ".checkpoints")


def checkpoints(out: str | os.PathLike[str]) -> list[Path]:
    """The complete checkpoints of ``out``, oldest first (atomic writes: a visible one is whole)."""
    root = checkpoint_dir(out)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and re.fullmatch(r"step-\d+", p.name)]
    return sorted(found, key=lambda p: int(p.name.removeprefix("step-")))


def remove_checkpoints(out: str | os.PathLike[str]) -> None:
    shutil.rmtree(checkpoint_dir(out), ignore_errors=True)
