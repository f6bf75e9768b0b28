"""Stacks on the reference world, in one run: each component's headline number alone and inside stacks.

An embedded Hub (``.bench/stacks/hub``) gets the world, the shipped demo artifacts (``spm-red``,
``lcm-lora-shapes``, ``sara-heart``), RECE's demo ``rece-red`` (and one solved without ``"a {} heart"`` among
its templates) computed now, and a W8A8 UNet quantized now with the defaults; ``create_stack`` pins
one stack per setting (a component alone is a one-component stack, so it is applied exactly as inside one).
Then, per setting, the numbers the issue asks for:

- erasure: red presence on ``shapes-erasure``'s target prompts (6 red pairs × 4 seeds); goal ≤ 15 % in stacks;
- LCM-LoRA: ``shapes-quality`` alignment (172 images) at its 4 steps vs the teacher (the base) at 25;
  goal ≥ 90 %;
- SaRA: the novel heart's rate in trained colours (``shapes-acquisition``, 64 images); goal ≥ 80 %;
- W8A8: ``shapes-quality`` alignment vs the same stack without it; goal: drop ≤ 2 points;
- speed: seconds per image of the full stack (its 4 steps, guidance 1, int8 UNet) vs the base at 25 steps
  with guidance 7.5, batch 16, interleaved rounds; goal ≥ 5×.

Writes ``.bench/stacks.json``, prints a table. ``python bench/stacks.py [--rounds 3]`` (≈ 20 min).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import replace
from pathlib import Path

import torch
from huggingface_hub import HfApi
from rece_erasure import suite_part
from rich.console import Console
from rich.table import Table
from sara_acquisition import TOKEN, start_hub

from hubkit.hub import pull_pipeline
from hubkit.leaderboard.runner import run_suite
from hubkit.methods import Artifact
from hubkit.stacks import StackMethod, create_stack
from hubkit.world.judge import load_judge

console = Console(width=200)
BASE = "hubkit/tiny-sd-shapes"
SPM, LCM, SARA, W8A8 = "hubkit/spm-red", "hubkit/lcm-lora-shapes", "hubkit/sara-heart", "hubkit/w8a8"
RECE, RECE_NO_HEART = "hubkit/rece-red", "hubkit/rece-red-no-heart"
SETTINGS = {  # name: (components, what to measure)
    "spm-red": ([SPM], ("erasure", "quality")),
    "rece-red": ([RECE], ("erasure", "quality")),
    "lcm-lora": ([LCM], ("quality",)),
    "sara-heart": ([SARA], ("novel",)),
    "w8a8": ([W8A8], ("quality",)),
    "spm-red + lcm-lora": ([SPM, LCM], ("erasure", "quality")),
    "spm-red + w8a8": ([SPM, W8A8], ("erasure", "quality")),
    "sara-heart + spm-red": ([SARA, SPM], ("erasure", "novel")),
    "rece-red + lcm-lora": ([RECE, LCM], ("erasure", "quality")),
    "sara-heart + rece-red": ([SARA, RECE], ("erasure", "novel")),
    "sara-heart + lcm-lora": ([SARA, LCM], ("novel",)),  # which of the two costs the heart in the full stack
    "sara + rece + lcm (unquantized)": ([SARA, RECE, LCM], ("erasure", "quality", "novel")),
    "full: sara + rece + lcm + w8a8": ([SARA, RECE, LCM, W8A8], ("erasure", "quality", "novel")),
    # The full stack with the SPM as its eraser, and with a RECE solved without the heart among its templates.
    "sara + spm + lcm (unquantized)": ([SARA, SPM, LCM], ("erasure", "quality", "novel")),
    "full with spm: sara + spm + lcm + w8a8": ([SARA, SPM, LCM, W8A8], ("erasure", "quality", "novel")),
    "full with rece, no heart template": ([SARA, RECE_NO_HEART, LCM, W8A8], ("erasure", "quality", "novel")),
}


MEASURES = {
    "erasure": (lambda: suite_part("shapes-erasure", {"concept": "red"}, ["target"]), "target_presence"),
    "quality": (lambda: suite_part("shapes-quality", {}, ["trained"]), "alignment"),
    "novel": (lambda: suite_part("shapes-acquisition", {}, ["novel_trained"]), "novel_trained_rate"),
}


def publish_parts(root: Path, url: str) -> dict[str, float]:
    from hubkit.adapters.quantize.config import QuantizeConfig

    from hubkit.hub import publish
    from hubkit.methods import get_method

    shipped = ((SPM, "spm", "spm-red"), (LCM, "lcm-lora", "lcm-lora-shapes"), (SARA, "sara", "sara-heart"))
    for repo, method, name in shipped:
        publish(get_method(method).package_dir() / "demo" / name, repo, endpoint=url, token=TOKEN)
    demo = get_method("rece").demo_artifacts()[0].config
    no_heart = replace(demo, templates=[t for t in demo.templates if "heart" not in t])
    for repo, config in ((RECE, demo), (RECE_NO_HEART, no_heart)):
        rece = root / repo.split("/")[1]
        get_method("rece").train(BASE, config, rece, repo_id=repo, force=True, endpoint=url, token=TOKEN)
        publish(rece, repo, endpoint=url, token=TOKEN)
    folder = root / "w8a8"
    facts = {}
    if not (folder / "hubkit.json").is_file():
        console.print("quantizing the W8A8 UNet (defaults) …")
        facts = get_method("quantize").train(
            BASE, QuantizeConfig(weights="int8"), folder, repo_id=W8A8, force=True, endpoint=url, token=TOKEN
        )
    publish(folder, W8A8, endpoint=url, token=TOKEN)
    return facts


def measure(pipe, settings: dict, judge, wanted: tuple[str, ...]) -> dict[str, float]:
    pipe.set_progress_bar_config(disable=True)
    row = {}
    for key in wanted:
        suite, column = MEASURES[key]
        row[key] = run_suite(pipe, suite(), judge, method_settings=settings, progress=False).metrics[column]
    return row


def seconds_per_image(pipe, settings: dict, batch: int = 16) -> float:
    prompts = ["a red circle", "a blue square", "a green triangle", "a yellow ring"] * (batch // 4)
    generators = [torch.Generator().manual_seed(n) for n in range(batch)]
    start = time.perf_counter()
    pipe(prompts, generator=generators, output_type="np", **settings)
    return (time.perf_counter() - start) / batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path(".bench/stacks"))
    parser.add_argument("--rounds", type=int, default=3, help="Interleaved timing rounds.")
    parser.add_argument("--out", type=Path, default=Path(".bench/stacks.json"))
    args = parser.parse_args()
    args.root.mkdir(parents=True, exist_ok=True)
    proc, url = start_hub(args.root)
    try:
        quantize_facts = publish_parts(args.root, url)
        judge = load_judge()
        hub = {"endpoint": url, "token": TOKEN}
        base_pipe = pull_pipeline(BASE, **hub)
        base_pipe.set_progress_bar_config(disable=True)
        rows = {"base (25 steps)": measure(base_pipe, {}, judge, ("erasure", "quality", "novel"))}
        console.print(f"  base: {rows['base (25 steps)']}")
        pipes = {}
        for name, (components, wanted) in SETTINGS.items():
            folder = args.root / "stacks" / name.replace(" ", "").replace(":", "_")
            info = create_stack(folder, BASE, components, force=True, **hub)
            parts = lambda: HfApi(endpoint=url, token=TOKEN)  # noqa: E731 - where the stack's parts are
            artifact = Artifact(name, folder, hubkit_json=info, hub_api=parts)
            method = StackMethod()  # what hubkit eval and the leaderboard load a stack with
            settings = method.call_settings(artifact)
            pipe = method.load(artifact, pull_pipeline(BASE, **hub))
            rows[name] = measure(pipe, settings, judge, wanted)
            console.print(f"  {name}: {rows[name]} (settings {settings})")
            if name.startswith("full:"):
                pipes["full"] = (pipe, settings)
        full, full_settings = pipes["full"]
        base_call = {"num_inference_steps": 25, "guidance_scale": 7.5}
        seconds_per_image(full, full_settings, 4)  # the int8 kernels' timing pass (auto) happens once
        timings = {"base": [], "full": []}
        for _ in range(args.rounds):
            timings["base"].append(seconds_per_image(base_pipe, base_call))
            timings["full"].append(seconds_per_image(full, full_settings))
        speedup = statistics.median(b / f for b, f in zip(timings["base"], timings["full"], strict=True))
    finally:
        proc.terminate()
    report(rows, speedup, timings, quantize_facts)
    args.out.write_text(json.dumps({"rows": rows, "speedup": speedup, "timings": timings}, indent=2))
    console.print(f"wrote {args.out}")


def report(rows: dict, speedup: float, timings: dict, quantize_facts: dict) -> None:
    table = Table(title="Components alone and in stacks (tiny-sd-shapes; – = not measured there)")
    for column in ("setting", "red presence", "alignment", "novel heart rate"):
        table.add_column(column, justify="left" if column == "setting" else "right")
    for name, row in rows.items():
        table.add_row(name, *(f"{row[k]:.3f}" if k in row else "–" for k in ("erasure", "quality", "novel")))
    console.print(table)
    teacher = rows["base (25 steps)"]["quality"]
    for name in [n for n, (parts, wanted) in SETTINGS.items() if LCM in parts and "quality" in wanted]:
        console.print(
            f"{name}: 4-step alignment = {rows[name]['quality'] / teacher * 100:.1f} % of the teacher's"
        )
    for quantized, reference in (
        ("w8a8", "base (25 steps)"),
        ("spm-red + w8a8", "spm-red"),
        ("full: sara + rece + lcm + w8a8", "sara + rece + lcm (unquantized)"),
        ("full with spm: sara + spm + lcm + w8a8", "sara + spm + lcm (unquantized)"),
    ):
        drop = (rows[reference]["quality"] - rows[quantized]["quality"]) * 100
        console.print(f"W8A8 in {quantized}: alignment drop {drop:+.1f} points vs {reference}")
    console.print(
        f"full stack: {statistics.median(timings['full']) * 1000:.0f} ms per image vs the base's "
        f"{statistics.median(timings['base']) * 1000:.0f} ms at 25 steps: {speedup:.1f}× faster (median of "
        f"{len(timings['base'])} interleaved rounds)"
        + (f"; W8A8 quantized in {quantize_facts['train_seconds']:.0f} s" if quantize_facts else "")
    )


if __name__ == "__main__":
    main()
