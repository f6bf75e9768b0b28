"""SaRA: selection, the sparse tuner layer, regularisers, files, loading, training and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hubkit.adapters.sara.config import SaraAdapterConfig, SaRAConfig
from hubkit.adapters.sara.layer import SaraLayer
from hubkit.adapters.sara.model import (
    SaraError,
    effective_rank,
    eligible_for_rank,
    freeze_grown,
    inject_sara,
    merged_copy,
    nuclear_norm,
    sara_layers,
)
from hubkit.adapters.sara.serialization import CONFIG_NAME, WEIGHT_NAME, read_sara, save_sara
from hubkit.adapters.sara.train import train_sara
from hubkit.pipelines.sara import load_sara, unload_sara
from torch import nn

from hubkit.finetune import DenoisingStep, FineTuneError, ImageCaptions, load_image_captions
from hubkit.training import StepContext
from hubkit.world.base_model import assemble_pipeline


class Tiny(nn.Module):
    """A Linear and a Conv2d, weights spread over [-0.1, 0.1] so a threshold picks a known share."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.fc = nn.Linear(40, 48)
        self.conv = nn.Conv2d(4, 36, 3, padding=1)
        with torch.no_grad():
            self.fc.weight.copy_(torch.rand(48, 40, generator=g) * 0.2 - 0.1)
            self.conv.weight.copy_(torch.rand(36, 4, 3, 3, generator=g) * 0.2 - 0.1)

    def forward(self, x: torch.Tensor, img: torch.Tensor) -> torch.Tensor:
        return self.fc(x).sum() + self.conv(img).sum()


def _inputs():
    g = torch.Generator().manual_seed(1)
    return torch.randn(3, 40, generator=g), torch.randn(2, 4, 6, 6, generator=g)


@pytest.fixture(scope="module")
def pipe():
    return assemble_pipeline()


def _heart_folder(tmp: Path, n: int = 12) -> Path:
    """An imagefolder dataset (PNG files + metadata.jsonl) of novel-shape images in the trained colours."""
    from hubkit.world import shapes

    folder = tmp / "hearts"
    folder.mkdir()
    rows = []
    for i, spec in enumerate(shapes.sample_specs(n, 1, "novel-trained")):
        shapes.render(spec).save(folder / f"{i}.png")
        rows.append({"file_name": f"{i}.png", "caption": spec.caption(spec.seed)})
    (folder / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


# -- selection -----------------------------------------------------------------------------------------


def test_global_threshold_selects_exactly_the_small_weights_of_linear_and_conv():
    model = Tiny()
    w_fc, w_conv = model.fc.weight.detach().clone(), model.conv.weight.detach().clone()
    tuner = inject_sara(model, SaraAdapterConfig(threshold=0.02))
    layers = dict(sara_layers(model))
    assert set(layers) == {"fc", "conv"} and all(isinstance(v, SaraLayer) for v in layers.values())
    for path, w in (("fc", w_fc), ("conv", w_conv)):
        expected = torch.nonzero(w.abs().flatten() < 0.02).flatten()
        got = layers[path].sara_indices["default"]
        assert got.dtype == torch.int32 and torch.equal(got.long(), expected)
    assert tuner.peft_config["default"].selected == int(
        (w_fc.abs() < 0.02).sum() + (w_conv.abs() < 0.02).sum()
    )


def test_budget_picks_the_threshold_for_that_many_entries():
    model = Tiny()
    config = SaraAdapterConfig(budget=300)
    inject_sara(model, config)
    assert 295 <= config.selected <= 300
    weights = torch.cat([model.fc.base_layer.weight.flatten(), model.conv.base_layer.weight.flatten()])
    assert int((weights.abs() < config.threshold).sum()) == config.selected


def test_threshold_selecting_nothing_or_everything_is_refused():
    with pytest.raises(SaraError, match="selects no weight"):
        inject_sara(Tiny(), SaraAdapterConfig(threshold=1e-9))
    with pytest.raises(SaraError, match="full fine-tuning"):
        inject_sara(Tiny(), SaraAdapterConfig(threshold=10.0))
    with pytest.raises(SaraError, match="full fine-tuning"):
        inject_sara(Tiny(), SaraAdapterConfig(budget=10**6))
    model = Tiny()
    inject_sara(model, SaraAdapterConfig(threshold=0.05))
    with pytest.raises(SaraError, match="already has a SaRA adapter"):
        inject_sara(model, SaraAdapterConfig(threshold=0.05))


def test_layer_types_restrict_the_targets():
    model = Tiny()
    inject_sara(model, SaraAdapterConfig(threshold=0.05, layer_types=["conv"]))
    assert [p for p, _ in sara_layers(model)] == ["conv"] and isinstance(model.fc, nn.Linear)


# -- the layer -------------------------------------------------------------------------------------------


def test_fresh_adapter_is_identity_and_gradients_reach_only_the_selected_entries():
    model = Tiny()
    x, img = _inputs()
    reference = model(x, img).detach()
    dense = Tiny()
    dense.requires_grad_(True)
    dense(x, img).backward()  # the dense weight gradients, to compare with
    tuner = inject_sara(model, SaraAdapterConfig(threshold=0.03))
    out = model(x, img)
    assert torch.equal(out.detach(), reference)
    out.backward()
    assert [n for n, p in model.named_parameters() if p.grad is not None] == [
        "fc.sara_delta.default",
        "conv.sara_delta.default",
    ]
    for path, layer in sara_layers(model):
        dense_grad = getattr(dense, path).weight.grad.flatten()
        got = layer.sara_delta["default"].grad
        assert got.shape == layer.sara_indices["default"].shape
        assert torch.allclose(got, dense_grad[layer.sara_indices["default"].long()], atol=1e-5)
    assert sum(p.numel() for p in tuner.delta_parameters()) == tuner.peft_config["default"].selected


def test_merge_unmerge_disable_and_merged_copy_agree():
    model = Tiny()
    x, img = _inputs()
    base = model(x, img).detach()
    tuner = inject_sara(model, SaraAdapterConfig(threshold=0.03))
    with torch.no_grad():
        for p in tuner.delta_parameters():
            p.normal_(0, 0.01)
    adapted = model(x, img).detach()
    assert not torch.allclose(adapted, base)
    copy = merged_copy(model)
    assert isinstance(copy.fc, nn.Linear) and torch.allclose(copy(x, img), adapted, atol=1e-5)
    assert torch.allclose(model(x, img), adapted)  # the original still has its adapter, unmerged
    tuner.disable_adapter_layers()
    assert torch.allclose(model(x, img), base)
    tuner.enable_adapter_layers()
    tuner.merge_adapter()
    assert torch.allclose(model(x, img), adapted, atol=1e-5)
    tuner.unmerge_adapter()
    assert torch.allclose(model(x, img), adapted, atol=1e-5)


# -- regularisers ----------------------------------------------------------------------------------------


def test_nuclear_norm_trains_the_deltas_and_lowers_the_rank_of_the_update():
    """Fit a full-rank target update with and without the penalty: the penalty's update has a lower
    effective rank (the official code's penalty never reaches the trained tensors)."""
    ranks = {}
    for lam in (0.0, 0.5):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(64, 64, bias=False))
        with torch.no_grad():
            model[0].weight.copy_(torch.rand(64, 64) * 0.2 - 0.1)
        inject_sara(model, SaraAdapterConfig(threshold=0.05))
        layer = dict(sara_layers(model))["0"]
        target = torch.randn(64, 64) * 0.05
        params = [layer.sara_delta["default"]]
        opt = torch.optim.Adam(params, lr=3e-3)
        eligible = eligible_for_rank(model, 32)
        selected = torch.zeros(64 * 64).scatter(0, layer.sara_indices["default"].long(), 1.0).view(64, 64)
        for _ in range(300):
            delta = layer.get_delta_weight("default")
            loss = ((delta - target) ** 2 * selected).sum()
            if lam:
                loss = loss + lam * nuclear_norm(eligible, 0, torch.Generator())
            opt.zero_grad()
            loss.backward()
            assert params[0].grad is not None and params[0].grad.abs().sum() > 0
            opt.step()
        ranks[lam] = effective_rank(layer)
    assert ranks[0.5][0] < 0.85 * ranks[0.0][0] and ranks[0.5][1] < 0.8 * ranks[0.0][1]


def test_progressive_freeze_marks_entries_grown_past_the_threshold():
    model = Tiny()
    inject_sara(model, SaraAdapterConfig(threshold=0.02))
    layer = dict(sara_layers(model))["fc"]
    with torch.no_grad():
        layer.sara_delta["default"][:5] = 0.5
    assert freeze_grown(model, 0.02) == 5
    assert layer.sara_frozen["default"][:5].all() and not layer.sara_frozen["default"][5:].any()


def test_config_rejects_what_the_official_code_crashes_on():
    with pytest.raises(ValueError, match=r"progressive_at must be in \[0, 1\)"):
        SaRAConfig(dataset="x", progressive_at=-1)
    with pytest.raises(ValueError, match="needs a dataset of images"):
        SaRAConfig()
    with pytest.raises(ValueError, match="threshold"):
        SaRAConfig(dataset="x", threshold=0)
    assert SaRAConfig(dataset="x", progressive_at=0).progressive_step is None
    assert SaRAConfig(dataset="x", lr=0, threshold=2e-3).learning_rate == pytest.approx(
        4.966e-4, rel=1e-3
    )  # auto
    assert SaRAConfig(dataset="x").learning_rate == 2e-3


# -- files and loading -----------------------------------------------------------------------------------


def _random_adapter(pipe, folder: Path, budget: int = 20_000) -> torch.Tensor:
    """Save a SaRA adapter with random deltas for ``pipe``'s UNet; returns the adapted UNet's output."""
    config = SaraAdapterConfig(budget=budget)
    tuner = inject_sara(pipe.unet, config)
    with torch.no_grad():
        for p in tuner.delta_parameters():
            p.normal_(0, 1e-3)
    out = _unet_out(pipe)
    folder.mkdir(parents=True, exist_ok=True)
    save_sara(folder, pipe.unet, config)
    tuner.unload()
    return out


def _unet_out(pipe) -> torch.Tensor:
    g = torch.Generator().manual_seed(3)
    x, emb = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 16, 384, generator=g)
    with torch.no_grad():
        return pipe.unet(x, torch.tensor([10, 700]), encoder_hidden_states=emb).sample


def test_file_round_trip_fused_and_unfused(pipe, tmp_path):
    base = _unet_out(pipe)
    expected = _random_adapter(pipe, tmp_path / "a")
    assert torch.equal(_unet_out(pipe), base)  # unload gave the base back
    file = read_sara(tmp_path / "a")
    config = json.loads((tmp_path / "a" / CONFIG_NAME).read_text())
    assert config["peft_type"] == "SARA" and file.parameters == config["selected"]
    assert set(config["target_modules"]) == set(file.weights)  # exact module paths, not peft's suffixes
    load_sara(pipe, tmp_path / "a", fuse=False)
    assert torch.allclose(_unet_out(pipe), expected, atol=1e-6)
    unload_sara(pipe)
    assert torch.equal(_unet_out(pipe), base)
    state = {k: v.clone() for k, v in pipe.unet.state_dict().items()}
    load_sara(pipe, tmp_path / "a", fuse=True)
    assert torch.allclose(_unet_out(pipe), expected, atol=1e-5)
    assert not any("sara" in k for k in pipe.unet.state_dict())  # a plain UNet again
    pipe.unet.load_state_dict(state)


def test_bad_files_are_clear_errors_and_leave_the_unet_alone(pipe, tmp_path):
    from safetensors.torch import save_file

    _random_adapter(pipe, tmp_path / "good")
    base = _unet_out(pipe)
    with pytest.raises(SaraError, match=r"adapter_config\.json is missing"):
        load_sara(pipe, tmp_path)
    bad = tmp_path / "corrupt"
    bad.mkdir()
    (bad / CONFIG_NAME).write_text((tmp_path / "good" / CONFIG_NAME).read_text())
    (bad / WEIGHT_NAME).write_bytes((tmp_path / "good" / WEIGHT_NAME).read_bytes()[:1000])
    with pytest.raises(SaraError, match="corrupt"):
        load_sara(pipe, bad)
    (bad / CONFIG_NAME).write_text(json.dumps({"peft_type": "LORA"}))
    with pytest.raises(SaraError, match="not a SaRA adapter config"):
        load_sara(pipe, bad)
    (bad / CONFIG_NAME).write_text((tmp_path / "good" / CONFIG_NAME).read_text())
    save_file(
        {"base_model.model.conv_in.sara_indices": torch.zeros(3, dtype=torch.int32)}, str(bad / WEIGHT_NAME)
    )
    with pytest.raises(SaraError, match="needs int32 indices and a delta"):
        load_sara(pipe, bad)
    with pytest.raises(SaraError, match="no such file"):
        load_sara(pipe, "./no/such/folder")
    assert torch.equal(_unet_out(pipe), base)


def test_adapter_for_another_unet_shape_is_refused(pipe, tmp_path):
    from diffusers import UNet2DConditionModel

    from hubkit.world.base_model import unet_config

    _random_adapter(pipe, tmp_path / "a")
    other = assemble_pipeline()
    other.unet = UNet2DConditionModel(**{**unet_config(), "block_out_channels": (32, 64)})
    with pytest.raises(SaraError, match="does not fit this base model"):
        load_sara(other, tmp_path / "a")
    assert not any("sara" in k for k in other.unet.state_dict())


# -- data and training -----------------------------------------------------------------------------------


def test_dataset_problems_are_clear_errors(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FineTuneError, match="cannot load the dataset"):
        load_image_captions(str(empty), None, "train", "image", "caption", 32)
    small = _heart_folder(tmp_path, n=2)
    with pytest.raises(FineTuneError, match="has 2 examples: fine-tuning needs at least 4"):
        load_image_captions(str(small), None, "train", "image", "caption", 32)
    with pytest.raises(FineTuneError, match="no column 'text'"):
        load_image_captions(str(small), None, "train", "image", "text", 32)


def test_images_are_resized_and_centre_cropped(tmp_path):
    data = load_image_captions(str(_heart_folder(tmp_path, n=4)), None, "train", "image", "caption", 16)
    assert data.images.shape == (4, 3, 16, 16) and data.images.dtype == torch.uint8 and len(data) == 4


def test_training_resumes_bit_for_bit_through_the_progressive_freeze(pipe, tmp_path):
    """4 steps, the freeze after step 2, checkpoints every 2: a run interrupted at the checkpoint and
    resumed ends with the uninterrupted run's deltas and frozen entries, exactly."""
    data = load_image_captions(str(_heart_folder(tmp_path)), None, "train", "image", "caption", 32)
    config = SaRAConfig(dataset="x", steps=4, batch_size=4, warmup_steps=0, progressive_at=0.5, budget=50_000)

    def run(out: Path, **loop) -> tuple[list[torch.Tensor], list[torch.Tensor], int]:
        result = train_sara(pipe, config, data=data, progress=False, out=out, **loop)
        layers = [layer for _, layer in sara_layers(pipe.unet)]
        deltas = [layer.sara_delta["default"].detach().clone() for layer in layers]
        frozen = [layer.sara_frozen["default"].clone() for layer in layers]
        result.tuner.unload()
        return deltas, frozen, result.frozen

    full, frozen, count = run(tmp_path / "full")
    assert count > 0 and sum(int(f.sum()) for f in frozen) == count

    class Stop(Exception):
        pass

    def stop_at_3(step, logged):
        if step == 2:
            raise Stop

    with pytest.raises(Stop):
        train_sara(pipe, config, data=data, progress=False, out=tmp_path / "cut", checkpoint_every=2,
                   on_step=stop_at_3)  # fmt: skip
    assert not any("sara" in k for k in pipe.unet.state_dict())  # the failed run took its adapter off
    resumed, frozen_resumed, _ = run(tmp_path / "cut", checkpoint_every=2, resume=True)
    assert all(torch.equal(a, b) for a, b in zip(full, resumed, strict=True))
    assert all(torch.equal(a, b) for a, b in zip(frozen, frozen_resumed, strict=True))


def test_prior_share_mixes_both_datasets_in_every_batch(pipe):
    a = ImageCaptions(torch.zeros(5, 3, 32, 32, dtype=torch.uint8), ["new"] * 5, "a")
    b = ImageCaptions(torch.full((5, 3, 32, 32), 255, dtype=torch.uint8), ["old"] * 5, "b")
    step = DenoisingStep(pipe, a, b, batch_size=8, prior_share=0.25, make_params=lambda unet: [])
    step.device = torch.device("cpu")
    images, captions = step._batch(torch.Generator().manual_seed(0))
    assert captions.count("new") == 6 and captions.count("old") == 2
    assert images.shape == (8, 3, 32, 32) and images[:6].max() == -1 and images[6:].min() == 1
    with pytest.raises(FineTuneError, match="leaves no prior images"):
        DenoisingStep(pipe, a, b, batch_size=2, prior_share=0.1, make_params=lambda unet: [])


def test_prior_target_base_distils_the_prior_rows_from_a_frozen_copy(pipe):
    g = torch.Generator().manual_seed(0)
    a = ImageCaptions(torch.randint(0, 256, (5, 3, 32, 32), generator=g, dtype=torch.uint8), ["new"] * 5, "a")
    b = ImageCaptions(torch.randint(0, 256, (5, 3, 32, 32), generator=g, dtype=torch.uint8), ["old"] * 5, "b")
    original = pipe.unet.conv_out.bias.detach().clone()

    def rows(target: str, nudge: float) -> torch.Tensor:
        step = DenoisingStep(pipe, a, b, 8, 0.25, lambda unet: [], prior_target=target)
        step.setup(torch.device("cpu"))
        with torch.no_grad():
            pipe.unet.conv_out.bias.add_(nudge)  # the student moves; a teacher copy must not
        ctx = StepContext(0, 0, 0, torch.Generator().manual_seed(1), torch.device("cpu"))
        try:
            return step.row_losses(ctx).detach()
        finally:
            with torch.no_grad():
                pipe.unet.conv_out.bias.copy_(original)
            pipe.unet.eval()

    data, base = rows("data", 0.0), rows("base", 0.0)
    assert torch.equal(data[:6], base[:6])  # the new images' rows are the same plain denoising loss
    assert base[6:].max() < 1e-9 < 1e-3 < data[6:].min()  # untouched UNet: the base predicts itself
    moved = rows("base", 0.05)
    assert moved[6:].min() > 1e-6  # ... and once it moves, the prior rows pull it back to the frozen copy
    with pytest.raises(ValueError, match="prior_target must be one of data, base"):
        SaRAConfig(dataset="x", prior_target="teacher")
