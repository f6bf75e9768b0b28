"""Durable storage of the embedded Hub: SQLite for users, repos, commits and refs; sha256-addressed blobs.

Why this shape: a commit is one SQLite transaction that only references blobs already complete on disk, so a
crash (even ``kill -9``) can leave at most an orphaned temporary file, never a half-visible commit. Blobs are
written to ``tmp/`` and renamed into place, which is atomic on one filesystem.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
import sqlite3
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from hubkit.server.trees import merge_trees

REPO_TYPES = ("model", "dataset", "space")
EMPTY_TREE: dict[str, dict] = {}
LFS_POINTER = "version https://git-lfs.github.com/spec/v1\noid sha256:{sha}\nsize {size}\n"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY,
    token_sha256 TEXT NOT NULL UNIQUE,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS repos (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    type TEXT NOT NULL,
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    private INTEGER NOT NULL DEFAULT 0,
    sdk TEXT,
    created REAL NOT NULL,
    UNIQUE (type, namespace, name)
);
CREATE TABLE IF NOT EXISTS commits (
    oid TEXT NOT NULL,
    repo INTEGER NOT NULL REFERENCES repos(id) ON DELETE CASCADE,
    parent TEXT,
    title TEXT NOT NULL,
    message TEXT NOT NULL,
    author TEXT NOT NULL,
    date REAL NOT NULL,
    tree TEXT NOT NULL,
    PRIMARY KEY (repo, oid)
);
CREATE TABLE IF NOT EXISTS refs (
    repo INTEGER NOT NULL REFERENCES repos(id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    target TEXT NOT NULL,
    PRIMARY KEY (repo, kind, name)
);
-- Discussions and pull requests share one number sequence per repo with refs/pr/N (PR N is discussion N).
CREATE TABLE IF NOT EXISTS discussions (
    repo INTEGER NOT NULL REFERENCES repos(id) ON DELETE CASCADE,
    num INTEGER NOT NULL,
    is_pr INTEGER NOT NULL,
    title TEXT NOT NULL,
    status TEXT NOT NULL,
    author TEXT NOT NULL,
    created REAL NOT NULL,
    target TEXT,
    base_oid TEXT,
    merge_oid TEXT,
    PRIMARY KEY (repo, num)
);
CREATE TABLE IF NOT EXISTS discussion_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    repo INTEGER NOT NULL,
    num INTEGER NOT NULL,
    type TEXT NOT NULL,
    author TEXT NOT NULL,
    created REAL NOT NULL,
    data TEXT NOT NULL,
    FOREIGN KEY (repo, num) REFERENCES discussions(repo, num) ON DELETE CASCADE
);
"""


class StorageError(Exception):
    """Base of storage errors; ``code`` is the Hub's ``X-Error-Code`` and ``status`` the HTTP status."""

    status = 400
    code: str | None = None


class RepoNotFound(StorageError):
    status, code = 404, "RepoNotFound"


class RevisionNotFound(StorageError):
    status, code = 404, "RevisionNotFound"


class EntryNotFound(StorageError):
    status, code = 404, "EntryNotFound"


class Conflict(StorageError):
    status = 409


class MergeConflict(Conflict):
    """A pull request changes files that its target branch also changed since the PR's base."""


class DiscussionNotFound(StorageError):
    status = 404


class StaleParent(StorageError):
    """The commit names a parent that is no longer the head of the branch."""

    status = 412


class BadRequest(StorageError):
    status = 400


class BlobMissing(StorageError):
    status = 422


@dataclass(frozen=True)
class Repo:
    id: int
    type: str
    namespace: str
    name: str
    private: bool
    sdk: str | None
    created: float

    @property
    def repo_id(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class Commit:
    oid: str
    parent: str | None
    title: str
    message: str
    author: str
    date: float
    tree: dict[str, dict]


@dataclass(frozen=True)
class Discussion:
    """A discussion, or a pull request (``is_pr``) whose changes live on ``refs/pr/<num>``."""

    num: int
    is_pr: bool
    title: str
    status: str  # open | closed | merged | draft
    author: str
    created: float
    target: str | None  # the branch a pull request merges into
    base_oid: str | None  # the commit of ``target`` the pull request started from
    merge_oid: str | None  # the head of ``target`` right after the merge
    comments: int = 0


@dataclass(frozen=True)
class DiscussionEvent:
    """An entry of a discussion's timeline: ``comment``, ``status-change``, ``commit`` or ``title-change``."""

    id: str
    type: str
    author: str
    created: float
    data: dict


@dataclass
class FileChange:
    """One operation of a commit: ``add`` (sha256 + size + lfs), ``delete``, or ``delete_folder``."""

    op: str
    path: str
    sha256: str | None = None
    size: int | None = None
    lfs: bool = False
    git_oid: str | None = None


@dataclass
class CommitResult:
    oid: str
    parent: str | None
    changed: bool = True
    extra: dict = field(default_factory=dict)


def git_blob_oid(data: bytes) -> str:
    """Git's blob id: sha1 over ``blob <len>\\0`` + content (the Hub's ETag for regular files)."""
    return hashlib.sha1(f"blob {len(data)}\0".encode() + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    return LFS_POINTER.format(sha=sha256, size=size).encode()


def tree_entry_oid(entry: dict) -> str:
    """Git oid a Hub tree listing shows for a file: of the content, or of the LFS pointer file."""
    if entry["lfs"]:
        pointer = lfs_pointer(entry["sha256"], entry["size"])
        return git_blob_oid(pointer)
    return entry["git_oid"]


class BlobStore:
    """Content-addressed files under ``blobs/<aa>/<sha256>``; writes go through ``tmp/`` and a rename."""

    def __init__(self, root: Path):
        self.root = root
        self.tmp = root / "tmp"
        self.blobs = root / "blobs"
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.blobs.mkdir(parents=True, exist_ok=True)

    def clear_tmp(self) -> None:
        """Drop leftovers of interrupted uploads (nothing in tmp/ is ever referenced)."""
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.tmp.mkdir(parents=True, exist_ok=True)

    def path(self, sha256: str) -> Path:
        return self.blobs / sha256[:2] / sha256

    def exists(self, sha256: str) -> bool:
        return _is_sha256(sha256) and self.path(sha256).is_file()

    def size(self, sha256: str) -> int:
        return self.path(sha256).stat().st_size

    @contextlib.contextmanager
    def temp_file(self) -> Iterator[tuple[BinaryIO, Path]]:
        """A temporary file in the store's filesystem; removed unless it was committed by ``adopt``."""
        fd, name = tempfile.mkstemp(dir=self.tmp, prefix="up-")
        path = Path(name)
        try:
            with os.fdopen(fd, "wb") as fh:
                yield fh, path
        finally:
            path.unlink(missing_ok=True)

    def adopt(self, tmp_path: Path, sha256: str) -> None:
        """Move a complete, verified temporary file into place as blob ``sha256``."""
        self.install(tmp_path, self.path(sha256))

    @staticmethod
    def install(tmp_path: Path, target: Path) -> None:
        """Sync ``tmp_path`` to disk and rename it to ``target`` (atomic; a target already there is kept)."""
        if target.exists():
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp_path, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, target)

    def write_atomic(self, data: bytes, target: Path) -> None:
        """``data`` as the file ``target``, through a synced temporary file (never half-written)."""
        with self.temp_file() as (fh, path):
            fh.write(data)
            fh.flush()
            self.install(path, target)

    def put_bytes(self, data: bytes) -> str:
        sha256 = hashlib.sha256(data).hexdigest()
        if not self.exists(sha256):
            self.write_atomic(data, self.path(sha256))
        return sha256


def _is_sha256(value: str) -> bool:
    return isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)


def is_text(value: object) -> bool:
    """A valid Unicode str: JSON escapes can smuggle in lone surrogates, which UTF-8 and SQLite refuse."""
    if not isinstance(value, str):
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Storage:
    """All persistent state of the embedded Hub. Thread-safe; commits are serialized per process."""

    def __init__(self, data_dir: Path):
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.blobs = BlobStore(self.data_dir)
        self.blobs.clear_tmp()
        self.xorbs = self.data_dir / "xorbs"
        self.xorbs.mkdir(exist_ok=True)
        self._db_path = self.data_dir / "hub.sqlite"
        self._local = threading.local()
        self._write_lock = threading.RLock()
        with self._write_lock:
            self._conn().executescript(_SCHEMA)  # executescript manages its own transaction

    # -- connections -------------------------------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self._db_path, timeout=30, isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            self._local.conn = conn
        return conn

    @contextlib.contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE): all or nothing, serialized with other writers.

        Nested use joins the enclosing transaction, so that writes can be composed (a pull request opened
        together with its first commit) and still commit or roll back as one.
        """
        with self._write_lock:
            conn = self._conn()
            if getattr(self._local, "in_transaction", False):
                yield conn
                return
            conn.execute("BEGIN IMMEDIATE")
            self._local.in_transaction = True
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            finally:
                self._local.in_transaction = False
            conn.execute("COMMIT")

    def _read(self, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
        return self._conn().execute(sql, args).fetchall()

    # -- users ---------------------------------------------------------------------------------------------

    def set_user(self, name: str, token: str) -> None:
        with self._db() as db:
            db.execute("DELETE FROM users WHERE name = ? OR token_sha256 = ?", (name, _token_hash(token)))
            db.execute(
                "INSERT INTO users (name, token_sha256, created) VALUES (?, ?, ?)",
                (name, _token_hash(token), time.time()),
            )

    def user_for_token(self, token: str) -> str | None:
        rows = self._read("SELECT name FROM users WHERE token_sha256 = ?", (_token_hash(token),))
        return rows[0]["name"] if rows else None

    def create_repo(
        self, repo_type: str, namespace: str, name: str, private: bool, author: str, sdk: str | None = None
    ) -> Repo:
        with self._db() as db:
            try:
                cur = db.execute(
                    "INSERT INTO repos (type, namespace, name, private, sdk, created) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (repo_type, namespace, name, int(private), sdk, time.time()),
                )
            except sqlite3.IntegrityError as err:
                raise Conflict(f"You already created this {repo_type} repo: {namespace}/{name}") from err
            repo_pk = cur.lastrowid
            # Like the Hub, a new repo starts with one commit holding a .gitattributes file.
            content = _GITATTRIBUTES.encode()
            sha256 = self.blobs.put_bytes(content)
            tree = {
                ".gitattributes": {
                    "sha256": sha256,
                    "size": len(content),
                    "lfs": False,
                    "git_oid": git_blob_oid(content),
                }
            }
            oid = self._insert_commit(db, repo_pk, None, "initial commit", "", author, tree)
            db.execute(
                "INSERT INTO refs (repo, kind, name, target) VALUES (?, 'branch', 'main', ?)", (repo_pk, oid)
            )
        return self.get_repo(repo_type, namespace, name)

    def get_repo(self, repo_type: str, namespace: str, name: str) -> Repo:
        if not all(is_text(v) for v in (repo_type, namespace, name)):  # e.g. JSON bodies: lists, surrogates
            raise RepoNotFound(f"Repository Not Found for {repo_type!r}: {namespace!r}/{name!r}")
        rows = self._read(
            "SELECT * FROM repos WHERE type = ? AND namespace = ? AND name = ?", (repo_type, namespace, name)
        )
        if not rows:
            raise RepoNotFound(f"Repository Not Found for {repo_type}: {namespace}/{name}")
        return _repo(rows[0])

    def delete_repo(self, repo: Repo) -> None:
        with self._db() as db:
            db.execute("DELETE FROM discussion_events WHERE repo = ?", (repo.id,))
            db.execute("DELETE FROM discussions WHERE repo = ?", (repo.id,))
            db.execute("DELETE FROM refs WHERE repo = ?", (repo.id,))
            db.execute("DELETE FROM commits WHERE repo = ?", (repo.id,))
            db.execute("DELETE FROM repos WHERE id = ?", (repo.id,))

    def set_private(self, repo: Repo, private: bool) -> None:
        with self._db() as db:
            db.execute("UPDATE repos SET private = ? WHERE id = ?", (int(private), repo.id))

    def move_repo(self, repo: Repo, namespace: str, name: str) -> None:
        with self._db() as db:
            try:
                db.execute(
                    "UPDATE repos SET namespace = ?, name = ? WHERE id = ?", (namespace, name, repo.id)
                )
            except sqlite3.IntegrityError as err:
                raise Conflict(f"Repository {namespace}/{name} already exists") from err

    def list_repos(self, repo_type: str) -> list[Repo]:
        return [_repo(r) for r in self._read("SELECT * FROM repos WHERE type = ? ORDER BY id", (repo_type,))]

    # -- refs and commits ---------------------------------------------------------------------------

    def refs(self, repo: Repo) -> dict[str, dict[str, str]]:
        out: dict[str, dict[str, str]] = {"branch": {}, "tag": {}, "pr": {}}
        for row in self._read("SELECT kind, name, target FROM refs WHERE repo = ? ORDER BY name", (repo.id,)):
            out[row["kind"]][row["name"]] = row["target"]
        return out

    def resolve(self, repo: Repo, revision: str | None) -> str:
        """Commit oid of a branch, tag, ``refs/...`` name, full or short commit sha."""
        rev = revision or "main"
        refs = self.refs(repo)
        for prefix, kind in (("refs/heads/", "branch"), ("refs/tags/", "tag"), ("refs/pr/", "pr")):
            if rev.startswith(prefix) and rev[len(prefix) :] in refs[kind]:
                return refs[kind][rev[len(prefix) :]]
        if rev in refs["branch"]:
            return refs["branch"][rev]
        if rev in refs["tag"]:
            return refs["tag"][rev]
        if 7 <= len(rev) <= 40 and all(c in "0123456789abcdef" for c in rev):
            rows = self._read("SELECT oid FROM commits WHERE repo = ? AND oid LIKE ?", (repo.id, rev + "%"))
            if len(rows) == 1:
                return rows[0]["oid"]
        raise RevisionNotFound(f"Invalid rev id: {rev}")

    def branch_of(self, repo: Repo, revision: str | None) -> str | None:
        """Branch name a revision designates (commits may only target branches)."""
        rev = revision or "main"
        refs = self.refs(repo)
        if rev.startswith("refs/heads/"):
            rev = rev[len("refs/heads/") :]
        if rev in refs["branch"]:
            return rev
        if rev.startswith("refs/pr/") and rev[len("refs/pr/") :] in refs["pr"]:
            return rev
        return None

    def commit(self, repo: Repo, oid: str) -> Commit:
        rows = self._read("SELECT * FROM commits WHERE repo = ? AND oid = ?", (repo.id, oid))
        if not rows:
            raise RevisionNotFound(f"Invalid rev id: {oid}")
        r = rows[0]
        return Commit(
            r["oid"], r["parent"], r["title"], r["message"], r["author"], r["date"], json.loads(r["tree"])
        )

    def history(self, repo: Repo, oid: str) -> list[Commit]:
        out = []
        current: str | None = oid
        while current:
            c = self.commit(repo, current)
            out.append(c)
            current = c.parent
        return out

    def create_ref(self, repo: Repo, kind: str, name: str, target: str) -> None:
        with self._db() as db:
            exists = db.execute(
                "SELECT 1 FROM refs WHERE repo = ? AND kind = ? AND name = ?", (repo.id, kind, name)
            ).fetchone()
            if exists:
                raise Conflict(f"{'Branch' if kind == 'branch' else 'Tag'} {name} already exists")
            db.execute(
                "INSERT INTO refs (repo, kind, name, target) VALUES (?, ?, ?, ?)",
                (repo.id, kind, name, target),
            )

    def delete_ref(self, repo: Repo, kind: str, name: str) -> None:
        if kind == "branch" and name == "main":
            raise BadRequest("Cannot delete the default branch main")
        with self._db() as db:
            cur = db.execute(
                "DELETE FROM refs WHERE repo = ? AND kind = ? AND name = ?", (repo.id, kind, name)
            )
            if cur.rowcount == 0:
                raise RevisionNotFound(f"Invalid rev id: {name}")

    def apply_commit(
        self,
        repo: Repo,
        branch: str,
        changes: list[FileChange],
        title: str,
        message: str,
        author: str,
        parent: str | None = None,
    ) -> CommitResult:
        """Apply changes on top of ``branch`` in one transaction; ``parent`` guards against lost updates.

        On ``refs/pr/N`` the commit also joins pull request N's timeline; a closed or merged PR refuses it.
        """
        with self._db() as db:
            kind, name = (
                ("pr", branch[len("refs/pr/") :]) if branch.startswith("refs/pr/") else ("branch", branch)
            )
            head = self._ref_target(db, repo, kind, name)
            if head is None:
                raise RevisionNotFound(f"Invalid rev id: {branch}")
            if parent is not None and parent != head:
                raise StaleParent(
                    f"A commit has happened since. Please refresh and try again. (parent {parent} is not the "
                    f"head {head} of {branch})"
                )
            pull_request = self._pull_request_row(db, repo, int(name)) if kind == "pr" else None
            if pull_request is not None and pull_request["status"] in ("closed", "merged"):
                raise BadRequest(
                    f"Pull request #{name} is {pull_request['status']}: it takes no more commits"
                )
            tree = _apply_changes(self._tree(db, repo, head), changes, self.blobs)
            oid = self._insert_commit(db, repo.id, head, title, message, author, tree)
            db.execute(
                "UPDATE refs SET target = ? WHERE repo = ? AND kind = ? AND name = ?",
                (oid, repo.id, kind, name),
            )
            if pull_request is not None:
                data = {"subject": title, "oid": oid, "parents": [head]}
                self._add_event(db, repo, int(name), "commit", author, data)
            return CommitResult(oid=oid, parent=head)

    def _ref_target(self, db: sqlite3.Connection, repo: Repo, kind: str, name: str) -> str | None:
        row = db.execute(
            "SELECT target FROM refs WHERE repo = ? AND kind = ? AND name = ?", (repo.id, kind, name)
        ).fetchone()
        return row["target"] if row else None

    def _tree(self, db: sqlite3.Connection, repo: Repo, oid: str) -> dict[str, dict]:
        row = db.execute("SELECT tree FROM commits WHERE repo = ? AND oid = ?", (repo.id, oid)).fetchone()
        if row is None:
            raise RevisionNotFound(f"Invalid rev id: {oid}")
        return json.loads(row["tree"])

    # -- discussions and pull requests --------------------------------------------------------------

    def list_discussions(self, repo: Repo) -> list[Discussion]:
        """All discussions and pull requests of ``repo``, newest first (as the Hub lists them)."""
        rows = self._read(_DISCUSSION_SELECT + " WHERE d.repo = ? ORDER BY d.num DESC", (repo.id,))
        return [_discussion(r) for r in rows]

    def get_discussion(self, repo: Repo, num: int) -> Discussion:
        rows = self._read(_DISCUSSION_SELECT + " WHERE d.repo = ? AND d.num = ?", (repo.id, num))
        if not rows:
            raise DiscussionNotFound(f"Discussion #{num} not found in {repo.repo_id}")
        return _discussion(rows[0])

    def discussion_events(self, repo: Repo, num: int) -> list[DiscussionEvent]:
        rows = self._read(
            "SELECT * FROM discussion_events WHERE repo = ? AND num = ? ORDER BY seq", (repo.id, num)
        )
        return [_event(r) for r in rows]

    def discussion_event(self, repo: Repo, num: int, event_id: str) -> DiscussionEvent:
        rows = self._read(
            "SELECT * FROM discussion_events WHERE repo = ? AND num = ? AND id = ?", (repo.id, num, event_id)
        )
        if not rows:
            raise DiscussionNotFound(f"Comment {event_id} not found in discussion #{num} of {repo.repo_id}")
        return _event(rows[0])

    def create_discussion(
        self, repo: Repo, author: str, title: str, description: str, pull_request: bool
    ) -> Discussion:
        """A new discussion, or a draft pull request whose ``refs/pr/N`` starts at main's head."""
        with self._db() as db:
            base = self._ref_target(db, repo, "branch", "main") if pull_request else None
            status = "draft" if pull_request else "open"
            num = self._open_discussion(db, repo, author, title, description, status, base, "main")
        return self.get_discussion(repo, num)

    def commit_pull_request(
        self,
        repo: Repo,
        target: str,
        base_oid: str,
        changes: list[FileChange],
        title: str,
        message: str,
        author: str,
    ) -> tuple[int, CommitResult]:
        """Open pull request N on ``target`` from ``base_oid`` with one commit, all in one transaction."""
        with self._db() as db:
            self._tree(db, repo, base_oid)  # RevisionNotFound for a commit the repo does not have
            num = self._open_discussion(db, repo, author, title, message, "open", base_oid, target)
            result = self.apply_commit(repo, f"refs/pr/{num}", changes, title, message, author)
        return num, result

    def add_comment(self, repo: Repo, num: int, author: str, text: str) -> DiscussionEvent:
        with self._db() as db:
            self._discussion_row(db, repo, num)
            return self._add_event(db, repo, num, "comment", author, _comment(text, author))

    def edit_comment(self, repo: Repo, num: int, event_id: str, editor: str, text: str) -> DiscussionEvent:
        """New content for a comment; earlier versions are kept in its history (newest first)."""
        with self._db() as db:
            event = self._event_row(db, repo, num, event_id, "comment")
            if event.data["hidden"]:
                raise BadRequest(f"Comment {event_id} is hidden: it cannot be edited")
            data = _comment(text, editor) | {"edited": True}
            data["history"] = [_version(event.data), *event.data.get("history", [])]
            return self._update_event(db, event, data)

    def hide_comment(self, repo: Repo, num: int, event_id: str, by: str) -> DiscussionEvent:
        """Replace a comment's content for good, as the Hub does (its history goes with it)."""
        with self._db() as db:
            event = self._event_row(db, repo, num, event_id, "comment")
            data = _comment("This comment has been hidden", by) | {"edited": True, "hidden": True}
            return self._update_event(db, event, data)

    def rename_discussion(self, repo: Repo, num: int, author: str, title: str) -> DiscussionEvent:
        with self._db() as db:
            old = self._discussion_row(db, repo, num)["title"]
            db.execute("UPDATE discussions SET title = ? WHERE repo = ? AND num = ?", (title, repo.id, num))
            return self._add_event(db, repo, num, "title-change", author, {"from": old, "to": title})

    def change_discussion_status(
        self, repo: Repo, num: int, author: str, status: str, comment: str | None = None
    ) -> DiscussionEvent:
        """Close or (re)open; a merged pull request stays merged. ``comment`` is posted first."""
        if status not in ("open", "closed"):
            raise BadRequest(f"Invalid status {status!r}: expected 'open' or 'closed'")
        with self._db() as db:
            current = self._discussion_row(db, repo, num)["status"]
            if current == "merged":
                raise BadRequest(f"Pull request #{num} is merged: its status cannot change")
            if current == status:
                raise BadRequest(f"Discussion #{num} is already {status}")
            if comment:
                self._add_event(db, repo, num, "comment", author, _comment(comment, author))
            db.execute("UPDATE discussions SET status = ? WHERE repo = ? AND num = ?", (status, repo.id, num))
            return self._add_event(db, repo, num, "status-change", author, {"status": status})

    def merge_pull_request(
        self, repo: Repo, num: int, author: str, comment: str | None = None
    ) -> tuple[DiscussionEvent, str]:
        """Land pull request ``num`` on its target branch atomically; returns the event and the new head.

        If the target has not moved since the PR's base, it moves to the PR's head (its commits join the
        branch's history). Otherwise the PR's changes are applied on top of the target as one new commit,
        unless a file changed on both sides (``MergeConflict``: nothing changes).
        """
        with self._db() as db:
            pr = self._discussion_row(db, repo, num)
            self._check_mergeable(pr)
            target_head = self._ref_target(db, repo, "branch", pr["target"])
            pr_head = self._ref_target(db, repo, "pr", str(num))
            if target_head is None or pr_head is None:
                raise RevisionNotFound(f"Pull request #{num}: branch {pr['target']} or refs/pr/{num} is gone")
            if pr_head == pr["base_oid"]:
                raise BadRequest(f"Pull request #{num} has no commits to merge")
            if target_head == pr["base_oid"]:
                merged = pr_head
            else:
                merge = merge_trees(
                    self._tree(db, repo, pr["base_oid"]),
                    self._tree(db, repo, target_head),
                    self._tree(db, repo, pr_head),
                )
                if merge.conflicts:
                    raise MergeConflict(
                        f"Pull request #{num} cannot be merged: {pr['target']} changed the same files since "
                        f"the pull request's base ({pr['base_oid'][:7]}); conflicting files: "
                        + ", ".join(merge.conflicts)
                    )
                title = f"{pr['title']} (#{num})"
                message = f"Merge pull request #{num} into {pr['target']} (merged by {author})"
                merged = self._insert_commit(
                    db, repo.id, target_head, title, message, pr["author"], merge.tree
                )
            db.execute(
                "UPDATE refs SET target = ? WHERE repo = ? AND kind = 'branch' AND name = ?",
                (merged, repo.id, pr["target"]),
            )
            db.execute(
                "UPDATE discussions SET status = 'merged', merge_oid = ? WHERE repo = ? AND num = ?",
                (merged, repo.id, num),
            )
            if comment:
                self._add_event(db, repo, num, "comment", author, _comment(comment, author))
            event = self._add_event(db, repo, num, "status-change", author, {"status": "merged"})
        return event, merged

    def conflicting_files(self, repo: Repo, pr: Discussion) -> list[str]:
        """Files a merge of ``pr`` would refuse now ([] once merged or when its target has not moved)."""
        if not pr.is_pr or pr.status == "merged":
            return []
        refs = self.refs(repo)
        target_head, pr_head = refs["branch"].get(pr.target or ""), refs["pr"].get(str(pr.num))
        if target_head is None or pr_head is None or target_head == pr.base_oid or pr.base_oid is None:
            return []
        base, ours, theirs = (self.commit(repo, oid).tree for oid in (pr.base_oid, target_head, pr_head))
        return merge_trees(base, ours, theirs).conflicts

    @staticmethod
    def _check_mergeable(pr: sqlite3.Row) -> None:
        num = pr["num"]
        if not pr["is_pr"]:
            raise BadRequest(f"Discussion #{num} is not a pull request")
        if pr["status"] == "merged":
            raise BadRequest(f"Pull request #{num} is already merged")
        if pr["status"] == "closed":
            raise BadRequest(f"Pull request #{num} is closed: reopen it before merging")
        if pr["status"] == "draft":
            raise BadRequest(f"Pull request #{num} is a draft: change its status to open before merging")

    def _discussion_row(self, db: sqlite3.Connection, repo: Repo, num: int) -> sqlite3.Row:
        row = db.execute("SELECT * FROM discussions WHERE repo = ? AND num = ?", (repo.id, num)).fetchone()
        if row is None:
            raise DiscussionNotFound(f"Discussion #{num} not found in {repo.repo_id}")
        return row

    def _pull_request_row(self, db: sqlite3.Connection, repo: Repo, num: int) -> sqlite3.Row | None:
        row = db.execute(
            "SELECT * FROM discussions WHERE repo = ? AND num = ? AND is_pr = 1", (repo.id, num)
        ).fetchone()
        return row

    def _open_discussion(
        self,
        db: sqlite3.Connection,
        repo: Repo,
        author: str,
        title: str,
        description: str,
        status: str,
        pr_base: str | None,
        target: str,
    ) -> int:
        """Insert discussion N (and ``refs/pr/N`` at ``pr_base`` for a pull request); N is one past the
        highest number used by a discussion or a PR ref, so both always share one sequence."""
        used = db.execute(
            "SELECT MAX(num) FROM (SELECT num FROM discussions WHERE repo = ? "
            "UNION ALL SELECT CAST(name AS INTEGER) FROM refs WHERE repo = ? AND kind = 'pr')",
            (repo.id, repo.id),
        ).fetchone()[0]
        num = (used or 0) + 1
        is_pr = pr_base is not None
        db.execute(
            "INSERT INTO discussions (repo, num, is_pr, title, status, author, created, target, base_oid) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                repo.id,
                num,
                int(is_pr),
                title,
                status,
                author,
                time.time(),
                target if is_pr else None,
                pr_base,
            ),
        )
        if is_pr:
            db.execute(
                "INSERT INTO refs (repo, kind, name, target) VALUES (?, 'pr', ?, ?)",
                (repo.id, str(num), pr_base),
            )
        self._add_event(db, repo, num, "comment", author, _comment(description, author))
        return num

    def _add_event(
        self, db: sqlite3.Connection, repo: Repo, num: int, kind: str, author: str, data: dict
    ) -> DiscussionEvent:
        event = DiscussionEvent(secrets.token_hex(12), kind, author, time.time(), data)
        db.execute(
            "INSERT INTO discussion_events (id, repo, num, type, author, created, data) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (event.id, repo.id, num, kind, author, event.created, json.dumps(data)),
        )
        return event

    def _event_row(
        self, db: sqlite3.Connection, repo: Repo, num: int, event_id: str, kind: str
    ) -> DiscussionEvent:
        row = db.execute(
            "SELECT * FROM discussion_events WHERE repo = ? AND num = ? AND id = ? AND type = ?",
            (repo.id, num, event_id, kind),
        ).fetchone()
        if row is None:
            raise DiscussionNotFound(f"Comment {event_id} not found in discussion #{num} of {repo.repo_id}")
        return _event(row)

    def _update_event(self, db: sqlite3.Connection, event: DiscussionEvent, data: dict) -> DiscussionEvent:
        db.execute("UPDATE discussion_events SET data = ? WHERE id = ?", (json.dumps(data), event.id))
        return DiscussionEvent(event.id, event.type, event.author, event.created, data)

    # -- copies and usage -----------------------------------------------------------------------------

    def duplicate_repo(self, source: Repo, namespace: str, name: str, private: bool) -> Repo:
        """A new repo whose ``main`` is ``source``'s, history included (same commit ids); blobs are shared."""
        with self._db() as db:
            try:
                cur = db.execute(
                    "INSERT INTO repos (type, namespace, name, private, sdk, created) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (source.type, namespace, name, int(private), source.sdk, time.time()),
                )
            except sqlite3.IntegrityError as err:
                raise Conflict(f"You already created this {source.type} repo: {namespace}/{name}") from err
            head = self._ref_target(db, source, "branch", "main")
            current = head
            while current:
                db.execute(
                    "INSERT INTO commits (oid, repo, parent, title, message, author, date, tree) "
                    "SELECT oid, ?, parent, title, message, author, date, tree FROM commits "
                    "WHERE repo = ? AND oid = ?",
                    (cur.lastrowid, source.id, current),
                )
                current = db.execute(
                    "SELECT parent FROM commits WHERE repo = ? AND oid = ?", (source.id, current)
                ).fetchone()["parent"]
            db.execute(
                "INSERT INTO refs (repo, kind, name, target) VALUES (?, 'branch', 'main', ?)",
                (cur.lastrowid, head),
            )
        return self.get_repo(source.type, namespace, name)

    def repo_usage(self, repo: Repo) -> tuple[int, float]:
        """Bytes of the distinct files in any commit of ``repo``, and the date of its latest commit."""
        sizes: dict[str, int] = {}
        latest = repo.created
        for row in self._read("SELECT date, tree FROM commits WHERE repo = ?", (repo.id,)):
            latest = max(latest, row["date"])
            for entry in json.loads(row["tree"]).values():
                sizes[entry["sha256"]] = entry["size"]
        return sum(sizes.values()), latest

    def _insert_commit(
        self,
        db: sqlite3.Connection,
        repo_pk: int,
        parent: str | None,
        title: str,
        message: str,
        author: str,
        tree: dict,
    ) -> str:
        date = time.time()
        tree_json = json.dumps(tree, sort_keys=True, separators=(",", ":"))
        # Unique per commit (nonce) so that two identical commits still get distinct, stable ids.
        payload = json.dumps([parent, title, message, author, date, tree_json, secrets.token_hex(8)])
        oid = hashlib.sha1(payload.encode()).hexdigest()
        db.execute(
            "INSERT INTO commits (oid, repo, parent, title, message, author, date, tree) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (oid, repo_pk, parent, title, message, author, date, tree_json),
        )
        return oid


def _apply_changes(tree: dict[str, dict], changes: list[FileChange], blobs: BlobStore) -> dict[str, dict]:
    new = dict(tree)
    for change in changes:
        if change.op == "add":
            if change.sha256 is None or not blobs.exists(change.sha256):
                raise BlobMissing(f"Content of {change.path} (sha256 {change.sha256}) was not uploaded")
            if change.size is not None and blobs.size(change.sha256) != change.size:
                raise BlobMissing(f"Size of {change.path} does not match the uploaded content")
            _check_no_dir_clash(new, change.path)
            new[change.path] = {
                "sha256": change.sha256,
                "size": blobs.size(change.sha256),
                "lfs": change.lfs,
                # An LFS entry's git oid is that of its pointer (tree_entry_oid): no sha1 pass over the blob.
                "git_oid": change.git_oid or (None if change.lfs else _git_oid_of_blob(blobs, change.sha256)),
            }
        elif change.op == "delete":
            if change.path not in new:
                raise EntryNotFound(f"A file with this name doesn't exist: {change.path}")
            del new[change.path]
        elif change.op == "delete_folder":
            prefix = change.path.rstrip("/") + "/"
            doomed = [p for p in new if p.startswith(prefix)]
            if not doomed:
                raise EntryNotFound(f"A folder with this name doesn't exist: {change.path}")
            for p in doomed:
                del new[p]
        else:  # pragma: no cover - parser never emits other ops
            raise BadRequest(f"Unknown operation {change.op}")
    return new


def _check_no_dir_clash(tree: dict[str, dict], path: str) -> None:
    """A path cannot be both a file and a folder, as in git."""
    parts = path.split("/")
    for i in range(1, len(parts)):
        if "/".join(parts[:i]) in tree:
            raise BadRequest(f"Cannot add {path}: {'/'.join(parts[:i])} is a file")
    if any(p.startswith(path + "/") for p in tree):
        raise BadRequest(f"Cannot add {path}: a folder with this name exists")


def _git_oid_of_blob(blobs: BlobStore, sha256: str) -> str:
    path = blobs.path(sha256)
    size = path.stat().st_size
    h = hashlib.sha1(f"blob {size}\0".encode())
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


_DISCUSSION_SELECT = (
    "SELECT d.*, (SELECT COUNT(*) FROM discussion_events e WHERE e.repo = d.repo AND e.num = d.num "
    "AND e.type = 'comment') AS comments FROM discussions d"
)


def _discussion(row: sqlite3.Row) -> Discussion:
    fields = dict(row)
    del fields["repo"]
    return Discussion(**fields | {"is_pr": bool(row["is_pr"])})


def _event(row: sqlite3.Row) -> DiscussionEvent:
    return DiscussionEvent(row["id"], row["type"], row["author"], row["created"], json.loads(row["data"]))


def _comment(text: str, author: str) -> dict:
    """A comment event's data: its latest version, who wrote it when, and its earlier versions."""
    return {
        "raw": text,
        "edited": False,
        "hidden": False,
        "updated": time.time(),
        "editor": author,
        "history": [],
    }


def _version(data: dict) -> dict:
    return {"raw": data["raw"], "updated": data["updated"], "editor": data["editor"]}


def _repo(row: sqlite3.Row) -> Repo:
    return Repo(
        row["id"],
        row["type"],
        row["namespace"],
        row["name"],
        bool(row["private"]),
        row["sdk"],
        row["created"],
    )


# The Hub's default .gitattributes, which tells git (and readers of the repo) which files are LFS.
LFS_SUFFIXES = (
    ".7z",
    ".arrow",
    ".bin",
    ".bz2",
    ".ckpt",
    ".ftz",
    ".gz",
    ".h5",
    ".joblib",
    ".mlmodel",
    ".model",
    ".msgpack",
    ".npy",
    ".npz",
    ".onnx",
    ".ot",
    ".parquet",
    ".pb",
    ".pickle",
    ".pkl",
    ".pt",
    ".pth",
    ".rar",
    ".safetensors",
    ".tar",
    ".tflite",
    ".tgz",
    ".wasm",
    ".xz",
    ".zip",
    ".zst",
    ".gguf",
    ".png",
    ".jpg",
    ".jpeg",
    ".webp",
    ".wav",
    ".mp3",
    ".mp4",
)
_GITATTRIBUTES = "".join(f"*{s} filter=lfs diff=lfs merge=lfs -text\n" for s in LFS_SUFFIXES)
