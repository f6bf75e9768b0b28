"""The ``hubkit`` command: serve the embedded Hub, publish and pull artifacts, check cards."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from hubkit import __version__
from hubkit.cli_common import EndpointOption, RepoType, TokenOption, command_group, exit_on_hub_error, run

app = command_group("hubkit", "Efficient diffusion methods as Hub-native plugins.")


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"hubkit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version_callback, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """Efficient diffusion methods as Hub-native plugins."""


def _check_users(specs: list[str] | None) -> list[str] | None:
    """``--user`` values are refused while parsing, before the server starts, like any bad option."""
    from hubkit.server import parse_user

    for spec in specs or []:
        try:
            parse_user(spec)
        except ValueError as err:
            raise typer.BadParameter(str(err)) from err
    return specs


RepoTypeOption = Annotated[RepoType, typer.Option("--repo-type", help="model, dataset or space.")]


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[
        int | None,
        typer.Option(min=1, max=65535, help="Port to listen on. Default: $HUBKIT_PORT, else 8077."),
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option("--data-dir", file_okay=False, help="Storage folder. Default: $HUBKIT_HOME/hub."),
    ] = None,
    user: Annotated[
        list[str] | None,
        typer.Option(
            "--user",
            callback=_check_users,
            help="NAME:TOKEN of a user (repeatable). Default: user 'hubkit', random token.",
        ),
    ] = None,
    max_upload_mb: Annotated[
        int, typer.Option("--max-upload-mb", min=1, help="Largest single upload accepted, in MiB.")
    ] = 50 * 1024,
) -> None:
    """Run the embedded Hub-compatible server (stock clients use it through HF_ENDPOINT)."""
    from hubkit.server import default_port, run_server

    run_server(
        host=host,
        port=port or default_port(),
        data_dir=data_dir,
        users=user or [],
        max_upload_bytes=max_upload_mb << 20,
    )


@app.command()
def publish(
    folder: Annotated[Path, typer.Argument(help="Artifact folder with a README.md model card.")],
    repo_id: Annotated[str, typer.Argument(help="Target repo, namespace/name.")],
    repo_type: RepoTypeOption = RepoType.MODEL,
    private: Annotated[bool, typer.Option("--private", help="Create the repo private.")] = False,
    message: Annotated[str | None, typer.Option("--message", "-m", help="Commit message.")] = None,
    endpoint: EndpointOption = None,
    token: TokenOption = None,
) -> None:
    """Validate the card, then upload FOLDER as REPO_ID (created if missing)."""
    from hubkit.hub import publish as do_publish

    with exit_on_hub_error():
        result = do_publish(
            folder,
            repo_id,
            repo_type=repo_type.value,
            private=private,
            message=message,
            endpoint=endpoint,
            token=token,
        )
    typer.echo(f"published {result.repo_id} @ {result.commit} ({result.url})")


@app.command()
def pull(
    repo_id: Annotated[str, typer.Argument(help="Repo to download, namespace/name.")],
    revision: Annotated[str | None, typer.Option(help="Branch, tag or commit sha.")] = None,
    repo_type: RepoTypeOption = RepoType.MODEL,
    local_dir: Annotated[
        Path | None, typer.Option("--local-dir", help="Copy files here instead of only into the cache.")
    ] = None,
    endpoint: EndpointOption = None,
    token: TokenOption = None,
) -> None:
    """Download REPO_ID (into the Hugging Face cache) and print its local path."""
    from hubkit.hub import pull as do_pull

    with exit_on_hub_error():
        path = do_pull(
            repo_id,
            revision=revision,
            repo_type=repo_type.value,
            local_dir=local_dir,
            endpoint=endpoint,
            token=token,
        )
    typer.echo(str(path))


@app.command()
def export(
    source: Annotated[str, typer.Argument(help="Artifact: Hub repo id or local folder.")],
    out: Annotated[Path, typer.Option("--out", file_okay=False, help="Folder to write the pipeline to.")],
    merged: Annotated[
        bool, typer.Option("--merged", help="Fuse the artifact into its base's weights (required).")
    ] = False,
    base: Annotated[str | None, typer.Option(help="Base pipeline (default: the card's base_model).")] = None,
    revision: Annotated[str | None, typer.Option(help="Branch, tag or commit sha of SOURCE.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace a non-empty --out folder.")] = False,
    endpoint: EndpointOption = None,
    token: TokenOption = None,
) -> None:
    """Write SOURCE fused into its base model as a plain diffusers pipeline folder (stock from_pretrained)."""
    from hubkit.cli_common import exit_on
    from hubkit.export import export_merged
    from hubkit.hub.endpoint import HubError

    if not merged:
        raise typer.BadParameter("only --merged exports exist: pass --merged", param_hint="--merged")
    with exit_on(HubError, ValueError, OSError):  # MethodError / EvalError are ValueErrors
        path = export_merged(
            source, out, base=base, revision=revision, force=force, endpoint=endpoint, token=token
        )
    typer.echo(f"wrote {path} (stock DiffusionPipeline.from_pretrained loads it)")


stack_app = command_group("stack", "Stacks: a base and pinned artifacts applied in order, as one artifact.")


@stack_app.command("create")
def stack_create(
    out: Annotated[Path, typer.Argument(file_okay=False, help="Folder to write the stack to.")],
    base: Annotated[str, typer.Option("--base", help="The base model every component was made for.")],
    add: Annotated[
        list[str],
        typer.Option("--add", help="A component: REPO or REPO@REVISION, in application order (repeatable)."),
    ],
    repo_id: Annotated[
        str | None, typer.Option(help="The repo id the card names (hubkit publish's).")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace a non-empty folder.")] = False,
    endpoint: EndpointOption = None,
    token: TokenOption = None,
) -> None:
    """Write a stack of BASE and the --add components, each pinned to its commit now (publish it next)."""
    from hubkit.cli_common import exit_on
    from hubkit.hub.endpoint import HubError
    from hubkit.stacks import create_stack

    with exit_on(HubError, ValueError, OSError):  # StackError is a ValueError
        info = create_stack(out, base, add, repo_id=repo_id, force=force, endpoint=endpoint, token=token)
    for n, component in enumerate(info["components"], 1):
        typer.echo(f"{n}. {component['repo']}@{component['revision'][:12]} ({component['method']})")
    typer.echo(f"wrote {out} (stack on {base}@{info['base_revision'][:12]}): hubkit publish it next")


def _add_command_groups() -> None:
    from hubkit.cards.cli import card_app
    from hubkit.leaderboard.cli import eval_command, leaderboard_app
    from hubkit.metrics.cli import metrics_app
    from hubkit.spaces import space_app
    from hubkit.world.cli import world_app

    app.add_typer(card_app, name="card", help="Model-card tools.")
    app.add_typer(world_app, name="world", help="The reference world: train it, publish it.")
    app.add_typer(metrics_app, name="metrics", help="Evaluation metrics: publish them as Spaces.")
    app.command("eval")(eval_command)
    app.add_typer(leaderboard_app, name="leaderboard", help="Evaluate hubkit repos on the Hub and rank them.")
    app.add_typer(space_app, name="space", help="Gradio Spaces: publish them.")
    app.add_typer(_train_app(), name="train", help="Train a method's artifact (one command per method).")
    app.add_typer(stack_app, name="stack", help="Stacks: compose artifacts on one base, pinned, in order.")


class _LazyTrainGroup(TyperGroup):
    """``hubkit train``: one subcommand per registered method that trains (:mod:`hubkit.cli_train`), built
    on first use. Building them imports every method's config (torch, peft, transformers: seconds), which
    ``hubkit serve``, ``publish`` or ``--help`` never need."""

    def _methods(self) -> TyperGroup:
        if not self.commands:
            from hubkit.cli_train import train_app

            built = typer.main.get_command(train_app())
            self.commands.update(built.commands)  # type: ignore[attr-defined]
        return self

    def list_commands(self, ctx: Any) -> list[str]:
        return list(self._methods().commands)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        return self._methods().commands.get(cmd_name)


def _train_app() -> typer.Typer:
    """The ``hubkit train`` group, its commands made when it is invoked or listed."""
    train = typer.Typer(
        name="train", cls=_LazyTrainGroup, no_args_is_help=True, add_completion=False,
        pretty_exceptions_enable=False,
    )  # fmt: skip

    @train.callback()
    def _train() -> None:
        """Train a method's artifact into a folder to publish."""

    return train


_add_command_groups()


def main() -> None:
    """The ``hubkit`` command: bad input ends in one ``error: ...`` line and a non-zero exit (see
    :func:`hubkit.cli_common.run`; ``HUBKIT_DEBUG=1`` shows tracebacks)."""
    run(app)


if __name__ == "__main__":
    main()
