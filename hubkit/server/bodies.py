"""Reading request bodies: size limits enforced while streaming, JSON parsed into clean 400s."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request

from hubkit.server.storage import BadRequest, StorageError


class PayloadTooLarge(StorageError):
    status = 413


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it exceeds ``limit`` (before reading it all)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"Request body of {declared} bytes exceeds the limit of {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"Request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_json(data: bytes, what: str = "Request body") -> Any:
    """``data`` as JSON, or a 400 naming ``what`` (bad JSON or UTF-8, too deep, an over-long integer)."""
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as err:
        raise BadRequest(f"{what} is not valid JSON: {err}") from err


async def read_json(request: Request, limit: int) -> Any:
    """The JSON body (``{}`` when empty), within ``limit`` bytes."""
    body = await read_body(request, limit)
    return parse_json(body) if body else {}
