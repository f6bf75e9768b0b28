"""Many ``hubkit leaderboard work`` workers on one queue, against a real embedded Hub.

The in-process tests drive :class:`hubkit.leaderboard.workers.Worker` with a stand-in evaluation (a fixed
record): the claim race (one head, two claimers: one wins, the other gets 412 and takes the next request),
an expired lease going back to PENDING while its paused owner can no longer stage anything, and a take-over
of results staged by a worker that died before publishing them. The last test runs three real worker
processes over eight requests with the tiny base model and a cut-down suite, and kill -9's one of them in
the middle of an evaluation.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hubkit.leaderboard.board import Leaderboard
from hubkit.leaderboard.evaluation import EvalOutcome
from hubkit.leaderboard.workers import Worker, epoch

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DEMO_SUITES = Path(__file__).parents[1] / "data" / "demo-suites"
CARD = "---\nlicense: mit\ntags:\n- hubkit\n---\n# A card-only model for the queue tests\n"


def _card_only_model(api, repo_id: str) -> str:
    """A model repo with just a card: enough for the card write-back of a stand-in record. Its head sha."""
    api.create_repo(repo_id, exist_ok=True)
    return api.upload_file(path_or_fileobj=CARD.encode(), path_in_repo="README.md", repo_id=repo_id).oid


def _stand_in(repo_id: str, revision: str) -> EvalOutcome:
    """A results record as an evaluation returns it (``push=False``), without running one."""
    outcome = EvalOutcome(
        schema_version=1,
        model={"id": repo_id, "revision": revision, "method": "pipeline", "kind": "pipeline"},
        suite={"name": "tiny", "version": 1, "key": "tiny", "params": {}, "digest": "d", "dataset": None},
        settings={},
        metrics={"alignment": 0.75},
        details={},
        env={"hubkit": "test"},
        date="2026-01-01T00:00:00Z",
        duration_s=1.0,
        card_commit=None,
    )
    outcome.samples = [{"prompt": "a red circle", "aligned": 1.0}]
    return outcome


def _one_request(hub, name: str) -> tuple:
    """(api, leaderboard on alice/<name>-results and -requests, its one queued model, that model's head)."""
    api = hub.api("alice")
    board = Leaderboard(api, f"alice/{name}-results", f"alice/{name}-requests")
    model = f"alice/{name}-model"
    head = _card_only_model(api, model)
    board.file_request(model, None, submitted_by="test")
    return api, board, model, head


def _worker(board: Leaderboard, name: str, events: list[str], **kwargs) -> Worker:
    def evaluate_fn(model, suite, params, **_):
        return _stand_in(model, board.api.model_info(model).sha)

    board.suites_of = lambda model, revision: [("tiny", {})]  # no card lookup: the stand-in needs none
    kwargs = {"lease_seconds": 30.0, "poll_every": 0.1, "progress": False, **kwargs}
    return Worker(
        board, kwargs.pop("evaluate_fn", evaluate_fn), worker_id=name, on_event=events.append, **kwargs
    )


def _results_commits(api, repo: str) -> list[str]:
    return [
        c.title for c in api.list_repo_commits(repo, repo_type="dataset") if c.title.startswith("Results of")
    ]


def test_claim_race_one_head_one_winner_the_loser_takes_the_next(hub) -> None:
    board = Leaderboard(hub.api("alice"), "alice/race-results", "alice/race-requests")
    for model in ("alice/first", "alice/second"):
        board.file_request(model, None, submitted_by="test")
    events: list[str] = []
    one, two = _worker(board, "one", events), _worker(board, "two", events)
    seen_by_one, seen_by_two = one.read_queue(), two.read_queue()
    assert seen_by_one.head == seen_by_two.head
    assert one.try_claim(seen_by_one.head, seen_by_one.requests["alice/first"]) is not None
    # The same request at the same (now old) head: the Hub answers 412, nothing is written.
    assert two.try_claim(seen_by_two.head, seen_by_two.requests["alice/first"]) is None
    # claim_next on that stale read: loses the race (412), re-reads, moves on to the next request.
    reads = iter([seen_by_two])
    two.read_queue = lambda: next(reads, None) or Worker.read_queue(two)
    claimed, _ = two.claim_next()
    assert claimed is not None and claimed["model"] == "alice/second"
    assert "two: lost race alice/first: another worker committed first (412); trying the next" in events
    requests = board.requests()
    assert requests["alice/first"]["claim"]["worker"] == "one"
    assert requests["alice/second"]["claim"]["worker"] == "two"
    assert {r["status"] for r in requests.values()} == {"RUNNING"}


def test_expired_lease_goes_back_to_pending_and_its_paused_owner_publishes_nothing(hub) -> None:
    api, board, model, head = _one_request(hub, "lease")
    events: list[str] = []
    paused = _worker(board, "paused", events, lease_seconds=1.0, renew_every=0.5)
    claimed, _ = paused.claim_next()  # and then it hangs: no renewal, no progress
    time.sleep(1.2)
    other = _worker(board, "other", events)
    summary = other.work(max_requests=1)
    assert summary.finished == [model]
    request = board.requests()[model]
    assert request["status"] == "FINISHED" and request["finished_by"] == "other"
    assert [c["worker"] for c in request["expired_claims"]] == ["paused"]
    assert "other: expired  alice/lease-model: the lease of paused ran out; back to PENDING" in events
    # The paused worker wakes up with its own result: neither staging nor renewing is allowed any more.
    assert paused.stage(model, claimed["claim"]["id"], [_stand_in(model, head)]) is None
    assert paused.renew(model, claimed["claim"]["id"]) is False
    assert board.requests()[model] == request
    assert _results_commits(api, "alice/lease-results") == [f"Results of {model} on tiny"]
    record = board.records()[0]
    assert record["metrics"] == {"alignment": 0.75} and record["card_commit"] is not None
    assert request["records"] == [f"results/{model}/tiny/{head}.json"]


def test_results_staged_by_a_dead_worker_are_published_once_without_evaluating_again(hub) -> None:
    api, board, model, head = _one_request(hub, "stage")
    events: list[str] = []
    dead = _worker(board, "dead", events, lease_seconds=1.0, renew_every=0.5)
    claimed, _ = dead.claim_next()
    staged = dead.stage(model, claimed["claim"]["id"], [_stand_in(model, head)])
    assert staged is not None and len(staged["staged"]) == 1  # and then it dies before publishing
    time.sleep(1.2)

    def must_not_run(*args, **kwargs):
        raise AssertionError("staged results must not be evaluated again")

    rescuer = _worker(board, "rescuer", events, evaluate_fn=must_not_run)
    assert rescuer.work(max_requests=1).finished == [model]
    request = board.requests()[model]
    assert request["status"] == "FINISHED" and request["finished_by"] == "rescuer" and not request["staged"]
    assert any(e.startswith("rescuer: took over alice/stage-model") for e in events), events
    files = api.list_repo_files("alice/stage-requests", repo_type="dataset")
    assert not [f for f in files if f.startswith("staged/")]  # the staged copies went with FINISHED
    # Were the dead worker only paused, its publishing now would find the card commit and the record
    # already there and write nothing.
    record, commits = board.records()[0], len(api.list_repo_commits(model))
    assert api.list_repo_commits(model)[0].title == "hubkit eval: tiny v1 results"
    assert dead.card_commit(record) == record["card_commit"] == api.model_info(model).sha
    assert dead.push_once(record, b"not written") == f"results/{model}/tiny/{head}.json"
    assert len(api.list_repo_commits(model)) == commits
    assert _results_commits(api, "alice/stage-results") == [f"Results of {model} on tiny"]


QUEUED = 8
LEASE_SECONDS = 6


@pytest.fixture(scope="module")
def queued_models(hub, tiny_arch_folder) -> list[str]:
    """Eight copies of the tiny random-weight SD 1.x pipeline (4 MB; an evaluation of it takes a fraction
    of a second once the libraries are loaded), each with a pipeline card: a request's model each."""
    from hubkit.cards import render_card

    api = hub.api("alice")
    folder = tiny_arch_folder("sd15")
    repos = [f"alice/queued-{n}" for n in range(QUEUED)]
    for repo in repos:
        card = render_card(
            "pipeline", repo_id=repo, title=repo, description="Random weights.", prompt="a cat"
        )
        api.create_repo(repo, exist_ok=True)
        api.upload_folder(folder_path=folder, repo_id=repo, ignore_patterns=["README.md"])
        api.upload_file(path_or_fileobj=str(card).encode(), path_in_repo="README.md", repo_id=repo)
    return repos


def _start_worker(hub, name: str, log: Path) -> subprocess.Popen:
    args = ["leaderboard", "work", "--worker-id", name, "--exit-when-empty", "--poll-every", "1"]
    args += ["--lease-seconds", str(LEASE_SECONDS), "--renew-every", "2"]
    args += ["--results-repo", "alice/work-results", "--requests-repo", "alice/work-requests"]
    args += ["--endpoint", hub.url, "--token", hub.users["alice"]]
    env = {
        **os.environ,
        "HUBKIT_SUITE_PATH": str(DEMO_SUITES),
        "OMP_NUM_THREADS": "1",
        "PYTHONUNBUFFERED": "1",
    }
    command = [sys.executable, "-m", "hubkit", *args]  # `hubkit leaderboard work ...` as a user runs it
    with open(log, "wb") as out:
        return subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)


def test_three_workers_eight_requests_one_killed_each_evaluated_once(hub, queued_models, tmp_path) -> None:
    api = hub.api("alice")
    board = Leaderboard(api, "alice/work-results", "alice/work-requests")
    for model in queued_models:
        board.file_request(model, None, submitted_by="test")
    started = time.monotonic()
    workers = {name: _start_worker(hub, name, tmp_path / f"{name}.log") for name in ("w1", "w2", "w3")}
    try:
        # kill -9 the first worker that claims a request (its log says so): it is in that evaluation.
        killer = None
        while killer is None and time.monotonic() - started < 120:
            time.sleep(0.05)
            for name in workers:
                claim = re.search(rf"^{name}: claimed  (\S+) ", (tmp_path / f"{name}.log").read_text(), re.M)
                if claim and killer is None:
                    killer, victim = name, claim.group(1)
        assert killer is not None, "no worker claimed anything in 120 s"
        workers[killer].send_signal(signal.SIGKILL)
        killed_at = time.time()
        while any(w.poll() is None for w in workers.values()) and time.monotonic() - started < 240:
            time.sleep(0.2)
        codes = {name: w.poll() for name, w in workers.items()}
    finally:
        for w in workers.values():
            if w.poll() is None:
                w.kill()
                w.wait()
    logs = {name: (tmp_path / f"{name}.log").read_text() for name in workers}
    assert codes == {name: (-signal.SIGKILL if name == killer else 0) for name in workers}, logs
    wall = time.monotonic() - started

    requests = board.requests()
    assert sorted(requests) == queued_models
    assert {m: r["status"] for m, r in requests.items()} == dict.fromkeys(queued_models, "FINISHED"), logs
    results = api.list_repo_files("alice/work-results", repo_type="dataset")
    record_files = sorted(f for f in results if f.startswith("results/") and f.endswith(".json"))
    assert len(record_files) == QUEUED and len(_results_commits(api, "alice/work-results")) == QUEUED
    assert sorted(r["model"]["id"] for r in board.records()) == queued_models  # each exactly once
    assert sorted(p for r in requests.values() for p in r["records"]) == record_files

    rescued = requests[victim]
    assert rescued["finished_by"] != killer and rescued["claim"]["worker"] != killer
    assert rescued["expired_claims"][0]["worker"] == killer  # (a loaded machine may expire more)
    lease_end = epoch(rescued["expired_claims"][0]["lease_expires"])  # the last lease the killed one wrote
    assert epoch(rescued["claim"]["claimed_time"]) >= lease_end  # re-claimed only once its lease ran out
    for name in workers:  # each worker's log names what it finished; the killed one, at its first claim, none
        mine = sorted(m for m, r in requests.items() if r["finished_by"] == name)
        assert not (mine and name == killer), mine
        assert sorted(re.findall(rf"^{name}: finished (\S+):", logs[name], re.M)) == mine, logs[name]
    after = epoch(rescued["finished_time"]) - killed_at
    print(
        f"\n{QUEUED} requests, 3 workers, {len(record_files)} records, {killer} killed on "
        f"{victim}; finished by {rescued['finished_by']} {after:.1f} s after the kill "
        f"(lease {LEASE_SECONDS} s); wall {wall:.1f} s"
    )
