"""What every ``hubkit`` command group shares: Typer settings, the Hub options, how errors end.

:func:`run` is how the ``hubkit`` command line runs its Typer app: bad input ends in one line
``error: <what is wrong>`` on stderr and a non-zero exit, never a traceback (see :func:`run` for the rules).
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import traceback
from collections.abc import Iterator, Sequence
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, NoReturn

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


def check_namespace(value: str | None) -> str | None:
    """A ``--namespace`` must be a valid Hub name: refused while parsing, before anything is built."""
    from hubkit.server.names import check_repo_name
    from hubkit.server.storage import BadRequest

    if value is None:
        return value
    try:
        return check_repo_name(value, "namespace")
    except BadRequest as err:
        raise typer.BadParameter(str(err)) from err


NamespaceOption = Annotated[
    str, typer.Option("--namespace", callback=check_namespace, help="Namespace of the published repos.")
]

DEBUG_ENV = "HUBKIT_DEBUG"
"""Set to 1 to get Python's traceback for every error (expected ones too) instead of the one-line message."""


class RepoType(str, Enum):
    """Hub repo types (a choice list for --repo-type)."""

    MODEL = "model"
    DATASET = "dataset"
    SPACE = "space"


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
        typer.secho(f"error: {describe(err)}", fg="red", err=True)
        raise typer.Exit(1) from err


def exit_on_hub_error() -> contextlib.AbstractContextManager[None]:
    """``exit_on(HubError)``: what every command that talks to the Hub does with its errors."""
    return exit_on(HubError)


def given(**options: Any) -> dict[str, Any]:
    """The options the user gave (not None): a method config's overrides of its defaults."""
    return {name: value for name, value in options.items() if value is not None}


# -- the command line's error handling -----------------------------------------------------------------


def run(app: typer.Typer, args: Sequence[str] | None = None, prog_name: str = "hubkit") -> NoReturn:
    """Run ``app`` as the command line does, then exit; every failure ends in one ``error: ...`` line.

    - Usage errors (unknown option, missing argument, a value an option refuses): ``error: <click's
      message> (see '<command> --help')``, exit 2. Options validate what they can (types, ranges, choices,
      callbacks raising ``typer.BadParameter``), so bad arguments are refused before any work starts.
    - Expected errors, raised on purpose with a sentence for the user: exit 1 with that sentence. They are
      ``ValueError`` (the validation errors of configs, cards, suites, methods, repo ids...), ``OSError``
      (files, permissions, the network) and any exception class hubkit itself defines (``HubError``...).
    - Anything else is a bug: one line naming the exception, and where its traceback was saved (a
      training run can take an hour, so the traceback is kept rather than lost), exit 1.
    - ``HUBKIT_DEBUG=1`` lets every non-usage exception through, with Python's own traceback.
    """
    command = typer.main.get_command(app)
    try:
        result = command.main(
            args=list(args) if args is not None else None, prog_name=prog_name, standalone_mode=False
        )
    except _CLICK_ERRORS as err:
        if type(err).__name__ == "NoArgsIsHelpError":  # a bare group: its help, exit 2 as click does
            if err.format_message():  # (Typer's rich help has printed itself already)
                err.show()
            sys.exit(err.exit_code)
        fail(_usage_message(err), err.exit_code)
    except typer.Abort:
        fail("aborted", 1)
    except Exception as err:
        if debug():
            raise
        if is_expected(err):
            fail(describe(err), 1)
        saved = _save_traceback(err)
        fail(
            f"internal error, {type(err).__name__}: {describe(err)} (a bug in hubkit: please report it "
            f"with the traceback{f' saved in {saved}' if saved else ''}; {DEBUG_ENV}=1 prints it)",
            1,
        )
    sys.exit(result if isinstance(result, int) else 0)


# click's ClickException, as the installed Typer raises it (recent Typer releases vendor click).
_CLICK_ERRORS = tuple(cls for cls in typer.BadParameter.__mro__ if cls.__name__ == "ClickException")


def fail(message: str, code: int = 1) -> NoReturn:
    """Print ``error: message`` in red on stderr and exit with ``code``."""
    typer.secho(f"error: {message}", fg="red", err=True)
    sys.exit(code)


def debug() -> bool:
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


def is_expected(err: BaseException) -> bool:
    """Whether ``err`` is a failure raised on purpose with a message for the user (not a bug)."""
    if isinstance(err, ValueError | OSError):
        return True
    for cls in type(err).__mro__:
        module = cls.__module__ or ""
        if module == "hubkit" or module.startswith("hubkit."):  # hubkit's own errors: HubError, EvalError...
            return True
        if module.split(".")[0] in ("httpx", "httpx2", "huggingface_hub") and cls.__name__.endswith("Error"):
            return True  # the Hub unreachable or refusing: the environment, not a bug
    return False


def describe(err: BaseException) -> str:
    """The error's sentence: ``No such file or directory: /x`` rather than ``[Errno 2] ... '/x'``."""
    if isinstance(err, OSError) and type(err).__str__ is OSError.__str__ and err.strerror:
        if err.filename is not None:
            return f"{err.strerror}: {err.filename}"
        return err.strerror
    return str(err).strip() or type(err).__name__


def _usage_message(err: Any) -> str:
    message = err.format_message().strip()
    ctx = getattr(err, "ctx", None)
    if ctx is not None and ctx.command.get_help_option(ctx) is not None:
        message += f" (see '{ctx.command_path} --help')"
    return message


def _save_traceback(err: BaseException) -> Path | None:
    """Write ``err``'s traceback to ``$HUBKIT_HOME/last-traceback.txt`` (else the temp folder)."""
    from hubkit.server import hubkit_home

    text = "".join(traceback.format_exception(err))
    paths = (
        hubkit_home() / "last-traceback.txt",
        Path(tempfile.gettempdir()) / f"hubkit-traceback-{os.getpid()}.txt",
    )
    for path in paths:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"hubkit {' '.join(sys.argv[1:])}\n\n{text}")
            return path
        except OSError:
            continue
    return None
