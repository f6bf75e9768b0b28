"""``make demo``: the embedded Hub, the reference world on it, the base model sampled with stock diffusers,
every registered method's demo artifacts published (shipped ready-made with the method, or trained anew
with ``--retrain``), the metrics published, the leaderboard run, and the leaderboard Space launched on
localhost. The demo names no method: it asks the registry (:mod:`hubkit.methods`).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from rich.console import Console
from rich.table import Table

BASE_MODEL = "hubkit/tiny-sd-shapes"
NAMESPACE = "hubkit"
GRID_PATH = Path(".demo") / "tiny-sd-shapes-grid.png"
PLOTS_DIR = Path(".demo") / "plots"
TRAINED_DIR = Path(".demo")  # artifacts trained by --retrain
SPACE_REPO = "hubkit/leaderboard"
SPACE_FOLDER = Path(__file__).resolve().parents[1] / "spaces" / "leaderboard"

console = Console()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m hubkit.demo", description=__doc__)
    parser.add_argument(
        "--retrain", action="store_true", help="Train every demo artifact anew instead of the shipped ones."
    )
    args = parser.parse_args(argv)
    from hubkit.server import default_port

    # huggingface_hub reads HF_ENDPOINT once, when it is imported: set it before anything imports it.
    os.environ.setdefault("HF_ENDPOINT", f"http://127.0.0.1:{default_port()}")
    from hubkit.hub import ensure_embedded_hub
    from hubkit.world.publish import publish_world

    console.rule("[bold]hubkit demo")
    hub = ensure_embedded_hub()
    os.environ.setdefault("HF_TOKEN", hub.token or "")
    console.print(f"Embedded Hub at [cyan]{hub.url}[/] (user 'hubkit', token file under $HUBKIT_HOME/hub)")

    table = Table(title="The reference world on the Hub")
    for column in ("repo", "type", "commit"):
        table.add_column(column)
    for repo in publish_world(endpoint=hub.url):
        table.add_row(repo.repo_id, repo.repo_type, repo.commit[:12])
    console.print(table)

    from diffusers import StableDiffusionPipeline

    from hubkit.world.grid import DEMO_PROMPTS, sample_grid

    pipe = StableDiffusionPipeline.from_pretrained(BASE_MODEL)  # the stock loader, stock call defaults
    pipe.set_progress_bar_config(disable=True)
    console.print(f"Loaded {BASE_MODEL} with StableDiffusionPipeline.from_pretrained; sampling the grid…")
    sample_grid(pipe, DEMO_PROMPTS, out=GRID_PATH)
    console.print(f"Grid of {len(DEMO_PROMPTS)} prompts × 4 seeds: [green]{GRID_PATH.resolve()}[/]")

    publish_demo_artifacts(hub, retrain=args.retrain)
    run_leaderboard(hub)
    space_url = launch_space(hub)

    token_file = Path(os.environ.get("HUBKIT_HOME") or Path.home() / ".cache" / "hubkit") / "hub" / "token"
    console.rule("[bold]next steps")
    console.print(
        f"export HF_ENDPOINT={hub.url}\n"
        f"export HF_TOKEN=$(cat {token_file})\n"
        f"hubkit card check {BASE_MODEL}          # validate a card offline\n"
        "hubkit publish ./my-artifact hubkit/my-artifact   # refuses folders without a valid card\n"
        "python -c 'from diffusers import StableDiffusionPipeline as P; "
        f'P.from_pretrained("{BASE_MODEL}")("a red circle").images[0].save("red.png")\'\n'
        f"hubkit eval {BASE_MODEL} --suite shapes-heldout   # evaluate; the card gets the results\n"
        "hubkit leaderboard show --plots .demo/plots\n"
        f"The leaderboard Space: {space_url}\n"
        "The embedded Hub and the Space keep running in the background; stop them with: "
        f"kill $(cat {token_file.parent}/server.pid) $(cat {_space_pid_file()})",
        highlight=False,
        soft_wrap=True,
    )


def _demo_config(config):
    """The demo recipe's config; ``HUBKIT_DEMO_STEPS`` shortens training (the tests' smoke runs)."""
    steps = os.environ.get("HUBKIT_DEMO_STEPS")
    if steps and any(f.name == "steps" for f in dataclasses.fields(config)):
        return dataclasses.replace(config, steps=int(steps))
    return config


def publish_demo_artifacts(hub, retrain: bool = False) -> None:
    """Each method's demo artifacts: reused when on the Hub, else the shipped folder (or, with ``retrain``
    or when none is shipped, trained on the base model) published; then the base model's rows on the suites
    they are compared on."""
    from huggingface_hub import HfApi

    from hubkit.hub import publish
    from hubkit.methods import available_methods

    api = HfApi(endpoint=hub.url, token=os.environ["HF_TOKEN"])
    baselines: list[tuple[str, dict[str, str]]] = []
    # HUBKIT_DEMO_METHODS=spm,lcm-lora limits the demo to those methods (a test's shorter run); default all.
    only = {m.strip() for m in os.environ.get("HUBKIT_DEMO_METHODS", "").split(",") if m.strip()}
    for cls in available_methods().values():
        if only and cls.name not in only:
            continue
        method = cls()
        demos = method.demo_artifacts()
        if not demos:
            continue
        console.rule(f"[bold]{method.name}")
        for demo in demos:
            baselines += [(name, dict(params)) for name, params in demo.baseline_suites]
            repo_id = f"{NAMESPACE}/{demo.name}"
            if api.repo_exists(repo_id) and api.file_exists(repo_id, "hubkit.json") and not retrain:
                console.print(f"{repo_id} is on the Hub: reused")
                continue
            folder = None if retrain else cls.shipped_demo(demo)
            if folder is not None:
                console.print(f"{repo_id}: the artifact shipped with {method.name} ({folder})")
            else:
                folder = TRAINED_DIR / demo.name
                config = _demo_config(demo.config)
                console.print(f"Training {repo_id} on {BASE_MODEL} (hubkit train {method.name})…")
                facts = method.train(BASE_MODEL, config, folder, repo_id=repo_id, force=True)
                console.print(f"  {method.summary(config, facts)}", highlight=False)
            result = publish(folder, repo_id, endpoint=hub.url)
            console.print(f"Published {repo_id} @ {result.commit[:12]}")
    baseline_rows(hub, list({(n, tuple(sorted(p.items()))): (n, p) for n, p in baselines}.values()))


def baseline_rows(hub, suites: list[tuple[str, dict[str, str]]]) -> None:
    """The base model's rows on the demo artifacts' suites, so the leaderboard compares like with like."""
    from huggingface_hub import HfApi

    from hubkit.leaderboard.board import Leaderboard
    from hubkit.leaderboard.evaluation import evaluate
    from hubkit.leaderboard.suite import load_suite

    board = Leaderboard(HfApi(endpoint=hub.url, token=os.environ["HF_TOKEN"]))
    done = {(r["model"]["id"], r["suite"]["key"]) for r in board.records()}
    for name, params in suites:
        suite = load_suite(name, params)
        if (BASE_MODEL, suite.key) not in done:
            console.print(f"Baseline: {BASE_MODEL} on {suite.key}")
            evaluate(BASE_MODEL, suite, endpoint=hub.url, progress=False)


def run_leaderboard(hub) -> None:
    """Publish the metrics, evaluate what lacks fresh results (the base model's baseline rows), show it."""
    from huggingface_hub import HfApi

    from hubkit.leaderboard.board import Leaderboard
    from hubkit.leaderboard.cli import print_table
    from hubkit.leaderboard.plots import plot_all
    from hubkit.metrics.publish import publish_metrics

    publish_metrics(endpoint=hub.url)
    console.rule("[bold]leaderboard")
    board = Leaderboard(HfApi(endpoint=hub.url, token=os.environ["HF_TOKEN"]))
    summary = board.run(on_event=console.print)
    print_table(summary.table)
    PLOTS_DIR.mkdir(parents=True, exist_ok=True)
    for name, png in plot_all(summary.table).items():
        (PLOTS_DIR / name).write_bytes(png)
    console.print(f"Plots: [green]{PLOTS_DIR.resolve()}[/]")


def _space_pid_file() -> Path:
    from hubkit.server import default_data_dir

    return Path(default_data_dir()).parent / "leaderboard-space.pid"


def _serving(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def launch_space(hub, port: int | None = None) -> str:
    """Publish the leaderboard Space, then run it from its Hub snapshot in the background (as a Space host
    would); a Space this demo launched before is restarted so it runs the published code."""
    from hubkit.hub import publish, pull

    result = publish(SPACE_FOLDER, SPACE_REPO, repo_type="space", endpoint=hub.url)
    folder = pull(SPACE_REPO, repo_type="space", endpoint=hub.url)
    port = port or int(os.environ.get("HUBKIT_SPACE_PORT", "7860"))
    url = f"http://127.0.0.1:{port}/"
    pid_file = _space_pid_file()
    if pid_file.exists():
        try:
            os.kill(int(pid_file.read_text()), 15)
            time.sleep(1.0)
        except (OSError, ValueError):
            pass
    # The snapshot's files are symlinks into the blob store, and Python puts the *resolved* script folder
    # on sys.path; the Space's own modules (leaderboard_plots.py) are found through the snapshot folder.
    python_path = os.pathsep.join(p for p in (str(folder), os.environ.get("PYTHONPATH", "")) if p)
    env = {
        **os.environ,
        "PYTHONPATH": python_path,
        "GRADIO_SERVER_PORT": str(port),
        "GRADIO_ANALYTICS_ENABLED": "False",
    }
    with open(pid_file.with_suffix(".log"), "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "app.py"],
            cwd=folder,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    pid_file.write_text(str(proc.pid))
    deadline = time.monotonic() + 90
    while not _serving(url):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the leaderboard Space did not start; see {pid_file.with_suffix('.log')}")
        time.sleep(0.5)
    console.print(f"Space {result.repo_id} @ {result.commit[:12]} running at [cyan]{url}[/]")
    return url


if __name__ == "__main__":
    main()
