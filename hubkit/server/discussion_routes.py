"""Discussions and pull requests: the routes and JSON shapes that ``HfApi``'s community methods use.

``get_repo_discussions``, ``get_discussion_details`` (with ``?diff=1``), ``create_discussion`` /
``create_pull_request``, ``comment_discussion``, ``edit_discussion_comment``, ``hide_discussion_comment``,
``rename_discussion``, ``change_discussion_status`` and ``merge_pull_request`` work unchanged against these.

Who may do what, as on the Hub: reading needs read access to the repo; any signed-in user who can read it
may open discussions and pull requests and comment; the author of a discussion or a writer of the repo may
rename it or change its status; only a comment's author edits it; only a writer merges.
"""

from __future__ import annotations

import html
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from hubkit.server.auth import Caller, Forbidden
from hubkit.server.bodies import read_json
from hubkit.server.context import HubContext
from hubkit.server.diffs import tree_diff
from hubkit.server.info import iso
from hubkit.server.storage import (
    BadRequest,
    Discussion,
    DiscussionEvent,
    DiscussionNotFound,
    Repo,
    Storage,
    is_text,
)

PAGE_SIZE = 50
MAX_TITLE_CHARS = 300
MAX_COMMENT_CHARS = 65536
TYPES = ("all", "discussion", "pull_request")
STATUSES = {"all": None, "open": ("open", "draft"), "closed": ("closed", "merged")}


def route(method: str, args: list[str]) -> tuple[str, Any, tuple] | None:
    """``(method, handler, extra args)`` for ``/api/{type}s/{id}/discussions/{args...}``, or None."""
    if not args:
        return (method, create, ()) if method == "POST" else ("GET", list_discussions, ())
    if not args[0].isdigit() or int(args[0]) < 1:
        return None
    num, rest = int(args[0]), args[1:]
    if not rest:
        return "GET", details, (num,)
    actions = {"comment": comment, "title": rename, "status": change_status, "merge": merge}
    if len(rest) == 1 and rest[0] in actions:
        return "POST", actions[rest[0]], (num,)
    if len(rest) == 3 and rest[0] == "comment" and rest[2] in ("edit", "hide"):
        return "POST", edit_comment if rest[2] == "edit" else hide_comment, (num, rest[1].lower())
    return None


def require_push(storage: Storage, caller: Caller, repo: Repo, revision: str | None, create_pr: bool) -> str:
    """Who may commit (or upload for a commit) to ``revision``: writers anywhere; with ``create_pr`` any
    signed-in user who can read the repo; on ``refs/pr/N`` also the author of pull request N."""
    num = pr_number(revision)
    if create_pr or num is None:
        return caller.require_contribute(repo, create_pr)
    caller.require_read(repo)
    user = caller.require_user()
    if user == repo.namespace:
        return user
    try:
        author = storage.get_discussion(repo, num).author
    except DiscussionNotFound:
        author = None  # a PR ref without its discussion (older data): writers only
    if author != user:
        raise Forbidden(
            f"Only the author of pull request #{num} or a writer of {repo.repo_id} can push to it"
        )
    return user


def pr_number(revision: object) -> int | None:
    """N for ``refs/pr/N``, else None (also for anything that is not a string, e.g. from a JSON body)."""
    if not isinstance(revision, str) or not revision.startswith("refs/pr/"):
        return None
    number = revision[len("refs/pr/") :]
    return int(number) if number.isdigit() else None


# -- reading -------------------------------------------------------------------------------------------


async def list_discussions(
    request: Request, caller: Caller, query: dict, repo: Repo, hub: HubContext
) -> Response:
    kind = _choice(query, "type", TYPES)
    status = _choice(query, "status", tuple(STATUSES))
    author = query.get("author", [None])[0]
    page = _page(query.get("p", ["0"])[0])
    found = [
        d
        for d in await run_in_threadpool(hub.storage.list_discussions, repo)
        if (kind == "all" or d.is_pr == (kind == "pull_request"))
        and (STATUSES[status] is None or d.status in STATUSES[status])
        and (author is None or d.author == author)
    ]
    start = page * PAGE_SIZE
    return JSONResponse(
        {
            "discussions": [_summary(d, repo) for d in found[start : start + PAGE_SIZE]],
            "count": len(found),
            "start": start,
            "numClosedDiscussions": sum(d.status in ("closed", "merged") for d in found),
        }
    )


async def details(
    request: Request, caller: Caller, query: dict, repo: Repo, num: int, hub: HubContext
) -> Response:
    with_diff = query.get("diff", ["0"])[0].lower() in ("1", "true")
    return JSONResponse(await run_in_threadpool(_details, hub, request, repo, num, with_diff))


def _details(hub: HubContext, request: Request, repo: Repo, num: int, with_diff: bool) -> dict:
    storage = hub.storage
    discussion = storage.get_discussion(repo, num)
    out = _summary(discussion, repo) | {
        "locked": False,
        "collection": "discussions",
        "events": [event_json(e) for e in storage.discussion_events(repo, num)],
    }
    if not discussion.is_pr:
        return out
    changes: dict[str, Any] = {"base": f"refs/heads/{discussion.target}"}
    if discussion.merge_oid:
        changes["mergeCommitId"] = discussion.merge_oid
    out["changes"] = changes
    out["filesWithConflicts"] = storage.conflicting_files(repo, discussion)
    out["diffUrl"] = f"{hub.repo_url(request, repo)}/discussions/{num}/files.diff"
    if with_diff:
        out["diff"] = pull_request_diff(storage, repo, discussion)
    return out


def pull_request_diff(storage: Storage, repo: Repo, pr: Discussion) -> str:
    """The PR's changes: its head against the commit it started from (what merging it brings)."""
    head = storage.resolve(repo, f"refs/pr/{pr.num}")
    before, after = storage.commit(repo, pr.base_oid or head).tree, storage.commit(repo, head).tree
    return tree_diff(before, after, lambda sha256: storage.blobs.path(sha256).read_bytes())


# -- writing -------------------------------------------------------------------------------------------


async def create(request: Request, caller: Caller, query: dict, repo: Repo, hub: HubContext) -> Response:
    user = caller.require_user()
    body = await _body(request, hub)
    title = _text(body.get("title"), "title", MAX_TITLE_CHARS)
    description = _text(body.get("description", ""), "description", MAX_COMMENT_CHARS, allow_empty=True)
    pull_request = body.get("pullRequest", False)
    if not isinstance(pull_request, bool):
        raise BadRequest("pullRequest must be true or false")
    discussion = await run_in_threadpool(
        hub.storage.create_discussion, repo, user, title, description, pull_request
    )
    url = f"{hub.repo_url(request, repo)}/discussions/{discussion.num}"
    return JSONResponse({"num": discussion.num, "url": url, "pullRequest": pull_request})


async def comment(
    request: Request, caller: Caller, query: dict, repo: Repo, num: int, hub: HubContext
) -> Response:
    user = caller.require_user()
    text = _text((await _body(request, hub)).get("comment"), "comment", MAX_COMMENT_CHARS)
    event = await run_in_threadpool(hub.storage.add_comment, repo, num, user, text)
    return JSONResponse({"newMessage": event_json(event)})


async def edit_comment(
    request: Request, caller: Caller, query: dict, repo: Repo, num: int, event_id: str, hub: HubContext
) -> Response:
    user = caller.require_user()
    text = _text((await _body(request, hub)).get("content"), "content", MAX_COMMENT_CHARS)
    if hub.storage.discussion_event(repo, num, event_id).author != user:
        raise Forbidden(f"Only the author of comment {event_id} can edit it")
    event = await run_in_threadpool(hub.storage.edit_comment, repo, num, event_id, user, text)
    return JSONResponse({"updatedComment": event_json(event)})


async def hide_comment(
    request: Request, caller: Caller, query: dict, repo: Repo, num: int, event_id: str, hub: HubContext
) -> Response:
    user = _author_or_writer(caller, repo, hub.storage.discussion_event(repo, num, event_id).author, "hide")
    event = await run_in_threadpool(hub.storage.hide_comment, repo, num, event_id, user)
    return JSONResponse({"updatedComment": event_json(event)})


async def rename(
    request: Request, caller: Caller, query: dict, repo: Repo, num: int, hub: HubContext
) -> Response:
    user = _author_or_writer(caller, repo, hub.storage.get_discussion(repo, num).author, "rename")
    title = _text((await _body(request, hub)).get("title"), "title", MAX_TITLE_CHARS)
    event = await run_in_threadpool(hub.storage.rename_discussion, repo, num, user, title)
    return JSONResponse({"newTitle": event_json(event)})


async def change_status(
    request: Request, caller: Caller, query: dict, repo: Repo, num: int, hub: HubContext
) -> Response:
    author = hub.storage.get_discussion(repo, num).author
    user = _author_or_writer(caller, repo, author, "change the status of")
    body = await _body(request, hub)
    args = (repo, num, user, body.get("status"), _optional_comment(body))
    event = await run_in_threadpool(hub.storage.change_discussion_status, *args)
    return JSONResponse({"newStatus": event_json(event)})


async def merge(
    request: Request, caller: Caller, query: dict, repo: Repo, num: int, hub: HubContext
) -> Response:
    user = caller.require_write(repo)
    note = _optional_comment(await _body(request, hub))
    event, _ = await run_in_threadpool(hub.storage.merge_pull_request, repo, num, user, note)
    return JSONResponse({"newStatus": event_json(event)})


# -- JSON shapes ---------------------------------------------------------------------------------------


def _user(name: str) -> dict:
    return {"name": name, "fullname": name, "type": "user", "avatarUrl": ""}


def _summary(d: Discussion, repo: Repo) -> dict:
    return {
        "num": d.num,
        "author": _user(d.author),
        "repo": {"name": repo.repo_id, "type": repo.type},
        "title": d.title,
        "status": d.status,
        "createdAt": iso(d.created),
        "isPullRequest": d.is_pr,
        "numComments": d.comments,
        "pinned": False,
        "topReactions": [],
        "numReactionUsers": 0,
    }


def event_json(event: DiscussionEvent) -> dict:
    """An event as the Hub serialises it (what ``huggingface_hub.community.deserialize_event`` reads)."""
    data = event.data
    if event.type == "comment":
        editors = list(dict.fromkeys([data["editor"], *(v["editor"] for v in data["history"])]))
        data = {
            "edited": data["edited"],
            "hidden": data["hidden"],
            "latest": _version_json(data),
            "numEdits": len(data["history"]),
            "editors": editors,
            "history": [_version_json(v) for v in data["history"]],
            "reactions": [],
            "isReport": False,
        }
    return {
        "id": event.id,
        "author": _user(event.author),
        "createdAt": iso(event.created),
        "type": event.type,
        "data": data,
    }


def _version_json(version: dict) -> dict:
    raw = version["raw"]
    return {
        "raw": raw,
        "html": f"<p>{html.escape(raw)}</p>\n",
        "updatedAt": iso(version["updated"]),
        "author": _user(version["editor"]),
    }


# -- input checks --------------------------------------------------------------------------------------


async def _body(request: Request, hub: HubContext) -> dict:
    body = await read_json(request, hub.limits.max_json_bytes)
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise BadRequest("Body must be a JSON object")
    return body


def _text(value: Any, what: str, limit: int, allow_empty: bool = False) -> str:
    if not is_text(value):
        raise BadRequest(f"{what} must be a string")
    value = value.strip()
    if not value and not allow_empty:
        raise BadRequest(f"{what} must not be empty")
    if len(value) > limit:
        raise BadRequest(f"{what} is longer than {limit} characters")
    return value


def _optional_comment(body: dict) -> str | None:
    note = body.get("comment")
    return None if note is None else _text(note, "comment", MAX_COMMENT_CHARS, allow_empty=True) or None


def _choice(query: dict, key: str, allowed: tuple[str, ...]) -> str:
    value = query.get(key, ["all"])[0]
    if value not in allowed:
        raise BadRequest(f"Invalid {key} {value!r}: expected one of {', '.join(allowed)}")
    return value


def _page(value: str) -> int:
    if not value.isdigit():
        raise BadRequest("p (the page index) must be a non-negative integer")
    return int(value)


def _author_or_writer(caller: Caller, repo: Repo, author: str, what: str) -> str:
    user = caller.require_user()
    if user not in (author, repo.namespace):
        raise Forbidden(f"Only {author} (the author) or a writer of {repo.repo_id} can {what} it")
    return user
