"""Multi-process training and evaluation on this CPU (``accelerate launch``, gloo), beside one process.

An embedded Hub (``.bench/data_parallel/hub``) holds the world. Every process runs one torch thread.

Training: the demo recipe ``spm-red`` (``--concept red --preserve purple``) for ``--steps`` steps (the demo
trains 600; default here 100) with the same 4 x_t per optimisation step:

- one process, ``--batch-size 4`` (the recipe's);
- ``accelerate launch --multi_gpu --num_processes 2 -m hubkit.cli train spm ... --batch-size 2``: 2 per
  process (``batch_size`` is per process; DDP averages the two halves' gradients).

Each artifact is measured as ``bench/spm_erasure.py`` does, with facilitated transport: the ``shapes-erasure``
suite for red (target / paraphrase presence, unrelated alignment) and the preserved alignment (the
``--quality-suite`` images whose prompt names no red). Time per optimisation step = the loop's own seconds
(the artifact's ``train_seconds``) / steps; wall time of the whole command beside it.

Evaluation: ``hubkit eval hubkit/tiny-sd-shapes --suite shapes-quality --no-push --json`` in one process and
under ``accelerate launch --multi_gpu --num_processes 2``: the metric values compared, wall times, ratio.

(``accelerate launch --multi_gpu`` runs torchrun: on this CPU-only machine the processes join over gloo;
``--cpu --num_processes 2`` would start one process, accelerate's multi-CPU launch being ``mpirun``.)

Writes ``.bench/data_parallel/results.json`` and prints tables.
``python bench/data_parallel.py [--steps N] [--skip-train] [--skip-eval] [--quality-suite NAME]``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table
from sara_acquisition import TOKEN, start_hub  # the same embedded Hub with the world published
from spm_erasure import preserved_alignment

ROOT = Path(os.environ.get("HUBKIT_BENCH_DIR", ".bench/data_parallel"))
BASE = "hubkit/tiny-sd-shapes"
ERASURE_METRICS = ("target_presence", "paraphrase_presence", "unrelated_alignment")
console = Console(width=160)


def hubkit(processes: int, *args: str, endpoint: str) -> float:
    """``hubkit ARGS`` in ``processes`` processes (``accelerate launch`` for more than one), one torch thread
    each; returns its wall seconds."""
    if processes == 1:
        cmd = [sys.executable, "-m", "hubkit.cli", *args]
    else:
        # torchrun under accelerate: N gloo processes on a CPU-only machine (--cpu starts one without MPI)
        accelerate = str(Path(sys.executable).with_name("accelerate"))
        cmd = [accelerate, "launch", "--multi_gpu", "--num_processes", str(processes), "--num_machines", "1"]
        cmd += ["--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0"]
        cmd += ["-m", "hubkit.cli", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_ENDPOINT": endpoint, "HF_TOKEN": TOKEN}
    start = time.perf_counter()
    subprocess.run(cmd, check=True, env=env)
    return time.perf_counter() - start


def train(processes: int, steps: int, endpoint: str) -> dict:
    out = ROOT / f"spm-red-{processes}p"
    batch = str(4 // processes)
    args = ["train", "spm", "--base", BASE, "--concept", "red", "--preserve", "purple", "--steps", str(steps)]
    wall = hubkit(processes, *args, "--batch-size", batch, "--out", str(out), "--force", endpoint=endpoint)
    facts = json.loads((out / "hubkit.json").read_text())["facts"]
    return {
        "folder": str(out),
        "processes": processes,
        "batch_per_process": int(batch),
        "steps": steps,
        "train_seconds": facts["train_seconds"],
        "seconds_per_step": facts["train_seconds"] / steps,
        "command_wall_s": round(wall, 1),
    }


def quality(folder: Path | None, endpoint: str, quality_suite: str) -> dict:
    """Erasure of red and preserved alignment, as bench/spm_erasure.py measures them (one process)."""
    import torch
    from hubkit.pipelines.spm import load_spm

    from hubkit.hub import pull_pipeline
    from hubkit.leaderboard.runner import run_suite
    from hubkit.leaderboard.suite import load_suite
    from hubkit.world.judge import load_judge

    torch.set_num_threads(1)
    pipe = pull_pipeline(BASE, endpoint=endpoint, token=TOKEN)
    if folder is not None:
        load_spm(pipe, folder, transport=True)
    judge = load_judge()
    erasure = run_suite(pipe, load_suite("shapes-erasure", {"concept": "red"}), judge, progress=False)
    samples = run_suite(pipe, load_suite(quality_suite), judge, progress=False).samples
    preserved, n = preserved_alignment(samples, {"red"})
    return {**{m: erasure.metrics[m] for m in ERASURE_METRICS}, "preserved_alignment": preserved, "n": n}


def evaluate(processes: int, endpoint: str) -> dict:
    out = ROOT / f"eval-{processes}p.json"
    args = ["eval", BASE, "--suite", "shapes-quality", "--no-push", "--json", str(out)]
    wall = hubkit(processes, *args, endpoint=endpoint)
    record = json.loads(out.read_text())
    return {"processes": processes, "wall_s": round(wall, 1), "metrics": record["metrics"]}


def print_tables(results: dict) -> None:
    if "train" in results:
        table = Table(title="SPM erasing red: one process vs two (same 4 x_t per step)")
        for column in ("setting", "s/step", "command wall s", *ERASURE_METRICS, "preserved_alignment"):
            table.add_column(column, justify="left" if column == "setting" else "right")
        for name, row in results["train"].items():
            q = row["quality"]
            timing = (
                [f"{row['seconds_per_step']:.2f}", f"{row['command_wall_s']:.0f}"]
                if "steps" in row
                else ["", ""]
            )
            values = [f"{q[m]:.3f}" for m in (*ERASURE_METRICS, "preserved_alignment")]
            table.add_row(name, *timing, *values)
        console.print(table)
    if "eval" in results:
        one, two = results["eval"]["1"], results["eval"]["2"]
        table = Table(title="hubkit eval hubkit/tiny-sd-shapes --suite shapes-quality")
        for column in ("metric", "1 process", "2 processes", "equal"):
            table.add_column(column)
        for metric, value in one["metrics"].items():
            other = two["metrics"][metric]
            table.add_row(metric, f"{value:.6f}", f"{other:.6f}", str(value == other))
        table.add_row(
            "wall s",
            f"{one['wall_s']:.0f}",
            f"{two['wall_s']:.0f}",
            f"ratio {two['wall_s'] / one['wall_s']:.2f}",
        )
        console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=100, help="SPM training steps (the demo recipe: 600)")
    parser.add_argument("--skip-train", action="store_true")
    parser.add_argument("--skip-eval", action="store_true")
    parser.add_argument("--quality-suite", default="shapes-quality", help="suite of the preserved alignment")
    args = parser.parse_args()
    ROOT.mkdir(parents=True, exist_ok=True)
    hub, url = start_hub(ROOT)
    results: dict = {"load_average_before": os.getloadavg()}
    try:
        if not args.skip_train:
            results["train"] = {"base": {"quality": quality(None, url, args.quality_suite)}}
            for processes in (1, 2):
                row = train(processes, args.steps, url)
                row["quality"] = quality(Path(row["folder"]), url, args.quality_suite)
                results["train"][f"{processes} process{'es' if processes > 1 else ''}"] = row
                console.print(json.dumps(row))
        if not args.skip_eval:
            results["eval"] = {str(p): evaluate(p, url) for p in (1, 2)}
            one, two = results["eval"]["1"]["metrics"], results["eval"]["2"]["metrics"]
            results["eval"]["identical_metrics"] = one == two
        results["load_average_after"] = os.getloadavg()
        (ROOT / "results.json").write_text(json.dumps(results, indent=2))
        print_tables(results)
    finally:
        hub.terminate()


if __name__ == "__main__":
    main()
