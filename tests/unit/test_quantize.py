"""Integer weights in SDNQ's geometry: rounding, packing, and a folder that stock diffusers loads."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from hubkit.adapters.quantize.kernels import cpu_int8_support
from hubkit.adapters.quantize.sensitivity import layer_sensitivity, pick_int8_layers
from hubkit.adapters.quantize.serialization import (
    WEIGHTS_NAME,
    QuantizedFileError,
    check_sdnq_folder,
    save_sdnq_unet,
)
from hubkit.adapters.quantize.weights import pack_int4, quantize_weight, unpack_int4
from safetensors.torch import load_file, save_file

from hubkit.layers import adaptable_layers
from hubkit.world.base_model import assemble_pipeline


def _heavy_tailed(shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(shape, generator=g) * 0.05
    w.view(-1)[torch.randint(w.numel(), (max(1, w.numel() // 200),), generator=g)] *= 12  # rare outliers
    return w


@pytest.mark.parametrize("bits,group", [(8, -1), (4, -1), (4, 16)])
@pytest.mark.parametrize("shape", [(64, 48), (32, 48, 3, 3)])
def test_rounding_error_is_bounded_and_clip_search_beats_round_to_nearest(bits, group, shape):
    w = _heavy_tailed(shape)
    rtn = quantize_weight(w, bits, group, clip_search=False)
    searched = quantize_weight(w, bits, group)
    assert rtn.dequantize().shape == w.shape and rtn.q.dtype == torch.int8
    assert rtn.q.min() >= -(2 ** (bits - 1)) and rtn.q.max() <= 2 ** (bits - 1) - 1
    err_rtn = (rtn.dequantize() - w).square().sum()
    err_searched = (searched.dequantize() - w).square().sum()
    # round to nearest from the absolute maximum: every entry within half a step of its value
    step = rtn.scale.expand_as(rtn.q).reshape(-1)  # the same flat order as the weight's (a view of it)
    assert ((rtn.dequantize() - w).abs().reshape(-1) <= step / 2 + 1e-7).all()
    assert err_searched <= err_rtn
    if bits == 4:
        assert err_searched < 0.9 * err_rtn  # outliers waste int4 levels that clipping wins back


def test_group_geometry_follows_sdnq():
    conv = quantize_weight(torch.randn(32, 48, 3, 3), 4, 16)
    assert conv.q.shape == (32, 3, 16, 3, 3) and conv.scale.shape == (32, 3, 1, 3, 3)
    per_channel = quantize_weight(torch.randn(32, 48, 3, 3), 8)
    assert per_channel.q.shape == (32, 48, 3, 3) and per_channel.scale.shape == (32, 1, 3, 3)
    uneven = quantize_weight(torch.randn(8, 40), 4, 16)  # 16 does not divide 40: per channel, as SDNQ
    assert uneven.group_size == -1 and uneven.scale.shape == (8, 1)


def test_importance_weights_the_rounding_of_loud_channels():
    w = _heavy_tailed((64, 32), seed=3)
    loud = torch.ones(32)
    loud[:4] = 100.0
    plain, weighted = quantize_weight(w, 4, -1), quantize_weight(w, 4, -1, importance=loud)
    err = lambda qw: (qw.dequantize() - w)[:, :4].square().sum()  # noqa: E731
    assert err(weighted) <= err(plain)
    with pytest.raises(ValueError, match="importance has 3 entries for 32 input channels"):
        quantize_weight(w, 4, -1, importance=torch.ones(3))


def test_int4_packing_round_trips_and_bad_bits_are_refused():
    q = torch.randint(-8, 8, (6, 10), dtype=torch.int8)
    packed = pack_int4(q)
    assert packed.dtype == torch.uint8 and packed.numel() == 30
    assert torch.equal(unpack_int4(packed, (6, 10)), q)
    with pytest.raises(ValueError, match="int8 or int4"):
        quantize_weight(torch.randn(4, 4), 3)


@pytest.fixture(scope="module")
def unet():
    return assemble_pipeline().unet.eval()


def _quantize_all(unet, bits, group, keep=("conv_in", "conv_out")):
    layers = adaptable_layers(unet)
    quantized = {
        p: quantize_weight(m.weight, 8 if p.startswith(keep[:1]) else bits, group)
        for p, m in layers.items()
        if p not in keep[1:]
    }
    return layers, quantized


@pytest.mark.parametrize("bits,group", [(8, -1), (4, 32)])
def test_stock_from_pretrained_loads_the_folder_bit_exactly(unet, tmp_path, bits, group):
    from diffusers import UNet2DConditionModel

    layers, quantized = _quantize_all(unet, bits, group)
    folder = tmp_path / "unet"
    config = save_sdnq_unet(unet, layers, quantized, folder, bits, group)
    assert config["modules_to_not_convert"] == ["conv_out.weight"]
    assert config["modules_dtype_dict"] == ({"int8": ["conv_in.weight"]} if bits == 4 else {})
    check_sdnq_folder(folder, {p: tuple(m.weight.shape) for p, m in layers.items()})

    loaded = UNet2DConditionModel.from_pretrained(folder)  # stock diffusers + sdnq; nothing of hubkit
    modules = dict(loaded.named_modules())
    for path, qw in quantized.items():
        m = modules[path]
        w = m.sdnq_dequantizer(weight=m.weight, scale=m.scale, zero_point=None, skip_compile=True)
        assert torch.equal(w.float(), qw.dequantize()), path
    assert type(modules["conv_out"]).__name__ == "Conv2d"

    reference = assemble_pipeline().unet.eval()  # the float UNet with the same integer weights, by hand
    with torch.no_grad():
        for path, qw in quantized.items():
            dict(reference.named_modules())[path].weight.copy_(qw.dequantize())
        x, emb = torch.randn(2, 4, 8, 8), torch.randn(2, 16, 384)
        want, got = reference(x, 500, emb).sample, loaded(x, 500, emb).sample
    assert torch.allclose(got, want, atol=1e-4, rtol=1e-4)
    file_bytes = (folder / WEIGHTS_NAME).stat().st_size
    float_bytes = sum(p.numel() * 4 for p in unet.parameters())
    assert file_bytes < float_bytes / (3.5 if bits == 8 else 5)


def test_folder_checks_name_what_is_wrong(unet, tmp_path):
    layers, quantized = _quantize_all(unet, 8, -1)
    good = tmp_path / "good"
    save_sdnq_unet(unet, layers, quantized, good, 8, -1)
    shapes = {p: tuple(m.weight.shape) for p, m in layers.items()}
    state = load_file(good / WEIGHTS_NAME)
    layer = "down_blocks.0.resnets.0.conv1"

    def broken(name, edit):
        folder = tmp_path / name
        shutil.copytree(good, folder)
        edited = dict(state)
        edit(edited)
        save_file(edited, folder / WEIGHTS_NAME, metadata={"format": "pt"})
        return folder

    cases = {
        "scale shape": (lambda s: s.update({f"{layer}.scale": s[f"{layer}.scale"][:, :, 0, 0].contiguous()}),
                        r"conv1.scale: .*implies shape \(\d+, 1, 3, 3\)"),
        "int16": (lambda s: s.update({f"{layer}.weight": s[f"{layer}.weight"].to(torch.int16)}),
                  "conv1.weight: .*holds .*I16"),
        "missing": (lambda s: s.pop(f"{layer}.scale"), "conv1.scale: .*holds nothing"),
    }  # fmt: skip
    for name, (edit, message) in cases.items():
        with pytest.raises(QuantizedFileError, match=message):
            check_sdnq_folder(broken(name.replace(" ", "_"), edit), shapes)
    truncated = broken("truncated", lambda s: None)
    data = (truncated / WEIGHTS_NAME).read_bytes()
    (truncated / WEIGHTS_NAME).write_bytes(data[: len(data) // 2])
    with pytest.raises(QuantizedFileError, match="unreadable or truncated"):
        check_sdnq_folder(truncated, shapes)
    config = json.loads((good / "config.json").read_text())
    config["quantization_config"]["weights_dtype"] = "int4"  # the config no longer matches the tensors
    (good / "config.json").write_text(json.dumps(config))
    with pytest.raises(QuantizedFileError, match=r"implies shape \(\d+,\) U8"):
        check_sdnq_folder(good, shapes)


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    peak = b.abs().max()
    return float(10 * torch.log10(peak**2 / (a - b).square().mean()))


def test_calibrated_w8a8_tracks_the_float_trajectory_and_static_scales_follow_the_timesteps():
    from hubkit.adapters.quantize.calibrate import calibrate
    from hubkit.adapters.quantize.model import apply_quantized, quantize_weights, remove_quantized

    pipe = assemble_pipeline()
    pipe.set_progress_bar_config(disable=True)
    layers = adaptable_layers(pipe.unet)
    prompts = ["a red circle", "a blue square", "a green triangle", "a yellow ring"]
    stats = calibrate(pipe, layers, prompts, steps=8, timestep_groups=4, progress=False)
    assert len(stats.bounds) == 4 and stats.bounds == sorted(stats.bounds, reverse=True)
    assert set(stats.ranges) == set(layers) and all(
        r.shape == (4,) and (r > 0).all() for r in stats.ranges.values()
    )
    conv_in = stats.channel_ms["conv_in"]
    assert conv_in.shape == (4,) and (conv_in > 0).all()
    drift = [float(r.max() / r.min()) for r in stats.ranges.values()]
    assert sum(d > 1.5 for d in drift) > len(drift) // 4  # ranges move with the timestep: one scale won't do

    def sample(p):
        g = [torch.Generator().manual_seed(7 + i) for i in range(len(p))]
        return pipe(p, num_inference_steps=8, generator=g, output_type="latent").images

    test = ["a purple diamond", "an orange cross"]
    reference = sample(test)
    quantized = quantize_weights(layers, 8, -1, stats=stats)
    handle = apply_quantized(pipe.unet, layers, quantized, stats.scales(), stats.bounds)
    try:
        w8a8 = sample(test)
    finally:
        remove_quantized(pipe.unet, handle)
    assert torch.equal(sample(test), reference)  # the float layers are back as they were
    if cpu_int8_support() is not None:  # the same artifact on the CPU's int8 kernels, every layer
        handle = apply_quantized(pipe.unet, layers, quantized, stats.scales(), stats.bounds, kernels="int8")
        try:
            fast = sample(test)
        finally:
            remove_quantized(pipe.unet, handle)
        # same integers; rounding ties and summation order differ, which the trajectory carries on
        assert _psnr(fast, reference) > max(25, _psnr(w8a8, reference) - 3)
    handle = apply_quantized(pipe.unet, layers, quantize_weights(layers, 4, 32), None)
    try:
        w4 = sample(test)
    finally:
        remove_quantized(pipe.unet, handle)
    assert _psnr(w8a8, reference) > 25 and _psnr(w4, reference) < _psnr(w8a8, reference)

    # measured sensitivity on the calibration calls (one per timestep group, the first batch's)
    assert len(stats.calls) == 4 and [int(t) for _, t, _ in stats.calls] == stats.bounds
    int4 = quantize_weights(layers, 4, 32, stats=stats)
    sensitivity = layer_sensitivity(pipe.unet, layers, int4, stats)
    assert set(sensitivity) == set(layers) and all(v > 0 for v in sensitivity.values())
    values = sorted(sensitivity.values())
    assert values[-1] > 20 * values[len(values) // 2]  # a few layers matter far more than the typical one
    assert torch.equal(sample(test), reference)  # measuring left the UNet float


def test_int8_layers_are_picked_by_error_removed_per_byte_within_the_budget():
    weights = {name: quantize_weight(torch.randn(64, 64), 4, 32) for name in ("a", "b", "c")}
    weights["d"] = quantize_weight(torch.randn(64, 64), 8)  # already int8: never picked
    extra = 64 * 64 + 64 * 4 - weights["a"].nbytes  # int8 values + scales, minus the int4 bytes
    sensitivity = {"a": 1.0, "b": 3.0, "c": 2.0, "d": 9.0}
    assert pick_int8_layers(sensitivity, weights, 2 * extra) == ["b", "c"]
    assert pick_int8_layers(sensitivity, weights, extra - 1) == []
    big = {**weights, "c": quantize_weight(torch.randn(64, 256), 4, 32)}  # 4x the bytes for 2/3 of b's gain
    assert pick_int8_layers(sensitivity, big, 2 * extra) == ["b", "a"]


def test_quantized_layer_reads_the_wrapped_layers_shape_through():
    """Pipelines read layer shapes (SDXL: ``unet.add_embedding.linear_1.in_features``) on hubkit's UNet."""
    from hubkit.adapters.quantize.layer import QuantizedLayer

    linear, conv = torch.nn.Linear(48, 64), torch.nn.Conv2d(8, 16, 3, stride=2, padding=1)
    q_linear = QuantizedLayer(linear, quantize_weight(linear.weight, 8, -1))
    q_conv = QuantizedLayer(conv, quantize_weight(conv.weight, 4, -1))
    assert (q_linear.in_features, q_linear.out_features) == (48, 64)
    assert (q_conv.in_channels, q_conv.out_channels, q_conv.kernel_size) == (8, 16, (3, 3))
    assert (q_conv.stride, q_conv.padding, q_conv.groups) == ((2, 2), (1, 1), 1)
    assert not hasattr(q_linear, "kernel_size") and not hasattr(q_conv, "in_features")
