"""LCM-LoRA: the distillation maths, its files under stock diffusers, the one-call loader, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from diffusers import LCMScheduler, UNet2DConditionModel
from hubkit.adapters.lcm_lora import (
    DistillError,
    LCMLoRAConfig,
    distill_lcm_lora,
    judge_reward,
    read_sampling,
    remove_lora,
    save_lcm_lora,
)
from hubkit.adapters.lcm_lora.train import boundary_scalings
from hubkit.pipelines.lcm_lora import load_lcm_lora, unload_lcm_lora

from hubkit.world.base_model import assemble_pipeline, unet_config


@pytest.fixture(scope="module")
def pipe():
    p = assemble_pipeline()
    p.set_progress_bar_config(disable=True)
    return p


@pytest.fixture(scope="module")
def distilled(pipe, tmp_path_factory) -> Path:
    """Two distillation steps, ``lora_B`` scaled up so the LoRA visibly changes the UNet's output."""
    base = {k: v.clone() for k, v in pipe.unet.state_dict().items()}
    config = LCMLoRAConfig(steps=2, batch_size=4, rank=4, alpha=4)
    result = distill_lcm_lora(pipe, config, progress=False)
    assert len(result.losses) == 2 and all(loss > 0 for loss in result.losses)
    with torch.no_grad():
        for name, p in result.unet.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.05)
    folder = save_lcm_lora(tmp_path_factory.mktemp("lcm") / "lcm", result.unet, config, "lcm")
    _unet_out.cache = _unet_out(pipe)  # with the LoRA on, before it is deleted
    remove_lora(result.unet)
    after = pipe.unet.state_dict()
    assert all(torch.equal(base[k], after[k]) for k in base)  # the teacher's own weights never move
    return folder


def _unet_out(pipe) -> torch.Tensor:
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        emb = pipe.encode_prompt(["a red circle", "a blue square"], "cpu", 1, False)[0]
        return pipe.unet(x, torch.tensor(499), encoder_hidden_states=emb).sample


def test_ema_target_network_changes_the_target_but_not_the_first_step(pipe):
    """θ⁻ = EMA of the LoRA: equal to θ at the start, so step 1's loss is as without it; then it lags,
    so the loss differs; the UNet's own weights come back untouched either way."""
    base = {k: v.clone() for k, v in pipe.unet.state_dict().items()}
    losses = {}
    for decay in (0.0, 0.5):
        config = LCMLoRAConfig(steps=3, batch_size=2, rank=4, alpha=4, lr=5e-2, ema_decay=decay)
        result = distill_lcm_lora(pipe, config, progress=False)
        losses[decay] = result.losses
        remove_lora(result.unet)
    assert losses[0.0][0] == pytest.approx(losses[0.5][0], rel=1e-5)
    assert losses[0.0][2] != pytest.approx(losses[0.5][2], rel=1e-3)
    assert all(torch.equal(base[k], v) for k, v in pipe.unet.state_dict().items())


def test_a_failed_distillation_leaves_the_teacher_without_a_lora(pipe):
    def batches():
        images = torch.zeros(2, 3, 32, 32)
        yield images, ["a red circle", "a blue square"], [{}, {}]
        raise OSError("dataset went away")

    with pytest.raises(OSError, match="went away"):
        distill_lcm_lora(pipe, LCMLoRAConfig(steps=3, batch_size=2, rank=4, alpha=4), batches=batches())
    assert not getattr(pipe.unet, "peft_config", None)


def test_boundary_scalings_make_f_the_identity_at_zero_and_an_x0_predictor_after():
    c_skip, c_out = boundary_scalings(torch.tensor([0, 19, 999]), 10.0)
    assert c_skip[0] == 1.0 and c_out[0] == 0.0
    assert c_skip[1] < 1e-5 and c_out[1] > 0.9999 and c_out[2] > 0.99999


def test_config_rejects_bad_settings():
    with pytest.raises(ValueError, match="variant"):
        LCMLoRAConfig(variant="dmd")
    with pytest.raises(ValueError, match="reward_scale is for variant 'rg-lcd'"):
        LCMLoRAConfig(reward_scale=0.1)
    with pytest.raises(ValueError, match="target_modules is empty"):
        LCMLoRAConfig(target_modules=[])
    with pytest.raises(ValueError, match="w_min <= w_max"):
        LCMLoRAConfig(w_min=9, w_max=3)
    with pytest.raises(ValueError, match="ema_decay"):
        LCMLoRAConfig(ema_decay=1.0)
    assert LCMLoRAConfig(variant="rg-lcd").reward_scale > 0
    assert LCMLoRAConfig.from_dict(json.loads(LCMLoRAConfig(rank=8).to_json())).rank == 8


def test_file_is_a_stock_diffusers_lora_with_its_config_and_scheduler(pipe, distilled):
    from safetensors import safe_open

    with safe_open(str(distilled / "pytorch_lora_weights.safetensors"), framework="pt") as f:
        keys, meta = list(f.keys()), f.metadata()
    assert keys and all(k.startswith("unet.") and "lora_" in k and "base_model" not in k for k in keys)
    lora = json.loads(meta["lora_adapter_metadata"])
    assert lora["unet.r"] == 4 and lora["unet.lora_alpha"] == 4
    assert meta["hubkit.method"] == "lcm-lora"
    assert read_sampling(distilled)["class_name"] == "LCMScheduler"
    # Stock diffusers rebuilds exactly the trained LoRA: same UNet output as in memory.
    pipe.load_lora_weights(str(distilled))
    try:
        torch.testing.assert_close(_unet_out(pipe), _unet_out.cache)
        assert pipe.unet.peft_config["default_0"].r == 4
    finally:
        pipe.unload_lora_weights()


def test_load_lcm_lora_sets_the_scheduler_fuses_and_unloads_exactly(pipe, distilled):
    before, scheduler = _unet_out(pipe), type(pipe.scheduler)
    settings = load_lcm_lora(pipe, distilled)
    try:
        assert settings == {"num_inference_steps": 4, "guidance_scale": 1.0}
        assert isinstance(pipe.scheduler, LCMScheduler)
        pipe.scheduler.set_timesteps(4)
        assert pipe.scheduler.timesteps.tolist() == [999, 759, 499, 259]
        unfused = _unet_out(pipe)
        torch.testing.assert_close(unfused, _unet_out.cache)
    finally:
        unload_lcm_lora(pipe)
    assert type(pipe.scheduler) is scheduler and torch.equal(_unet_out(pipe), before)
    load_lcm_lora(pipe, distilled, fuse=True)
    try:
        torch.testing.assert_close(_unet_out(pipe), unfused, atol=1e-4, rtol=1e-4)
        image = pipe("a red circle", generator=torch.Generator().manual_seed(0), output_type="np", **settings)
        assert image.images.shape == (1, 32, 32, 3)
    finally:
        unload_lcm_lora(pipe)
    assert torch.allclose(_unet_out(pipe), before, atol=1e-5)


def test_lora_for_another_unet_shape_is_a_clear_error(distilled):
    other = assemble_pipeline()
    other.unet = UNet2DConditionModel(**{**unet_config(), "block_out_channels": (64, 128)})
    with pytest.raises(ValueError, match="does not fit this pipeline's UNet"):
        load_lcm_lora(other, distilled)
    assert not isinstance(other.scheduler, LCMScheduler)  # nothing half-applied
    assert not (getattr(other.unet, "peft_config", None) or {})


def test_unsupported_teacher_and_unknown_scheduler_are_clear_errors(pipe, distilled, tmp_path):
    class NoUnet:
        vae = None

    with pytest.raises(DistillError, match="unsupported teacher"):
        distill_lcm_lora(NoUnet(), LCMLoRAConfig(steps=1))
    info = json.loads((distilled / "hubkit.json").read_text())
    info["scheduler"]["class_name"] = "os.system"
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "hubkit.json").write_text(json.dumps(info))
    (bad / "pytorch_lora_weights.safetensors").write_bytes(
        (distilled / "pytorch_lora_weights.safetensors").read_bytes()
    )
    with pytest.raises(ValueError, match="not a diffusers scheduler"):
        load_lcm_lora(pipe, bad)
    assert "default_0" not in (getattr(pipe.unet, "peft_config", None) or {})


def test_judge_reward_prefers_the_prompted_attributes():
    from hubkit.world.judge import load_judge
    from hubkit.world.shapes import ShapeSpec, render_batch

    specs = [ShapeSpec("circle", "red", "white", "large", seed=i) for i in range(4)]
    images = torch.from_numpy(render_batch(specs)).permute(0, 3, 1, 2).float() / 255
    reward = judge_reward(load_judge())
    right = reward(images, [{"shape": "circle", "colour": "red"}] * 4)
    wrong = reward(images, [{"shape": "square", "colour": "blue"}] * 4)
    assert right.shape == (4,) and bool((right > wrong + 2).all())
    images.requires_grad_(True)
    reward(images, [{"shape": "circle", "colour": "red"}] * 4).sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0  # differentiable: usable as a loss


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """Four captioned images (imagefolder + metadata) of a shape the world never draws, at 40 pixels."""
    import numpy as np
    from PIL import Image

    folder = tmp_path_factory.mktemp("captions")
    rows = []
    for i in range(4):
        pixels = np.full((40, 40, 3), 60 * i, dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{i}.png")
        rows.append(json.dumps({"file_name": f"{i}.png", "caption": f"a plain tile number {i}"}))
    (folder / "metadata.jsonl").write_text("\n".join(rows) + "\n")
    return folder


def test_caption_batches_are_random_rows_positioned_by_index(pipe, dataset):
    from hubkit.adapters.lcm_lora.train import caption_batch, load_distillation_data

    data = load_distillation_data(pipe, LCMLoRAConfig(dataset=str(dataset)))
    assert data.images.shape == (4, 3, 32, 32)  # the teacher's native size (sample size 4 × VAE scale 8)
    first, second = caption_batch(data, 3, 1, 0), caption_batch(data, 3, 1, 1)
    images, captions, attributes = first
    assert images.shape == (3, 3, 32, 32) and images.min() >= -1 and images.max() <= 1
    assert set(captions) <= set(data.captions) and attributes == [{}, {}, {}]
    resumed = caption_batch(data, 3, 1, 1)  # a resumed run's batch 1
    assert torch.equal(resumed[0], second[0]) and resumed[1] == second[1]


def test_a_callers_batches_are_read_by_micro_batch_index():
    """Each of N processes reads every N-th batch of a caller's iterator (and a resumed run its rest)."""
    from hubkit.adapters.lcm_lora.train import LCMStep

    step = LCMStep(None, LCMLoRAConfig(), iter(range(10)), None)
    assert [step.batch(i) for i in (1, 3, 4, 8)] == [1, 3, 4, 8]


def test_distillation_on_a_dataset_reads_its_captions(pipe, dataset, monkeypatch):
    """With ``dataset`` the teacher is conditioned on the dataset's captions, never the world's."""
    from hubkit.adapters.lcm_lora import train

    seen: list[str] = []
    encode = train.encode
    monkeypatch.setattr(
        train, "encode", lambda p, prompts, device: seen.extend(prompts) or encode(p, prompts, device)
    )
    config = LCMLoRAConfig(dataset=str(dataset), steps=2, batch_size=2, rank=2, alpha=2, warmup_steps=0)
    result = distill_lcm_lora(pipe, config, progress=False)
    remove_lora(result.unet)
    assert len(result.losses) == 2 and seen and all(c.startswith("a plain tile number") for c in seen)


def test_dataset_errors_name_the_problem(pipe, tmp_path):
    with pytest.raises(DistillError, match="cannot load the dataset"):
        distill_lcm_lora(pipe, LCMLoRAConfig(dataset=str(tmp_path / "missing"), steps=1), progress=False)
    with pytest.raises(ValueError, match=r"rg-lcd.*not on a dataset"):
        LCMLoRAConfig(variant="rg-lcd", dataset=str(tmp_path))
    assert not getattr(pipe.unet, "peft_config", None)
