"""The embedded Hub's HTTP surface, as the stock huggingface_hub / hf_xet clients use it.

Routing is done on the raw request path: clients percent-encode revisions and tree paths (``refs%2Fpr%2F1``)
and the ASGI server would otherwise decode ``%2F`` before any router saw it.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fnmatch
import hashlib
import logging
import os
import re
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote

import yaml
from fastapi import FastAPI, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import FileResponse, JSONResponse, Response

from hubkit import __version__
from hubkit.server import discussion_routes, repo_routes, xet_routes
from hubkit.server.auth import Caller, Forbidden, Signer, Unauthorized, caller_from_header
from hubkit.server.bodies import PayloadTooLarge, parse_json, read_body, read_json
from hubkit.server.context import Limits
from hubkit.server.info import dir_entry, iso, list_tree, parse_front_matter, repo_info, tree_entry
from hubkit.server.names import check_path, check_repo_name, is_text
from hubkit.server.storage import (
    LFS_SUFFIXES,
    REPO_TYPES,
    BadRequest,
    Conflict,
    EntryNotFound,
    FileChange,
    Repo,
    Storage,
    StorageError,
    git_blob_oid,
)

logger = logging.getLogger("hubkit.server")

PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
PLURAL = {"models": "model", "datasets": "dataset", "spaces": "space"}
LFS_THRESHOLD = 10 * 1024 * 1024
PAGE_SIZE = 1000


def error_response(err: StorageError) -> JSONResponse:
    message = (str(err) or err.__class__.__name__).encode("utf-8", "backslashreplace").decode()
    headers = {"X-Error-Message": _header_safe(message)}
    if err.code:
        headers["X-Error-Code"] = err.code
    return JSONResponse({"error": message}, status_code=err.status, headers=headers)


def _header_safe(text: str) -> str:
    """Printable ASCII without leading/trailing blanks: anything else makes h11 drop the whole response."""
    text = text.encode("ascii", "replace").decode()[:1000]
    return "".join(c if " " <= c < "\x7f" else " " for c in text).strip()


def _flag(value: str | None) -> bool:
    return value is not None and value.lower() in ("1", "true", "yes")


class HubApp:
    """Request handlers over one ``Storage``; ``router`` maps a raw path to a handler."""

    def __init__(self, storage: Storage, signer: Signer, limits: Limits):
        self.storage = storage
        self.signer = signer
        self.limits = limits

    # -- plumbing ------------------------------------------------------------------------------------

    async def dispatch(self, request: Request) -> Response:
        raw = request.scope.get("raw_path") or request.url.path.encode()
        raw_path = raw.decode("latin-1").split("?", 1)[0]
        segments = [unquote(s) for s in raw_path.strip("/").split("/")] if raw_path.strip("/") else []
        query = parse_qs(request.url.query, keep_blank_values=True)
        try:
            # CAS requests carry a Xet token, not a Hub token; their handlers check it.
            caller = (
                Caller(None)
                if segments[:1] == ["cas"]
                else caller_from_header(self.storage, request.headers.get("authorization"))
            )
            handler = self.route(request.method, segments, raw_path)
            if handler is None:
                return JSONResponse({"error": f"Not found: {request.method} {raw_path}"}, status_code=404)
            return await handler(request, caller, query)
        except StorageError as err:
            return error_response(err)
        except Exception:  # a bug, not the client's fault: log it, answer JSON like every other error
            logger.exception("Unhandled error on %s %s", request.method, raw_path)
            return JSONResponse({"error": "Internal server error"}, status_code=500)

    def route(self, method: str, seg: list[str], raw_path: str) -> Callable[..., Awaitable[Response]] | None:
        """Find the handler; bound arguments are captured in a closure."""
        bind = _Binder(self, method)
        if seg[:1] == ["api"]:
            return bind.api(seg[1:])
        if seg[:1] == ["cas"]:
            return xet_routes.route(self, method, seg[1:])
        if len(seg) == 2 and seg[0] == "lfs-upload":
            return bind.at(("PUT",), self.lfs_put, seg[1])
        if seg[:2] == ["v1", "telemetry"]:
            return None
        return bind.repo_file(seg)

    def repo(self, repo_type: str, namespace: str, name: str, caller: Caller) -> Repo:
        repo = self.storage.get_repo(repo_type, namespace, name)
        caller.require_read(repo)
        return repo

    def base_url(self, request: Request) -> str:
        return str(request.base_url).rstrip("/")

    def repo_url(self, request: Request, repo: Repo) -> str:
        return f"{self.base_url(request)}/{PREFIX[repo.type]}{repo.repo_id}"

    def _next_link(self, request: Request, query: dict, **overrides: int) -> dict[str, str]:
        """A GitHub-style ``Link: <…>; rel="next"`` header: same raw path and query, but ``overrides``."""
        params = {k: v for k, v in query.items() if k not in overrides}
        params |= {k: [str(v)] for k, v in overrides.items()}
        qs = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, vs in params.items() for v in vs)
        return {"Link": f'<{self.base_url(request)}{request.scope["raw_path"].decode()}?{qs}>; rel="next"'}

    def _cursor_page(self, request: Request, query: dict, items: list, size: int) -> JSONResponse:
        """``size`` items from the ``cursor`` offset, with a link to the next page when there is one."""
        cursor = _int(query.get("cursor", [None])[0], default=0, what="cursor")
        more = cursor + size < len(items)
        headers = self._next_link(request, query, cursor=cursor + size) if more else {}
        return JSONResponse(items[cursor : cursor + size], headers=headers)

    # -- identity ------------------------------------------------------------------------------------

    async def whoami(self, request: Request, caller: Caller, query: dict) -> Response:
        if caller.user is None:
            raise Unauthorized("Invalid credentials in Authorization header")
        return JSONResponse(
            {
                "type": "user",
                "id": caller.user,
                "name": caller.user,
                "fullname": caller.user,
                "email": None,
                "emailVerified": False,
                "isPro": False,
                "orgs": [],
                "auth": {"type": "access_token", "accessToken": {"displayName": "hubkit", "role": "write"}},
            }
        )

    async def version(self, request: Request, caller: Caller, query: dict) -> Response:
        return JSONResponse({"server": "hubkit", "version": __version__})

    async def validate_yaml(self, request: Request, caller: Caller, query: dict) -> Response:
        body = await read_json(request, self.limits.max_json_bytes)
        content = body.get("content", "") if isinstance(body, dict) else ""
        try:
            parse_front_matter(content if isinstance(content, str) else "")
        except (ValueError, yaml.YAMLError) as err:
            return JSONResponse(
                {"errors": [{"message": f"Invalid YAML metadata: {err}"}], "warnings": []}, status_code=400
            )
        return JSONResponse({"errors": [], "warnings": []})

    # -- repos ---------------------------------------------------------------------------------------

    async def create_repo(self, request: Request, caller: Caller, query: dict) -> Response:
        user = caller.require_user()
        body = await read_json(request, self.limits.max_json_bytes)
        if not isinstance(body, dict):
            raise BadRequest("Body must be a JSON object")
        repo_type = body.get("type") or "model"
        if repo_type not in REPO_TYPES:
            raise BadRequest(f"Invalid repo type {repo_type!r}: expected one of {', '.join(REPO_TYPES)}")
        namespace = check_repo_name(body.get("organization") or user, "namespace")
        name = check_repo_name(body.get("name"), "name")
        caller.require_namespace(namespace)
        private = (
            body.get("visibility", "public") != "public"
            if "visibility" in body
            else bool(body.get("private"))
        )
        sdk = body.get("sdk") if repo_type == "space" else None  # only Spaces have one (checked below)
        if repo_type == "space" and sdk not in ("gradio", "streamlit", "docker", "static"):
            raise BadRequest("Space sdk must be one of gradio, streamlit, docker, static")
        try:
            repo = await run_in_threadpool(
                self.storage.create_repo, repo_type, namespace, name, private, user, sdk
            )
        except Conflict as err:
            # The client reads "url" even from the 409 answer when called with exist_ok=True.
            existing = self.storage.get_repo(repo_type, namespace, name)
            body = {"error": str(err), "url": self.repo_url(request, existing)}
            return JSONResponse(body, status_code=409, headers={"X-Error-Message": _header_safe(str(err))})
        return JSONResponse({"url": self.repo_url(request, repo), "name": repo.repo_id, "id": repo.repo_id})

    def _repo_from_body(self, body: Any, caller: Caller) -> Repo:
        if not isinstance(body, dict):
            raise BadRequest("Body must be a JSON object")
        user = caller.require_user()
        repo_type = body.get("type") or "model"
        if repo_type not in REPO_TYPES:
            raise BadRequest(f"Invalid repo type {repo_type!r}")
        namespace = body.get("organization") or user
        return self.repo(repo_type, namespace, str(body.get("name")), caller)

    async def delete_repo(self, request: Request, caller: Caller, query: dict) -> Response:
        repo = self._repo_from_body(await read_json(request, self.limits.max_json_bytes), caller)
        caller.require_write(repo)
        await run_in_threadpool(self.storage.delete_repo, repo)
        return JSONResponse({})

    async def move_repo(self, request: Request, caller: Caller, query: dict) -> Response:
        body = await read_json(request, self.limits.max_json_bytes)
        if not isinstance(body, dict):
            raise BadRequest("Body must be a JSON object")
        repo_type = body.get("type") or "model"
        if repo_type not in REPO_TYPES:
            raise BadRequest(f"Invalid repo type {repo_type!r}")
        src_ns, _, src_name = str(body.get("fromRepo", "")).partition("/")
        dst_ns, _, dst_name = str(body.get("toRepo", "")).partition("/")
        repo = self.repo(repo_type, src_ns, src_name, caller)
        caller.require_write(repo)
        caller.require_namespace(check_repo_name(dst_ns, "namespace"))
        await run_in_threadpool(self.storage.move_repo, repo, dst_ns, check_repo_name(dst_name))
        return JSONResponse({})

    async def settings(self, request: Request, caller: Caller, query: dict, repo: Repo) -> Response:
        caller.require_write(repo)
        body = await read_json(request, self.limits.max_json_bytes)
        if not isinstance(body, dict):
            raise BadRequest("Body must be a JSON object")
        if "visibility" in body:
            await run_in_threadpool(self.storage.set_private, repo, body["visibility"] != "public")
        elif "private" in body:
            await run_in_threadpool(self.storage.set_private, repo, bool(body["private"]))
        return JSONResponse({})

    async def auth_check(
        self, request: Request, caller: Caller, query: dict, repo: Repo, write: bool = False
    ) -> Response:
        if write:
            caller.require_write(repo)
        return JSONResponse({})

    # -- info and listing ----------------------------------------------------------------------------

    async def info(
        self, request: Request, caller: Caller, query: dict, repo: Repo, revision: str | None = None
    ) -> Response:
        oid = self.storage.resolve(repo, revision)
        commit = self.storage.commit(repo, oid)
        blobs = _flag(query.get("blobs", [None])[0])
        return JSONResponse(repo_info(self.storage, repo, commit, blobs=blobs))

    async def list_repos(self, request: Request, caller: Caller, query: dict, repo_type: str) -> Response:
        filters = [f for value in query.get("filter", []) for f in value.split(",") if f]
        search = (query.get("search", [""])[0] or "").lower()
        author = query.get("author", [None])[0]
        sort = query.get("sort", [None])[0]
        full = _flag(query.get("full", [None])[0])
        with_card = _flag(query.get("cardData", [None])[0]) or full
        limit = _int(query.get("limit", [None])[0], default=PAGE_SIZE, what="limit")
        matches = []
        for repo in self.storage.list_repos(repo_type):
            if not caller.can_read(repo) or (author and repo.namespace != author):
                continue
            if search and search not in repo.repo_id.lower():
                continue
            commit = self.storage.commit(repo, self.storage.resolve(repo, "main"))
            info = repo_info(self.storage, repo, commit)
            if any(f not in info["tags"] for f in filters):
                continue
            if not with_card:
                info.pop("cardData")
            if not full:
                info.pop("siblings")
            matches.append(info)
        if sort in ("lastModified", "createdAt"):
            matches.sort(key=lambda i: i[sort], reverse=True)
        elif sort in ("downloads", "likes", "trendingScore"):
            matches.sort(key=lambda i: i.get(sort, 0), reverse=True)
        return self._cursor_page(request, query, matches, limit)

    async def tree(
        self, request: Request, caller: Caller, query: dict, repo: Repo, revision: str, path: str = ""
    ) -> Response:
        commit = self.storage.commit(repo, self.storage.resolve(repo, revision))
        recursive = _flag(query.get("recursive", [None])[0])
        expand = _flag(query.get("expand", [None])[0])
        entries = list_tree(commit, path, recursive, expand)
        if entries is None:
            raise EntryNotFound(f"{path} does not exist on {revision}")
        return self._cursor_page(request, query, entries, PAGE_SIZE)

    async def paths_info(
        self, request: Request, caller: Caller, query: dict, repo: Repo, revision: str
    ) -> Response:
        commit = self.storage.commit(repo, self.storage.resolve(repo, revision))
        body = await read_body(request, self.limits.max_json_bytes)
        ctype = request.headers.get("content-type", "")
        if "json" in ctype:
            data = parse_json(body) if body else {}
            if not isinstance(data, dict):
                raise BadRequest("Body must be a JSON object")
            paths, expand = data.get("paths", []), bool(data.get("expand"))
        else:
            form = parse_qs(body.decode("utf-8", "replace"))
            paths, expand = form.get("paths", []), _flag(form.get("expand", [None])[0])
        out = []
        for path in paths if isinstance(paths, list) else []:
            path = str(path).strip("/")
            if path in commit.tree:
                out.append(tree_entry(path, commit.tree[path], expand, commit))
            elif any(p.startswith(path + "/") for p in commit.tree):
                out.append(dir_entry(path))
        return JSONResponse(out)

    async def refs(self, request: Request, caller: Caller, query: dict, repo: Repo) -> Response:
        refs = self.storage.refs(repo)
        out = {
            "branches": [
                {"name": n, "ref": f"refs/heads/{n}", "targetCommit": t} for n, t in refs["branch"].items()
            ],
            "tags": [{"name": n, "ref": f"refs/tags/{n}", "targetCommit": t} for n, t in refs["tag"].items()],
            "converts": [],
        }
        if _flag(query.get("include_prs", [None])[0]):
            out["pullRequests"] = [
                {"name": f"refs/pr/{n}", "ref": f"refs/pr/{n}", "targetCommit": t}
                for n, t in refs["pr"].items()
            ]
        return JSONResponse(out)

    async def commits(
        self, request: Request, caller: Caller, query: dict, repo: Repo, revision: str
    ) -> Response:
        history = self.storage.history(repo, self.storage.resolve(repo, revision))
        page = _int(query.get("p", [None])[0], default=0, what="p")
        limit = _int(query.get("limit", [None])[0], default=PAGE_SIZE, what="limit")
        items = [
            {
                "id": c.oid,
                "title": c.title,
                "message": c.message,
                "date": iso(c.date),
                "authors": [{"user": c.author, "avatar": None}],
            }
            for c in history[page * limit : (page + 1) * limit]
        ]
        more = (page + 1) * limit < len(history)
        return JSONResponse(
            items, headers=self._next_link(request, query, p=page + 1, limit=limit) if more else {}
        )

    # -- branches and tags ---------------------------------------------------------------------------

    async def create_branch(
        self, request: Request, caller: Caller, query: dict, repo: Repo, branch: str
    ) -> Response:
        caller.require_write(repo)
        body = await read_json(request, self.limits.max_json_bytes)
        _check_ref_name(branch)
        start = body.get("startingPoint") if isinstance(body, dict) else None
        if start is not None and not isinstance(start, str):
            raise BadRequest("startingPoint must be a revision name")
        target = self.storage.resolve(repo, start or "main")
        await run_in_threadpool(self.storage.create_ref, repo, "branch", branch, target)
        return JSONResponse({})

    async def delete_branch(
        self, request: Request, caller: Caller, query: dict, repo: Repo, branch: str
    ) -> Response:
        caller.require_write(repo)
        await run_in_threadpool(self.storage.delete_ref, repo, "branch", branch)
        return JSONResponse({})

    async def create_tag(
        self, request: Request, caller: Caller, query: dict, repo: Repo, revision: str
    ) -> Response:
        caller.require_write(repo)
        body = await read_json(request, self.limits.max_json_bytes)
        tag = body.get("tag") if isinstance(body, dict) else None
        if not isinstance(tag, str):
            raise BadRequest('Body must name the tag: {"tag": "v1"}')
        _check_ref_name(tag)
        target = self.storage.resolve(repo, revision)
        await run_in_threadpool(self.storage.create_ref, repo, "tag", tag, target)
        return JSONResponse({})

    async def delete_tag(
        self, request: Request, caller: Caller, query: dict, repo: Repo, tag: str
    ) -> Response:
        caller.require_write(repo)
        await run_in_threadpool(self.storage.delete_ref, repo, "tag", tag)
        return JSONResponse({})

    # -- upload --------------------------------------------------------------------------------------

    async def preupload(
        self, request: Request, caller: Caller, query: dict, repo: Repo, revision: str
    ) -> Response:
        create_pr = _flag(query.get("create_pr", [None])[0])
        discussion_routes.require_push(self.storage, caller, repo, revision, create_pr)
        body = await read_json(request, self.limits.max_json_bytes)
        files = body.get("files") if isinstance(body, dict) else None
        if not isinstance(files, list):
            raise BadRequest('Body must be {"files": [...]}')
        try:
            head = self.storage.commit(repo, self.storage.resolve(repo, revision))
        except StorageError:
            if not create_pr:
                raise
            head = None
        ignore = _gitignore_patterns(body.get("gitIgnore"))
        out = []
        for item in files:
            if not isinstance(item, dict):
                raise BadRequest("Each file must be an object with path, sample and size")
            path = check_path(item.get("path"))
            mode = _upload_mode(path, item.get("size"), item.get("sample"))
            existing = head.tree.get(path) if head else None
            oid = None
            if existing is not None:
                oid = existing["sha256"] if mode == "lfs" else existing["git_oid"]
            should_ignore = any(
                fnmatch.fnmatch(path, p) or fnmatch.fnmatch(path.rsplit("/", 1)[-1], p) for p in ignore
            )
            out.append({"path": path, "uploadMode": mode, "shouldIgnore": should_ignore, "oid": oid})
        return JSONResponse({"files": out, "commitOid": head.oid if head else None})

    async def commit(
        self, request: Request, caller: Caller, query: dict, repo: Repo, revision: str
    ) -> Response:
        create_pr = _flag(query.get("create_pr", [None])[0])
        user = discussion_routes.require_push(self.storage, caller, repo, revision, create_pr)
        body = await read_body(request, self.limits.max_commit_bytes)
        header, changes = await run_in_threadpool(self._parse_commit, body)
        summary = str(header.get("summary") or "Upload files")
        description = str(header.get("description") or "")
        parent = header.get("parentCommit")
        branch = self.storage.branch_of(repo, revision)
        pr_url = None
        if create_pr:
            # The pull request starts at parentCommit when given (the client's contract), else at the
            # revision's head, and targets the branch the revision names (main for anything else).
            base = self.storage.resolve(repo, parent or revision)
            target = branch if branch and not branch.startswith("refs/pr/") else "main"
            number, result = await run_in_threadpool(
                self.storage.commit_pull_request, repo, target, base, changes, summary, description, user
            )
            pr_url = f"{self.repo_url(request, repo)}/discussions/{number}"
        elif branch is None:
            self.storage.resolve(repo, revision)  # RevisionNotFound when it names nothing at all
            raise BadRequest(f"Commits can only be made on branches; {revision!r} is not a branch")
        else:
            result = await run_in_threadpool(
                self.storage.apply_commit, repo, branch, changes, summary, description, user, parent
            )
        out = {
            "success": True,
            "commitOid": result.oid,
            "commitUrl": f"{self.repo_url(request, repo)}/commit/{result.oid}",
            "commitMessage": summary,
            "hookOutput": "",
        }
        if pr_url:
            out["pullRequestUrl"] = pr_url
        return JSONResponse(out)

    def _parse_commit(self, body: bytes) -> tuple[dict, list[FileChange]]:
        """Parse and check a whole NDJSON commit before anything is applied (all-or-nothing)."""
        header: dict = {}
        changes: list[FileChange] = []
        for number, line in enumerate(body.splitlines(), start=1):
            if not line.strip():
                continue
            item = parse_json(line, f"Commit line {number}")
            if not isinstance(item, dict) or not isinstance(item.get("value"), dict):
                raise BadRequest(f'Commit line {number} must be {{"key": ..., "value": {{...}}}}')
            key, value = item.get("key"), item["value"]
            if key == "header":
                header = value
                for field in ("summary", "description"):
                    if field in value and not is_text(value[field]):
                        raise BadRequest(f"Commit header {field} must be a (valid Unicode) string")
                parent = value.get("parentCommit")
                if parent is not None and not (
                    isinstance(parent, str) and re.fullmatch(r"[0-9a-f]{40}", parent)
                ):
                    raise BadRequest("parentCommit must be a 40-character commit sha")
            elif key == "file":
                changes.append(self._inline_file(value, number))
            elif key == "lfsFile":
                path = check_path(value.get("path"))
                oid, size = value.get("oid"), value.get("size")
                if not (isinstance(oid, str) and re.fullmatch(r"[0-9a-f]{64}", oid)):
                    raise BadRequest(f"lfsFile {path}: oid must be a sha256 hex digest")
                if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
                    raise BadRequest(f"lfsFile {path}: size must be a non-negative integer")
                if value.get("algo", "sha256") != "sha256":
                    raise BadRequest(f"lfsFile {path}: only sha256 is supported")
                changes.append(FileChange("add", path, sha256=oid, size=size, lfs=True))
            elif key == "deletedFile":
                changes.append(FileChange("delete", check_path(value.get("path"))))
            elif key == "deletedFolder":
                path = value.get("path")
                changes.append(
                    FileChange(
                        "delete_folder", check_path(path.rstrip("/") if isinstance(path, str) else path)
                    )
                )
            else:
                raise BadRequest(f"Commit line {number}: unknown key {key!r}")
        if not changes:
            raise BadRequest("A commit needs at least one file operation")
        return header, changes

    def _inline_file(self, value: dict, number: int) -> FileChange:
        path = check_path(value.get("path"))
        content = value.get("content")
        if not isinstance(content, str):
            raise BadRequest(f"file {path}: content must be a string")
        encoding = value.get("encoding", "base64")
        if encoding == "base64":
            try:
                data = base64.b64decode(content, validate=True)
            except (binascii.Error, ValueError) as err:
                raise BadRequest(f"file {path}: content is not valid base64") from err
        elif encoding in ("utf-8", "utf8"):
            data = content.encode()
        else:
            raise BadRequest(f"file {path}: unsupported encoding {encoding!r}")
        sha256 = self.storage.blobs.put_bytes(data)
        return FileChange("add", path, sha256=sha256, size=len(data), lfs=False, git_oid=git_blob_oid(data))

    # -- classic git-LFS ---------------------------------------------------------------------------------

    async def lfs_batch(self, request: Request, caller: Caller, query: dict, repo: Repo) -> Response:
        body = await read_json(request, self.limits.max_json_bytes)
        if not isinstance(body, dict) or not isinstance(body.get("objects"), list):
            raise BadRequest("LFS batch body must have an objects list")
        operation = body.get("operation")
        if operation != "upload":
            # Downloads go through /resolve; the Hub clients only use the batch API to upload.
            raise BadRequest("Only the LFS upload operation is supported; download files with /resolve")
        ref = body.get("ref") if isinstance(body.get("ref"), dict) else {}
        user = discussion_routes.require_push(self.storage, caller, repo, ref.get("name"), create_pr=False)
        base = self.base_url(request)
        objects = []
        for obj in body["objects"]:
            oid, size = (obj.get("oid"), obj.get("size")) if isinstance(obj, dict) else (None, None)
            if (
                not (isinstance(oid, str) and re.fullmatch(r"[0-9a-f]{64}", oid))
                or not isinstance(size, int)
                or size < 0
            ):
                objects.append(
                    {
                        "oid": str(oid),
                        "size": 0,
                        "error": {"code": 422, "message": "oid must be sha256 hex, size an integer"},
                    }
                )
                continue
            if size > self.limits.max_upload_bytes:
                objects.append(
                    {
                        "oid": oid,
                        "size": size,
                        "error": {
                            "code": 413,
                            "message": f"Object of {size} bytes exceeds the limit of "
                            f"{self.limits.max_upload_bytes} bytes",
                        },
                    }
                )
                continue
            entry: dict[str, Any] = {"oid": oid, "size": size, "authenticated": True}
            stored = self.storage.blobs.exists(oid) and self.storage.blobs.size(oid) == size
            if not stored:  # an object without actions is "already there": the client skips it
                sig = self.signer.sign("lfs", oid, str(size), user)
                href = f"{base}/lfs-upload/{oid}?size={size}&sig={sig}&user={quote(user)}"
                entry["actions"] = {
                    "upload": {"href": href, "header": {}},
                    "verify": {"href": f"{base}/api/{repo.type}s/{repo.repo_id}/lfs-verify", "header": {}},
                }
            objects.append(entry)
        return JSONResponse(
            {"transfer": "basic", "objects": objects, "hash_algo": "sha256"},
            media_type="application/vnd.git-lfs+json",
        )

    async def lfs_put(self, request: Request, caller: Caller, query: dict, oid: str) -> Response:
        """The self-authorizing upload href from the batch answer: the client sends no token here."""
        size_s, sig, user = (query.get(k, [""])[0] for k in ("size", "sig", "user"))
        if not (
            re.fullmatch(r"[0-9a-f]{64}", oid)
            and size_s.isdigit()
            and self.signer.verify(sig, "lfs", oid, size_s, user)
        ):
            raise Forbidden("Invalid or expired upload URL")
        size = int(size_s)
        if size > self.limits.max_upload_bytes:
            raise PayloadTooLarge(
                f"Object of {size} bytes exceeds the limit of {self.limits.max_upload_bytes} bytes"
            )
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) != size:
            raise BadRequest(f"Content-Length {declared} does not match the announced size {size}")
        if self.storage.blobs.exists(oid):
            async for _ in request.stream():
                pass
            return Response(status_code=200)
        digest = hashlib.sha256()
        received = 0
        with self.storage.blobs.temp_file() as (fh, tmp):
            async for chunk in request.stream():
                received += len(chunk)
                if received > size:
                    raise BadRequest(f"Upload is larger than the announced size {size}")
                digest.update(chunk)
                fh.write(chunk)
            fh.flush()
            if received != size:
                raise BadRequest(f"Upload size {received} does not match the announced size {size}")
            if digest.hexdigest() != oid:
                raise BadRequest(f"Upload content sha256 {digest.hexdigest()} does not match oid {oid}")
            await run_in_threadpool(self.storage.blobs.adopt, tmp, oid)
        return Response(status_code=200)

    async def lfs_verify(self, request: Request, caller: Caller, query: dict, repo: Repo) -> Response:
        caller.require_write(repo)
        body = await read_json(request, self.limits.max_json_bytes)
        oid, size = (body.get("oid"), body.get("size")) if isinstance(body, dict) else (None, None)
        if (
            not (isinstance(oid, str) and self.storage.blobs.exists(oid))
            or self.storage.blobs.size(oid) != size
        ):
            raise BadRequest(f"Object {oid} of size {size} was not uploaded")
        return JSONResponse({"success": True})

    # -- downloads -----------------------------------------------------------------------------------

    async def resolve(
        self, request: Request, caller: Caller, query: dict, repo: Repo, revision: str, path: str
    ) -> Response:
        oid = self.storage.resolve(repo, revision)
        commit = self.storage.commit(repo, oid)
        entry = commit.tree.get(path)
        if entry is None:
            err = EntryNotFound(f"{path} does not exist at revision {revision}")
            response = error_response(err)
            response.headers["X-Repo-Commit"] = oid
            return response
        etag = entry["sha256"] if entry["lfs"] else entry["git_oid"]
        headers = {
            "X-Repo-Commit": oid,
            "ETag": f'"{etag}"',
            "X-Linked-Size": str(entry["size"]),
            "Accept-Ranges": "bytes",
            "Content-Disposition": f"inline; filename*=UTF-8''{quote(path.rsplit('/', 1)[-1])};",
        }
        if entry["lfs"]:
            headers["X-Linked-Etag"] = f'"{etag}"'
        response = FileResponse(
            self.storage.blobs.path(entry["sha256"]),
            headers=headers,
            media_type="application/octet-stream",
            content_disposition_type="inline",
        )
        response.chunk_size = 1 << 20  # Starlette's 64 KiB reads cost a thread hop each: half the send speed
        return response


class _Binder:
    """Turns path segments into a bound handler (keeps ``HubApp.route`` readable)."""

    def __init__(self, hub: HubApp, method: str):
        self.hub, self.method = hub, method

    def _allows(self, methods: tuple[str, ...]) -> bool:
        """Whether the request's method is one of ``methods`` (HEAD wherever GET is)."""
        return self.method in methods or (self.method == "HEAD" and "GET" in methods)

    def at(self, methods: tuple[str, ...], handler: Callable, *args: Any, **kwargs: Any):
        if not self._allows(methods):
            return None

        async def call(request: Request, caller: Caller, query: dict) -> Response:
            return await handler(request, caller, query, *args, **kwargs)

        return call

    def with_repo(
        self,
        methods: tuple[str, ...],
        handler: Callable,
        repo_type: str,
        ns: str,
        name: str,
        *args: Any,
        **kwargs: Any,
    ):
        if not self._allows(methods):
            return None
        hub = self.hub

        async def call(request: Request, caller: Caller, query: dict) -> Response:
            repo = hub.repo(repo_type, ns, name, caller)
            return await handler(request, caller, query, repo, *args, **kwargs)

        return call

    def api(self, seg: list[str]):
        h = self.hub
        if seg == ["whoami-v2"]:
            return self.at(("GET",), h.whoami)
        if seg == ["version"]:
            return self.at(("GET",), h.version)
        if seg == ["validate-yaml"]:
            return self.at(("POST",), h.validate_yaml)
        if seg == ["settings", "repositories"]:
            return self.at(("GET",), repo_routes.user_repos, hub=h)
        if len(seg) == 4 and seg[0] == "organizations" and seg[2:] == ["settings", "repositories"]:
            return self.at(("GET",), repo_routes.user_repos, hub=h, namespace=seg[1])
        if seg[:1] == ["repos"] and len(seg) == 2:
            action = {
                "create": ("POST", h.create_repo),
                "delete": ("DELETE", h.delete_repo),
                "move": ("POST", h.move_repo),
            }.get(seg[1])
            return self.at((action[0],), action[1]) if action else None
        if not seg or seg[0] not in PLURAL:
            return None
        repo_type = PLURAL[seg[0]]
        if len(seg) == 1:
            return self.at(("GET",), h.list_repos, repo_type)
        if len(seg) < 3:
            return None
        ns, name, rest = seg[1], seg[2], seg[3:]
        repo_args = (repo_type, ns, name)
        if not rest:
            return self.with_repo(("GET",), h.info, *repo_args)
        op, args = rest[0], rest[1:]
        if op == "revision" and args:
            return self.with_repo(("GET",), h.info, *repo_args, "/".join(args))
        if op == "tree" and args:
            return self.with_repo(("GET",), h.tree, *repo_args, args[0], "/".join(args[1:]))
        if op == "paths-info" and len(args) == 1:
            return self.with_repo(("POST",), h.paths_info, *repo_args, args[0])
        if op == "refs" and not args:
            return self.with_repo(("GET",), h.refs, *repo_args)
        if op == "commits" and args:
            return self.with_repo(("GET",), h.commits, *repo_args, "/".join(args))
        if op == "branch" and args:
            handler = h.create_branch if self.method == "POST" else h.delete_branch
            return self.with_repo(("POST", "DELETE"), handler, *repo_args, "/".join(args))
        if op == "tag" and args:
            handler = h.create_tag if self.method == "POST" else h.delete_tag
            return self.with_repo(("POST", "DELETE"), handler, *repo_args, "/".join(args))
        if op == "preupload" and args:
            return self.with_repo(("POST",), h.preupload, *repo_args, "/".join(args))
        if op == "commit" and args:
            return self.with_repo(("POST",), h.commit, *repo_args, "/".join(args))
        if op == "xet-write-token" and args:
            return self.with_repo(("GET",), xet_routes.write_token, *repo_args, "/".join(args), hub=h)
        if op == "discussions":
            found = discussion_routes.route(self.method, args)
            return self.with_repo((found[0],), found[1], *repo_args, *found[2], hub=h) if found else None
        if op == "duplicate" and not args:
            return self.with_repo(("POST",), repo_routes.duplicate, *repo_args, hub=h)
        if op == "settings" and not args:
            return self.with_repo(("PUT",), h.settings, *repo_args)
        if op == "auth-check":
            return self.with_repo(("GET",), h.auth_check, *repo_args, write=args == ["write"])
        if op == "lfs-verify" and not args:
            return self.with_repo(("POST",), h.lfs_verify, *repo_args)
        return None

    def repo_file(self, seg: list[str]):
        h = self.hub
        repo_type = "model"
        if seg[:1] in (["datasets"], ["spaces"]):
            repo_type, seg = PLURAL[seg[0]], seg[1:]
        if len(seg) >= 2 and seg[1].endswith(".git") and seg[2:] == ["info", "lfs", "objects", "batch"]:
            return self.with_repo(("POST",), h.lfs_batch, repo_type, seg[0], seg[1][: -len(".git")])
        if len(seg) >= 5 and seg[2] == "resolve":
            return self.with_repo(("GET",), h.resolve, repo_type, seg[0], seg[1], seg[3], "/".join(seg[4:]))
        return None


def _int(value: str | None, default: int, what: str) -> int:
    if value is None or value == "":
        return default
    if not value.isdigit():
        raise BadRequest(f"{what} must be a non-negative integer")
    return int(value)


def _check_ref_name(name: str) -> None:
    if (
        not name
        or len(name) > 255
        or name.startswith(("/", "-", "refs/"))
        or ".." in name
        or any(c in name for c in " ~^:?*[\\\0")
        or any(ord(c) < 0x20 or c == "\x7f" for c in name)
        or not is_text(name)
        or name.endswith((".", "/", ".lock"))
    ):
        raise BadRequest(f"Invalid reference name {name!r}")


def _gitignore_patterns(text: Any) -> list[str]:
    if not isinstance(text, str):
        return []
    lines = (line.strip() for line in text.splitlines())
    return [line.rstrip("/") for line in lines if line and not line.startswith(("#", "!"))]


def _upload_mode(path: str, size: Any, sample: Any) -> str:
    """LFS for big files, known binary formats and anything whose first bytes contain NUL."""
    if isinstance(size, int) and size >= LFS_THRESHOLD:
        return "lfs"
    if path.lower().endswith(LFS_SUFFIXES):
        return "lfs"
    if isinstance(sample, str):
        with contextlib.suppress(binascii.Error, ValueError):
            if b"\0" in base64.b64decode(sample):
                return "lfs"
    return "regular"


def create_app(data_dir: Path, limits: Limits | None = None, users: dict[str, str] | None = None) -> FastAPI:
    """The ASGI application over ``data_dir``; ``users`` maps names to tokens to register."""
    storage = Storage(data_dir)
    for name, token in (users or {}).items():
        storage.set_user(name, token)
    hub = HubApp(storage, Signer(_load_secret(Path(data_dir))), limits or Limits())
    app = FastAPI(
        title="hubkit embedded Hub", version=__version__, docs_url=None, redoc_url=None, openapi_url=None
    )
    app.state.hub = hub

    @app.api_route(
        "/{path:path}", methods=["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"], include_in_schema=False
    )
    async def everything(request: Request) -> Response:
        return await hub.dispatch(request)

    return app


def _load_secret(data_dir: Path) -> bytes:
    """Signing key for upload URLs and Xet tokens; kept across restarts so in-flight URLs stay valid."""
    path = data_dir / "secret.key"
    if not path.exists():
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with open(fd, "wb") as fh:
            fh.write(secrets.token_bytes(32))
        os.replace(tmp, path)
    return path.read_bytes()
