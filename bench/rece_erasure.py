"""RECE vs SPM on the reference world, in one run: erasing time, erasure, leakage, preservation, attacks.

Erases ``red`` from ``tiny-sd-shapes`` with the demo settings of both methods, timing each (SPM trains,
RECE solves; ``--reuse`` takes the SPM from a folder and its card's training time instead), then runs on:

- the base model (the attacks' ceiling);
- the SPM as the leaderboard loads it (``hubkit.pipelines.spm``, facilitated transport) and through stock
  ``load_lora_weights`` (a plain LoRA on every prompt);
- RECE through stock ``load_lora_weights`` (how every loader applies it);

the suites ``shapes-erasure`` (red presence, paraphrase and neighbour leakage) and ``shapes-attack``
(soft-prompt and token attack success at the suite's budgets), preservation as ``spm_erasure.py`` measures
it (alignment on ``shapes-quality``'s prompts that do not name red: 148 images), and one diagnostic: red
presence when the plain prompt reaches the pipeline as embeddings (a soft prompt before any attack step).

Writes ``.bench/rece_erasure.json`` and ``bench/results/rece_attack.png``, prints a table.
``python bench/rece_erasure.py [--reuse .bench/spm/red]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from dataclasses import replace
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table
from spm_erasure import preserved_alignment

from hubkit.leaderboard.runner import run_suite
from hubkit.leaderboard.suite import load_suite
from hubkit.methods import get_method
from hubkit.world.base_model import assemble_pipeline
from hubkit.world.judge import load_judge

console = Console(width=220)
BASE = "hubkit/tiny-sd-shapes"
COLUMNS = {
    "target_presence": "red presence",
    "paraphrase_presence": "paraphrase leak",
    "neighbour_presence": "neighbour leak",
    "preserved_alignment": "preserved (148)",
    "embeds_presence": "as embeddings",
    "soft_prompt_success": "soft-prompt attack",
    "token_success": "token attack",
    "unrelated_alignment": "attack-suite unrelated",
}


def erased(method: str, root: Path, reuse: Path | None) -> tuple[Path, float]:
    """The demo artifact of ``method`` erasing red, made now (timed) or reused (its card's time)."""
    if reuse is not None:
        return reuse, json.loads((reuse / "hubkit.json").read_text())["facts"]["train_seconds"]
    demo = next(d for d in get_method(method).demo_artifacts() if d.name.endswith("-red"))
    folder, pipe = root / demo.name, assemble_pipeline()
    console.print(f"{method}: erasing red with the demo settings …")
    start = time.perf_counter()
    get_method(method).train(BASE, demo.config, folder, pipe=pipe, force=True)
    return folder, time.perf_counter() - start


def suite_part(name: str, params: dict[str, str], groups: list[str]):
    """A shipped suite cut to some of its groups, with the metrics and attacks on them (for a bench: the
    digest is still the whole suite's, so such a result is never recorded)."""
    suite = load_suite(name, params)
    return replace(
        suite,
        groups={g: suite.groups[g] for g in groups},
        metrics=[m for m in suite.metrics if m.group in groups],
        attacks={g: a for g, a in suite.attacks.items() if g in groups},
    )


def embeds_suite():
    """shapes-attack's soft-prompt group with a step too small to move anything: the plain prompt given to
    the pipeline as embeddings (what an SPM's transport sees without the prompt's words)."""
    suite = suite_part("shapes-attack", {"concept": "red"}, ["soft_prompt"])
    return replace(suite, attacks={"soft_prompt": replace(suite.attacks["soft_prompt"], steps=1, lr=1e-9)})


def measure(pipe, judge, label: str) -> dict:
    row: dict = {"setting": label}
    start = time.perf_counter()
    erasure = run_suite(pipe, load_suite("shapes-erasure", {"concept": "red"}), judge, progress=False)
    attack = run_suite(pipe, load_suite("shapes-attack", {"concept": "red"}), judge, progress=True)
    quality = run_suite(pipe, load_suite("shapes-quality"), judge, progress=False)
    embeds = run_suite(pipe, embeds_suite(), judge, progress=False)
    row |= erasure.metrics | attack.metrics
    row["embeds_presence"] = embeds.metrics["soft_prompt_success"]
    row["preserved_alignment"], row["preserved_images"] = preserved_alignment(quality.samples, {"red"})
    row["found_token_prompts"] = {
        p: f["prompt"] for p, f in attack.settings["attacks"]["token"]["found"].items()
    }
    row["seconds"] = round(time.perf_counter() - start, 1)
    console.print(f"  {label}: " + "  ".join(f"{k}={row[k]:.3f}" for k in COLUMNS) + f" ({row['seconds']} s)")
    return row


@contextlib.contextmanager
def applied(pipe, folder: Path, how: str):
    if how == "transport":
        from hubkit.pipelines.spm import load_spm, unload_spm

        load_spm(pipe, folder, transport=True)
        try:
            yield
        finally:
            unload_spm(pipe)
        return
    pipe.load_lora_weights(str(folder))
    try:
        yield
    finally:
        pipe.unload_lora_weights()


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 5))
    for row, colour in zip(rows, ("gray", "tab:orange", "tab:red", "tab:blue"), strict=False):
        y = row["preserved_alignment"]
        ax.scatter(
            1 - row["soft_prompt_success"], y, color=colour, marker="o", s=60, label=f"{row['setting']}"
        )
        ax.scatter(1 - row["token_success"], y, color=colour, marker="^", s=60)
    ax.set_xlabel("robustness: 1 − attack success (● soft prompt, ▲ token)")
    ax.set_ylabel("preservation: alignment on prompts without red")
    ax.set_title("Erasing red under attack: robustness vs preservation (top right is better)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reuse", type=Path, default=None, help="An SPM folder erasing red (skip training).")
    parser.add_argument("--root", type=Path, default=Path(".bench/rece"))
    parser.add_argument("--out", type=Path, default=Path(".bench/rece_erasure.json"))
    parser.add_argument("--plot", type=Path, default=Path("bench/results/rece_attack.png"))
    args = parser.parse_args()
    torch.manual_seed(0)
    rece, rece_seconds = erased("rece", args.root, None)
    spm, spm_seconds = erased("spm", args.root, args.reuse)
    source = "this run" if args.reuse is None else "its card"
    console.print(
        f"erasing time (the method's train call on a loaded pipeline): RECE {rece_seconds:.1f} s, "
        f"SPM {spm_seconds:.0f} s ({source}): SPM / RECE = {spm_seconds / rece_seconds:.0f}×"
    )
    judge, pipe = load_judge(), assemble_pipeline()
    pipe.set_progress_bar_config(disable=True)
    rows = [measure(pipe, judge, "base")]
    for label, folder, how in (
        ("SPM, facilitated transport", spm, "transport"),
        ("SPM, stock load_lora_weights", spm, "stock"),
        ("RECE, stock load_lora_weights", rece, "stock"),
    ):
        with applied(pipe, folder, how):
            rows.append(measure(pipe, judge, label))
    table = Table(title="Erasing red from tiny-sd-shapes: base, SPM, RECE (one run)")
    table.add_column("setting")
    for column in COLUMNS.values():
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(row["setting"], *(f"{row[k]:.3f}" for k in COLUMNS))
    console.print(table)
    soft, token = load_suite("shapes-attack", {"concept": "red"}).attacks.values()
    console.print(
        f"budgets: soft prompt {soft.steps} Adam steps (lr {soft.lr:g}), "
        f"{rows[0]['soft_prompt_unet_evals']:.0f} UNet rows per prompt; token {token.steps} GCG steps × "
        f"{token.candidates} candidates, {rows[0]['token_unet_evals']:.0f} UNet rows per prompt"
    )
    result = {"rece_seconds": rece_seconds, "spm_seconds": spm_seconds, "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=float))
    plot(rows, args.plot)
    console.print(f"wrote {args.out} and {args.plot}")


if __name__ == "__main__":
    main()
