"""``hubkit train <method>``: one command per registered method, generated from its config dataclass.

Each config field becomes an option (``lr`` → ``--lr``, a list → a repeatable option, a bool → a
``--flag/--no-flag`` pair) with the field's default and its ``metadata["help"]``; ``metadata["cli"]`` renames
the option (``concepts`` → ``--concept``) and ``metadata["choices"]`` lists the values allowed. Every
command also takes ``--base``, ``--out``, ``--repo-id``, ``--force``, ``--resume``, ``--checkpoint-every``
and the Hub options, and ends with a one-line error instead of a traceback on bad input.

Under ``accelerate launch --num_processes N -m hubkit.cli train <method> ...`` a method that trains on the
shared loop (:attr:`hubkit.methods.Method.data_parallel`) trains on every process and the main process writes
the artifact; a method without gradient training runs on the main process alone while the others wait.
Only the main process prints.
"""

from __future__ import annotations

import dataclasses
import inspect
import shlex
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Union

import typer

from hubkit import methods
from hubkit.cli_common import command_group, exit_on
from hubkit.methods import Method, MethodError

__all__ = ["command_line", "config_options", "train_app", "train_command"]

_COMMON = ("base", "out", "repo_id", "force", "resume", "checkpoint_every", "endpoint", "token")


def _option_name(field: dataclasses.Field) -> str:
    return str(field.metadata.get("cli") or "--" + field.name.replace("_", "-"))


def _default(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return ...  # required


def _help(field: dataclasses.Field) -> str:
    text = str(field.metadata.get("help", ""))
    choices = field.metadata.get("choices")
    return f"{text} One of: {', '.join(choices)}." if choices else text


def _cli_type(hint: Any) -> Any:
    """The type Typer parses: ``X | None`` stays optional, ``list[X]`` becomes a repeatable option."""
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return _cli_type(args[0]) | None if len(args) == 1 else str
    if origin in (list, tuple):
        (item, *_) = typing.get_args(hint) or (str,)
        return list[item]
    return hint


def config_options(config_class: type) -> list[inspect.Parameter]:
    """One keyword parameter per field of ``config_class``, annotated for Typer."""
    hints = typing.get_type_hints(config_class)
    params = []
    for field in dataclasses.fields(config_class):
        if not field.init or field.metadata.get("cli") is False:
            continue
        hint = _cli_type(hints[field.name])
        default = _default(field)
        name = _option_name(field)
        decls = [f"{name}/--no-{name[2:]}"] if hint is bool else [name]
        option = typer.Option(*decls, help=_help(field), show_default=default is not ...)
        params.append(
            inspect.Parameter(
                field.name,
                inspect.Parameter.KEYWORD_ONLY,
                default=default,
                annotation=Annotated[hint, option],
            )
        )
    return params


def _common_options() -> list[inspect.Parameter]:
    def opt(name: str, hint: Any, default: Any, *decls: str, help: str) -> inspect.Parameter:
        annotation = Annotated[hint, typer.Option(*decls, help=help)]
        return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)

    return [
        opt("base", str, ..., "--base", help="Base pipeline: Hub repo id or local folder."),
        opt("out", Path, ..., "--out", help="Folder to write (weights, hubkit.json, README.md)."),
        opt("repo_id", str | None, None, "--repo-id", help="Repo id the card's snippets use."),
        opt("force", bool, False, "--force", help="Replace a non-empty --out folder."),
        opt("resume", bool, False, "--resume", help="Continue from the checkpoints of an interrupted run."),
        opt(
            "checkpoint_every",
            int | None,
            None,
            "--checkpoint-every",
            help="Save a checkpoint every N steps (beside --out) so --resume can continue.",
        ),
        opt(
            "endpoint",
            str | None,
            None,
            "--endpoint",
            help="Hub URL. Default: $HF_ENDPOINT, else the embedded Hub.",
        ),
        opt(
            "token", str | None, None, "--token", help="Hub token. Default: $HF_TOKEN, else the stored token."
        ),
    ]


def _check_choices(config_class: type, values: dict[str, Any]) -> None:
    for field in dataclasses.fields(config_class):
        choices = field.metadata.get("choices")
        if choices and field.name in values and values[field.name] not in choices:
            raise ValueError(
                f"{_option_name(field)} must be one of {', '.join(choices)}, got {values[field.name]!r}"
            )


def train_command(method_cls: type[Method]) -> Any:
    """The Typer command of ``hubkit train <method>``: config fields as options, then ``method.train``."""
    from hubkit.hub import HubError

    config_class = method_cls.config_class
    if config_class is None:
        raise TypeError(f"method {method_cls.name} has no config_class")

    def command(**options: Any) -> None:
        from hubkit.processes import main_process_only, process_state

        common = {name: options.pop(name) for name in _COMMON}
        method = method_cls()
        with exit_on(ValueError, HubError, MethodError, FileExistsError, FileNotFoundError):
            _check_choices(config_class, options)
            config = config_class(**options)

            def train() -> dict[str, Any]:
                return method.train(
                    common["base"],
                    config,
                    common["out"],
                    repo_id=common["repo_id"],
                    force=common["force"],
                    resume=common["resume"],
                    checkpoint_every=common["checkpoint_every"],
                    endpoint=common["endpoint"],
                    token=common["token"],
                )

            # A method without gradient training computes its artifact on the main process alone.
            facts = train() if method_cls.data_parallel else main_process_only(train)
        if not process_state().is_main_process:
            return
        out = common["out"]
        typer.echo(f"{method.summary(config, facts)} → {out}\nnext: hubkit publish {out} <namespace>/<name>")

    command.__signature__ = inspect.Signature([*_common_options(), *config_options(config_class)])
    doc = (inspect.getdoc(method_cls) or "").split("\n\n")[0]
    command.__doc__ = f"Train a {method_cls.name} artifact on --base into --out. {doc}".strip()
    command.__name__ = f"train_{method_cls.name.replace('-', '_')}"
    return command


def train_app() -> typer.Typer:
    """One ``hubkit train <method>`` command per registered method that has a config."""
    app = command_group("train", "Train a method's artifact into a folder to publish.")
    for name, cls in methods.available_methods().items():  # looked up per call (tests patch the registry)
        if cls.config_class is not None:
            app.command(name)(train_command(cls))
    return app


def _derived(config: Any, name: str, default: Any, value: Any) -> bool:
    """Whether ``value`` is what the config derives itself when the field keeps its ``None`` default (LoRA
    alpha = rank): such a value needs no option."""
    if default is not None or value is None:
        return False
    try:
        return getattr(dataclasses.replace(config, **{name: None}), name) == value
    except (TypeError, ValueError):
        return False


def command_line(method: str, config: Any, base: str, out: str | Path, processes: int = 1) -> str:
    """The ``hubkit train`` command that trains ``config``: only the fields that differ from the defaults;
    run by ``accelerate launch`` when it trained on several ``processes``."""
    words = ["hubkit", "train", method, "--base", base]
    if processes > 1:
        # --multi_gpu: torchrun, which starts the processes on GPUs and on CPUs alike (hubkit.processes)
        launch = ["accelerate", "launch", "--multi_gpu", "--num_processes", str(processes)]
        words = [*launch, "-m", "hubkit.cli", *words[1:]]
    for field in dataclasses.fields(config):
        if not field.init or field.metadata.get("cli") is False:
            continue
        value, default = getattr(config, field.name), _default(field)
        if (value == default and default is not ...) or _derived(config, field.name, default, value):
            continue
        name = _option_name(field)
        if isinstance(value, bool):
            words.append(name if value else f"--no-{name[2:]}")
        elif isinstance(value, list | tuple):
            for item in value:
                words += [name, str(item)]
        elif value is not None:
            words += [name, str(value)]
    words += ["--out", str(out)]
    return shlex.join(words)
