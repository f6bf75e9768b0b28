"""Sampling throughput of tiny-sd-shapes with the stock pipeline defaults (50 steps, guidance 7.5, 32×32).

python bench/bench_sampling.py [--batch 16] [--repeats 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import time

import torch


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=0)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from hubkit.world.base_model import assemble_pipeline

    pipe = assemble_pipeline()
    prompts = ["a red circle on a white background"] * args.batch
    pipe(prompts[:2], num_inference_steps=2)  # warm-up
    times = []
    for i in range(args.repeats):
        t = time.perf_counter()
        pipe(prompts, generator=torch.Generator().manual_seed(i), output_type="np")
        times.append(time.perf_counter() - t)
    best = min(times)
    print(
        json.dumps(
            {
                "batch": args.batch,
                "steps": 50,
                "scheduler": type(pipe.scheduler).__name__,
                "threads": torch.get_num_threads(),
                "seconds_per_batch": round(best, 3),
                "images_per_s": round(args.batch / best, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
