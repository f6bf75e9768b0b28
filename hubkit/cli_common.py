"""What every ``hubkit`` command group shares: Typer settings, the Hub options, how Hub errors end."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Annotated, Any

import typer

from hubkit.hub.endpoint import HubError

EndpointOption = Annotated[
    str | None,
    typer.Option(
        "--endpoint", help="Hub URL. Default: $HF_ENDPOINT, else the embedded Hub (started on demand)."
    ),
]
TokenOption = Annotated[
    str | None, typer.Option("--token", help="Hub token. Default: $HF_TOKEN, else the stored token.")
]
NamespaceOption = Annotated[str, typer.Option("--namespace", help="Namespace of the published repos.")]


def command_group(name: str, help: str) -> typer.Typer:
    """A Typer app with hubkit's settings: help when called bare, no completion install, plain tracebacks."""
    return typer.Typer(
        name=name, help=help, no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False
    )


@contextlib.contextmanager
def exit_on(*errors: type[Exception]) -> Iterator[None]:
    """Print the sentence of any of ``errors`` in red and exit 1, instead of a traceback."""
    try:
        yield
    except errors as err:
        typer.secho(f"error: {err}", fg="red", err=True)
        raise typer.Exit(1) from err


def exit_on_hub_error() -> contextlib.AbstractContextManager[None]:
    """``exit_on(HubError)``: what every command that talks to the Hub does with its errors."""
    return exit_on(HubError)


def given(**options: Any) -> dict[str, Any]:
    """The options the user gave (not None): a method config's overrides of its defaults."""
    return {name: value for name, value in options.items() if value is not None}
