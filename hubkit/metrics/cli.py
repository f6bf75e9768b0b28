"""``hubkit metrics ...``: publish the metric modules as Space repos."""

from __future__ import annotations

from typing import Annotated

import typer

metrics_app = typer.Typer(
    name="metrics",
    help="Evaluation metrics.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@metrics_app.callback()
def _metrics_root() -> None:
    """Evaluation metrics (evaluate modules)."""


@metrics_app.command()
def publish(
    endpoint: Annotated[
        str | None, typer.Option("--endpoint", help="Hub URL. Default: $HF_ENDPOINT, else the embedded Hub.")
    ] = None,
    namespace: Annotated[str, typer.Option("--namespace", help="Namespace of the Space repos.")] = "hubkit",
    token: Annotated[
        str | None, typer.Option("--token", help="Hub token. Default: $HF_TOKEN, else stored.")
    ] = None,
) -> None:
    """Publish every metric as a Space repo NAMESPACE/<name>, loadable with evaluate.load (idempotent)."""
    from hubkit.hub import HubError
    from hubkit.metrics.publish import publish_metrics

    try:
        for result in publish_metrics(endpoint=endpoint, token=token, namespace=namespace):
            typer.echo(f"space    {result.repo_id} @ {result.commit}")
    except HubError as err:
        typer.secho(f"error: {err}", fg="red", err=True)
        raise typer.Exit(1) from err
