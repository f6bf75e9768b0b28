"""``make demo``: start the embedded Hub, publish the reference world, sample the base model from the Hub.

Later issues grow this into the full main job (methods, leaderboard).
"""

from __future__ import annotations

import os
from pathlib import Path

from rich.console import Console
from rich.table import Table

BASE_MODEL = "hubkit/tiny-sd-shapes"
GRID_PATH = Path(".demo") / "tiny-sd-shapes-grid.png"

console = Console()


def main() -> None:
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

    token_file = Path(os.environ.get("HUBKIT_HOME") or Path.home() / ".cache" / "hubkit") / "hub" / "token"
    console.rule("[bold]next steps")
    console.print(
        f"export HF_ENDPOINT={hub.url}\n"
        f"export HF_TOKEN=$(cat {token_file})\n"
        f"hubkit card check {BASE_MODEL}          # validate a card offline\n"
        "hubkit publish ./my-artifact hubkit/my-artifact   # refuses folders without a valid card\n"
        "python -c 'from diffusers import StableDiffusionPipeline as P; "
        f'P.from_pretrained("{BASE_MODEL}")("a red circle").images[0].save("red.png")\'\n'
        "The embedded Hub keeps running in the background; stop it with: "
        f"kill $(cat {token_file.parent}/server.pid)",
        highlight=False,
        soft_wrap=True,
    )


if __name__ == "__main__":
    main()
