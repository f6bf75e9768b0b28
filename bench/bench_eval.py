"""Evaluation overhead: a whole ``hubkit eval`` of a suite vs bare generation of the same images, same run.

python bench/bench_eval.py [--suite shapes-quality] [--json summary.json]

Bare generation = the suite's exact pipeline calls (same prompts, seeds, batches, settings) and nothing else.
The suite run = ``hubkit.leaderboard.evaluation.evaluate`` on the saved pipeline folder with push off:
loading, generation, judging, every metric, the record. Order: bare, suite, bare (the bare time is the mean of
the two, so a drift of the machine during the run counts against neither). Goal: ratio ≤ 1.2.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch


def bare_generation(pipe, suite) -> float:
    from hubkit.leaderboard.runner import _batches, _call, _items

    pipe.set_progress_bar_config(disable=True)
    points = [{**suite.call_settings, **point} for point in suite.sweep_points()]
    start = time.perf_counter()
    for chunk in _batches(_items(suite), suite.batch_size):
        _call(pipe, chunk, points[chunk[0].point])
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--suite", default="shapes-quality")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    from hubkit.leaderboard.evaluation import evaluate
    from hubkit.leaderboard.suite import load_suite
    from hubkit.world.base_model import assemble_pipeline

    suite = load_suite(args.suite)
    with tempfile.TemporaryDirectory(prefix="hubkit-bench-eval-") as tmp:
        folder = Path(tmp) / "tiny-sd-shapes"
        pipe = assemble_pipeline()
        pipe.save_pretrained(folder)
        bare_first = bare_generation(pipe, suite)
        start = time.perf_counter()
        record = evaluate(str(folder), suite, push=False, progress=False)
        suite_seconds = time.perf_counter() - start
        bare_second = bare_generation(pipe, suite)
    bare = (bare_first + bare_second) / 2
    summary = {
        "suite": suite.key,
        "images": suite.n_images,
        "threads": torch.get_num_threads(),
        "bare_generation_s": [round(bare_first, 2), round(bare_second, 2)],
        "suite_s": round(suite_seconds, 2),
        "ratio": round(suite_seconds / bare, 3),
        "goal": 1.2,
        "metrics": record["metrics"],
    }
    print(json.dumps(summary, indent=2))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
