"""``hubkit eval`` and the leaderboard on a real embedded Hub: records, card write-back, hostile repos."""

from __future__ import annotations

import json
from pathlib import Path
from unittest.mock import patch

import pytest
from huggingface_hub import ModelCard, parse_eval_result_entries
from typer.testing import CliRunner

from hubkit.cli import app
from hubkit.leaderboard.board import Leaderboard
from hubkit.leaderboard.evaluation import evaluate

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TINY_SUITE = Path(__file__).parents[1] / "data" / "tiny-suite.json"


@pytest.fixture(scope="module")
def base_repo(hub) -> str:
    from hubkit.world.publish import publish_world

    publish_world(endpoint=hub.url, token=hub.users["alice"], namespace="alice", only=["tiny-sd-shapes"])
    return "alice/tiny-sd-shapes"


def _card(hub, repo_id: str, revision: str | None = None) -> ModelCard:
    path = hub.api("alice").hf_hub_download(repo_id, "README.md", revision=revision)
    return ModelCard.load(path)


def test_eval_cli_writes_record_results_dataset_and_card(hub, base_repo, tmp_path) -> None:
    api = hub.api("alice")
    evaluated = api.model_info(base_repo).sha
    args = ["eval", base_repo, "--suite", str(TINY_SUITE), "--results-repo", "alice/results"]
    args += ["--endpoint", hub.url, "--token", hub.users["alice"]]
    out = CliRunner().invoke(app, [*args, "--json", str(tmp_path / "out.json")])
    assert out.exit_code == 0, out.output
    record = json.loads((tmp_path / "out.json").read_text())
    assert record["model"] == record["model"] | {"id": base_repo, "revision": evaluated, "method": "pipeline"}
    assert record["model"]["architecture"] == "sd1"  # the base's family, from its config
    assert record["suite"]["key"] == "tiny" and set(record["metrics"]) == {
        "alignment",
        "alignment_colour",
        "fd",
        "unet_evals",
    }

    files = api.list_repo_files("alice/results", repo_type="dataset")
    path = f"results/{base_repo}/tiny/{evaluated}.json"
    assert {path, path.replace(".json", ".samples.parquet"), "README.md"} <= set(files)
    pushed = json.loads(Path(api.hf_hub_download("alice/results", path, repo_type="dataset")).read_text())
    assert pushed["metrics"] == record["metrics"] and pushed["card_commit"] == api.model_info(base_repo).sha

    card = _card(hub, base_repo)
    on_card = {r.metric_type: r.metric_value for r in card.data.eval_results if r.dataset_config == "tiny"}
    assert on_card == {k: round(v, 6) for k, v in record["metrics"].items()}
    entries = parse_eval_result_entries(
        __import__("yaml").safe_load(
            Path(api.hf_hub_download(base_repo, ".eval_results/tiny.yaml")).read_text()
        )
    )
    assert {e.task_id for e in entries} == {f"tiny/{k}" for k in record["metrics"]}

    # Second run: identical numbers; the card's results are replaced, not duplicated.
    again = CliRunner().invoke(app, [*args, "--json", str(tmp_path / "again.json")])
    assert again.exit_code == 0, again.output
    assert json.loads((tmp_path / "again.json").read_text())["metrics"] == record["metrics"]
    assert len([r for r in _card(hub, base_repo).data.eval_results if r.dataset_config == "tiny"]) == 4


def test_eval_of_someone_elses_repo_opens_a_pull_request(hub, base_repo) -> None:
    api = hub.api("alice")
    head = api.model_info(base_repo).sha
    record = evaluate(
        base_repo,
        TINY_SUITE,
        endpoint=hub.url,
        token=hub.users["bob"],
        results_repo="bob/results",
        progress=False,
    )
    assert api.model_info(base_repo).sha == head  # main untouched
    refs = api.list_repo_refs(base_repo, include_pull_requests=True)
    assert record["card_commit"] in {pr.target_commit for pr in refs.pull_requests}


def test_eval_no_push_and_bad_input(hub, base_repo, tmp_path) -> None:
    runner = CliRunner()
    common = ["--endpoint", hub.url, "--token", hub.users["alice"]]
    hub.api("alice").create_repo("alice/results", repo_type="dataset", exist_ok=True)  # whatever ran first
    files_before = hub.api("alice").list_repo_files("alice/results", repo_type="dataset")
    head = hub.api("alice").model_info(base_repo).sha
    out = runner.invoke(
        app,
        [
            "eval",
            base_repo,
            "--suite",
            str(TINY_SUITE),
            "--no-push",
            *common,
            "--results-repo",
            "alice/results",
        ],
    )
    assert out.exit_code == 0, out.output
    assert hub.api("alice").model_info(base_repo).sha == head
    assert hub.api("alice").list_repo_files("alice/results", repo_type="dataset") == files_before
    for bad, message in [
        (["eval", "alice/nope", "--suite", str(TINY_SUITE)], "alice/nope"),
        (["eval", base_repo, "--suite", "shapes-nope"], "unknown suite"),
        (["eval", base_repo, "--suite", "shapes-erasure"], "missing ['concept']"),
        (["eval", str(tmp_path), "--suite", str(TINY_SUITE)], "cannot tell which method"),
    ]:
        out = runner.invoke(app, [*bad, *common])
        assert out.exit_code == 1 and message in out.output, out.output


def _publish_folder(api, repo_id: str, folder: Path) -> None:
    api.create_repo(repo_id, exist_ok=True)
    api.upload_folder(folder_path=folder, repo_id=repo_id)


def _hostile_repos(hub, base_repo: str, tmp_path: Path, big_file_bytes: int) -> dict[str, str]:
    """Repos that must fail, each with a word its reason must contain."""
    import shutil

    import torch
    from safetensors.torch import save_file

    from hubkit.cards import render_card

    api = hub.api("alice")
    base_dir = Path(api.snapshot_download(base_repo))
    pipeline_card = str(render_card("pipeline", repo_id="alice/x", title="x", description="A pipeline."))

    no_weights = tmp_path / "no-weights"
    shutil.copytree(base_dir, no_weights, ignore=shutil.ignore_patterns("*.safetensors", ".eval_results"))
    (no_weights / "README.md").write_text(pipeline_card)
    _publish_folder(api, "alice/no-weights", no_weights)

    bad_card = tmp_path / "bad-card"
    bad_card.mkdir()
    (bad_card / "model_index.json").write_text((base_dir / "model_index.json").read_text())
    (bad_card / "README.md").write_text(pipeline_card.replace("license: apache-2.0\n", ""))
    _publish_folder(api, "alice/bad-card", bad_card)

    wrong_base = tmp_path / "wrong-base"
    wrong_base.mkdir()
    key = "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_q"
    save_file(
        {f"{key}.lora_A.weight": torch.zeros(4, 999), f"{key}.lora_B.weight": torch.zeros(96, 4)},
        wrong_base / "pytorch_lora_weights.safetensors",
    )
    card = render_card("adapter", method="lora", base_model=base_repo, repo_id="alice/wrong-base", title="w")
    (wrong_base / "README.md").write_text(str(card))
    _publish_folder(api, "alice/wrong-base", wrong_base)

    oversized = tmp_path / "oversized"
    shutil.copytree(no_weights, oversized)
    (oversized / "huge.bin").write_bytes(b"\0" * big_file_bytes)
    _publish_folder(api, "alice/oversized", oversized)
    return {
        "alice/no-weights": "diffusers could not load",
        "alice/bad-card": "invalid card",
        "alice/wrong-base": "does not fit the base model",
        "alice/oversized": "over the",
    }


def test_leaderboard_fails_hostile_repos_and_finishes_good_ones(hub, base_repo, tmp_path) -> None:
    api = hub.api("alice")
    largest = max(s.size for s in api.model_info(base_repo, files_metadata=True).siblings)
    expected = _hostile_repos(hub, base_repo, tmp_path, big_file_bytes=largest + (2 << 20))
    board = Leaderboard(api, results_repo="alice/lb-results", requests_repo="alice/lb-requests")

    def tiny_evaluate(model, name, params, **kwargs):  # the method's suites, shrunk to the tiny one
        return evaluate(model, TINY_SUITE, **kwargs)

    events: list[str] = []
    summary = board.run(
        tiny_evaluate, max_file_bytes=largest + (1 << 20), on_event=events.append, progress=False
    )
    requests = board.requests()
    assert requests[base_repo]["status"] == "FINISHED" and base_repo in summary.finished
    for repo, word in expected.items():
        assert requests[repo]["status"] == "FAILED", (repo, requests[repo])
        assert word in requests[repo]["reason"], (repo, requests[repo]["reason"])
    assert "alice/shapes-judge" not in requests  # not a text-to-image artifact
    table = board.published_table()
    assert list(table["model"]) == [base_repo] and table["alignment"].notna().all()
    assert list(table["architecture"]) == ["sd1"]
    # A record written before records named the family: derived from the model's configs on the Hub.
    first = board.records()[0]
    older = {**first, "model": first["model"] | {"architecture": None}}
    assert Leaderboard(api).with_architecture(older)["model"]["architecture"] == "sd1"
    files = api.list_repo_files("alice/lb-results", repo_type="dataset")
    assert {"leaderboard.parquet", "leaderboard.md", "plots.json"} <= set(files)

    # A second pass: failed repos are not retried at the same commit.
    assert board.queue_stale(on_event=events.append) == [base_repo]  # the tiny suite is not its default suite
    assert board.requests()["alice/bad-card"]["status"] == "FAILED"


def test_freshness_follows_head_and_card_commit(hub, base_repo) -> None:
    board = Leaderboard(hub.api("alice"), "alice/fresh-results", "alice/fresh-requests")
    head = hub.api("alice").model_info(base_repo).sha
    record = {
        "model": {"id": base_repo, "revision": "0" * 40},
        "suite": {"key": "shapes-quality", "version": 1},
    }
    assert not board.is_fresh(base_repo, head, [record])
    assert board.is_fresh(base_repo, head, [record | {"card_commit": head}])
    assert board.is_fresh(base_repo, head, [{**record, "model": {"id": base_repo, "revision": head}}])
    assert not board.is_fresh(
        base_repo, head, [record | {"card_commit": head, "suite": {"key": "shapes-quality", "version": 0}}]
    )
    # Two suites of one revision: each evaluation commits results to the card, so the first record's card
    # commit is no longer the head; the chain revision → card commit → card commit still is the same weights.
    first, second = "1" * 40, "2" * 40
    erasure = {"key": "shapes-erasure_concept-red", "version": 1}
    chain = [record | {"card_commit": first}, record | {"card_commit": second, "suite": erasure}]
    suites = [("shapes-quality", {}), ("shapes-erasure", {"concept": "red"})]
    with patch.object(board, "suites_of", return_value=suites):
        assert board.is_fresh(base_repo, second, chain)
        assert not board.is_fresh(base_repo, first, chain[1:])  # no record ties `first` to the evaluated one
        assert not board.is_fresh(base_repo, "3" * 40, chain)  # a new commit: new weights, maybe
