"""The shared training loop (``hubkit.training.run_training``): accumulation, checkpoints, resume, atomic
writes; the base's architecture checked and recorded; and resume equality of SPM and LCM-LoRA on the tiny
base pipeline."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from hubkit.adapters.lcm_lora import LCMLoRAConfig, distill_lcm_lora, remove_lora
from hubkit.adapters.spm import SPMConfig
from hubkit.adapters.spm.train import SPMStep
from huggingface_hub import ModelCard
from safetensors.torch import load_file

from hubkit.architectures import scheduler_config, unet_config
from hubkit.cards import render_card, validate_card
from hubkit.cards.render import settings_table
from hubkit.methods import Method, get_method
from hubkit.training import (
    StepContext,
    TrainingStep,
    checkpoint_dir,
    checkpoints,
    choose_mixed_precision,
    run_training,
    start_training,
    write_trained_folder,
)
from hubkit.world.base_model import assemble_pipeline

X = torch.randn(64, 5, generator=torch.Generator().manual_seed(0))
Y = X @ torch.arange(1.0, 6.0) + 0.5


class Toy(TrainingStep):
    """Least squares on fixed rows, micro-batch ``i`` taking rows ``[i·b, (i+1)·b)``; with ``noise`` a
    random target jitter from the loop's generator; an EMA of the weights as extra checkpointed state."""

    description = "toy"

    def __init__(self, batch: int, noise: bool = False, fail_at: int | None = None):
        self.batch, self.noise, self.fail_at = batch, noise, fail_at
        self.w = torch.nn.Parameter(torch.zeros(5))
        self.ema = torch.zeros(5)

    def parameters(self) -> list[torch.nn.Parameter]:
        return [self.w]

    def __call__(self, ctx: StepContext) -> dict[str, torch.Tensor]:
        if ctx.step == self.fail_at:
            raise RuntimeError("step failed")
        rows = torch.arange(ctx.index * self.batch, (ctx.index + 1) * self.batch) % len(X)
        y = Y[rows]
        if self.noise:
            y = y + 0.1 * torch.randn(y.shape, generator=ctx.generator) + 0.1 * torch.randn(y.shape)
        loss = ((X[rows] @ self.w - y) ** 2).mean()
        return {"loss": loss, "w0": self.w[0].detach()}

    def after_update(self, step: int) -> None:
        self.ema.lerp_(self.w.detach(), 0.1)

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return {"ema": self.ema}

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        self.ema.copy_(tensors["ema"])


SETTINGS = {"steps": 8, "lr": 0.1, "seed": 3, "warmup_steps": 2, "schedule": "cosine", "max_grad_norm": 5.0}


def _run(step: Toy, **kw):
    return run_training(step, **{**SETTINGS, "progress": False, **kw})


def test_accumulation_equals_a_bigger_batch():
    big, small = Toy(batch=8), Toy(batch=4)
    a = _run(big)
    b = _run(small, gradient_accumulation_steps=2)
    torch.testing.assert_close(small.w.detach(), big.w.detach())  # float tolerance: sums in another order
    assert b.history["loss"] == pytest.approx(a.history["loss"], rel=1e-5)
    assert not small.w.requires_grad  # training over: parameters frozen


def _files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def test_interrupted_run_resumes_to_the_uninterrupted_result_exactly(tmp_path):
    whole = Toy(batch=4, noise=True)
    expected = _run(whole, gradient_accumulation_steps=2)
    out = tmp_path / "artifact"
    with pytest.raises(RuntimeError, match="step failed"):
        _run(Toy(batch=4, noise=True, fail_at=5), gradient_accumulation_steps=2, out=out, checkpoint_every=1)
    assert not out.exists()  # the loop never writes the artifact
    assert [p.name for p in checkpoints(out)] == ["step-00000004", "step-00000005"]  # the latest two
    assert not [p for p in checkpoint_dir(out).iterdir() if p.name.startswith(".")]  # no staging left
    assert {p.suffix for p in _files(tmp_path)} == {".json", ".safetensors"}  # no pickle anywhere
    resumed = Toy(batch=4, noise=True)
    torch.manual_seed(1234)  # whatever ran before in the process does not matter
    run = _run(resumed, gradient_accumulation_steps=2, out=out, resume=True, checkpoint_every=1)
    assert run.start_step == 5
    assert torch.equal(resumed.w.detach(), whole.w.detach())  # bit for bit
    assert torch.equal(resumed.ema, whole.ema)
    assert run.history == expected.history


def test_resume_refuses_a_checkpoint_of_other_settings_and_starts_afresh_without_one(tmp_path):
    out = tmp_path / "artifact"
    with pytest.raises(RuntimeError):
        _run(Toy(batch=4, fail_at=3), out=out, checkpoint_every=2, config={"rank": 1})
    with pytest.raises(ValueError, match=r"other settings \(config.rank: 1 there, 2 now"):
        _run(Toy(batch=4), out=out, resume=True, config={"rank": 2})
    with pytest.raises(ValueError, match=r"lr: 0\.1 there, 0\.2 now"):
        _run(Toy(batch=4), out=out, resume=True, config={"rank": 1}, lr=0.2)
    # Micro-batches are dealt by process: a checkpoint continues only with its number of processes.
    state_file = checkpoints(out)[-1] / "state.json"
    state = json.loads(state_file.read_text())
    assert state["settings"]["processes"] == 1
    state["settings"]["processes"] = 2  # as written under accelerate launch --num_processes 2
    state_file.write_text(json.dumps(state))
    with pytest.raises(ValueError, match=r"processes: 2 there, 1 now"):
        _run(Toy(batch=4), out=out, resume=True, config={"rank": 1})
    del state["settings"]["processes"]  # written before processes were recorded: by one process
    state_file.write_text(json.dumps(state))
    assert _run(Toy(batch=4), out=out, resume=True, config={"rank": 1}).start_step == 2
    fresh, whole = Toy(batch=4), Toy(batch=4)
    _run(fresh, out=tmp_path / "other", resume=True)
    _run(whole)
    assert torch.equal(fresh.w, whole.w)
    with pytest.raises(ValueError, match="need the output folder"):
        _run(Toy(batch=4), checkpoint_every=2)


def test_mixed_precision_follows_the_hardware(monkeypatch):
    import hubkit.training as training

    assert choose_mixed_precision(torch.device("cpu")) == "no"  # fp32 unless asked: bf16 measured slower
    monkeypatch.setattr(training, "native_cpu_bf16", lambda: False)
    with pytest.raises(ValueError, match="no native bf16"):
        choose_mixed_precision(torch.device("cpu"), "bf16")
    monkeypatch.setattr(training, "native_cpu_bf16", lambda: True)
    assert choose_mixed_precision(torch.device("cpu"), "bf16") == "bf16"
    with pytest.raises(ValueError, match="fp16 mixed precision needs a CUDA device"):
        choose_mixed_precision(torch.device("cpu"), "fp16")
    for supported, expected in ((True, "bf16"), (False, "fp16")):
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda s=supported: s)
        assert choose_mixed_precision(torch.device("cuda")) == expected


def test_final_write_is_atomic_and_removes_the_checkpoints(tmp_path):
    from huggingface_hub import ModelCard

    out = tmp_path / "artifact"
    out.mkdir()
    (out / "old.txt").write_text("previous artifact")
    checkpoint_dir(out).joinpath("step-00000002").mkdir(parents=True)

    def broken(folder: Path) -> None:
        (folder / "w.safetensors").write_bytes(b"half")
        raise OSError("disk full")

    card = lambda facts: ModelCard("---\nlicense: mit\n---\n# card")  # noqa: E731
    with pytest.raises(OSError, match="disk full"):
        write_trained_folder(out, "w.safetensors", broken, card, {})
    assert [p.name for p in out.iterdir()] == ["old.txt"]  # untouched
    assert checkpoints(out)  # still there to resume from
    assert sorted(p.name for p in tmp_path.iterdir()) == ["artifact", "artifact.checkpoints"]  # no staging
    facts: dict = {}
    write_trained_folder(
        out, "w.safetensors", lambda f: (f / "w.safetensors").write_bytes(b"12345"), card, facts
    )
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "w.safetensors"]
    assert facts["file_bytes"] == 5 and not checkpoint_dir(out).exists()


# -- the base's architecture: refused when the method lacks something, recorded in every artifact ---------


class SD1Error(ValueError):
    """The fake method's own error class."""


class SD1Only(Method):
    """A method that trains on SD 1.x alone; it says what it lacks for SDXL, the default reason otherwise."""

    name = "sd1-only"
    architectures = ("sd1",)

    @classmethod
    def architecture_gap(cls, architecture: str) -> str | None:
        if architecture == "sdxl":
            return "its step passes the UNet no pooled text embeddings or time ids (added_cond_kwargs)"
        return super().architecture_gap(architecture)


@dataclass
class SD1Config:
    steps: int = 1


def _fake_pipe(arch: str) -> SimpleNamespace:
    """What ``architecture_of`` reads of a pipeline (the UNet's and scheduler's configs), without weights."""
    prediction = scheduler_config(arch)[1]["prediction_type"]
    return SimpleNamespace(unet=SimpleNamespace(config=unet_config(arch)), scheduler=SimpleNamespace(
        config=SimpleNamespace(prediction_type=prediction)))  # fmt: skip


def test_training_refuses_an_architecture_the_method_lacks_and_records_the_one_it_trains_on(
    tmp_path, monkeypatch
):
    monkeypatch.setattr("hubkit.methods.available_methods", lambda: {SD1Only.name: SD1Only})
    start = partial(start_training, SD1Only.name, config=SD1Config(), error=SD1Error, progress=False)
    with pytest.raises(SD1Error) as refused:
        start(base="alice/tiny-sdxl", out=tmp_path / "xl", pipe=_fake_pipe("sdxl"))
    assert str(refused.value) == (
        "sd1-only cannot train on alice/tiny-sdxl, an SDXL base (sdxl): its step passes the UNet no pooled "
        "text embeddings or time ids (added_cond_kwargs)"
    )
    with pytest.raises(SD1Error, match=r"^sd1-only cannot train on alice/tiny-sd21, an SD 2.x base \(sd2\): "
                       r"it supports only sd1$"):  # fmt: skip
        start(base="alice/tiny-sd21", out=tmp_path / "v", pipe=_fake_pipe("sd21"))
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # refused before any work

    job = start(base="alice/tiny-sd15", out=tmp_path / "ok", pipe=_fake_pipe("sd15"), repo_id="alice/ok")
    assert job.architecture == "sd1"

    def save(folder: Path) -> None:
        (folder / "w.safetensors").write_bytes(b"12345")
        (folder / "hubkit.json").write_text(json.dumps({"method": SD1Only.name, "base_model": job.base}))

    def card(config, base, repo_id, *, facts):
        sections = {"Training": settings_table([("steps", str(config.steps))], facts)}
        return render_card(
            "adapter", method=SD1Only.name, base_model=base, repo_id=repo_id, sections=sections
        )

    facts: dict = {"parameters": 5}
    job.write("w.safetensors", save, card, facts)
    info = json.loads((tmp_path / "ok" / "hubkit.json").read_text())
    assert info == {"architecture": "sd1", "base_model": "alice/tiny-sd15", "method": "sd1-only"}
    assert facts["architecture"] == "sd1"
    written = ModelCard.load(tmp_path / "ok" / "README.md")
    assert written.data.base_architecture == "sd1" and "base-architecture:sd1" in written.data.tags
    assert "| base architecture | SD 1.x (`sd1`) |" in written.text
    assert validate_card(written) == []


# -- the methods on the loop: a stopped run resumed gives the same artifact ----------------------------


@pytest.fixture(scope="module")
def pipe():
    p = assemble_pipeline()
    p.set_progress_bar_config(disable=True)
    return p


def _unet_out(pipe) -> torch.Tensor:
    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        emb = pipe.encode_prompt(["a red circle"], "cpu", 1, False)[0]
        return pipe.unet(x, torch.tensor(500), encoder_hidden_states=emb).sample


def test_spm_stopped_and_resumed_writes_the_same_artifact(pipe, tmp_path, monkeypatch):
    spm = get_method("spm")
    config = SPMConfig(
        concepts=["red"],
        steps=4,
        batch_size=2,
        sampling_steps=4,
        anchors_per_step=1,
        gradient_accumulation_steps=2,
    )
    base = _unet_out(pipe)
    spm.train("hubkit/tiny-sd-shapes", config, tmp_path / "whole", pipe=pipe, progress=False)
    call = SPMStep.__call__

    def failing(self, ctx):
        if ctx.step == 3:
            raise KeyboardInterrupt  # stopped by hand after 3 steps
        return call(self, ctx)

    out = tmp_path / "stopped"
    with monkeypatch.context() as m:
        m.setattr(SPMStep, "__call__", failing)
        with pytest.raises(KeyboardInterrupt):
            spm.train("hubkit/tiny-sd-shapes", config, out, pipe=pipe, progress=False, checkpoint_every=1)
    assert not out.exists()  # nothing half-written
    assert torch.equal(_unet_out(pipe), base)  # the membranes came off the base UNet
    assert [p.name for p in checkpoints(out)] == ["step-00000002", "step-00000003"]
    facts = spm.train("hubkit/tiny-sd-shapes", config, out, pipe=pipe, progress=False, resume=True)
    whole = load_file(str(tmp_path / "whole" / "pytorch_lora_weights.safetensors"))
    resumed = load_file(str(out / "pytorch_lora_weights.safetensors"))
    assert whole.keys() == resumed.keys() and all(torch.equal(whole[k], resumed[k]) for k in whole)
    assert not checkpoint_dir(out).exists()  # a finished run removes its checkpoints
    assert "--gradient-accumulation-steps 2" in facts["command"]


def test_lcm_lora_stopped_and_resumed_gives_the_same_lora(pipe, tmp_path):
    config = LCMLoRAConfig(steps=4, batch_size=2, rank=4, alpha=4, lr=5e-2, gradient_accumulation_steps=2)

    def lora(unet) -> dict[str, torch.Tensor]:
        return {n: p.detach().clone() for n, p in unet.named_parameters() if "lora_" in n}

    whole = distill_lcm_lora(pipe, config, progress=False)
    expected, expected_losses = lora(whole.unet), whole.losses
    remove_lora(whole.unet)

    def stop(step: int, logged: dict) -> None:
        if step == 2:
            raise KeyboardInterrupt

    out = tmp_path / "lcm"
    with pytest.raises(KeyboardInterrupt):
        distill_lcm_lora(pipe, config, progress=False, out=out, checkpoint_every=1, on_step=stop)
    assert not getattr(pipe.unet, "peft_config", None)  # the teacher is as it was
    saved = load_file(str(checkpoints(out)[-1] / "state.safetensors"))
    assert any(k.startswith("step.ema.") for k in saved)  # the EMA target network is checkpointed
    resumed = distill_lcm_lora(pipe, config, progress=False, out=out, resume=True)
    got = lora(resumed.unet)
    remove_lora(resumed.unet)
    assert got.keys() == expected.keys() and all(torch.equal(got[k], expected[k]) for k in got)
    assert resumed.losses == expected_losses
