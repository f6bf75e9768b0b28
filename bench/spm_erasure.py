"""SPM acceptance on the reference world: erasure, leakage and preservation, side by side in one run.

Trains (or reuses) SPMs erasing ``red`` and ``triangle`` with the defaults, plus ablations without latent
anchoring, then runs the ``shapes-erasure`` suite for each concept on:

- the base model;
- each SPM through stock ``load_lora_weights`` (a plain LoRA on every prompt);
- both SPMs with facilitated transport, with transport off, and the no-anchoring ablations with transport;
- transfer: the ``red`` SPM, unchanged, on a copy of the base UNet fine-tuned a few hundred more steps.

Preservation is measured twice: the erasure suite's ``unrelated_alignment`` (one seed per pair, ~30 images:
one image moves it ~3 points) and ``preserved_alignment`` (shapes-quality, 4 seeds, prompts naming none of
the setting's erased concepts: ~120–150 images).

Also counts the adapter's share of an SD-1.5-shaped UNet. Writes ``.bench/spm_erasure.json``, prints tables.
``python bench/spm_erasure.py [--reuse DIR] [--steps N]``.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import time
from pathlib import Path

import torch
from hubkit.adapters.spm import SPMConfig, find_targets
from hubkit.pipelines.spm import load_spm, unload_spm
from rich.console import Console
from rich.table import Table

from hubkit.leaderboard.runner import run_suite
from hubkit.leaderboard.suite import load_suite
from hubkit.methods import get_method
from hubkit.world.base_model import assemble_pipeline
from hubkit.world.judge import load_judge

CONCEPTS = ("red", "triangle")
METRICS = (
    "target_presence",
    "paraphrase_presence",
    "neighbour_presence",
    "neighbour_alignment",
    "unrelated_alignment",
)
console = Console(width=200)


def sd15_share() -> dict[str, float]:
    from diffusers import UNet2DConditionModel

    with torch.device("meta"):
        unet = UNet2DConditionModel(sample_size=64, cross_attention_dim=768, attention_head_dim=8)
    targets = find_targets(unet)
    spm = sum(
        m.in_channels + m.out_channels if isinstance(m, torch.nn.Conv2d) else m.in_features + m.out_features
        for m in targets.values()
    )
    total = sum(p.numel() for p in unet.parameters())
    return {"layers": len(targets), "spm_parameters": spm, "unet_parameters": total, "share": spm / total}


def train_all(root: Path, steps: int | None) -> dict[str, dict]:
    facts = {}
    for concept in CONCEPTS:
        for ablation in (False, True):
            name = f"{concept}{'-noLA' if ablation else ''}"
            folder = root / name
            if (folder / "hubkit.json").is_file():
                facts[name] = json.loads((folder / "hubkit.json").read_text()).get("facts", {})
                facts[name]["file_bytes"] = (folder / "pytorch_lora_weights.safetensors").stat().st_size
                continue
            kwargs = {"steps": steps} if steps else {}
            config = SPMConfig(
                concepts=[concept], **kwargs, **({"anchoring_strength": 0.0} if ablation else {})
            )
            console.print(f"training {name} …")
            facts[name] = get_method("spm").train(
                "hubkit/tiny-sd-shapes", config, folder, pipe=assemble_pipeline(), progress=True
            )
    return facts


def preserved_alignment(samples: list[dict], erased: set[str]) -> tuple[float, int]:
    """Alignment (mean of shape and colour hits) over the images whose prompt names no erased concept."""
    kept = [s for s in samples if s["asked_colour"] not in erased and s["asked_shape"] not in erased]
    hits = [(s["judged_shape"] == s["asked_shape"]) + (s["judged_colour"] == s["asked_colour"]) for s in kept]
    return sum(hits) / (2 * len(kept)), len(kept)


def evaluate(pipe, judge, label: str, rows: list[dict], erased: set[str]) -> None:
    """The erasure suite per concept, plus preservation: alignment on shapes-quality (every trained pair × 4
    seeds) over the prompts naming none of ``erased`` — 4× the erasure suite's one-seed unrelated group, so a
    point of alignment is not one image's luck."""
    quality = run_suite(pipe, load_suite("shapes-quality"), judge, progress=False).samples
    for concept in CONCEPTS:
        suite = load_suite("shapes-erasure", {"concept": concept})
        result = run_suite(pipe, suite, judge, progress=False)
        exclude = erased or {concept}
        preserved, n = preserved_alignment(quality, exclude)
        row = {"setting": label, "concept": concept, **{m: result.metrics[m] for m in METRICS}}
        row |= {"preserved_alignment": preserved, "preserved_images": n, "preserved_without": sorted(exclude)}
        rows.append(row)
        console.print(
            f"  {label:38s} {concept:9s} "
            + "  ".join(f"{m}={row[m]:.3f}" for m in (*METRICS, "preserved_alignment"))
            + f" (n={n})"
        )


@contextlib.contextmanager
def spms(pipe, folders: list[Path], transport: bool):
    for folder in folders:
        load_spm(pipe, folder, transport=transport)
    try:
        yield
    finally:
        unload_spm(pipe)


@contextlib.contextmanager
def stock_lora(pipe, folder: Path):
    pipe.load_lora_weights(str(folder))
    try:
        yield
    finally:
        pipe.unload_lora_weights()


def fine_tuned_copy(pipe, steps: int):
    """The base UNet trained ``steps`` more steps by the world's own recipe (new batches, seed 7)."""
    import tempfile

    from hubkit.world.train import train_unet

    variant = copy.copy(pipe)
    with tempfile.TemporaryDirectory() as tmp:
        unet = train_unet(
            Path(tmp) / "unet",
            pipe.vae,
            steps=steps,
            batch_size=32,
            lr=1e-4,
            seed=7,
            init_from=pipe.unet,
            step_offset=10_000,
            ema_decay=0,
            log_every=10**9,
        )
    variant = type(pipe)(**{**pipe.components, "unet": unet.eval().requires_grad_(False)})
    variant.set_progress_bar_config(disable=True)
    drift = sum((a - b).abs().sum() for a, b in zip(unet.parameters(), pipe.unet.parameters(), strict=True))
    return variant, float(drift / sum(p.numel() for p in pipe.unet.parameters()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reuse", type=Path, default=Path(".bench/spm"), help="Folder of trained SPMs.")
    parser.add_argument("--steps", type=int, default=None, help="Training steps (default: SPMConfig's).")
    parser.add_argument("--finetune-steps", type=int, default=300)
    parser.add_argument("--out", type=Path, default=Path(".bench/spm_erasure.json"))
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    started = time.perf_counter()
    facts = train_all(args.reuse, args.steps)
    judge = load_judge()
    pipe = assemble_pipeline()
    f = {name: args.reuse / name for name in facts}
    rows: list[dict] = []
    both = set(CONCEPTS)
    evaluate(pipe, judge, "base", rows, set())
    evaluate(pipe, judge, "base (preservation without both)", rows, both)
    for concept in CONCEPTS:
        with stock_lora(pipe, f[concept]):
            evaluate(pipe, judge, f"{concept} SPM, stock load_lora_weights", rows, {concept})
    with spms(pipe, [f["red"], f["triangle"]], transport=True):
        evaluate(pipe, judge, "both SPMs, facilitated transport", rows, both)
    with spms(pipe, [f["red"], f["triangle"]], transport=False):
        evaluate(pipe, judge, "both SPMs, transport off", rows, both)
    with spms(pipe, [f["red-noLA"], f["triangle-noLA"]], transport=True):
        evaluate(pipe, judge, "both no-anchoring SPMs, transport", rows, both)
    with spms(pipe, [f["red-noLA"], f["triangle-noLA"]], transport=False):
        evaluate(pipe, judge, "both no-anchoring SPMs, transport off", rows, both)
    variant, drift = fine_tuned_copy(pipe, args.finetune_steps)
    evaluate(variant, judge, f"fine-tuned variant ({args.finetune_steps} steps)", rows, set())
    evaluate(variant, judge, "fine-tuned variant (preservation without both)", rows, both)
    with spms(variant, [f["red"], f["triangle"]], transport=True):
        evaluate(variant, judge, "fine-tuned variant + both SPMs (transport)", rows, both)
    for concept in CONCEPTS:
        with stock_lora(variant, f[concept]):
            evaluate(variant, judge, f"fine-tuned variant + {concept} SPM, stock", rows, {concept})

    table = Table(
        title="SPM erasure on tiny-sd-shapes (shapes-erasure suite; presence = judge sees the concept)"
    )
    for column in ("setting", "concept", *METRICS, "preserved_alignment"):
        table.add_column(column, justify="left" if column in ("setting", "concept") else "right")
    for row in rows:
        table.add_row(
            row["setting"], row["concept"], *(f"{row[m]:.3f}" for m in (*METRICS, "preserved_alignment"))
        )
    console.print(table)
    share = sd15_share()
    console.print(
        f"SD-1.5-shaped UNet: {share['layers']} SPM layers, {share['spm_parameters']:,} parameters = "
        f"{share['share'] * 100:.4f} % of {share['unet_parameters']:,}"
    )
    for name, fact in facts.items():
        console.print(
            f"{name}: {fact.get('parameters', 0):,} parameters ({fact.get('share', 0) * 100:.3f} % of "
            f"tiny-sd-shapes' UNet), {fact.get('file_bytes', 0):,} bytes, trained in "
            f"{fact.get('train_seconds', 0):.0f} s"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "rows": rows,
                "sd15": share,
                "train": facts,
                "finetune_drift": drift,
                "seconds": time.perf_counter() - started,
            },
            indent=2,
        )
    )
    console.print(f"fine-tune mean |Δw| = {drift:.2e}; wrote {args.out}")


if __name__ == "__main__":
    main()
