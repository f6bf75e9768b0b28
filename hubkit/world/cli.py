"""``hubkit world ...``: reproduce the reference world's weights and publish it to a Hub."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hubkit.cli_common import EndpointOption, NamespaceOption, TokenOption, command_group, exit_on_hub_error

world_app = command_group("world", "The reference world.")


@world_app.callback()
def _world_root() -> None:
    """The reference world: shapes dataset, judge, tiny-sd-shapes base model."""


@world_app.command()
def publish(
    endpoint: EndpointOption = None, namespace: NamespaceOption = "hubkit", token: TokenOption = None
) -> None:
    """Publish hubkit/shapes, hubkit/shapes-judge and hubkit/tiny-sd-shapes with their cards (idempotent)."""
    from hubkit.world.publish import publish_world

    with exit_on_hub_error():
        for repo in publish_world(endpoint=endpoint, token=token, namespace=namespace):
            typer.echo(f"{repo.repo_type:8} {repo.repo_id} @ {repo.commit}")


@world_app.command()
def train(
    out: Annotated[
        Path,
        typer.Option(
            "--out", file_okay=False, help="Where to write shapes-judge/ and tiny-sd-shapes/{vae,unet}/."
        ),
    ] = Path("world-weights"),
    judge_steps: Annotated[
        int | None, typer.Option(min=1, help="Judge training steps (default: the shipped recipe).")
    ] = None,
    vae_steps: Annotated[
        int | None, typer.Option(min=1, help="VAE training steps (default: the shipped recipe).")
    ] = None,
    unet_steps: Annotated[
        int | None, typer.Option(min=1, help="UNet training steps (default: the shipped recipe).")
    ] = None,
) -> None:
    """Retrain the judge (~4 min) and the base model's VAE and UNet (~40 min on 2 free cores) from scratch."""
    from hubkit.world.judge import evaluate_judge, train_judge
    from hubkit.world.train import train_all

    judge = train_judge(**({"steps": judge_steps} if judge_steps else {}))
    judge.save_pretrained(out / "shapes-judge")
    typer.echo(f"judge accuracy: {evaluate_judge(judge)}")
    kwargs = {k: v for k, v in {"vae_steps": vae_steps, "unet_steps": unet_steps}.items() if v}
    train_all(out / "tiny-sd-shapes", **kwargs)
    typer.echo(f"weights written to {out}")
