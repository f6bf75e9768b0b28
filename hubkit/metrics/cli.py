"""``hubkit metrics ...``: publish the metric modules as Space repos."""

from __future__ import annotations

import typer

from hubkit.cli_common import EndpointOption, NamespaceOption, TokenOption, command_group, exit_on_hub_error

metrics_app = command_group("metrics", "Evaluation metrics.")


@metrics_app.callback()
def _metrics_root() -> None:
    """Evaluation metrics (evaluate modules)."""


@metrics_app.command()
def publish(
    endpoint: EndpointOption = None, namespace: NamespaceOption = "hubkit", token: TokenOption = None
) -> None:
    """Publish every metric as a Space repo NAMESPACE/<name>, loadable with evaluate.load (idempotent)."""
    from hubkit.metrics.publish import publish_metrics

    with exit_on_hub_error():
        for result in publish_metrics(endpoint=endpoint, token=token, namespace=namespace):
            typer.echo(f"space    {result.repo_id} @ {result.commit}")
