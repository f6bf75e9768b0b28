"""Every ``hubkit`` command answers bad input with one ``error:`` line and a non-zero exit, never a traceback.

The table below has at least one bad input per command; ``test_every_command_has_a_row`` walks the Typer app
and fails for a command without a row, so a new command gets one. ``hubkit train <method>`` commands are
generated from the methods' configs and are covered generically (``--help``, an unknown option, a base
folder that does not exist).

Each row runs ``hubkit.cli.main()`` exactly as ``python -m hubkit`` does, in a process of its own with its
stdout and stderr on files: one driver subprocess imports hubkit once (about 3 s, most of it torch) and
forks a child per row, so the ~40 rows take seconds instead of a fresh interpreter each. A few rows also run
as real ``python -m hubkit`` subprocesses. Nothing reaches a network: HF_ENDPOINT points at a closed port,
HUBKIT_HOME and HF_HOME are temporary folders.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import free_port

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Row:
    args: tuple[str, ...]  # {tmp}: a scratch folder; {file}: a plain file in it; {busy}: a port in use
    says: str  # a substring of stderr that names the problem
    code: int | None = 1  # None: any non-zero exit

    @property
    def id(self) -> str:
        return " ".join(self.args).replace("{tmp}/", "")


TABLE = [
    # the example: a --user token that is too short
    Row(("serve", "--user", "bob:short"), "Invalid value for '--user'", 2),
    Row(("serve", "--user", "no token"), "expected NAME:TOKEN", 2),
    Row(("serve", "--user", "bad name:long-enough-token"), "Invalid repo user name 'bad name'", 2),
    Row(("serve", "--port", "99999"), "Invalid value for '--port'", 2),
    Row(("serve", "--port", "http"), "Invalid value for '--port'", 2),
    Row(("serve", "--data-dir", "{file}"), "is a file", 2),
    Row(("serve", "--max-upload-mb", "0"), "Invalid value for '--max-upload-mb'", 2),
    Row(("serve", "--port", "{busy}", "--data-dir", "{tmp}/hub"), "address already in use", None),
    Row(("publish", "{tmp}/missing", "alice/adapter"), "is not a folder"),
    Row(("publish", "{tmp}/empty", "not//a-repo"), "repo id must be namespace/name"),
    Row(("publish", "{tmp}/empty", "alice/adapter", "--repo-type", "modle"), "'--repo-type'", 2),
    Row(("publish", "{tmp}/empty"), "Missing argument", 2),
    Row(("pull", "not//a-repo"), "repo id must be namespace/name"),
    Row(("export", "{tmp}/empty", "--out", "{tmp}/merged"), "only --merged exports exist", 2),
    Row(("export", "{tmp}/missing", "--merged", "--out", "{tmp}/merged"), "is not a folder"),
    Row(("export", "{tmp}/empty", "--merged", "--out", "{tmp}/merged"), "cannot tell which method made it"),
    Row(("pull", "alice/adapter", "--repo-type", "modle"), "'--repo-type'", 2),
    Row(("card", "check", "{tmp}/missing/README.md"), "no card to check"),
    Row(("card", "check", "{tmp}/empty", "--kind", "nope"), "'--kind'", 2),
    Row(("world", "publish", "--namespace", "bad name"), "Invalid repo namespace 'bad name'", 2),
    Row(("world", "train", "--judge-steps", "0"), "Invalid value for '--judge-steps'", 2),
    Row(("world", "train", "--out", "{file}"), "is a file", 2),
    Row(("metrics", "publish", "--namespace", "-bad-"), "Invalid repo namespace '-bad-'", 2),
    Row(("eval", "{tmp}/missing", "--suite", "shapes-quality"), "is not a folder"),
    Row(("eval", "alice/adapter", "--suite", "no-such-suite"), "unknown suite 'no-such-suite'"),
    Row(("eval", "{tmp}/empty", "--suite", "shapes-quality", "--param", "red"), "expected NAME=VALUE", 2),
    Row(("eval", "{tmp}/empty"), "Missing option '--suite'", 2),
    Row(("leaderboard", "run", "--max-file-mb", "0"), "Invalid value for '--max-file-mb'", 2),
    Row(("leaderboard", "work", "--lease-seconds", "0"), "Invalid value for '--lease-seconds'", 2),
    Row(
        ("leaderboard", "work", "--lease-seconds", "5", "--renew-every", "5"), "less than --lease-seconds", 2
    ),
    Row(("leaderboard", "work", "--requests-repo", "not//a-repo"), "not//a-repo"),
    Row(("leaderboard", "show", "--results-repo", "not//a-repo"), "not//a-repo"),
    Row(("leaderboard", "show", "--architecture", "sd3"), "Invalid value for '--architecture'", 2),
    Row(("leaderboard", "submit", "not//a-repo"), "not//a-repo"),
    Row(("stack", "create", "{tmp}/stack", "--base", "alice/base"), "Missing option '--add'", 2),
    Row(("stack", "create", "{file}", "--base", "alice/base", "--add", "alice/adapter"), "is a file", 2),
    Row(("space", "publish", "{tmp}/missing"), "is not a folder"),
    Row(("space", "publish", "{tmp}/empty", "--repo-id", "not//a-repo"), "repo id must be namespace/name"),
    Row(("--no-such-option",), "No such option: --no-such-option", 2),
    Row(("no-such-command",), "No such command 'no-such-command'", 2),
]

# hubkit train <method>: generated from each method's config; {name} is the method.
TRAIN_ROWS = [
    (("--help",), "", 0),
    (("--no-such-option",), "No such option: --no-such-option", 2),
    (("--base", "{tmp}/no-such-base", "--out", "{tmp}/out-{name}"), "", None),
]

# The driver: import hubkit once, then one forked child per row running hubkit.cli.main() with its own
# stdout/stderr files; an exception escaping main() is printed as the interpreter would (a traceback).
DRIVER = r"""
import json, os, signal, sys, time, traceback

spec = json.load(open(sys.argv[1]))
import typer
from hubkit.cli import app, main

def leaves(command, path=()):
    if not hasattr(command, "list_commands"):  # a leaf; groups list theirs (train builds its own lazily)
        return [list(path)]
    ctx = command.context_class(command)
    names = sorted(command.list_commands(ctx))
    return [leaf for name in names for leaf in leaves(command.get_command(ctx, name), (*path, name))]

def run(argv, folder):
    out, err = os.path.join(folder, "stdout"), os.path.join(folder, "stderr")
    sys.stdout.flush(); sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
            os.dup2(os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), 1)
            os.dup2(os.open(err, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), 2)
            sys.argv = ["hubkit", *argv]
            try:
                main()
                code = 0
            except SystemExit as exc:
                if exc.code is None or isinstance(exc.code, int):
                    code = exc.code or 0
                else:
                    print(exc.code, file=sys.stderr)
            except BaseException:
                traceback.print_exc()
        finally:
            try:
                sys.stdout.flush(); sys.stderr.flush()
            finally:
                os._exit(code)
    deadline = time.monotonic() + spec["timeout"]
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            code = os.waitstatus_to_exitcode(status)
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            code = "timeout"
            break
        time.sleep(0.02)
    return {"argv": argv, "code": code, "stdout": open(out).read(), "stderr": open(err).read()}

commands = leaves(typer.main.get_command(app))
rows = dict(spec["rows"])
for path in commands:
    if path[:1] == ["train"] and len(path) == 2:
        for i, args in enumerate(spec["train_rows"]):
            rows[f"train {path[1]} #{i}"] = [*path, *(a.replace("{name}", path[1]) for a in args)]
results = {}
for key, argv in rows.items():
    folder = os.path.join(spec["tmp"], "runs", str(len(results)))
    os.makedirs(folder)
    results[key] = run(argv, folder)
json.dump({"commands": commands, "results": results}, open(sys.argv[2], "w"))
"""


def _fill(args: tuple[str, ...], values: dict[str, str]) -> list[str]:
    out = []
    for arg in args:
        for name, value in values.items():
            arg = arg.replace("{" + name + "}", value)
        out.append(arg)
    return out


def _env(tmp: Path) -> dict[str, str]:
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there: no request leaves this machine
    env = {k: v for k, v in os.environ.items() if k not in ("HUBKIT_DEBUG", "HF_TOKEN")}
    env.update(
        HF_ENDPOINT=dead,
        HUBKIT_HOME=str(tmp / "hubkit-home"),
        HF_HOME=str(tmp / "hf-home"),
        HUBKIT_PORT=str(free_port()),
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_DISABLE_PROGRESS_BARS="1",
        COLUMNS="200",
        OMP_NUM_THREADS="1",
    )
    return env


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("cli-errors")
    (tmp / "empty").mkdir()
    (tmp / "a-file").write_text("not a folder\n")
    return tmp


@pytest.fixture(scope="module")
def busy_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.fixture(scope="module")
def driven(scratch: Path, busy_port: int) -> dict:
    """Run every row (and the generic train rows) once through the driver; its commands and results."""
    values = {"tmp": str(scratch), "file": str(scratch / "a-file"), "busy": str(busy_port)}
    spec = {
        "tmp": str(scratch),
        "timeout": 60,
        "rows": [[row.id, _fill(row.args, values)] for row in TABLE],
        "train_rows": [_fill(args, values) for args, _, _ in TRAIN_ROWS],
    }
    (scratch / "spec.json").write_text(json.dumps(spec))
    out = scratch / "results.json"
    proc = subprocess.run(
        [sys.executable, "-c", DRIVER, str(scratch / "spec.json"), str(out)],
        cwd=scratch,
        env=_env(scratch),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0 and out.exists(), proc.stdout + proc.stderr
    return json.loads(out.read_text())


def _check_failure(result: dict, says: str, code: int | None) -> None:
    stderr = result["stderr"]
    shown = f"hubkit {' '.join(result['argv'])} -> exit {result['code']}\nstderr:\n{stderr}"
    assert "Traceback" not in stderr + result["stdout"], shown
    assert result["code"] != "timeout", shown
    if code is None:
        assert result["code"] != 0, shown
    else:
        assert result["code"] == code, shown
    assert says in stderr, shown
    # one line names the problem: exactly one "error: ..." line from hubkit (uvicorn's own "ERROR:" line
    # counts for serve's bind failure, where uvicorn, not hubkit, reports it)
    errors = [line for line in stderr.splitlines() if line.lower().startswith("error:")]
    assert len(errors) == 1, shown


@pytest.mark.parametrize("row", TABLE, ids=[row.id for row in TABLE])
def test_bad_input_gets_one_line_and_a_non_zero_exit(driven: dict, row: Row) -> None:
    _check_failure(driven["results"][row.id], row.says, row.code)


def test_every_command_has_a_row(driven: dict) -> None:
    """A command without a row here fails: add one with a bad input and the message it must give."""
    covered = set()
    for row in TABLE:
        for command in driven["commands"]:
            if list(row.args[: len(command)]) == command:
                covered.add(tuple(command))
    missing = [
        " ".join(command)
        for command in driven["commands"]
        if tuple(command) not in covered and command[:1] != ["train"]
    ]
    assert not missing, f"add a row to TABLE in {__file__} for: hubkit {', hubkit '.join(missing)}"
    assert any(command[:1] == ["train"] for command in driven["commands"]), driven["commands"]


def test_every_train_command_refuses_bad_input(driven: dict) -> None:
    trained = [command[1] for command in driven["commands"] if command[:1] == ["train"] and len(command) == 2]
    assert trained, "no hubkit train <method> command"
    for name in trained:
        for i, (_, says, code) in enumerate(TRAIN_ROWS):
            result = driven["results"][f"train {name} #{i}"]
            if code == 0:
                assert result["code"] == 0 and "--base" in result["stdout"], result
                assert "Traceback" not in result["stderr"], result
            else:
                _check_failure(result, says, code)


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("serve", "--user", "bob:short"), "Invalid value for '--user'"),
        (("publish", "{tmp}/missing", "alice/adapter"), "is not a folder"),
    ],
)
def test_the_real_command_line(scratch: Path, args: tuple[str, ...], says: str) -> None:
    """The same as a user runs it: ``python -m hubkit ...`` in a fresh interpreter."""
    proc = subprocess.run(
        [sys.executable, "-m", "hubkit", *_fill(args, {"tmp": str(scratch)})],
        cwd=scratch,
        env=_env(scratch),
        capture_output=True,
        text=True,
        timeout=120,
    )
    result = {"argv": list(args), "code": proc.returncode, "stdout": proc.stdout, "stderr": proc.stderr}
    _check_failure(result, says, None)


# -- the rules of hubkit.cli_common.run, on a throwaway app ----------------------------------------------


def _buggy_app():
    from hubkit.cli_common import command_group
    from hubkit.hub import HubError

    app = command_group("buggy", "An app whose commands fail.")

    @app.command()
    def bug() -> None:
        raise TypeError("unsupported operand type(s) for +: 'int' and 'str'")

    @app.command()
    def missing() -> None:
        Path("/no/such/file").read_text()

    @app.command()
    def hub() -> None:
        raise HubError("No such repo alice/x")

    return app


@pytest.mark.parametrize(
    ("command", "says"),
    [
        ("missing", "error: No such file or directory: /no/such/file\n"),
        ("hub", "error: No such repo alice/x\n"),
    ],
)
def test_expected_errors_are_their_sentence(command: str, says: str, capsys, monkeypatch) -> None:
    from hubkit.cli_common import run

    monkeypatch.delenv("HUBKIT_DEBUG", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        run(_buggy_app(), [command], prog_name="buggy")
    assert exit_info.value.code == 1
    assert capsys.readouterr().err == says


def test_a_bug_is_one_line_and_its_traceback_is_kept(tmp_path: Path, capsys, monkeypatch) -> None:
    from hubkit.cli_common import run

    monkeypatch.setenv("HUBKIT_HOME", str(tmp_path))
    monkeypatch.delenv("HUBKIT_DEBUG", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        run(_buggy_app(), ["bug"], prog_name="buggy")
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("error: internal error, TypeError: unsupported operand") and err.count("\n") == 1
    assert "HUBKIT_DEBUG=1" in err and str(tmp_path / "last-traceback.txt") in err
    saved = (tmp_path / "last-traceback.txt").read_text()
    assert "Traceback (most recent call last)" in saved and ", in bug" in saved

    monkeypatch.setenv("HUBKIT_DEBUG", "1")  # developers get Python's traceback
    with pytest.raises(TypeError):
        run(_buggy_app(), ["bug"], prog_name="buggy")
