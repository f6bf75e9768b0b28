"""``hubkit eval`` and ``hubkit leaderboard run|work|show|submit``."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from hubkit.cards.schema import BASE_ARCHITECTURES
from hubkit.cli_common import EndpointOption, TokenOption, command_group, exit_on
from hubkit.hub.endpoint import HubError

leaderboard_app = command_group(
    "leaderboard", "The leaderboard: evaluate hubkit repos on the Hub, rank them."
)

Architecture = Enum("Architecture", [(a, a) for a in BASE_ARCHITECTURES], type=str)  # type: ignore[misc]
"""The base families a leaderboard row can be of (a choice list for --architecture)."""

ParamOption = Annotated[
    list[str] | None,
    typer.Option("--param", "-p", help="Suite parameter NAME=VALUE, e.g. concept=red (repeatable)."),
]
ResultsRepoOption = Annotated[
    str, typer.Option("--results-repo", help="Dataset repo that holds the results records.")
]


def parse_params(values: list[str] | None) -> dict[str, str]:
    params = {}
    for value in values or []:
        name, sep, setting = value.partition("=")
        if not sep or not name.strip():
            raise typer.BadParameter(f"expected NAME=VALUE, got {value!r}", param_hint="--param")
        params[name.strip()] = setting.strip()
    return params


@contextlib.contextmanager
def exit_on_eval_error() -> Iterator[None]:
    """Hub errors as in every command; evaluation, suite and method errors the same way."""
    from hubkit.leaderboard.evaluation import EvalError
    from hubkit.leaderboard.suite import SuiteError
    from hubkit.methods import MethodError

    with exit_on(HubError, EvalError, SuiteError, MethodError):
        yield


def print_metrics(record: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    model, suite = record["model"], record["suite"]
    title = f"{model['id']} @ {(model['revision'] or 'local')[:12]} — {suite['key']} v{suite['version']}"
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in record["metrics"].items():
        table.add_row(name, f"{value:.4f}")
    Console().print(table)


def _save_plot(record: dict, path: Path, suite: str, params: dict[str, str]) -> None:
    """The plots the suite declares, of this one record: the first at ``path``, others beside it."""
    from hubkit.leaderboard.board import records_table
    from hubkit.leaderboard.plots import plot_all
    from hubkit.leaderboard.suite import load_suite

    name = record["suite"]["name"]
    declared = [p.to_json() for p in load_suite(suite, params).plots]
    pngs = plot_all(records_table([record]), {name: declared})
    if not pngs:
        typer.echo("no plot: the suite declares none, or none this record has values for")
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    for n, (file, png) in enumerate(pngs.items()):
        plot = Path(file).stem.removeprefix(f"{name}-")
        target = path if n == 0 else path.with_name(f"{path.stem}-{plot}{path.suffix}")
        target.write_bytes(png)
        typer.echo(f"plot: {target}")


def eval_command(
    source: Annotated[str, typer.Argument(metavar="REPO_OR_PATH", help="Repo id on the Hub, or a folder.")],
    suite: Annotated[str, typer.Option("--suite", help="Suite name (shapes-quality...) or a suite .json.")],
    param: ParamOption = None,
    base: Annotated[
        str | None, typer.Option("--base", help="Base model for an adapter (default: the card's base_model).")
    ] = None,
    revision: Annotated[str | None, typer.Option(help="Branch, tag or commit sha of REPO.")] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Also write the record to this file.")
    ] = None,
    no_push: Annotated[
        bool, typer.Option("--no-push", help="Do not publish the record nor write it into the card.")
    ] = False,
    plot: Annotated[
        Path | None,
        typer.Option("--plot", help="Also save the suite's trade-off plot (PNG; more plots beside it)."),
    ] = None,
    results_repo: ResultsRepoOption = "hubkit/leaderboard-results",
    endpoint: EndpointOption = None,
    token: TokenOption = None,
) -> None:
    """Evaluate an artifact on a suite; publish the record and write it into the artifact's card."""
    from hubkit.leaderboard.evaluation import evaluate, is_local

    with exit_on_eval_error():
        record = evaluate(
            source,
            suite,
            parse_params(param),
            base=base,
            revision=revision,
            push=not no_push,
            json_out=json_out,
            endpoint=endpoint,
            token=token,
            results_repo=results_repo,
        )
    if record is None:  # under accelerate launch, a process other than the main one: nothing to report
        return
    print_metrics(record)
    if json_out:
        typer.echo(f"record written to {json_out}")
    if plot:
        _save_plot(record, plot, suite, parse_params(param))
    if not no_push and not is_local(source):
        typer.echo(f"record published to {results_repo}; card updated ({record['card_commit']})")
    elif not no_push:
        typer.echo("a local folder: nothing published (publish it, then evaluate the repo)")


MaxFileMbOption = Annotated[
    int, typer.Option("--max-file-mb", min=1, help="Fail repos holding a file larger than this.")
]
RequestsRepoOption = Annotated[
    str, typer.Option("--requests-repo", help="Dataset repo that holds the evaluation requests.")
]


def _board(endpoint: str | None, token: str | None, results_repo: str, requests_repo: str):
    from huggingface_hub import HfApi

    from hubkit.hub.endpoint import resolve_endpoint, resolve_token
    from hubkit.leaderboard.board import Leaderboard

    hub = resolve_endpoint(endpoint)
    return Leaderboard(HfApi(endpoint=hub.url, token=resolve_token(token, hub)), results_repo, requests_repo)


def print_table(table) -> None:
    """One rich table per suite, with the metrics that suite has."""
    from rich.console import Console
    from rich.table import Table

    from hubkit.leaderboard.board import suite_sections

    console = Console()
    if table.empty:
        console.print("No results yet: run `hubkit leaderboard run`.")
        return
    for section in suite_sections(table):
        view = Table(title=section.title)
        for column in section.columns:
            view.add_column(column, justify="right" if column in section.metrics else "left")
        for cells in section.cells:
            view.add_row(*cells)
        console.print(view)


@leaderboard_app.command()
def run(
    max_file_mb: MaxFileMbOption = 4096,
    results_repo: ResultsRepoOption = "hubkit/leaderboard-results",
    requests_repo: RequestsRepoOption = "hubkit/leaderboard-requests",
    endpoint: EndpointOption = None,
    token: TokenOption = None,
) -> None:
    """Queue hubkit repos without fresh results, work through the queue (beside any `work` workers), publish
    the table."""
    with exit_on_eval_error():
        board = _board(endpoint, token, results_repo, requests_repo)
        summary = board.run(max_file_bytes=max_file_mb << 20, on_event=typer.echo)
    print_table(summary.table)
    typer.echo(f"{len(summary.finished)} finished, {len(summary.failed)} failed")


def _check_worker_id(value: str | None) -> str | None:
    if value is not None and (not value.strip() or len(value) > 200 or any(c in value for c in "\n\r")):
        raise typer.BadParameter("must be a non-empty single line of at most 200 characters")
    return value


@leaderboard_app.command()
def work(
    lease_seconds: Annotated[
        float,
        typer.Option("--lease-seconds", min=1, help="How long a claim lasts unless renewed (seconds)."),
    ] = 300.0,
    renew_every: Annotated[
        float | None,
        typer.Option("--renew-every", min=0.1, help="Renew the lease this often (default: a third of it)."),
    ] = None,
    max_requests: Annotated[
        int | None, typer.Option("--max-requests", min=1, help="Stop after processing this many requests.")
    ] = None,
    once: Annotated[bool, typer.Option("--once", help="Process one request, then stop.")] = False,
    exit_when_empty: Annotated[
        bool,
        typer.Option(
            "--exit-when-empty", help="Stop once no request is PENDING or RUNNING (else keep polling)."
        ),
    ] = False,
    worker_id: Annotated[
        str | None,
        typer.Option("--worker-id", callback=_check_worker_id, help="Name in claims (default: host-pid)."),
    ] = None,
    poll_every: Annotated[
        float, typer.Option("--poll-every", min=0.1, help="Seconds between looks at an idle queue.")
    ] = 5.0,
    publish_table: Annotated[
        bool, typer.Option("--publish-table", help="Publish the leaderboard table when stopping.")
    ] = False,
    max_file_mb: MaxFileMbOption = 4096,
    results_repo: ResultsRepoOption = "hubkit/leaderboard-results",
    requests_repo: RequestsRepoOption = "hubkit/leaderboard-requests",
    endpoint: EndpointOption = None,
    token: TokenOption = None,
) -> None:
    """One of many workers on the request queue: claim a request (with a lease), evaluate, publish, repeat."""
    from hubkit.leaderboard.workers import Worker

    if renew_every is not None and renew_every >= lease_seconds:
        raise typer.BadParameter("must be less than --lease-seconds", param_hint="--renew-every")
    with exit_on_eval_error():
        board = _board(endpoint, token, results_repo, requests_repo)
        worker = Worker(
            board,
            worker_id=worker_id,
            lease_seconds=lease_seconds,
            renew_every=renew_every,
            poll_every=poll_every,
            max_file_bytes=max_file_mb << 20,
            on_event=typer.echo,
        )
        summary = worker.work(max_requests=1 if once else max_requests, exit_when_empty=exit_when_empty)
        if publish_table:
            print_table(board.publish_table())
    typer.echo(
        f"{worker.worker_id}: {len(summary.finished)} finished, {len(summary.failed)} failed, "
        f"{len(summary.lost)} lost to other workers"
    )


@leaderboard_app.command()
def show(
    plots: Annotated[Path | None, typer.Option("--plots", help="Also save the trade-off plots here.")] = None,
    markdown: Annotated[bool, typer.Option("--markdown", help="Print Markdown instead of tables.")] = False,
    architecture: Annotated[
        Architecture | None,
        typer.Option("--architecture", help="Only artifacts whose base is of this family."),
    ] = None,
    results_repo: ResultsRepoOption = "hubkit/leaderboard-results",
    endpoint: EndpointOption = None,
    token: TokenOption = None,
) -> None:
    """Print the published leaderboard table (and save its plots)."""
    from hubkit.leaderboard.board import of_architecture, to_markdown
    from hubkit.leaderboard.plots import plot_all

    with exit_on_eval_error():
        table = _board(endpoint, token, results_repo, "unused/unused").published_table()
    table = of_architecture(table, architecture.value if architecture else None)
    if markdown:
        typer.echo(to_markdown(table))
    else:
        print_table(table)
    if plots:
        plots.mkdir(parents=True, exist_ok=True)
        for name, png in plot_all(table).items():
            (plots / name).write_bytes(png)
            typer.echo(f"plot: {plots / name}")


@leaderboard_app.command()
def submit(
    repo_id: Annotated[str, typer.Argument(help="Model repo to evaluate, namespace/name.")],
    revision: Annotated[str | None, typer.Option(help="Branch, tag or commit sha.")] = None,
    requests_repo: RequestsRepoOption = "hubkit/leaderboard-requests",
    endpoint: EndpointOption = None,
    token: TokenOption = None,
) -> None:
    """File an evaluation request (what the leaderboard Space's form does)."""
    with exit_on_eval_error():
        board = _board(endpoint, token, "unused/unused", requests_repo)
        board.api.model_info(repo_id, revision=revision)
        board.file_request(repo_id, revision, submitted_by="cli")
    typer.echo(f"queued {repo_id}; `hubkit leaderboard run` evaluates it")
