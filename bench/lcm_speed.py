"""LoRA distillers on the reference world: quality and speed of the student vs the teacher, side by side.

    python bench/lcm_speed.py [--reuse .bench/lcm] [--steps N] [--spm .bench/spm/red] [--json .bench/lcm.json]

Distils (or reuses) ``lcm`` and ``rg-lcd`` LoRAs from ``tiny-sd-shapes`` with the defaults, then runs the
``shapes-speed`` suite (one seed per trained pair; steps 1, 2, 4, 8, 25, 50) on the teacher (DPM-Solver++,
guidance 7.5) and on each student (LCMScheduler, guidance 1). Every batch is timed beside the teacher at 25
steps, in the same run, so speed-ups are ratios of interleaved timings. Reports per variant and step count:
alignment (and relative to the teacher at 25 steps), Fréchet distance (and its ratio), speed-up.

Also: the stock path (``load_lora_weights`` + ``LCMScheduler``, 4 steps, guidance 1): how often the judge sees
the prompted colour; and composition with an SPM (``--spm``, default the red SPM ``bench/spm_erasure.py``
trains): erasure of ``red`` at 4 steps with both on one pipeline. Writes a JSON and a trade-off plot.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from diffusers import LCMScheduler
from hubkit.adapters.lcm_lora import LCMLoRAConfig
from hubkit.pipelines.lcm_lora import load_lcm_lora
from rich.console import Console
from rich.table import Table

from hubkit.leaderboard.runner import run_suite
from hubkit.leaderboard.suite import load_suite
from hubkit.methods import get_method
from hubkit.world.base_model import assemble_pipeline
from hubkit.world.judge import load_judge
from hubkit.world.shapes import trained_pairs

VARIANTS = ("lcm", "rg-lcd")
STUDENT_STEPS = (1, 2, 4, 8)
console = Console(width=200)


def distil_all(root: Path, steps: int | None) -> dict[str, dict]:
    facts = {}
    for variant in VARIANTS:
        folder = root / variant
        if (folder / "hubkit.json").is_file():
            facts[variant] = json.loads((folder / "hubkit.json").read_text()).get("facts", {})
            facts[variant]["file_bytes"] = (folder / "pytorch_lora_weights.safetensors").stat().st_size
            continue
        config = LCMLoRAConfig(variant=variant, **({"steps": steps} if steps else {}))
        console.print(f"distilling {variant} …")
        facts[variant] = get_method("lcm-lora").train(
            "hubkit/tiny-sd-shapes", config, folder, pipe=assemble_pipeline(), progress=True
        )
    return facts


def _pipe(folder: Path | None = None):
    pipe = assemble_pipeline()
    pipe.set_progress_bar_config(disable=True)
    if folder is not None:
        load_lcm_lora(pipe, folder)
    return pipe


def stock_colour_accuracy(folder: Path, judge, seeds: int = 4) -> float:
    """Stock diffusers only: load_lora_weights + LCMScheduler, 4 steps, guidance 1 → judge's colour hits."""
    pipe = assemble_pipeline()
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler = LCMScheduler.from_config(pipe.scheduler.config)
    pipe.load_lora_weights(str(folder))
    pairs = trained_pairs()
    prompts = [f"a {colour} {shape}" for shape, colour in pairs]
    hits = 0
    for seed in range(seeds):
        images = pipe(
            prompts,
            num_inference_steps=4,
            guidance_scale=1.0,
            generator=torch.Generator().manual_seed(seed),
            output_type="np",
        ).images
        predicted = judge.predict((images * 255).round().astype("uint8"))["colour"]
        hits += sum(p == colour for p, (_, colour) in zip(predicted, pairs, strict=True))
    return hits / (seeds * len(pairs))


def composition(spm: Path, lora: Path, judge) -> list[dict]:
    """Erasure of the SPM's concept: SPM alone (teacher, 25 steps), LoRA alone and both (4 steps)."""
    from hubkit.pipelines.spm import load_spm

    suite = load_suite("shapes-erasure", {"concept": "red"})
    fast = {"num_inference_steps": 4, "guidance_scale": 1.0}
    rows = []
    for label, use_spm, use_lora in (
        ("SPM (teacher, 25 steps)", True, False),
        ("LCM-LoRA, 4 steps", False, True),
        ("SPM + LCM-LoRA, 4 steps", True, True),
    ):
        pipe = _pipe(lora if use_lora else None)
        if use_spm:
            load_spm(pipe, spm)
        result = run_suite(pipe, suite, judge, method_settings=fast if use_lora else {}, progress=False)
        rows.append({"setting": label, **{k: result.metrics[k] for k in sorted(result.metrics)}})
        console.print(f"  {label:28s} red presence {result.metrics['target_presence']:.3f}")
    return rows


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for name in sorted({r["model"] for r in rows}):
        mine = [r for r in rows if r["model"] == name]
        for ax, key in ((left, "alignment"), (right, "fd")):
            ax.plot([r["speedup"] for r in mine], [r[key] for r in mine], marker="o", label=name)
            for r in mine:
                ax.annotate(str(r["steps"]), (r["speedup"], r[key]), fontsize=7)
    for ax, label in ((left, "prompt alignment"), (right, "Fréchet distance (lower is better)")):
        ax.set_xscale("log")
        ax.set_xlabel("speed-up vs the teacher at 25 steps (log)")
        ax.set_ylabel(label)
        ax.legend(fontsize=7)
    fig.suptitle("tiny-sd-shapes: teacher vs distilled students (numbers = steps)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reuse", type=Path, default=Path(".bench/lcm"), help="Folder of distilled LoRAs.")
    parser.add_argument("--steps", type=int, default=None, help="Distillation steps (default: the config's).")
    parser.add_argument("--spm", type=Path, default=Path(".bench/spm/red"), help="SPM for the composition.")
    parser.add_argument("--json", type=Path, default=Path(".bench/lcm.json"))
    args = parser.parse_args()
    started = time.perf_counter()
    facts = distil_all(args.reuse, args.steps)
    judge = load_judge()
    suite = load_suite("shapes-speed")
    teacher = _pipe()
    console.print("teacher (shapes-speed) …")
    results = {"teacher": run_suite(teacher, suite, judge, baseline_pipe=teacher, progress=True).metrics}
    # Every distilled folder under --reuse (e.g. an lcm-1000 kept beside the default), one row group each.
    students = sorted(p.name for p in args.reuse.iterdir() if (p / "hubkit.json").is_file())
    for variant in students:
        console.print(f"{variant} student (shapes-speed) …")
        student = _pipe(args.reuse / variant)
        results[variant] = run_suite(
            student,
            suite,
            judge,
            method_settings={"guidance_scale": 1.0},
            baseline_pipe=teacher,
            progress=True,
        ).metrics
    ref_align, ref_fd = results["teacher"]["alignment@25"], results["teacher"]["fd@25"]
    rows = []
    for name, steps_list in (("teacher", (25, 50)), *((v, STUDENT_STEPS) for v in students)):
        for steps in steps_list:
            m = results[name]
            rows.append(
                {
                    "model": name,
                    "steps": steps,
                    "alignment": m[f"alignment@{steps}"],
                    "relative_alignment": m[f"alignment@{steps}"] / ref_align,
                    "fd": m[f"fd@{steps}"],
                    "fd_ratio": m[f"fd@{steps}"] / ref_fd,
                    "speedup": 1.0 / m[f"time_ratio@{steps}"],
                    "unet_evals": m[f"unet_evals@{steps}"],
                }
            )
    table = Table(
        title="shapes-speed: students (LCMScheduler, guidance 1) vs the teacher (DPM++, guidance 7.5)"
    )
    for column in (
        "model",
        "steps",
        "alignment",
        "vs teacher@25",
        "FD",
        "FD ratio",
        "speed-up",
        "UNet evals",
    ):
        table.add_column(column, justify="left" if column == "model" else "right")
    for r in rows:
        table.add_row(
            r["model"],
            str(r["steps"]),
            f"{r['alignment']:.3f}",
            f"{r['relative_alignment'] * 100:.1f} %",
            f"{r['fd']:.2f}",
            f"{r['fd_ratio']:.2f}×",
            f"{r['speedup']:.1f}×",
            f"{r['unet_evals']:.0f}",
        )
    console.print(table)
    stock = {v: stock_colour_accuracy(args.reuse / v, judge) for v in students}
    for variant, accuracy in stock.items():
        console.print(
            f"stock load_lora_weights + LCMScheduler, 4 steps, guidance 1 ({variant}): colour {accuracy:.3f}"
        )
    for variant in students:
        info = json.loads((args.reuse / variant / "hubkit.json").read_text())
        fact, steps = info.get("facts", {}), info["config"]["steps"]
        fact["file_bytes"] = (args.reuse / variant / "pytorch_lora_weights.safetensors").stat().st_size
        share, size = fact.get("share", 0) * 100, fact["file_bytes"]
        console.print(
            f"{variant}: {steps} steps, {fact.get('parameters', 0):,} LoRA parameters ({share:.2f} % of the "
            f"UNet), {size:,} bytes, distilled in {fact.get('train_seconds', 0):.0f} s"
        )
    composed = (
        composition(args.spm, args.reuse / "lcm", judge) if (args.spm / "hubkit.json").is_file() else []
    )
    plot(rows, args.json.with_suffix(".png"))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {
                "rows": rows,
                "stock_colour_accuracy": stock,
                "distill": facts,
                "composition": composed,
                "seconds": time.perf_counter() - started,
            },
            indent=2,
        )
    )
    console.print(f"wrote {args.json} and {args.json.with_suffix('.png')}")


if __name__ == "__main__":
    main()
