"""Quantized UNets of tiny-sd-shapes against their base and against round-to-nearest baselines, one run.

    python bench/quantize_fidelity.py [--reuse] [--suite NAME] [--json .bench/quantize_fidelity.json]

An embedded Hub (``.bench/quantize/hub``) holds the world's dataset and base model. ``hubkit train quantize``
with the defaults makes the W8A8 and W4A8 artifacts (``make demo`` publishes the same as
``hubkit/tiny-sd-shapes-w8a8`` / ``-w4a8``); calibration + quantization time is reported. Every variant runs
the ``shapes-fidelity`` suite (43 trained pairs x 4 seeds, 25 steps) with the base pipeline as the paired
baseline, timed batch by batch beside it:

- ``hubkit W8A8`` / ``hubkit W4A8``: ``load_quantized_unet`` (calibrated static int8 activations, the CPU's
  int8 kernels where they time faster);
- ``hubkit W8 / W4 (stock path)``: the same folders through stock ``UNet2DConditionModel.from_pretrained``
  (sdnq dequantizes: weight-only, float activations);
- ``SDNQ RTN int8 / int4 g32``: what a diffusers user gets today, ``SDNQConfig(weights_dtype=..., quant_conv=
  True)`` round-to-nearest at the same bits and groups on the same layers, weight-only (float activations);
- ``SDNQ RTN W8A8 / W4A8 (dynamic)``: the same with SDNQ's int8 matmul, its only activation quantization
  (int8 per token, computed on every call: finer than a static scale, and no calibration);
- ``RTN W4A8 static``: hubkit's pipeline with round to nearest instead of the clip search and no measured
  int8 layers: what calibration-free weight rounding gives under the same static activations.

Reports per variant: artifact bytes (and × smaller than the fp32 UNet), PSNR (mean, median, worst) and SSIM
to the base's images, alignment and Fréchet distance (and their change from the base), time ratio. Writes
a JSON and the size-vs-fidelity plot.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("SDNQ_USE_TORCH_COMPILE", "0")

from rich.console import Console
from rich.table import Table
from sara_acquisition import TOKEN, start_hub  # the same embedded Hub with the world published

BASE = "hubkit/tiny-sd-shapes"
ROOT = Path(".bench/quantize")
ARTIFACTS = {
    "w8a8": {"weights": "int8"},
    "w4a8": {"weights": "int4"},
    "rtn-w4a8": {"weights": "int4", "clip_search": False, "int8_budget": 0.0},
}
console = Console(width=200)


def quantize_all(url: str, reuse: bool, again: set[str]) -> dict[str, dict]:
    from hubkit.adapters.quantize.config import QuantizeConfig

    from hubkit.methods import get_method

    facts = {}
    for name, settings in ARTIFACTS.items():
        folder = ROOT / name
        if reuse and name not in again and (folder / "hubkit.json").is_file():
            facts[name] = json.loads((folder / "hubkit.json").read_text())["facts"]
            continue
        start = time.perf_counter()
        facts[name] = get_method("quantize").train(
            BASE, QuantizeConfig(**settings), folder, force=True, endpoint=url, token=TOKEN
        )
        facts[name]["wall_seconds"] = time.perf_counter() - start
        console.print(f"{name}: quantized in {facts[name]['wall_seconds']:.0f} s")
    return facts


def sdnq_unet(unet, bits: int, matmul: bool = False):
    """The fp32 UNet quantized by SDNQ as stock diffusers does on load (round to nearest; weight-only, or
    with its dynamic int8 matmul)."""
    import copy

    from sdnq import sdnq_post_load_quant

    model = copy.deepcopy(unet)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sdnq_post_load_quant(
            model, weights_dtype=f"int{bits}", group_size=-1 if bits == 8 else 32, quant_conv=True,
            add_skip_keys=False, minimum_allowed_numel=0, minimum_allowed_channel_size=0,
            use_quantized_matmul=matmul, use_quantized_matmul_conv=matmul,
        )  # fmt: skip
    return model


def saved_bytes(unet) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        unet.save_pretrained(tmp)
        return sum(f.stat().st_size for f in Path(tmp).glob("*.safetensors"))


def variants(url: str):
    """(label, pipeline, artifact bytes) for every variant, made one at a time."""
    from diffusers import UNet2DConditionModel
    from hubkit.pipelines.quantize import load_quantized_unet

    from hubkit.hub import pull_pipeline

    def base():
        pipe = pull_pipeline(BASE, endpoint=url, token=TOKEN)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    for name in ARTIFACTS:
        folder = ROOT / name
        size = (folder / "unet" / "diffusion_pytorch_model.safetensors").stat().st_size
        label = name.upper() if not name.startswith("rtn") else "RTN W4A8 static"
        yield f"hubkit {label}", load_quantized_unet(base(), folder), size
        if name.startswith("rtn"):
            continue
        pipe = base()
        pipe.unet = UNet2DConditionModel.from_pretrained(folder / "unet")
        yield f"hubkit {name.upper()[:2]} (stock from_pretrained: weight-only)", pipe, size
    for bits in (8, 4):
        group = "" if bits == 8 else " g32"
        for matmul in (False, True):
            pipe = base()
            pipe.unet = sdnq_unet(pipe.unet, bits, matmul)
            kind = f"W{bits}A8 (dynamic)" if matmul else "(weight-only)"
            yield f"SDNQ RTN int{bits}{group} {kind}", pipe, saved_bytes(pipe.unet)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reuse", action="store_true", help="keep artifacts already quantized under .bench")
    parser.add_argument("--requantize", nargs="*", default=[], help="with --reuse: quantize these anew")
    parser.add_argument("--only", nargs="*", default=None, help="evaluate only variants whose label has one")
    parser.add_argument("--suite", default="shapes-fidelity", help="suite name or JSON path (smoke runs)")
    parser.add_argument("--json", type=Path, default=Path(".bench/quantize_fidelity.json"))
    args = parser.parse_args()
    from hubkit.hub import pull_pipeline
    from hubkit.leaderboard.runner import run_suite
    from hubkit.leaderboard.suite import load_suite
    from hubkit.world.judge import load_judge

    ROOT.mkdir(parents=True, exist_ok=True)
    hub, url = start_hub(ROOT)
    try:
        facts = quantize_all(url, args.reuse, set(args.requantize))
        suite, judge = load_suite(args.suite, {}), load_judge()
        baseline = pull_pipeline(BASE, endpoint=url, token=TOKEN)
        baseline.set_progress_bar_config(disable=True)
        float_bytes = sum(p.numel() * p.element_size() for p in baseline.unet.parameters())
        # the base's own alignment and FD: shapes-quality draws the same prompts, seeds and settings
        quality = run_suite(baseline, load_suite("shapes-quality", {}), judge, progress=False).metrics
        rows = [{"variant": "fp32 base", "bytes": float_bytes, **quality}]
        for label, pipe, size in variants(url):
            if args.only and not any(word in label for word in args.only):
                continue
            console.print(f"evaluating {label} …")
            result = run_suite(
                pipe, suite, judge, baseline_pipe=baseline, artifact_facts={"artifact_bytes": size}
            )
            rows.append({"variant": label, "bytes": size, **result.metrics})
    finally:
        hub.terminate()
    show(rows, facts, float_bytes)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps({"rows": rows, "facts": facts, "float_unet_bytes": float_bytes}, indent=1)
    )
    plot(rows, args.json.with_suffix(".png"))  # bench/results/quantize_fidelity.png is a copy of one run's
    console.print(f"wrote {args.json} and {args.json.with_suffix('.png')}")


def show(rows: list[dict], facts: dict, float_bytes: int) -> None:
    base = rows[0]
    table = Table(title="tiny-sd-shapes UNet quantized: shapes-fidelity (172 images, paired with the base's)")
    for col in ("variant", "bytes", "× smaller", "PSNR mean / median / min", "SSIM", "alignment (Δ pts)",
                "FD (× base)", "time ×"):  # fmt: skip
        table.add_column(col)
    for r in rows:
        psnr = f"{r['psnr']:.1f} / {r['psnr_median']:.1f} / {r['psnr_min']:.1f}" if "psnr" in r else "-"
        table.add_row(
            r["variant"], f"{r['bytes']:,}", f"{float_bytes / r['bytes']:.2f}", psnr,
            f"{r['ssim']:.3f}" if "ssim" in r else "-",
            f"{r['alignment']:.3f} ({100 * (r['alignment'] - base['alignment']):+.1f})",
            f"{r['fd']:.1f} ({r['fd'] / base['fd']:.2f})",
            f"{r['time_ratio']:.2f}" if "time_ratio" in r else "-",
        )  # fmt: skip
    console.print(table)
    for name, f in facts.items():
        seconds, prompts = f["train_seconds"], f["calibration_prompts"]
        console.print(f"{name}: calibration + quantization {seconds:.0f} s on {prompts} prompts")


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 5))
    for r in rows[1:]:
        marker = "o" if r["variant"].startswith("hubkit") else "s"
        ax.scatter(r["bytes"], r["psnr_median"], marker=marker)
        ax.annotate(
            r["variant"],
            (r["bytes"], r["psnr_median"]),
            fontsize=7,
            xytext=(4, 4),
            textcoords="offset points",
        )
    ax.set_xscale("log")
    ax.margins(x=0.35, y=0.08)  # room for the labels right of the points
    ax.set_xlabel("UNet bytes on disk (log scale)")
    ax.set_ylabel("median PSNR to the fp32 base's images (dB)")
    ax.set_title("Size vs fidelity (better: top left)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
