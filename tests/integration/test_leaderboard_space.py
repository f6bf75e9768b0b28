"""The leaderboard Space against the embedded Hub, driven by gradio_client; publishing it as a Space repo."""

from __future__ import annotations

import ast
import io
import json
import shutil
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest
from conftest import start_space, stop_space
from gradio_client import Client
from huggingface_hub.errors import RepositoryNotFoundError
from typer.testing import CliRunner

from hubkit.hub import HubError
from hubkit.spaces import publish_space, space_app

pytestmark = [pytest.mark.integration]

SPACE = Path(__file__).resolve().parents[2] / "spaces" / "leaderboard"
SHAS = {name: name[0] * 40 for name in ("a-base", "b-lcm", "c-spm")}
REQUEST_KEYS = {
    "schema_version",
    "model",
    "revision",
    "status",
    "submitted_time",
    "updated_time",
    "reason",
    "submitted_by",
}


def _row(
    model: str,
    revision: str,
    method: str,
    kind: str,
    suite: str,
    params: str = "{}",
    architecture: str = "sd1",
    base: str = "alice/tiny-sd-shapes",
    **metrics,
):
    return {
        "model": model,
        "revision": revision,
        "method": method,
        "kind": kind,
        "base_model": None if kind == "pipeline" else base,
        "architecture": architecture,
        "suite": suite,
        "suite_version": 1,
        "params": params,
        "date": "2025-06-01T12:00:00Z",
        "hubkit_version": "0.1.0",
        **metrics,
    }


def results_parquet() -> bytes:
    """A results table as the leaderboard runner writes it: a baseline, an LCM-LoRA and an SPM (of an SDXL
    base) row."""
    rows = [
        _row(
            "alice/tiny-sd-shapes",
            SHAS["a-base"],
            "pipeline",
            "pipeline",
            "shapes-quality",
            alignment=0.97,
            alignment_shape=0.98,
            alignment_colour=0.96,
            fd=1.23456789,
            unet_evals=50.0,
            time_ratio=1.0,
        ),
        _row(
            "alice/tiny-sd-shapes-lcm",
            SHAS["b-lcm"],
            "lcm-lora",
            "adapter",
            "shapes-quality",
            alignment=0.91,
            fd=2.5,
            unet_evals=4.0,
            time_ratio=0.09,
            **{"alignment@4": 0.91, "fd@4": 2.5},
        ),
        _row(
            "alice/tiny-sd-shapes",
            SHAS["a-base"],
            "pipeline",
            "pipeline",
            "shapes-erasure",
            params='{"concept": "red"}',
            target_presence=0.93,
            unrelated_alignment=0.97,
        ),
        _row(
            "alice/spm-red",
            SHAS["c-spm"],
            "spm",
            "adapter",
            "shapes-erasure",
            params='{"concept": "red"}',
            architecture="sdxl",
            base="alice/tiny-sdxl",
            target_presence=0.02,
            paraphrase_presence=0.1,
            neighbour_alignment=0.85,
            unrelated_alignment=0.953215,
        ),
    ]
    buffer = io.BytesIO()
    frame = pd.DataFrame(rows)
    metrics = [c for c in frame.columns if c not in _row("m", "r", "x", "pipeline", "s")]
    frame[metrics] = frame[metrics].astype("float64")
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


def upload_results(api, repo_id: str, data: bytes) -> None:
    api.create_repo(repo_id, repo_type="dataset", exist_ok=True)
    api.upload_file(
        path_or_fileobj=data, path_in_repo="leaderboard.parquet", repo_id=repo_id, repo_type="dataset"
    )


def plots_file(parquet: bytes) -> bytes:
    """``plots.json`` as the runner writes it beside that table: the plots its suites declare."""
    from hubkit.leaderboard.plots import declared_plots, plots_json

    return plots_json(declared_plots(pd.read_parquet(io.BytesIO(parquet))))


@pytest.fixture(scope="module")
def repos(hub) -> dict[str, str]:
    """A results dataset holding the parquet and plots.json; a requests dataset that does not exist yet."""
    names = {"results": "alice/leaderboard-results", "requests": "alice/leaderboard-requests"}
    upload_results(hub.api("alice"), names["results"], results_parquet())
    hub.api("alice").upload_file(
        path_or_fileobj=plots_file(results_parquet()),
        path_in_repo="plots.json",
        repo_id=names["results"],
        repo_type="dataset",
    )
    return names


@pytest.fixture(scope="module")
def space(hub, repos, tmp_path_factory) -> Iterator[str]:
    """The Space, with alice's token, reading the test Hub's results and writing its requests."""
    proc, url, _ = start_space(
        tmp_path_factory.mktemp("space"),
        {
            "HF_ENDPOINT": hub.url,
            "HF_TOKEN": hub.users["alice"],
            "HUBKIT_RESULTS_REPO": repos["results"],
            "HUBKIT_REQUESTS_REPO": repos["requests"],
        },
    )
    try:
        yield url
    finally:
        stop_space(proc)


def as_rows(table: dict) -> list[dict]:
    return [dict(zip(table["headers"], row, strict=True)) for row in table["data"]]


def _imports(nodes) -> set[str]:
    imported = {alias.name.split(".")[0] for n in nodes if isinstance(n, ast.Import) for alias in n.names}
    return imported | {n.module.split(".")[0] for n in nodes if isinstance(n, ast.ImportFrom) and n.module}


def test_app_imports_only_what_a_space_has():
    """app.py and, at module level, its plotting module (hubkit's plots.py, copied: only its
    ``declared_plots``, which the Space never calls, imports hubkit)."""
    app_tree = ast.parse((SPACE / "app.py").read_text())
    plots_tree = ast.parse((SPACE / "leaderboard_plots.py").read_text())
    imported = _imports(list(ast.walk(app_tree))) | _imports(plots_tree.body)
    third_party = imported - set(sys.stdlib_module_names) - {"__future__", "leaderboard_plots"}
    assert third_party <= {"gradio", "huggingface_hub", "pandas", "numpy", "matplotlib"}, third_party
    assert "declared_plots" not in (SPACE / "app.py").read_text()
    requirements = set((SPACE / "requirements.txt").read_text().split())
    assert requirements == {"huggingface_hub", "matplotlib", "pandas", "pyarrow"}


def test_leaderboard_table_and_filters(space):
    client = Client(space, verbose=False)
    rows = as_rows(client.predict(api_name="/leaderboard"))
    baseline = [r for r in rows if r["model"] == "alice/tiny-sd-shapes" and r["suite"] == "shapes-quality"]
    assert len(baseline) == 1 and len(rows) == 4
    assert baseline[0]["alignment"] == 0.97 and baseline[0]["method"] == "pipeline"
    assert baseline[0]["revision"] == SHAS["a-base"][:7] and baseline[0]["suite_version"] == 1
    assert baseline[0]["fd"] == 1.2346  # rounded to 4 decimals
    assert baseline[0]["target_presence"] is None  # another suite's metric: null here

    table = client.predict(suite="shapes-quality", api_name="/leaderboard")
    quality = as_rows(table)
    assert {r["suite"] for r in quality} == {"shapes-quality"} and len(quality) == 2
    assert [r["model"] for r in quality] == ["alice/tiny-sd-shapes", "alice/tiny-sd-shapes-lcm"]  # best first
    assert table["headers"][:7] == [
        "model", "revision", "method", "architecture", "suite", "suite_version", "params",
    ]  # fmt: skip
    assert "alignment@4" in table["headers"] and "target_presence" not in table["headers"]  # all null here

    erasure = client.predict(suite="shapes-erasure", methods=["spm"], api_name="/leaderboard")
    (spm,) = as_rows(erasure)
    assert spm["model"] == "alice/spm-red" and spm["params"] == '{"concept": "red"}'
    assert spm["unrelated_alignment"] == 0.9532 and "alignment" not in erasure["headers"]
    searched = as_rows(client.predict(search="SD-SHAPES-L", api_name="/leaderboard"))
    assert [r["model"] for r in searched] == ["alice/tiny-sd-shapes-lcm"]
    assert as_rows(client.predict(suite="no-such-suite", api_name="/leaderboard")) == []
    (xl,) = as_rows(client.predict(architecture="sdxl", api_name="/leaderboard"))
    assert xl["model"] == "alice/spm-red" and xl["architecture"] == "sdxl"
    sd1 = as_rows(client.predict(architecture="sd1", api_name="/leaderboard"))
    assert len(sd1) == 3 and {r["architecture"] for r in sd1} == {"sd1"}
    assert as_rows(client.predict(suite="shapes-quality", architecture="sdxl", api_name="/leaderboard")) == []
    assert "4 results for 3 models on 2 suites" in client.predict(api_name="/status")


def test_submit_files_one_pending_request(space, hub, repos, repo_name):
    alice = hub.api("alice")
    model = f"alice/{repo_name}"
    alice.create_repo(model)
    alice.upload_file(path_or_fileobj=b"{}", path_in_repo="config.json", repo_id=model)
    client = Client(space, verbose=False)
    path = f"requests/{model}.json"

    def request_files() -> list[str]:
        return [
            f
            for f in alice.list_repo_files(repos["requests"], repo_type="dataset")
            if f.startswith("requests/")
        ]

    missing = client.predict(f"alice/{repo_name}-nope", "", api_name="/submit")
    assert f"no model repo `alice/{repo_name}-nope`" in missing
    assert "not a valid model repo id" in client.predict("not a repo id", "", api_name="/submit")
    bad_revision = client.predict(model, "no-such-branch", api_name="/submit")
    assert "no revision `no-such-branch`" in bad_revision and "nothing was submitted" in bad_revision

    queued = client.predict(f"  {model} ", "", api_name="/submit")
    assert queued.startswith(f"Queued `{model}`"), queued
    text = Path(alice.hf_hub_download(repos["requests"], path, repo_type="dataset")).read_text()
    request = json.loads(text)
    assert text == json.dumps(request, indent=2) + "\n" and set(request) == REQUEST_KEYS
    assert request["schema_version"] == 1 and request["model"] == model and request["revision"] is None
    assert request["status"] == "PENDING" and request["reason"] is None and request["submitted_by"] == "space"
    assert request["submitted_time"] == request["updated_time"]
    assert datetime.fromisoformat(request["submitted_time"]).utcoffset().total_seconds() == 0

    again = client.predict(model, "main", api_name="/submit")
    assert "already queued" in again and "PENDING" in again
    assert request_files() == [path]
    queue = as_rows(client.predict(api_name="/queue"))
    assert [(q["model"], q["status"]) for q in queue] == [(model, "PENDING")]

    # Once the runner has finished it, the model may be queued again (here at a revision).
    done = {**request, "status": "FINISHED", "reason": "evaluated"}
    alice.upload_file(
        path_or_fileobj=json.dumps(done).encode(),
        path_in_repo=path,
        repo_id=repos["requests"],
        repo_type="dataset",
    )
    assert client.predict(model, "main", api_name="/submit").startswith(
        f"Queued `{model}` at revision `main`"
    )
    request = json.loads(
        Path(alice.hf_hub_download(repos["requests"], path, repo_type="dataset")).read_text()
    )
    assert request["revision"] == "main" and request["status"] == "PENDING" and request_files() == [path]


def test_empty_state_then_refresh(hub, tmp_path, repo_name):
    """No results repo (and no token): an empty table with a message; Refresh picks the results up later."""
    alice = hub.api("alice")
    results = f"alice/{repo_name}-results"
    proc, url, log = start_space(
        tmp_path,
        {
            "HF_ENDPOINT": hub.url,
            "HF_TOKEN": "",
            "HUBKIT_RESULTS_REPO": results,
            "HUBKIT_REQUESTS_REPO": f"alice/{repo_name}-requests",
        },
    )
    try:
        client = Client(url, verbose=False)
        assert f"the dataset `{results}` does not exist" in client.predict(api_name="/status")
        empty = client.predict(api_name="/leaderboard")
        assert empty["data"] == [] and empty["headers"][:2] == ["model", "revision"]
        assert client.predict(api_name="/queue")["data"] == []
        assert "needs a token" in client.predict(f"alice/{repo_name}", "", api_name="/submit")

        alice.create_repo(results, repo_type="dataset")
        alice.upload_file(
            path_or_fileobj=b"# results\n", path_in_repo="README.md", repo_id=results, repo_type="dataset"
        )
        assert "has no `leaderboard.parquet`" in client.predict(api_name="/refresh")
        upload_results(alice, results, results_parquet())
        assert client.predict(api_name="/leaderboard")["data"] == []  # still the copy read before Refresh
        assert "4 results" in client.predict(api_name="/refresh")
        assert len(client.predict(api_name="/leaderboard")["data"]) == 4
    finally:
        stop_space(proc)
    assert "Traceback" not in log.read_text()


def test_publish_space(hub, tmp_path, repo_name):
    token = hub.users["alice"]
    result = publish_space(SPACE, "alice/leaderboard", endpoint=hub.url, token=token)
    info = hub.api(None).space_info("alice/leaderboard")
    assert result.repo_id == "alice/leaderboard" and info.sha == result.commit
    assert info.sdk == "gradio" and "hubkit-kind:space" in info.tags
    assert {"app.py", "leaderboard_plots.py", "README.md", "requirements.txt"} <= {
        s.rfilename for s in info.siblings
    }
    assert not any("__pycache__" in s.rfilename for s in info.siblings)

    runner = CliRunner()
    args = ["publish", str(SPACE), "--endpoint", hub.url, "--token", token]
    out = runner.invoke(space_app, [*args, "--repo-id", f"alice/{repo_name}", "--private"])
    assert out.exit_code == 0, out.output
    assert out.output.startswith(f"published alice/{repo_name} @ ")
    assert hub.api(None).repo_exists(f"alice/{repo_name}", repo_type="space") is False  # private
    assert hub.api("alice").space_info(f"alice/{repo_name}").private
    default = runner.invoke(space_app, args)  # hubkit/leaderboard: not alice's namespace
    assert default.exit_code == 1 and "hubkit/leaderboard" in default.output

    broken = tmp_path / "broken"
    shutil.copytree(SPACE, broken, ignore=shutil.ignore_patterns("__pycache__"))
    card = (broken / "README.md").read_text()
    (broken / "README.md").write_text(
        card.replace("sdk: gradio\n", "").replace("colorFrom: indigo", "colorFrom: teal")
    )
    with pytest.raises(HubError) as refused:
        publish_space(broken, f"alice/{repo_name}-broken", endpoint=hub.url, token=token)
    assert "not a valid hubkit card" in str(refused.value)
    assert "sdk" in str(refused.value) and "colorFrom" in str(refused.value)
    cli = runner.invoke(
        space_app, ["publish", str(broken), "--repo-id", f"alice/{repo_name}-broken", *args[2:]]
    )
    assert cli.exit_code == 1 and "colorFrom" in cli.output
    with pytest.raises(RepositoryNotFoundError):
        hub.api("alice").space_info(f"alice/{repo_name}-broken")


@pytest.fixture(scope="module")
def app_module():
    """The Space's app.py imported in this process (as the Space runs it: its folder on the path)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("leaderboard_app", SPACE / "app.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    sys.path.insert(0, str(SPACE))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.modules.pop(spec.name)
        sys.path.remove(str(SPACE))
    return module


def test_space_reads_the_columns_the_runner_writes(app_module) -> None:
    """The Space is self-contained (no hubkit import): its copy of the table's id columns must match. A
    table published before the architecture column existed still reads: every row under "All", none under
    one family."""
    from hubkit.leaderboard.board import ID_COLUMNS

    assert list(app_module.ID_COLUMNS) == ID_COLUMNS
    older = pd.read_parquet(io.BytesIO(results_parquet())).drop(columns="architecture")
    frame = app_module.normalize_results(older)
    assert frame["architecture"].isna().all() and app_module.architectures_of(frame) == []
    assert len(app_module.filter_rows(frame, None, None, "", app_module.ALL_ARCHITECTURES)) == 4
    assert app_module.filter_rows(frame, None, None, "", "sd1").empty


def test_space_starts_on_one_suite_and_draws_its_declared_plots(app_module) -> None:
    frame = app_module.normalize_results(pd.read_parquet(io.BytesIO(results_parquet())))
    declared = json.loads(plots_file(results_parquet()))["suites"]
    results = app_module.Results(frame, "4 results", plots=declared)
    app_module.STORE._results = results

    # The suite with the most models first (ties by name), and chosen; "All" last.
    _, suites, _, families = app_module._filter_updates(results)
    assert [choice[0] for choice in families.choices] == [app_module.ALL_ARCHITECTURES, "sd1", "sdxl"]
    assert families.value == app_module.ALL_ARCHITECTURES
    assert app_module._filter_updates(results, None, "sdxl")[3].value == "sdxl"  # kept
    assert app_module._filter_updates(results, None, "sd2")[3].value == app_module.ALL_ARCHITECTURES
    choices = [choice[0] for choice in suites.choices]
    assert choices == ["shapes-erasure", "shapes-quality", app_module.ALL_SUITES]
    assert suites.value == "shapes-erasure"
    assert app_module._filter_updates(results, "shapes-quality")[1].value == "shapes-quality"  # kept
    more = app_module.Results(pd.concat([frame, frame.iloc[[0]].assign(model="bob/m")]), "")
    assert app_module._filter_updates(more)[1].value == "shapes-quality"  # now three models

    *slots, note = app_module.plots("shapes-quality", None, "")
    assert len(slots) == app_module.MAX_PLOTS
    visible = [slot for slot in slots if slot.visible]
    assert len(visible) == len(declared["shapes-quality"]) and note == ""
    assert all(slot.value["type"] == "matplotlib" for slot in visible)
    *slots, note = app_module.plots("shapes-erasure", ["pipeline"], "")
    assert sum(slot.visible for slot in slots) == 1  # the base row alone still draws
    *slots, note = app_module.plots("shapes-quality", None, "", "sdxl")
    assert not any(slot.visible for slot in slots) and "nothing to plot" in note  # no SDXL row there
    *slots, note = app_module.plots("shapes-erasure", None, "no-such-model")
    assert not any(slot.visible for slot in slots) and "nothing to plot" in note
    assert "Pick a suite" in app_module.plots(app_module.ALL_SUITES, None, "")[-1]
    app_module.STORE._results = app_module.Results(frame, "4 results", plots_note="no `plots.json`")
    assert app_module.plots("shapes-quality", None, "")[-1] == "no `plots.json`"


def test_card_only_commits_keep_a_models_row(hub, repo_name) -> None:
    """The revision the Space shows is that of the weights: a commit that changes only the card (by hand, or
    an evaluation writing its results) makes no new row; one that changes the weights does."""
    from huggingface_hub import CommitOperationAdd

    from hubkit.leaderboard.board import Leaderboard, records_table

    alice, model = hub.api("alice"), f"alice/{repo_name}"
    alice.create_repo(model)

    def commit(files: dict[str, bytes]) -> str:
        operations = [CommitOperationAdd(path, data) for path, data in files.items()]
        return alice.create_commit(model, operations, commit_message="c").oid

    weights = commit({"README.md": b"# m\n", "unet/w.safetensors": b"1" * 64, "model_index.json": b"{}"})
    card = commit({"README.md": b"# m, evaluated\n", ".eval_results/s.yaml": b"- 1\n"})
    edited = commit({"README.md": b"# m, edited by hand\n", "hubkit.json": b"{}"})
    retrained = commit({"unet/w.safetensors": b"2" * 64})

    def row(revision, card_commit=None, suite="s"):
        return {
            "model": {
                "id": model,
                "revision": revision,
                "method": "m",
                "kind": "pipeline",
                "base_model": None,
            },
            "suite": {"name": suite, "version": 1, "key": suite, "params": {}},
            "metrics": {"alignment": 0.5},
            "env": {"hubkit": "0"},
            "date": "2025-06-01T00:00:00Z",
            "card_commit": card_commit,
        }

    found = [row(weights, card), row(edited, suite="t"), row(retrained, suite="t")]
    board = Leaderboard(alice)
    table = records_table(found, board.weights_revisions(found))
    shown = sorted(zip(table["suite"], table["revision"], strict=True))
    assert shown == sorted([("s", weights), ("t", weights), ("t", retrained)])
