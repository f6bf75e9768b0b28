"""SaRA acceptance on the reference world: teach the base model the novel shape, against its baselines.

An embedded Hub (``hubkit serve`` in ``.bench/sara/hub``) holds the world's dataset and base model; every
variant trains on the same data — the ``novel`` config of ``hubkit/shapes`` (hearts in half of the colours),
plus the base world's ``train`` split as prior preservation — the same batches (same seed), the same steps,
each in its own process (its peak RSS is that process's), then runs the ``shapes-acquisition`` suite (novel
shape on the trained and the unseen colours, preservation on the 43 trained pairs):

- ``sara``: ``hubkit train sara`` with the defaults (the shipped demo artifact ``hubkit/sara-heart`` is this
  folder); ablations ``sara-no-nuclear`` (λ = 0) and ``sara-no-progressive``;
- ``lora``: ``hubkit train lora-finetune`` at rank 7 on the same layers (every Linear and Conv2d): the
  parameter count closest to SaRA's (the shipped ``hubkit/lora-heart``);
- ``full``: full fine-tuning of the UNet, same data and recipe, lr 1e-4.

Also reports the effective rank of SaRA's update with and without the nuclear norm, time per step, peak
training memory (RSS), artifact bytes. Writes ``.bench/sara/results.json`` and prints a table.
``python bench/sara_acquisition.py [--steps N] [--only NAME ...] [--reuse]``
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(os.environ.get("HUBKIT_BENCH_DIR", ".bench/sara"))
BASE, DATASET = "hubkit/tiny-sd-shapes", "hubkit/shapes"
USER, TOKEN = "hubkit", "bench-token"
DEMO_REPOS = {"sara": "hubkit/sara-heart", "lora": "hubkit/lora-heart"}
NO_UNET = {"save_merged_unet": False}  # as the shipped demo artifact: the sparse file only
VARIANTS = {
    "sara": {"method": "sara", **NO_UNET},
    "sara-no-nuclear": {"method": "sara", "lambda_rank": 0.0, **NO_UNET},
    "sara-no-progressive": {"method": "sara", "progressive_at": 0.0, **NO_UNET},
    "lora": {"method": "lora-finetune", "rank": 7},
    "full": {"method": "full", "lr": 1e-4},
}


def start_hub(root: Path) -> tuple[subprocess.Popen, str]:
    """``hubkit serve`` on a free port with the world's dataset and base model published."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "hubkit", "serve", "--port", str(port), "--data-dir", str(root / "hub")]
    log = open(root / "hub.log", "ab")  # noqa: SIM115 - open for the server's lifetime
    proc = subprocess.Popen([*cmd, "--user", f"{USER}:{TOKEN}"], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"{url}/api/version", timeout=1):
                break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"hubkit serve did not start; see {root / 'hub.log'}") from None
            time.sleep(0.2)
    from hubkit.world.publish import publish_world

    publish_world(endpoint=url, token=TOKEN, only=["shapes", "tiny-sd-shapes"])
    return proc, url


def train_variant(name: str, steps: int | None, out: Path, endpoint: str) -> dict:
    """Child process: train one variant into ``out`` (a whole artifact folder for registry methods), return
    its facts, with this process's peak RSS."""
    import dataclasses

    from hubkit.methods import get_method

    spec = dict(VARIANTS[name])
    method = spec.pop("method")
    overrides = {"steps": steps} if steps else {}
    common = {"dataset": DATASET, "dataset_config": "novel", "prior_dataset": DATASET}
    if method != "full":
        registered = get_method(method)
        config = registered.config_class(**common, **spec, **overrides)
        repo_id = DEMO_REPOS.get(name)  # the shipped demo artifacts are these folders
        facts = registered.train(
            BASE, config, out, repo_id=repo_id, force=True, endpoint=endpoint, token=TOKEN
        )
        facts = {**facts, "seconds": facts["train_seconds"], "bytes": facts["file_bytes"]}
    else:
        facts = _train_full(out, endpoint, {**common, **overrides}, spec["lr"])
        config = None
    steps_run = steps or (config.steps if config is not None else facts["steps"])
    facts |= {
        "name": name,
        "method": method,
        "steps": steps_run,
        "seconds_per_step": facts["seconds"] / steps_run,
    }
    facts["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    facts = {k: v for k, v in facts.items() if not dataclasses.is_dataclass(v)}
    (out.parent / f"{name}.facts.json").write_text(json.dumps(facts, indent=2))
    return facts


def _train_full(out: Path, endpoint: str, settings: dict, lr: float) -> dict:
    """Full fine-tuning of every UNet parameter with the shared denoising step (same data and batches)."""
    from hubkit.adapters.lora_finetune.config import LoRAFineTuneConfig

    from hubkit.finetune import DenoisingStep, load_fine_tune_data
    from hubkit.hub import pull_pipeline
    from hubkit.training import run_training

    config = LoRAFineTuneConfig(**settings, lr=lr)  # its data and optimisation fields only
    pipe = pull_pipeline(BASE, endpoint=endpoint, token=TOKEN)
    data, prior = load_fine_tune_data(config, pipe, endpoint, TOKEN)

    def every_parameter(unet):
        unet.requires_grad_(True)
        return list(unet.parameters())

    step = DenoisingStep(
        pipe, data, prior, config.batch_size, config.prior_share, every_parameter, config.prior_target
    )
    step.description = "full fine-tuning"
    run = run_training(step, steps=config.steps, lr=lr, seed=config.seed, warmup_steps=config.warmup_steps,
                       schedule="cosine")  # fmt: skip
    pipe.unet.eval()
    pipe.unet.save_pretrained(out / "unet")
    file = out / "unet" / "diffusion_pytorch_model.safetensors"
    parameters = sum(p.numel() for p in step.params)
    return {"parameters": parameters, "seconds": run.seconds, "bytes": file.stat().st_size, "lr": lr,
            "steps": config.steps}  # fmt: skip


def step_memory(kind: str, batch_size: int = 32) -> dict[str, float]:
    """Memory of one training step at ``batch_size`` on the base UNet, measured in this process for ``kind``
    (sara, lora-finetune at rank 7, full): the torch profiler's peak of live tensor memory during the step
    above what existed before it (activations, gradients, transients), and the persistent training state
    (gradients + AdamW moments of the trained tensors, SaRA's int32 indices), in MiB."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from hubkit.world.base_model import assemble_pipeline

    unet = assemble_pipeline().unet.requires_grad_(False)
    extra = 0
    if kind == "sara":
        from hubkit.adapters.sara.config import SaraAdapterConfig
        from hubkit.adapters.sara.model import inject_sara, sara_layers

        params = inject_sara(unet, SaraAdapterConfig()).delta_parameters()
        extra = sum(layer.sara_indices["default"].numel() * 4 for _, layer in sara_layers(unet))
    elif kind == "lora-finetune":
        from hubkit.adapters.lora_finetune.config import LoRAFineTuneConfig
        from hubkit.adapters.lora_finetune.method import target_paths
        from peft import LoraConfig

        paths = target_paths(unet, LoRAFineTuneConfig(dataset="-"))
        unet.add_adapter(LoraConfig(r=7, lora_alpha=7, target_modules=paths))
        params = [p.requires_grad_(True) for n, p in unet.named_parameters() if "lora_" in n]
    else:
        params = [p.requires_grad_(True) for p in unet.parameters()]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    g = torch.Generator().manual_seed(0)
    x, emb = torch.randn(batch_size, 4, 8, 8, generator=g), torch.randn(batch_size, 16, 384, generator=g)
    t = torch.randint(0, 1000, (batch_size,), generator=g)

    def step() -> None:
        unet(x, t, encoder_hidden_states=emb).sample.pow(2).mean().backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()  # AdamW's moments exist from here on
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    live = peak = 0
    for event in sorted(prof.events(), key=lambda ev: ev.time_range.start):
        live += event.self_cpu_memory_usage
        peak = max(peak, live)
    state = sum(p.numel() for p in params) * (4 + 8) + extra
    return {"step_peak_mib": peak / 2**20, "state_mib": state / 2**20}


def load_variant(name: str, folder: Path | None, endpoint: str):
    """The base pipeline with the variant applied: registry methods through their own loader."""
    from hubkit.hub import pull_pipeline
    from hubkit.leaderboard.evaluation import fetch_artifact
    from hubkit.methods import method_for

    pipe = pull_pipeline(BASE, endpoint=endpoint, token=TOKEN)
    if folder is None:
        return pipe
    if VARIANTS[name]["method"] == "full":
        from diffusers import UNet2DConditionModel

        pipe.unet = UNet2DConditionModel.from_pretrained(folder / "unet")
        return pipe
    artifact = fetch_artifact(str(folder))
    return method_for(artifact).load(artifact, pipe)


def evaluate(name: str, folder: Path | None, endpoint: str, suite: str) -> dict:
    from hubkit.leaderboard.runner import run_suite
    from hubkit.leaderboard.suite import load_suite
    from hubkit.world.judge import load_judge

    pipe = load_variant(name, folder, endpoint)
    pipe.set_progress_bar_config(disable=True)
    result = run_suite(pipe, load_suite(suite, {}), judge=load_judge(), progress=False)
    return dict(result.metrics)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: each recipe's)")
    parser.add_argument("--only", nargs="*", default=None, choices=list(VARIANTS))
    parser.add_argument(
        "--reuse", action="store_true", help="keep variants already trained under .bench/sara"
    )
    parser.add_argument("--suite", default="shapes-acquisition", help="suite name or JSON path (smoke runs)")
    parser.add_argument("--train", default=None, help=argparse.SUPPRESS)  # child mode
    parser.add_argument("--endpoint", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.train:
        train_variant(args.train, args.steps, ROOT / args.train, args.endpoint)
        return
    ROOT.mkdir(parents=True, exist_ok=True)
    hub, url = start_hub(ROOT)
    try:
        names = args.only or list(VARIANTS)
        for name in names:
            if args.reuse and (ROOT / f"{name}.facts.json").is_file():
                continue
            command = [sys.executable, __file__, "--train", name, "--endpoint", url]
            command += ["--steps", str(args.steps)] if args.steps else []
            env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_ENDPOINT": url, "HF_TOKEN": TOKEN}
            subprocess.run(command, check=True, env=env)
        memory = {kind: step_memory(kind) for kind in ("sara", "lora-finetune", "full")}
        print("step memory", json.dumps(memory), flush=True)
        results = {}
        for name in ["base", *names]:
            folder = None if name == "base" else ROOT / name
            facts = {} if folder is None else json.loads((ROOT / f"{name}.facts.json").read_text())
            results[name] = {
                **facts,
                **memory.get(facts.get("method", ""), {}),
                **evaluate(name, folder, url, args.suite),
            }
            print(
                name,
                json.dumps({k: v for k, v in results[name].items() if not isinstance(v, dict)}),
                flush=True,
            )
        (ROOT / "results.json").write_text(json.dumps(results, indent=2))
        print_tables(results)
    finally:
        hub.terminate()


def print_tables(results: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    base = results["base"]
    nan = float("nan")
    table = Table(title="SaRA vs baselines (same data, steps, batches)")
    columns = ("variant", "heart (trained colours)", "heart (unseen)", "colour (trained / unseen)")
    columns += (
        "alignment (Δ vs base)",
        "FD (× base)",
        "params",
        "s/step",
        "peak RSS MB",
        "bytes",
        "eff. rank",
    )
    for column in columns:
        table.add_column(column)
    for name, r in results.items():
        align, fd = r.get("alignment", nan), r.get("fd", nan)
        table.add_row(
            name,
            f"{r.get('novel_trained_rate', nan):.3f}",
            f"{r.get('novel_unseen_rate', nan):.3f}",
            f"{r.get('novel_trained_colour', nan):.3f} / {r.get('novel_unseen_colour', nan):.3f}",
            f"{align:.3f} ({(align - base.get('alignment', nan)) * 100:+.1f})",
            f"{fd:.2f} ({fd / base.get('fd', nan):.2f}×)",
            f"{r.get('parameters', 0):,}",
            f"{r['seconds_per_step']:.2f}" if "seconds_per_step" in r else "",
            f"{r['peak_rss_bytes'] / 2**20:.0f}" if "peak_rss_bytes" in r else "",
            f"{r['step_peak_mib']:.0f} / {r['state_mib']:.1f}" if "step_peak_mib" in r else "",
            f"{r['bytes']:,}" if "bytes" in r else "",
            f"{r['effective_rank']:.1f} / {r['rank90']:.1f}" if "effective_rank" in r else "",
        )
    Console(width=220).print(table)


if __name__ == "__main__":
    main()
