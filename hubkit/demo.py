"""``make demo``: start the embedded Hub, publish a small artifact with its card, load it back like a user.

Later issues grow this into the full main job (reference world, methods, leaderboard).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

DEMO_REPO = "hubkit/demo-tiny-unet"

console = Console()


def _tiny_unet():
    """A small random diffusers UNet: a real model folder, made in a second, no download needed."""
    import torch
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    return UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        block_out_channels=(16, 32),
        layers_per_block=1,
        norm_num_groups=8,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=16,
        attention_head_dim=4,
    )


def _write_artifact(folder: Path) -> None:
    from hubkit.cards import render_card

    _tiny_unet().save_pretrained(folder)
    card = render_card(
        "pipeline",
        repo_id=DEMO_REPO,
        title="hubkit demo: a tiny UNet",
        description="A randomly initialised `UNet2DConditionModel` that shows the publish / pull round trip.",
        library_name="diffusers",
        tags=["demo"],
        usage=(
            "from diffusers import UNet2DConditionModel\n\n"
            f'unet = UNet2DConditionModel.from_pretrained("{DEMO_REPO}")'
        ),
    )
    card.save(folder / "README.md")


def main() -> None:
    from hubkit.server import default_port

    # huggingface_hub reads HF_ENDPOINT once, when it is imported: set it before anything imports it.
    os.environ.setdefault("HF_ENDPOINT", f"http://127.0.0.1:{default_port()}")
    from hubkit.hub import ensure_embedded_hub, publish, pull

    console.rule("[bold]hubkit demo")
    hub = ensure_embedded_hub()
    os.environ.setdefault("HF_TOKEN", hub.token or "")
    console.print(f"Embedded Hub at [cyan]{hub.url}[/] (user 'hubkit', token file under $HUBKIT_HOME/hub)")

    with tempfile.TemporaryDirectory(prefix="hubkit-demo-") as tmp:
        folder = Path(tmp) / "demo-tiny-unet"
        _write_artifact(folder)
        result = publish(folder, DEMO_REPO, endpoint=hub.url, message="Publish the hubkit demo UNet")
        console.print(f"Published [green]{result.repo_id}[/] at commit {result.commit[:12]}")
        local = pull(DEMO_REPO, endpoint=hub.url)
        console.print(f"Pulled it back into the Hugging Face cache: {local}")

        import torch
        from diffusers import UNet2DConditionModel

        loaded = UNet2DConditionModel.from_pretrained(DEMO_REPO)  # the stock loader, through HF_ENDPOINT
        original = UNet2DConditionModel.from_pretrained(folder)
        same = all(
            torch.equal(a, b)
            for a, b in zip(original.state_dict().values(), loaded.state_dict().values(), strict=True)
        )
        if not same:
            raise SystemExit("demo failed: the weights loaded from the Hub differ from the published ones")

    table = Table(title=f"{DEMO_REPO} on the embedded Hub")
    table.add_column("file")
    table.add_column("bytes", justify="right")
    for path in sorted(p for p in local.rglob("*") if p.is_file()):
        table.add_row(path.relative_to(local).as_posix(), f"{path.stat().st_size:,}")
    console.print(table)
    console.print("UNet2DConditionModel.from_pretrained from the Hub: [green]weights identical[/]")

    token_file = Path(os.environ.get("HUBKIT_HOME") or Path.home() / ".cache" / "hubkit") / "hub" / "token"
    console.rule("[bold]next steps")
    console.print(
        f"export HF_ENDPOINT={hub.url}\n"
        f"export HF_TOKEN=$(cat {token_file})\n"
        f"hubkit card check {DEMO_REPO}          # validate a card offline\n"
        "hubkit publish ./my-artifact hubkit/my-artifact   # refuses folders without a valid card\n"
        f"python -c 'from diffusers import UNet2DConditionModel as U; U.from_pretrained(\"{DEMO_REPO}\")'\n"
        "The embedded Hub keeps running in the background; stop it with: "
        f"kill $(cat {token_file.parent}/server.pid)",
        highlight=False,
        soft_wrap=True,
    )


if __name__ == "__main__":
    main()
