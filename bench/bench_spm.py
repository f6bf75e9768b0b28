"""SPM inference cost: facilitated transport with 1 and with 4 SPMs vs the base pipeline, same run.

    python bench/bench_spm.py [--repeats 5] [--steps 25] [--guidance 7.5] [--batch 8] [--threads 1]
                              [--spm DIR ...] [--json .bench/spm.json] [--sd15-latent 32]

Three copies of ``tiny-sd-shapes`` (32x32): the stock pipeline, the same with one SPM (``red``) and with
four (``red``, ``triangle``, ``blue``, ``circle``) loaded by ``load_spm``, facilitated transport on. The SPMs
are trained for one step each (their values do not matter for timing; ``up`` is scaled x50 as the unit tests
do, so the delta shows in images) unless folders are given with ``--spm`` (the list is cycled up to four).

Two scenarios, ``--steps`` steps and guidance ``--guidance`` each:

- ``one prompt``: one prompt per call, ``num_images_per_prompt=--batch``; the prompt changes every round, so
  transport recomputes permeability and re-merges the deltas into the weights on every call.
- ``mixed``: ``--batch`` different prompts in one call (the leaderboard's pattern); the permeabilities differ
  per sample, so the membranes run per sample through forward hooks at every UNet step.

A third measurement times one UNet step (a CFG pair with per-sample permeability) of a randomly initialised
SD-1.5-shaped UNet with 1 and 4 SPMs against the bare UNet: the hooks' cost at a real model's layer widths.

Each round runs both scenarios on the three pipelines, round-robin (the starting pipeline rotates each round),
after one warm-up round; the time per variant is the median over rounds and the ratio divides it by the base
pipeline's median. Goal: <= 1.1x for one SPM. Before timing, a cheap check: with transport off, the 1-SPM
pipeline must give other images than the base (skipped if the SPM's weights are near zero; never fatal).
Torch runs on ``--threads`` threads (default 1): on a shared 2-core machine two OpenMP threads become 6-10x
slower and erratic as soon as another process holds a core, which buries the ratio in noise. One thread
flatters the SPMs a little (their per-layer Python cost stays while the base's compute doubles); pass
``--threads 2`` on a quiet machine.
Prints a table of ratios (wall time, and the process's CPU time, which other processes on a shared machine
disturb less); the JSON (default ``.bench/spm.json``) also holds the absolute medians and every round.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

GOAL = 1.1
CONCEPTS = ("red", "triangle", "blue", "circle")
PROMPTS = (
    "a red circle",
    "a blue square",
    "a green triangle",
    "a yellow diamond",
    "a purple cross",
    "an orange ring",
    "a red triangle",
    "a cyan circle",
)
SCENARIOS = ("one prompt", "mixed")
UP_SCALE = 50.0  # one training step barely moves ``up`` away from zero (as in tests/unit/test_spm.py)


def train_spms(pipe, root: Path) -> tuple[list[Path], float]:
    """One tiny SPM per concept (one step, no anchoring), saved as SPM folders under ``root``."""
    from hubkit.adapters.spm import SPMConfig, save_spm, train_spm

    folders = []
    start = time.perf_counter()
    for concept in CONCEPTS:
        config = SPMConfig(
            concepts=[concept],
            steps=1,
            warmup_steps=0,
            batch_size=1,
            sampling_steps=2,
            anchoring_strength=0.0,
            seed=len(folders),
        )
        result = train_spm(pipe, config, progress=False)
        weights = {p: (d, u * UP_SCALE, a) for p, (d, u, a) in result.network.adapter_weights("spm").items()}
        result.network.detach_hooks()
        folders.append(save_spm(root / concept, weights, config, {"base_model": "hubkit/tiny-sd-shapes"}))
    return folders, time.perf_counter() - start


def generate(pipe, scenario: str, round_: int, args) -> np.ndarray:
    if scenario == "one prompt":
        prompt, per_prompt = PROMPTS[round_ % len(PROMPTS)], args.batch
    else:
        prompt, per_prompt = [PROMPTS[(round_ + i) % len(PROMPTS)] for i in range(args.batch)], 1
    generators = [torch.Generator("cpu").manual_seed(i) for i in range(args.batch)]
    out = pipe(
        prompt=prompt,
        num_images_per_prompt=per_prompt,
        generator=generators,
        num_inference_steps=args.steps,
        guidance_scale=args.guidance,
        output_type="np",
    )
    return out.images


def transport_path(pipe) -> str:
    """How the last call applied the SPMs: deltas merged into the weights, or per sample through hooks."""
    network = getattr(getattr(pipe, "spm", None), "network", None)
    if network is None:
        return "-"
    if network._merged:
        return "merged"
    return "per sample" if network.scales is not None and network.scales.dim() == 2 else "hooks"


def max_delta(pipe) -> float:
    network = pipe.spm.network
    with torch.no_grad():
        return max(
            float(layer.delta_weight(name).abs().max())
            for layer in network.layers.values()
            for name in layer.names
        )


def check_transport_off(base, one) -> dict:
    """With transport off the SPM applies at full strength on every prompt: images must differ from base."""
    delta = max_delta(one)
    if delta < 1e-6:
        return {"status": "skipped", "reason": "near-zero SPM weights", "max_abs_delta_w": delta}
    settings = {"prompt": ["a red circle", "a blue square"], "num_inference_steps": 4, "output_type": "np"}
    images = []
    one.spm.enabled = False
    try:
        for pipe in (base, one):
            generators = [torch.Generator("cpu").manual_seed(i) for i in range(2)]
            images.append(pipe(generator=generators, **settings).images)
    finally:
        one.spm.enabled = True
    diff = float(np.abs(images[0] - images[1]).max())
    return {"status": "ok" if diff > 0 else "FAILED", "max_abs_pixel_diff": diff, "max_abs_delta_w": delta}


def sd15_unet_ratios(latent: int, repeats: int) -> dict[str, float]:
    """One UNet step (a CFG pair, mixed permeabilities) on a randomly initialised SD-1.5-shaped UNet at
    ``latent``×``latent``: the per-sample hooks' cost at a real model's layer widths (rank-1 deltas are a
    far smaller share of a 320–1280-wide layer than of the tiny model's 96–192)."""
    from diffusers import UNet2DConditionModel
    from hubkit.adapters.spm import SPMConfig, SPMNetwork

    torch.manual_seed(0)
    unets = {v: UNet2DConditionModel(sample_size=64, cross_attention_dim=768, attention_head_dim=8).eval()
             for v in ("base", "1 SPM", "4 SPMs")}  # fmt: skip
    for variant, count in (("1 SPM", 1), ("4 SPMs", 4)):
        network = SPMNetwork(unets[variant])
        for i in range(count):
            network.add_adapter(f"spm{i}", SPMConfig(concepts=[CONCEPTS[i]]))
        with torch.no_grad():
            for layer in network.layers.values():
                for name in layer.names:
                    layer.up[name].normal_(std=0.01)
        network.scales = torch.rand(2, count)  # per sample: the hooks' path
    x, t = torch.randn(2, 4, latent, latent), torch.tensor(500)
    emb = torch.randn(2, 77, 768)
    times: dict[str, list[float]] = {v: [] for v in unets}
    with torch.no_grad():
        for round_ in range(repeats + 1):
            for k in range(len(unets)):
                variant = list(unets)[(round_ + k) % len(unets)]
                start = time.perf_counter()
                unets[variant](x, t, encoder_hidden_states=emb)
                if round_:
                    times[variant].append(time.perf_counter() - start)
    base = statistics.median(times["base"])
    return {v: statistics.median(ts) / base for v, ts in times.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds after the warm-up (default 5)")
    parser.add_argument("--steps", type=int, default=25, help="inference steps per call (default 25)")
    parser.add_argument("--guidance", type=float, default=7.5, help="classifier-free guidance (default 7.5)")
    parser.add_argument("--batch", type=int, default=8, help="images per call (default 8)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1; 0: torch decides)")
    parser.add_argument(
        "--spm", type=Path, nargs="+", default=[], help="SPM folders to use instead of training (cycled to 4)"
    )
    parser.add_argument("--json", type=Path, default=Path(".bench/spm.json"), help="default .bench/spm.json")
    parser.add_argument(
        "--sd15-latent", type=int, default=32, help="latent side of the SD-1.5-shaped UNet step (0: skip)"
    )
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.steps < 1 or args.batch < 1 or args.threads < 0:
        parser.error("--repeats, --steps and --batch must be positive, --threads >= 0")
    if args.threads:
        torch.set_num_threads(args.threads)

    from hubkit.pipelines.spm import load_spm
    from rich.console import Console
    from rich.table import Table

    from hubkit.world.base_model import assemble_pipeline

    console = Console()
    with tempfile.TemporaryDirectory(prefix="hubkit-bench-spm-") as tmp:
        with console.status("assembling the base pipeline"):
            base = assemble_pipeline()
        train_s = None
        if args.spm:
            folders = [args.spm[i % len(args.spm)] for i in range(4)]
        else:
            with console.status(f"training {len(CONCEPTS)} one-step SPMs ({', '.join(CONCEPTS)})"):
                folders, train_s = train_spms(base, Path(tmp))
        with console.status("loading the SPM pipelines"):
            pipes = {"base": base, "1 SPM": assemble_pipeline(), "4 SPMs": assemble_pipeline()}
            load_spm(pipes["1 SPM"], folders[0], adapter_name="spm0")
            for i, folder in enumerate(folders):
                load_spm(pipes["4 SPMs"], folder, adapter_name=f"spm{i}")
        for pipe in pipes.values():
            pipe.set_progress_bar_config(disable=True)
        with console.status("checking that the SPM changes images (transport off)"):
            check = check_transport_off(base, pipes["1 SPM"])

        variants = list(pipes)
        # (wall seconds, process CPU seconds) per scenario, variant and round
        times: dict[str, dict[str, list[tuple[float, float]]]] = {
            s: {v: [] for v in variants} for s in SCENARIOS
        }
        paths: dict[str, dict[str, str]] = {s: {} for s in SCENARIOS}
        start = time.perf_counter()
        for round_ in range(args.repeats + 1):  # round 0 is the warm-up
            label = "warm-up" if round_ == 0 else f"round {round_}/{args.repeats}"
            with console.status(f"timing: {label}"):
                for scenario in SCENARIOS:
                    for k in range(len(variants)):
                        variant = variants[(round_ + k) % len(variants)]
                        cpu0, wall0 = time.process_time(), time.perf_counter()
                        generate(pipes[variant], scenario, round_, args)
                        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
                        paths[scenario][variant] = transport_path(pipes[variant])
                        if round_:
                            times[scenario][variant].append((wall, cpu))
        timing_s = time.perf_counter() - start
        sd15 = {}
        if args.sd15_latent:
            with console.status(
                f"timing one SD-1.5-shaped UNet step at {args.sd15_latent}x{args.sd15_latent}"
            ):
                sd15 = sd15_unet_ratios(args.sd15_latent, args.repeats)

    results: dict[str, dict] = {}
    for scenario in SCENARIOS:
        base_wall = [w for w, _ in times[scenario]["base"]]
        base_cpu = [c for _, c in times[scenario]["base"]]
        results[scenario] = {}
        for variant in variants:
            wall = [w for w, _ in times[scenario][variant]]
            cpu = [c for _, c in times[scenario][variant]]
            results[scenario][variant] = {
                "path": paths[scenario][variant],
                "median_s": statistics.median(wall),
                "median_cpu_s": statistics.median(cpu),
                "ratio": statistics.median(wall) / statistics.median(base_wall),
                "ratio_cpu": statistics.median(cpu) / statistics.median(base_cpu),
                "paired_ratios": [t / b for t, b in zip(wall, base_wall, strict=True)],
                "times_s": wall,
                "cpu_times_s": cpu,
            }

    table = Table(
        title=f"SPM facilitated transport vs base: {args.batch} images, {args.steps} steps, "
        f"CFG {args.guidance} (median of {args.repeats})"
    )
    left = ("scenario", "variant", "SPMs run")
    for col in (*left, "ratio vs base", "per round (min–max)", "ratio of CPU time"):
        table.add_column(col, justify="left" if col in left else "right")
    for scenario, by_variant in results.items():
        for variant, r in by_variant.items():
            ratio = f"{r['ratio']:.3f}"
            if variant == "1 SPM":
                colour = "green" if r["ratio"] <= GOAL else "red"
                ratio = f"[bold {colour}]{ratio}[/bold {colour}]"
            paired = r["paired_ratios"]
            spread = f"{min(paired):.2f}–{max(paired):.2f}" if variant != "base" else ""
            table.add_row(
                scenario,
                variant,
                r["path"],
                ratio,
                spread,
                f"{r['ratio_cpu']:.3f}",
                end_section=variant == variants[-1],
            )
    console.print(table)
    console.print(
        f"ratio = median wall time / the base's, same run, variants interleaved; goal <= {GOAL} for one "
        f"SPM. Per round: this round's time / the base's. CPU time = the process's, less sensitive to other "
        f"processes on the machine. {torch.get_num_threads()} torch thread(s)."
    )
    if sd15:
        console.print(
            f"SD-1.5-shaped UNet, one step, CFG pair with per-sample permeability ({args.sd15_latent}x"
            f"{args.sd15_latent} latents): 1 SPM {sd15['1 SPM']:.3f}x, 4 SPMs {sd15['4 SPMs']:.3f}x the base"
        )
    if check["status"] == "ok":
        console.print(f"transport off changes images: max pixel diff {check['max_abs_pixel_diff']:.3f}")
    elif check["status"] == "skipped":
        console.print(f"[yellow]correctness check skipped: {check['reason']}[/yellow]")
    else:
        console.print("[red]check FAILED: the 1-SPM pipeline with transport off gave the base images[/red]")

    summary = {
        "batch": args.batch,
        "steps": args.steps,
        "guidance": args.guidance,
        "repeats": args.repeats,
        "goal_ratio_one_spm": GOAL,
        "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "machine": platform.platform(),
        "spm_folders": [str(f) for f in args.spm] or "trained in the run (one step each)",
        "train_s": train_s,
        "timing_s": timing_s,
        "check_transport_off": check,
        "scenarios": results,
        "sd15_unet_step_ratios": sd15,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
