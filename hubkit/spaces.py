"""Gradio Spaces: publish a Space folder (``spaces/<name>/`` in the Hub's Space layout) as a Space repo."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hubkit.cli_common import EndpointOption, TokenOption, command_group, exit_on_hub_error
from hubkit.hub import PublishResult, publish

DEFAULT_NAMESPACE = "hubkit"


def publish_space(
    folder: str | Path,
    repo_id: str | None = None,
    *,
    endpoint: str | None = None,
    token: str | None = None,
    private: bool = False,
) -> PublishResult:
    """Check the Space card of ``folder``, then upload it as the Space repo ``repo_id`` (created if missing).

    ``repo_id`` defaults to ``hubkit/<folder name>``. Raises :class:`hubkit.hub.HubError` listing the card's
    problems, or naming what the Hub refused.
    """
    folder = Path(folder)
    repo_id = repo_id or f"{DEFAULT_NAMESPACE}/{folder.resolve().name}"
    return publish(
        folder,
        repo_id,
        repo_type="space",
        private=private,
        message=f"Publish the {folder.resolve().name} Space with hubkit",
        endpoint=endpoint,
        token=token,
    )


space_app = command_group("space", "Gradio Spaces.")


@space_app.callback()
def _space_root() -> None:
    """Gradio Spaces (folders in the Hub's Space layout)."""


@space_app.command("publish")
def publish_command(
    folder: Annotated[Path, typer.Argument(help="Space folder: README.md with front matter, app.py, ...")],
    repo_id: Annotated[
        str | None, typer.Option("--repo-id", help="Target Space repo. Default: hubkit/<folder name>.")
    ] = None,
    private: Annotated[bool, typer.Option("--private", help="Create the Space private.")] = False,
    endpoint: EndpointOption = None,
    token: TokenOption = None,
) -> None:
    """Check the Space card, then upload FOLDER as a Space repo (created if missing)."""
    with exit_on_hub_error():
        result = publish_space(folder, repo_id, endpoint=endpoint, token=token, private=private)
    typer.echo(f"published {result.repo_id} @ {result.commit} ({result.url})")
