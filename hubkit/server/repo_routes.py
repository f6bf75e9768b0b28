"""Whole-repo routes of the ``hf repos`` commands: ``duplicate`` (``HfApi.duplicate_repo``) and ``ls``
(``HfApi.list_user_repos``, the storage listing of ``/api/settings/repositories``)."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from hubkit.server.auth import Caller
from hubkit.server.bodies import read_json
from hubkit.server.context import HubContext
from hubkit.server.info import iso
from hubkit.server.names import check_repo_name
from hubkit.server.storage import REPO_TYPES, BadRequest, Conflict, Repo, StorageError

VISIBILITIES = ("public", "private", "protected")


class OrganizationNotFound(StorageError):
    status = 404


async def duplicate(request: Request, caller: Caller, query: dict, repo: Repo, hub: HubContext) -> Response:
    """Copy ``repo``'s main branch, history included, into a new repo of the caller (or their namespace)."""
    user = caller.require_user()
    body = await read_json(request, hub.limits.max_json_bytes)
    if not isinstance(body, dict) or not isinstance(body.get("repository"), str):
        raise BadRequest('Body must name the new repo: {"repository": "namespace/name"}')
    namespace, _, name = body["repository"].partition("/")
    caller.require_namespace(check_repo_name(namespace or user, "namespace"))
    check_repo_name(name)
    visibility = body.get("visibility")
    if visibility is not None and visibility not in VISIBILITIES:
        raise BadRequest(f"Invalid visibility {visibility!r}: expected one of {', '.join(VISIBILITIES)}")
    private = repo.private if visibility is None else visibility != "public"
    try:
        copy = await run_in_threadpool(hub.storage.duplicate_repo, repo, namespace or user, name, private)
    except Conflict as err:
        # Like create_repo: the client reads "url" from the 409 answer when called with exist_ok=True.
        existing = hub.storage.get_repo(repo.type, namespace or user, name)
        body = {"error": str(err), "url": hub.repo_url(request, existing)}
        return JSONResponse(body, status_code=409, headers={"X-Error-Message": str(err)})
    return JSONResponse({"url": hub.repo_url(request, copy), "filesCopyPending": False})


async def user_repos(
    request: Request, caller: Caller, query: dict, hub: HubContext, namespace: str | None = None
) -> Response:
    """Every repo of the caller with its storage; hubkit has no organizations, so another name is 404."""
    user = caller.require_user()
    if namespace is not None and namespace != user:
        raise OrganizationNotFound(f"Organization {namespace} not found")
    repos = [r for t in REPO_TYPES for r in hub.storage.list_repos(t) if r.namespace == user]
    usage = {r.id: await run_in_threadpool(hub.storage.repo_usage, r) for r in repos}
    total = sum(size for size, _ in usage.values()) or 1
    return JSONResponse(
        [
            {
                "id": r.repo_id,
                "type": r.type,
                "updatedAt": iso(usage[r.id][1]),
                "visibility": "private" if r.private else "public",
                "storage": usage[r.id][0],
                "storagePercent": round(100 * usage[r.id][0] / total, 2),
            }
            for r in sorted(repos, key=lambda r: usage[r.id][1], reverse=True)
        ]
    )
