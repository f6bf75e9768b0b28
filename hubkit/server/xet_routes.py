"""The Xet upload receiver: write tokens, xorb and shard uploads (the CAS routes hf_xet calls).

Downloads never use Xet: the server sends no Xet headers or ``xetHash`` fields, so clients use plain HTTP.
A shard is turned into ordinary sha256-addressed blobs as soon as it arrives; the commit that follows then
refers to them by sha256 like any LFS upload. Xorbs are kept forever because ``hf_xet``'s local shard cache
lets later uploads skip xorbs it already sent.
"""

from __future__ import annotations

import functools
import re
from typing import Any
from urllib.parse import quote, unquote

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from hubkit.server import xet
from hubkit.server.auth import Caller, Unauthorized
from hubkit.server.bodies import read_body
from hubkit.server.context import HubContext
from hubkit.server.discussion_routes import require_push
from hubkit.server.storage import BadRequest, Repo, Storage

TOKEN_TTL = 3600
_HASH = re.compile(r"^[0-9a-f]{64}$")


async def write_token(
    request: Request, caller: Caller, query: dict, repo: Repo, revision: str, hub: HubContext
) -> Response:
    """A CAS token for whoever may commit to ``revision`` (with ``?create_pr=1``: open a pull request)."""
    create_pr = query.get("create_pr", [""])[0].lower() in ("1", "true")
    user = require_push(hub.storage, caller, repo, revision, create_pr)
    sig = hub.signer.sign("xet", user, repo.type, repo.repo_id, ttl=TOKEN_TTL)
    token = f"{quote(user, safe='')}:{repo.type}:{quote(repo.repo_id, safe='')}:{sig}"
    cas_url = f"{hub.base_url(request)}/cas"
    exp = hub.signer.expiry(sig)
    headers = {"X-Xet-Cas-Url": cas_url, "X-Xet-Access-Token": token, "X-Xet-Token-Expiration": str(exp)}
    return JSONResponse({"casUrl": cas_url, "accessToken": token, "exp": exp}, headers=headers)


def _check_token(hub: HubContext, request: Request) -> None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    parts = token.split(":")
    if scheme.lower() != "bearer" or len(parts) != 4:
        raise Unauthorized("A Xet access token is required")
    user, repo_type, repo_id, sig = unquote(parts[0]), parts[1], unquote(parts[2]), parts[3]
    if not hub.signer.verify(sig, "xet", user, repo_type, repo_id):
        raise Unauthorized("Invalid or expired Xet access token")


def route(hub: HubContext, method: str, seg: list[str]) -> Any:
    if method == "POST" and len(seg) == 4 and seg[:3] == ["v1", "xorbs", "default"]:
        return functools.partial(_put_xorb, hub, seg[3])
    if method == "POST" and seg == ["v1", "shards"]:
        return functools.partial(_put_shard, hub)
    return None  # chunk dedup queries, xorb grants and v2 shards: 404 makes hf_xet fall back


async def _put_xorb(
    hub: HubContext, xorb_hash: str, request: Request, caller: Caller, query: dict
) -> Response:
    _check_token(hub, request)
    if not _HASH.match(xorb_hash):
        raise BadRequest(f"Invalid xorb hash {xorb_hash!r}")
    body = await read_body(request, hub.limits.max_xorb_bytes)
    inserted = await run_in_threadpool(_store_xorb, hub.storage, xorb_hash, body)
    return JSONResponse({"was_inserted": inserted})


def _store_xorb(storage: Storage, xorb_hash: str, body: bytes) -> bool:
    target = storage.xorbs / xorb_hash
    if target.exists():
        return False
    try:
        chunks = xet.decode_xorb(body)  # refuse malformed xorbs now rather than at reconstruction time
    except xet.XetFormatError as err:
        raise BadRequest(f"Invalid xorb {xorb_hash}: {err}") from err
    # The first body stored under a hash is kept forever, so it must really be the content of that hash.
    if xet.xorb_hash(chunks) != xorb_hash:
        raise BadRequest(f"Xorb content does not match its hash {xorb_hash}")
    storage.blobs.write_atomic(body, target)
    return True


async def _put_shard(hub: HubContext, request: Request, caller: Caller, query: dict) -> Response:
    _check_token(hub, request)
    body = await read_body(request, hub.limits.max_shard_bytes)
    await run_in_threadpool(_ingest_shard, hub.storage, body, hub.limits.max_upload_bytes)
    return JSONResponse({"result": 1})


def _ingest_shard(storage: Storage, body: bytes, max_file_bytes: int) -> None:
    """Rebuild every file the shard describes and store it under its sha256 (checked when declared)."""
    try:
        files = xet.parse_shard(body)
    except xet.XetFormatError as err:
        raise BadRequest(f"Invalid shard: {err}") from err

    @functools.lru_cache(maxsize=2)
    def load_xorb(xorb_hash: str) -> list[bytes]:
        path = storage.xorbs / xorb_hash
        if not _HASH.match(xorb_hash) or not path.is_file():
            raise KeyError(xorb_hash)
        return xet.decode_xorb(path.read_bytes())

    for file in files:
        if file.size > max_file_bytes:
            raise BadRequest(f"File of {file.size} bytes exceeds the limit of {max_file_bytes} bytes")
        if file.sha256 and storage.blobs.exists(file.sha256):
            continue
        with storage.blobs.temp_file() as (fh, tmp):
            try:
                sha256, _size = xet.reconstruct(file, load_xorb, fh)
            except xet.XetFormatError as err:
                hint = ""
                if "unknown xorb" in str(err):
                    # hf_xet skips xorbs its local shard cache says this endpoint already has.
                    hint = (
                        " (this server never received that xorb: if its data dir was reset, clear the "
                        "client's Xet cache, $HF_HOME/xet, and upload again)"
                    )
                raise BadRequest(f"Shard file {file.file_hash}: {err}{hint}") from err
            fh.flush()
            storage.blobs.adopt(tmp, sha256)
