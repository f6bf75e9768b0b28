"""What the route modules share with the Hub app: its request size limits and the context handlers see.

``app.py`` builds the app and imports the route modules (``xet_routes``); a route module needs only the
small surface described here, so it imports this module and never ``app.py`` (no import circle).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from starlette.requests import Request

from hubkit.server.auth import Signer
from hubkit.server.storage import Repo, Storage

__all__ = ["HubContext", "Limits"]


@dataclass(frozen=True)
class Limits:
    """Request size limits; each is a whole request body in bytes."""

    max_upload_bytes: int = 50 << 30  # one LFS object
    max_commit_bytes: int = 1 << 30  # NDJSON commit with inline (base64) files
    max_json_bytes: int = 16 << 20  # other JSON bodies
    max_xorb_bytes: int = 128 << 20  # hf_xet caps xorbs at 64 MiB
    max_shard_bytes: int = 64 << 20


class HubContext(Protocol):
    """What a route handler may use of the Hub app (``app.HubApp`` provides it)."""

    storage: Storage
    signer: Signer
    limits: Limits

    def base_url(self, request: Request) -> str:
        """The server's URL as the client addressed it, without a trailing slash."""
        ...

    def repo_url(self, request: Request, repo: Repo) -> str:
        """The repo's web URL (``{base}/datasets/ns/name`` for a dataset), as the Hub returns it."""
        ...
