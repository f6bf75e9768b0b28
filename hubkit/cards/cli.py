"""``hubkit card ...``: check a card offline (local folder / README.md) or fetched from a Hub repo."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hubkit.cards.schema import ArtifactKind, CardError
from hubkit.cards.validate import inspect_card_source, looks_like_path
from hubkit.cli_common import EndpointOption, RepoType, TokenOption, command_group

card_app = command_group("card", "Model-card tools.")


@card_app.callback()
def _card_root() -> None:
    """Model-card tools."""


@card_app.command("check")
def check(
    path_or_repo: Annotated[
        str,
        typer.Argument(
            metavar="PATH_OR_REPO", help="Artifact folder, README.md file, or repo id namespace/name."
        ),
    ],
    repo_type: Annotated[
        RepoType | None,
        typer.Option(
            "--repo-type",
            help="model, dataset or space. Default: the card's own for local paths, else model.",
        ),
    ] = None,
    kind: Annotated[
        ArtifactKind | None,
        typer.Option("--kind", help="Check as this artifact kind. Default: inferred from the card."),
    ] = None,
    endpoint: EndpointOption = None,
    token: TokenOption = None,
) -> None:
    """Validate a card offline and print every problem, one per line (exit 1 if any)."""
    if not Path(path_or_repo).exists() and not looks_like_path(path_or_repo):
        # A repo id: fetch its README from the same Hub `hubkit publish` / `pull` would use.
        from hubkit.hub import resolve_endpoint, resolve_token

        hub = resolve_endpoint(endpoint)
        endpoint, token = hub.url, resolve_token(token, hub)
    try:
        report = inspect_card_source(
            path_or_repo,
            repo_type=repo_type.value if repo_type else None,
            endpoint=endpoint,
            token=token,
            kind=kind,
        )
    except CardError as err:
        for problem in err.problems:
            typer.echo(str(problem))
        typer.secho(f"error: no card to check in {path_or_repo}", fg="red", err=True)
        raise typer.Exit(1) from err
    if report.problems:
        for problem in report.problems:
            typer.echo(str(problem))
        count = len(report.problems)
        kind_text = f" ({report.kind.value} card)" if report.kind else ""
        typer.secho(
            f"{count} problem{'s' if count != 1 else ''} in {report.source or path_or_repo}{kind_text}",
            fg="red",
            err=True,
        )
        raise typer.Exit(1)
    typer.echo(f"card OK ({report.kind.value if report.kind else 'unknown kind'})")
