"""The int8 execution path: oneDNN kernels compute what the float reference computes; the run-time choice."""

from __future__ import annotations

import pytest
import torch
from hubkit.adapters.quantize import kernels as kernels_module
from hubkit.adapters.quantize.kernels import Int8Kernel, cpu_int8_support
from hubkit.adapters.quantize.layer import QuantizedLayer, TimestepClock
from hubkit.adapters.quantize.weights import quantize_weight
from torch import nn

needs_kernels = pytest.mark.skipif(cpu_int8_support() is None, reason="no oneDNN int8 kernels on this CPU")


def _layers():
    torch.manual_seed(0)
    return [
        (nn.Linear(48, 40), torch.randn(2, 7, 48)),
        (nn.Linear(48, 40, bias=False), torch.randn(5, 48)),
        (nn.Conv2d(16, 24, 3, padding=1), torch.randn(2, 16, 9, 9)),
        (nn.Conv2d(16, 24, 3, stride=2, padding=1), torch.randn(1, 16, 10, 10)),
        (nn.Conv2d(16, 8, 1), torch.randn(2, 16, 5, 5)),
    ]


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def test_int8_convs_share_one_scale_across_taps():
    q = quantize_weight(torch.randn(24, 16, 3, 3), 8)
    assert q.scale.shape == (24, 1, 3, 3)
    assert torch.equal(q.scale, q.scale[:, :, :1, :1].expand_as(q.scale))
    assert (q.q.abs().flatten(1).amax(1) >= 100).all()  # the whole channel's range is used


@needs_kernels
@pytest.mark.parametrize("index", range(5))
def test_int8_kernel_computes_the_reference(index):
    base, x = _layers()[index]
    scale = torch.tensor([float(x.abs().max()) / 127 * 0.8])  # some inputs clip, as calibrated ranges do
    layer = QuantizedLayer(base, quantize_weight(base.weight, 8), scale, TimestepClock([0]), "int8")
    with torch.no_grad():
        fast, reference = layer(x), layer.reference(x, scale)
    assert fast.shape == reference.shape == base(x).shape
    assert _relative(fast, reference) < 1e-5  # the same integers; only float summation order differs


@needs_kernels
def test_int4_weights_run_on_the_int8_kernel_regridded_per_channel():
    base, x = _layers()[2]
    weight = quantize_weight(base.weight, 4, 8)
    scale = torch.tensor([float(x.abs().max()) / 127])
    layer = QuantizedLayer(base, weight, scale, TimestepClock([0]), "int8")
    with torch.no_grad():
        fast, reference, full = layer(x), layer.reference(x, scale), base(x)
    regrid = _relative(fast, reference)
    assert 0 < regrid < 0.02  # an int8 step per channel: far below int4's own error
    assert regrid < _relative(reference, full) / 3


@needs_kernels
def test_auto_mode_times_each_shape_once_and_keeps_the_winner(monkeypatch):
    base, x = _layers()[2]
    clock = TimestepClock([999, 500])
    scales = torch.tensor([0.05, 0.02])
    calls = []

    def kernel_always_wins(first, second, **_):
        calls.append(1)
        return True

    monkeypatch.setattr("hubkit.adapters.quantize.layer.faster", kernel_always_wins)
    layer = QuantizedLayer(base, quantize_weight(base.weight, 8), scales, clock, "auto")
    with torch.no_grad():
        clock.group = 1
        first, again = layer(x), layer(x)
        assert len(calls) == 1 and layer.kernel_wins == {x.shape: True}
        assert torch.equal(first, again) and _relative(first, layer.reference(x, scales[1])) < 1e-5
        layer(x[:1])
        assert len(calls) == 2  # a new shape is timed on its own

    monkeypatch.setattr("hubkit.adapters.quantize.layer.faster", lambda first, second, **_: False)
    slow = QuantizedLayer(base, quantize_weight(base.weight, 8), scales, clock, "auto")
    with torch.no_grad():
        out = slow(x)  # the kernel lost: float activations through the dequantized weight (weight-only)
        assert torch.allclose(out, slow.reference(x), atol=1e-6)


def test_faster_compares_with_a_margin():
    import time

    def quick():
        return torch.zeros(1)

    def slow():
        time.sleep(0.003)
        return torch.zeros(1)

    assert kernels_module.faster(quick, slow) and not kernels_module.faster(slow, quick)


def test_without_cpu_kernels_auto_falls_back_and_int8_refuses(monkeypatch):
    monkeypatch.setattr("hubkit.adapters.quantize.layer.cpu_int8_support", lambda: None)
    base, x = _layers()[0]
    scale = torch.tensor([0.03])
    layer = QuantizedLayer(base, quantize_weight(base.weight, 8), scale, TimestepClock([0]), "auto")
    assert layer.kernel is None
    with torch.no_grad():
        assert torch.allclose(layer(x), layer.reference(x), atol=1e-6)
    with pytest.raises(RuntimeError, match="no int8 kernels"):
        QuantizedLayer(base, quantize_weight(base.weight, 8), scale, TimestepClock([0]), "int8")
    with pytest.raises(ValueError, match="kernels must be one of"):
        QuantizedLayer(base, quantize_weight(base.weight, 8), scale, TimestepClock([0]), "fast")


@needs_kernels
def test_int8_kernel_refuses_gradients():
    base, x = _layers()[0]
    layer = QuantizedLayer(
        base, quantize_weight(base.weight, 8), torch.tensor([0.03]), TimestepClock([0]), "int8"
    )
    with pytest.raises(RuntimeError, match="kernels='reference'"):
        layer(x.requires_grad_())


def test_kernel_class_is_built_from_any_layout():
    if cpu_int8_support() is None:
        pytest.skip("no oneDNN int8 kernels on this CPU")
    conv = nn.Conv2d(16, 24, 3, padding=1)
    per_tap = quantize_weight(conv.weight, 4, -1)  # int4 per channel keeps per-tap scales
    assert not torch.equal(per_tap.scale, per_tap.scale[:, :, :1, :1].expand_as(per_tap.scale))
    kernel = Int8Kernel(conv, per_tap)
    assert kernel.weight_scale.shape == (24,)
