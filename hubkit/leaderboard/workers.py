"""Many leaderboard workers on one queue (``hubkit leaderboard work``).

The requests repo is the only thing workers share. Every change a worker makes to it is a commit whose
``parent_commit`` is the head it just read, so a read-modify-write lands on exactly the state it was decided
on, or the Hub refuses it with 412 ("A commit has happened since") and the worker reads again. Nothing
else (no lock server, no worker-to-worker talk) is needed.

A request a worker holds is RUNNING with a ``claim``: the worker's id, a claim id (new for every claim),
when it was claimed and when its lease expires. The worker renews the lease from a background thread while
it evaluates. A RUNNING request whose lease expired (its worker died or hung) is put back to PENDING by
whichever worker notices, and is then claimed like any other (``expired_claims`` keeps who lost it when).

The order of writes for one request, and why a crash neither loses a result nor publishes two:

1. claim: PENDING → RUNNING with a new claim id. The loser of a race gets 412 and tries the next request.
2. evaluate, without publishing anything, renewing the lease meanwhile.
3. stage: one commit, made only if the request still carries *our* claim id, that stores the records (and
   their per-image parquet) in the requests repo under ``staged/<claim id>/`` and lists them in the request.
   This is the commit point: the check "still ours" and the write are one atomic commit, so a worker that
   lost its lease (paused past its expiry, and someone re-claimed) fails here and publishes nothing.
4. publish the staged records: the card write-back (``parent_commit`` = the evaluated commit, so at most one
   such commit; a repeat recognises the one already there) and the record in the results repo (a commit on
   the head it read; a repeat finds the same bytes there and writes nothing).
5. finish: RUNNING → FINISHED with the records' paths, the staged copies deleted, if the claim is still ours.

A crash before 3 published nothing: the lease runs out, the request goes back to PENDING and is evaluated
again. A crash after 3 leaves staged results: when the lease runs out a worker takes the request over and
does 4 and 5 from the staged copies without evaluating again; 4 is idempotent, so even the old owner
waking up and publishing too leaves one record. Leases compare the expiry another worker wrote with the
local clock: workers' clocks must agree to well within a lease.
"""

from __future__ import annotations

import json
import os
import random
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from huggingface_hub import CommitOperationAdd, CommitOperationDelete
from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, RepositoryNotFoundError
from huggingface_hub.hf_api import RepoFile

from hubkit.leaderboard import records
from hubkit.leaderboard.board import Leaderboard, request_path

__all__ = ["Contention", "WorkSummary", "Worker", "default_worker_id", "lease_expired"]

DEFAULT_LEASE_SECONDS = 300.0
COMMIT_TRIES = 50
"""Read-modify-write attempts before a worker gives up on one change (each 412 means another worker moved
the head: with a handful of workers a change lands within a few tries)."""


class Contention(RuntimeError):
    """A change was refused (412) ``COMMIT_TRIES`` times in a row: other writers keep moving the head."""


def default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def epoch(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def lease_expired(request: dict[str, Any], now: float) -> bool:
    """A RUNNING request nobody is holding any more. A RUNNING request without a claim was left by a
    single-process run that stopped midway (before leases existed): nobody renews it either."""
    if request.get("status") != "RUNNING":
        return False
    claim = request.get("claim")
    return claim is None or epoch(claim["lease_expires"]) <= now


def _is_412(err: HfHubHTTPError) -> bool:
    return err.response is not None and err.response.status_code == 412


@dataclass
class Queue:
    """The requests repo at one commit: ``head`` and every request, by model id."""

    head: str | None
    requests: dict[str, dict[str, Any]]

    def open(self) -> list[str]:
        return [m for m, r in self.requests.items() if r["status"] in ("PENDING", "RUNNING")]


@dataclass
class WorkSummary:
    finished: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    lost: list[str] = field(default_factory=list)


class Worker:
    """One worker: claims requests, evaluates them while renewing its lease, publishes exactly once."""

    def __init__(
        self,
        board: Leaderboard,
        evaluate_fn: Callable[..., dict[str, Any]] | None = None,
        *,
        worker_id: str | None = None,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        renew_every: float | None = None,
        poll_every: float = 5.0,
        max_file_bytes: int | None = None,
        on_event: Callable[[str], None] = print,
        progress: bool = True,
    ):
        from hubkit.leaderboard.evaluation import DEFAULT_MAX_FILE_BYTES, evaluate

        renew_every = renew_every if renew_every is not None else lease_seconds / 3
        if not 0 < renew_every < lease_seconds:
            raise ValueError(f"renew every {renew_every} s: must be more than 0 and less than the lease")
        self.board, self.api = board, board.api
        self.evaluate_fn = evaluate_fn or evaluate
        self.worker_id = worker_id or default_worker_id()
        self.lease_seconds, self.renew_every, self.poll_every = lease_seconds, renew_every, poll_every
        self.max_file_bytes = max_file_bytes or DEFAULT_MAX_FILE_BYTES
        self.on_event, self.progress = on_event, progress
        self.summary = WorkSummary()
        self._lock = threading.Lock()  # one read-modify-write of our request at a time (renewal vs main)
        self._blobs: dict[str, dict[str, Any]] = {}  # request files already read, by git blob id

    def say(self, text: str) -> None:
        self.on_event(f"{self.worker_id}: {text}")  # no [brackets]: rich markup

    # -- the loop ------------------------------------------------------------------------------------
    def work(self, max_requests: int | None = None, exit_when_empty: bool = False) -> WorkSummary:
        """Claim and process requests until ``max_requests`` are done, or (``exit_when_empty``) no request
        is PENDING or RUNNING any more; otherwise poll an idle queue forever."""
        done, reached = 0, False
        while max_requests is None or done < max_requests:
            try:
                claimed, queue = self.claim_next()
            except (HfHubHTTPError, OSError, httpx.HTTPError) as err:
                if not reached:  # a wrong endpoint, token or repo: say so instead of polling forever
                    raise
                self.say(f"cannot read the queue: {err}")  # the Hub went away for a while: try again later
                time.sleep(self.poll_every)
                continue
            reached = True
            if claimed is None:
                if exit_when_empty and not queue.open():
                    break
                time.sleep(self.poll_every)
                continue
            try:
                self.process(claimed)
            except (HfHubHTTPError, OSError, httpx.HTTPError, Contention) as err:
                self.say(f"gave up {claimed['model']}: {err}")  # its lease runs out, another takes it over
            done += 1
        return self.summary

    # -- reading -------------------------------------------------------------------------------------
    def read_queue(self) -> Queue:
        """Every request at the requests repo's current head (one consistent commit). Only files whose
        blob changed since the last read are downloaded: a poll costs two small requests."""
        repo = self.board.requests_repo
        try:
            head = self.api.repo_info(repo, repo_type="dataset").sha
            tree = self.api.list_repo_tree(
                repo, path_in_repo="requests", recursive=True, repo_type="dataset", revision=head
            )
            files = sorted((f.path, f.blob_id) for f in tree if isinstance(f, RepoFile))
        except RepositoryNotFoundError:
            return Queue(None, {})
        except EntryNotFoundError:  # no request filed yet
            return Queue(head, {})
        found, known = {}, {}
        for path, blob in files:
            if path.endswith(".json"):
                known[blob] = self._blobs.get(blob) or json.loads(self._download(path, head))
                request = json.loads(json.dumps(known[blob]))  # a copy: callers may change theirs
                found[request["model"]] = request
        self._blobs = known
        return Queue(head, found)

    def read_request(self, model: str) -> tuple[str, dict[str, Any] | None]:
        """(head, the request of ``model`` at that head, or None)."""
        head = self.api.repo_info(self.board.requests_repo, repo_type="dataset").sha
        try:
            return head, json.loads(self._download(request_path(model), head))
        except EntryNotFoundError:
            return head, None

    def _download(self, path: str, revision: str) -> bytes:
        repo = self.board.requests_repo
        return Path(self.api.hf_hub_download(repo, path, repo_type="dataset", revision=revision)).read_bytes()

    # -- writing -------------------------------------------------------------------------------------
    def commit(
        self,
        request: dict[str, Any],
        message: str,
        parent: str,
        extra: Sequence[CommitOperationAdd | CommitOperationDelete] = (),
    ) -> bool:
        """Write ``request`` (and ``extra`` operations) on top of ``parent``; False if the head moved."""
        operations = [
            CommitOperationAdd(
                request_path(request["model"]), (json.dumps(request, indent=2) + "\n").encode()
            ),
            *extra,
        ]
        try:
            self.api.create_commit(
                self.board.requests_repo,
                operations,
                repo_type="dataset",
                commit_message=message,
                parent_commit=parent,
            )
        except HfHubHTTPError as err:
            if _is_412(err):
                return False
            raise
        return True

    def update_ours(
        self,
        model: str,
        claim_id: str,
        change: Callable[[dict[str, Any]], tuple[dict[str, Any], str, list]],
    ) -> dict[str, Any] | None:
        """Read-modify-write of a request we hold: ``change(request)`` gives (new request, commit message,
        extra operations); retried on 412. None, and nothing written, once the request is no longer ours."""
        with self._lock:
            for _ in range(COMMIT_TRIES):
                head, request = self.read_request(model)
                if not self._ours(request, claim_id):
                    return None
                new, message, extra = change(dict(request))
                new["updated_time"] = records.utc_now()
                if self.commit(new, message, head, extra):
                    return new
                time.sleep(random.uniform(0, 0.05))
        raise Contention(f"{model}: the requests repo moved {COMMIT_TRIES} times in a row; gave up")

    @staticmethod
    def _ours(request: dict[str, Any] | None, claim_id: str) -> bool:
        return (
            request is not None
            and request["status"] == "RUNNING"
            and (request.get("claim") or {}).get("id") == claim_id
        )

    # -- claiming ------------------------------------------------------------------------------------
    def claim_next(self) -> tuple[dict[str, Any] | None, Queue]:
        """Claim one request: expired leases first go back to PENDING; a RUNNING request whose lease expired
        after its results were staged is taken over as is (to publish them); else the oldest PENDING one.
        Returns (the claimed request or None when there is nothing to claim, the queue as last read)."""
        lost: str | None = None
        queue = Queue(None, {})
        for _ in range(COMMIT_TRIES):
            queue = self.read_queue()
            now = time.time()
            expired = [r for r in queue.requests.values() if lease_expired(r, now)]
            requeue = [r for r in expired if not r.get("staged")]
            if requeue:
                self.requeue(queue.head, requeue[0], now)
                continue
            pending = sorted(
                (r for r in queue.requests.values() if r["status"] == "PENDING"),
                key=lambda r: (r.get("submitted_time") or "", r["model"]),
            )
            candidates = expired + pending
            if not candidates:
                return None, queue
            # The request we just lost a race on is most likely taken: try the next one first.
            request = next((r for r in candidates if r["model"] != lost), candidates[0])
            claimed = self.try_claim(queue.head, request, now)
            if claimed is not None:
                return claimed, queue
            lost = request["model"]
            self.say(f"lost race {lost}: another worker committed first (412); trying the next")
            time.sleep(random.uniform(0, 0.05))
        return None, queue

    def try_claim(self, head: str | None, request: dict[str, Any], now: float | None = None) -> dict | None:
        """Claim ``request`` as read at ``head``; None when the head moved (412: someone else was faster)."""
        now = time.time() if now is None else now
        claim = {
            "worker": self.worker_id,
            "id": uuid.uuid4().hex,
            "claimed_time": iso(now),
            "lease_expires": iso(now + self.lease_seconds),
        }
        previous = request.get("claim")
        new = {**request, "status": "RUNNING", "claim": claim, "reason": None, "updated_time": iso(now)}
        taking_over = request["status"] == "RUNNING"
        message = f"{request['model']}: RUNNING on {self.worker_id}"
        if taking_over:
            message += f" (taking over {previous['worker'] if previous else 'a lost run'}'s staged results)"
            new["expired_claims"] = [*request.get("expired_claims", []), self._expiry(previous, now)]
        if head is None or not self.commit(new, message, head):
            return None
        verb = "took over" if taking_over else "claimed "
        self.say(f"{verb} {request['model']} (lease until {claim['lease_expires']})")
        return new

    def requeue(self, head: str | None, request: dict[str, Any], now: float) -> bool:
        """RUNNING with an expired lease → PENDING (its worker died or hung); False if the head moved."""
        previous = request.get("claim")
        new = {
            **request,
            "status": "PENDING",
            "claim": None,
            "updated_time": iso(now),
            "expired_claims": [*request.get("expired_claims", []), self._expiry(previous, now)],
        }
        holder = previous["worker"] if previous else "an unleased run"
        if head is None or not self.commit(new, f"{request['model']}: lease of {holder} expired", head):
            return False
        self.say(f"expired  {request['model']}: the lease of {holder} ran out; back to PENDING")
        return True

    def _expiry(self, claim: dict[str, Any] | None, now: float) -> dict[str, Any]:
        return {**(claim or {}), "noticed_by": self.worker_id, "noticed_time": iso(now)}

    # -- one request ---------------------------------------------------------------------------------
    def process(self, request: dict[str, Any]) -> None:
        """Evaluate (unless its results are already staged), stage, publish, finish, renewing the lease."""
        model, claim_id = request["model"], request["claim"]["id"]
        keeper = LeaseKeeper(self, model, claim_id)
        keeper.start()
        try:
            if not request.get("staged"):
                try:
                    outcomes = self.evaluate(request)
                except Exception as err:  # any failure of the artifact fails its own request, with the reason
                    self.fail(model, claim_id, f"{type(err).__name__}: {err}".strip()[:2000])
                    return
                request = self.stage(model, claim_id, outcomes)
                if request is None:
                    self.lost(model, "its results are dropped, nothing was published")
                    return
            try:
                published = self.publish(request["staged"])
            except Exception as err:
                self.fail(model, claim_id, f"publishing failed: {type(err).__name__}: {err}".strip()[:2000])
                return
            self.finish(model, claim_id, request["staged"], published)
        finally:
            keeper.stop()

    def evaluate(self, request: dict[str, Any]) -> list[dict[str, Any]]:
        """The records of the request's model on its method's suites, not published."""
        model = request["model"]
        revision = self.api.model_info(model, revision=request.get("revision")).sha  # one commit, all suites
        return [
            self.evaluate_fn(
                model,
                name,
                params,
                revision=revision,
                endpoint=self.api.endpoint,
                token=self.api.token,
                results_repo=self.board.results_repo,
                strict_card=True,
                max_file_bytes=self.max_file_bytes,
                progress=self.progress,
                push=False,
            )
            for name, params in self.board.suites_of(model, revision)
        ]

    def stage(self, model: str, claim_id: str, outcomes: list[dict[str, Any]]) -> dict[str, Any] | None:
        """The commit point: the records go into the requests repo iff the request is still ours."""
        folder = f"staged/{claim_id}"
        staged, extra = [], []
        for outcome in outcomes:
            path = f"{folder}/{outcome['suite']['key']}"
            rows = getattr(outcome, "samples", [])
            extra += [
                CommitOperationAdd(f"{path}.json", records.record_bytes(outcome)),
                CommitOperationAdd(f"{path}.samples.parquet", records.samples_parquet(rows)),
            ]
            staged.append({"record": f"{path}.json", "samples": f"{path}.samples.parquet"})

        def change(request: dict[str, Any]) -> tuple[dict[str, Any], str, list]:
            return {**request, "staged": staged}, f"{model}: results staged by {self.worker_id}", extra

        return self.update_ours(model, claim_id, change)

    def publish(self, staged: list[dict[str, str]]) -> list[str]:
        """Card write-back and results record of each staged record, each written at most once; returns
        the records' paths in the results repo."""
        paths = []
        for entry in staged:
            record = json.loads(self._download(entry["record"], "main"))
            samples = self._download(entry["samples"], "main")
            record["card_commit"] = self.card_commit(record)
            paths.append(self.push_once(record, samples))
        return paths

    def card_commit(self, record: dict[str, Any]) -> str | None:
        """The commit that wrote ``record`` into its model's card: found if a run before us made it, else
        made now (on the evaluated commit only: a repeat gets 412 and finds it)."""
        from hubkit.leaderboard.evaluation import card_commit_message, fetch_card_files, write_card_results

        model, revision = record["model"]["id"], record["model"]["revision"]
        found = self._child_commit(model, revision, card_commit_message(record))
        if found:
            return found
        with tempfile.TemporaryDirectory(prefix="hubkit-card-") as tmp:
            artifact = fetch_card_files(self.api, model, revision, Path(tmp))
            written = write_card_results(self.api, artifact, record, self.board.results_repo)
        return written or self._child_commit(model, revision, card_commit_message(record))

    def _child_commit(self, model: str, revision: str, title: str) -> str | None:
        """The commit right after ``revision`` on ``model``'s main branch, if its title is ``title``."""
        commits = self.api.list_repo_commits(model)  # newest first
        ids = [c.commit_id for c in commits]
        if revision not in ids or ids.index(revision) == 0:
            return None
        child = commits[ids.index(revision) - 1]
        return child.commit_id if child.title == title else None

    def push_once(self, record: dict[str, Any], samples: bytes) -> str:
        """The record in the results repo: written on the head we read, unless those bytes are there."""
        from hubkit.leaderboard.evaluation import push_record

        repo = self.board.results_repo
        path = records.record_path(record["model"]["id"], record["suite"]["key"], record["model"]["revision"])
        self.api.create_repo(repo, repo_type="dataset", exist_ok=True)
        for _ in range(COMMIT_TRIES):
            head = self.api.repo_info(repo, repo_type="dataset").sha
            try:
                there = self.api.hf_hub_download(repo, path, repo_type="dataset", revision=head)
                if Path(there).read_bytes() == records.record_bytes(record):
                    return path
            except EntryNotFoundError:
                pass
            try:
                push_record(self.api, record, samples, repo, parent_commit=head)
                return path
            except HfHubHTTPError as err:
                if not _is_412(err):
                    raise
            time.sleep(random.uniform(0, 0.05))
        raise Contention(f"{repo}: the results repo moved {COMMIT_TRIES} times in a row; gave up")

    def finish(self, model: str, claim_id: str, staged: list[dict[str, str]], paths: list[str]) -> None:
        def change(request: dict[str, Any]) -> tuple[dict[str, Any], str, list]:
            new = {
                **request,
                "status": "FINISHED",
                "staged": None,
                "records": paths,
                "finished_by": self.worker_id,
                "finished_time": iso(time.time()),
            }
            deletes = [CommitOperationDelete(p) for e in staged for p in (e["record"], e["samples"])]
            return new, f"{model}: FINISHED by {self.worker_id}", deletes

        if self.update_ours(model, claim_id, change) is None:
            self.lost(model, "it publishes the same staged records and finishes the request")
            return
        self.summary.finished.append(model)
        self.say(f"finished {model}: {len(paths)} record(s): {', '.join(paths)}")

    def fail(self, model: str, claim_id: str, reason: str) -> None:
        def change(request: dict[str, Any]) -> tuple[dict[str, Any], str, list]:
            new = {**request, "status": "FAILED", "reason": reason, "finished_by": self.worker_id}
            return new, f"{model}: FAILED", []

        if self.update_ours(model, claim_id, change) is None:
            self.lost(model, "this failure is not recorded")
            return
        self.summary.failed[model] = reason
        self.say(f"FAILED   {model}: {reason}")

    def lost(self, model: str, consequence: str) -> None:
        self.summary.lost.append(model)
        self.say(f"lost lease {model}: another worker holds it now; {consequence}")

    def renew(self, model: str, claim_id: str) -> bool:
        """Push our lease forward; False once the request is no longer ours."""

        def change(request: dict[str, Any]) -> tuple[dict[str, Any], str, list]:
            claim = {**request["claim"], "lease_expires": iso(time.time() + self.lease_seconds)}
            claim["renewed_time"] = iso(time.time())
            return {**request, "claim": claim}, f"{model}: lease renewed by {self.worker_id}", []

        renewed = self.update_ours(model, claim_id, change)
        if renewed is None:
            return False
        self.say(f"renewed  {model} (lease until {renewed['claim']['lease_expires']})")
        return True


class LeaseKeeper(threading.Thread):
    """Renews a worker's lease on one request every ``renew_every`` seconds until stopped or lost."""

    def __init__(self, worker: Worker, model: str, claim_id: str):
        super().__init__(name=f"lease-{model}", daemon=True)
        self.worker, self.model, self.claim_id = worker, model, claim_id
        self._stop_event = threading.Event()
        self.lost = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(self.worker.renew_every):
            try:
                if not self.worker.renew(self.model, self.claim_id):
                    self.lost.set()
                    return
            except (HfHubHTTPError, OSError, httpx.HTTPError, Contention) as err:  # next tick, while it lasts
                self.worker.say(f"renewal of {self.model} failed: {err}")

    def stop(self) -> None:
        self._stop_event.set()
        self.join()
