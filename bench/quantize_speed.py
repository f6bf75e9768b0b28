"""Quantized UNet speed on this CPU: one UNet step, fp32 eager vs hubkit's int8 path vs SDNQ, side by side.

    python bench/quantize_speed.py [--unets tiny,tiny16,sd15] [--rounds 5] [--json .bench/quantize_speed.json]

UNets: ``tiny`` is the reference world's tiny-sd-shapes (its own 8x8 latents and 16 text tokens, batch 2
as classifier-free guidance runs it for one image; ``tiny16``: 16 images at once, batch 32, as the leaderboard
suites sample); ``sd15`` is an SD-1.5-shaped UNet2DConditionModel with random
weights (64x64 latents, batch 1, 77 text tokens of 768). Activation scales: tiny's from the real
calibration on its own trajectories; sd15's from the absolute maximum of each layer's input on one forward
(random weights have no trajectory; scales do not change the kernel's speed).

Variants, each timed round-robin with the others (``--rounds`` rounds, the median per variant reported):
fp32 eager; hubkit W8A8 on the int8 kernels with ``kernels="auto"`` (per-layer timing decides) and with
``kernels="int8"`` (every quantized layer on the kernel); SDNQ int8 round-to-nearest as stock diffusers
runs it (dequantize, float matmul) and with SDNQ's own int8 matmul (dynamic activations, ``torch._int_mm``).
Preparation (prepack + the auto mode's first-call timing) is reported apart from the step time.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import time
import warnings
from pathlib import Path

os.environ.setdefault("SDNQ_USE_TORCH_COMPILE", "0")

import torch
from diffusers import UNet2DConditionModel
from hubkit.adapters.quantize.calibrate import calibrate
from hubkit.adapters.quantize.kernels import cpu_int8_support
from hubkit.adapters.quantize.layer import QuantizedLayer
from hubkit.adapters.quantize.model import apply_quantized, quantize_weights
from rich.console import Console
from rich.table import Table

from hubkit.layers import adaptable_layers
from hubkit.world.base_model import assemble_pipeline

console = Console(width=160)
SD15 = dict(
    sample_size=64,
    block_out_channels=(320, 640, 1280, 1280),
    layers_per_block=2,
    cross_attention_dim=768,
    attention_head_dim=8,
    down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
)
PEAK = {"AVX512": 4.0, "AVX2": 2.0}
"""int8 over fp32 throughput per core at best: 4x with VNNI (AVX-512 hosts here have it), ~1-2x on AVX2."""


def tiny_unet(images: int = 1):
    pipe = assemble_pipeline()
    pipe.set_progress_bar_config(disable=True)
    layers = adaptable_layers(pipe.unet)
    prompts = ["a red circle", "a blue square", "a green triangle", "a yellow star", "a purple heart"]
    stats = calibrate(pipe, layers, prompts, steps=25, timestep_groups=4, progress=False)
    unet = pipe.unet
    size, tokens = unet.config.sample_size, pipe.tokenizer.model_max_length
    rows = 2 * images  # classifier-free guidance: every image twice
    latents = torch.randn(rows, unet.config.in_channels, size, size)
    inputs = (latents, torch.tensor(500), torch.randn(rows, tokens, unet.config.cross_attention_dim))
    return unet, layers, stats.scales(), stats.bounds, stats, inputs


def sd15_unet():
    torch.manual_seed(0)
    unet = UNet2DConditionModel(**SD15).eval()
    layers = adaptable_layers(unet)
    inputs = (torch.randn(1, 4, 64, 64), torch.tensor(500), torch.randn(1, 77, 768))
    ranges: dict[str, float] = {}
    hooks = [
        m.register_forward_pre_hook(lambda m, a, p=p: ranges.__setitem__(p, float(a[0].abs().amax())))
        for p, m in layers.items()
    ]
    with torch.no_grad():
        unet(inputs[0], inputs[1], encoder_hidden_states=inputs[2])
    for h in hooks:
        h.remove()
    scales = {p: torch.tensor([max(r, 1e-6) / 127]) for p, r in ranges.items()}
    return unet, layers, scales, [0], None, inputs


def hubkit_variant(unet, layers, scales, bounds, stats, mode):
    model = copy.deepcopy(unet)
    model_layers = adaptable_layers(model)
    q = quantize_weights(model_layers, 8, -1, stats=stats)
    start = time.perf_counter()
    apply_quantized(model, model_layers, q, scales, bounds, kernels=mode)
    return model, time.perf_counter() - start


def sdnq_variant(unet, matmul: bool):
    from sdnq import sdnq_post_load_quant

    model = copy.deepcopy(unet)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sdnq_post_load_quant(
            model, weights_dtype="int8", quant_conv=True, use_quantized_matmul=matmul,
            use_quantized_matmul_conv=matmul, add_skip_keys=False,
        )  # fmt: skip
    return model, time.perf_counter() - start


def bench_unet(name: str, rounds: int) -> list[dict]:
    make = {"tiny": tiny_unet, "tiny16": lambda: tiny_unet(16), "sd15": sd15_unet}[name]
    unet, layers, scales, bounds, stats, (latents, t, text) = make()

    def step(model):
        with torch.no_grad():
            return model(latents, t, encoder_hidden_states=text).sample

    reference = step(unet)
    variants = {"fp32 eager": (unet, 0.0)}
    for mode in ("auto", "int8"):
        variants[f"hubkit W8A8 kernels={mode}"] = hubkit_variant(unet, layers, scales, bounds, stats, mode)
    variants["SDNQ int8 RTN (stock: dequantize)"] = sdnq_variant(unet, matmul=False)
    variants["SDNQ int8 RTN + int8 matmul"] = sdnq_variant(unet, matmul=True)
    rows = {}
    for label, (model, prepare) in variants.items():
        start = time.perf_counter()
        out = step(model)  # first call: the auto mode times its layers here
        first = time.perf_counter() - start
        err = float((out - reference).abs().max() / reference.abs().max())
        on_kernel = sum(
            1 for m in model.modules() if isinstance(m, QuantizedLayer) and m.kernel is not None
            and (m.mode == "int8" or any(m.kernel_wins.values()))
        )  # fmt: skip
        rows[label] = {
            "prepare_s": prepare,
            "first_call_s": first,
            "rel_err": err,
            "times": [],
            "on_kernel": on_kernel,
        }
    for _ in range(rounds):
        for label, (model, _) in variants.items():
            start = time.perf_counter()
            step(model)
            rows[label]["times"].append(time.perf_counter() - start)
    fp = statistics.median(rows["fp32 eager"]["times"])
    out = []
    for label, row in rows.items():
        median = statistics.median(row["times"])
        out.append({"unet": name, "variant": label, "step_s": median, "speedup": fp / median, **row})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--unets", default="tiny,tiny16,sd15")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", type=Path, default=Path(".bench/quantize_speed.json"))
    args = parser.parse_args()
    capability = torch.backends.cpu.get_cpu_capability()
    console.print(f"CPU capability {capability}, int8 kernels: {cpu_int8_support() or 'none'}, "
                  f"{torch.get_num_threads()} threads")  # fmt: skip
    rows = []
    for name in args.unets.split(","):
        rows += bench_unet(name, args.rounds)
    table = Table(title=f"One UNet step, median of {args.rounds} interleaved rounds ({capability})")
    for col in (
        "UNet",
        "variant",
        "step",
        "× fp32",
        "of int8 peak",
        "prepare",
        "first call",
        "layers on int8",
        "max rel err",
    ):
        table.add_column(col)
    peak = PEAK.get(capability, 1.0)
    for r in rows:
        speed = f"{r['speedup']:.2f}", f"{r['speedup'] / peak:.0%}"
        prepare = f"{r['prepare_s']:.2f} s", f"{r['first_call_s']:.2f} s"
        step = f"{r['step_s'] * 1e3:.1f} ms"
        table.add_row(
            r["unet"], r["variant"], step, *speed, *prepare, str(r["on_kernel"]), f"{r['rel_err']:.1e}"
        )
    console.print(table)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps({"capability": capability, "threads": torch.get_num_threads(), "rows": rows}, indent=1)
    )
    console.print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
