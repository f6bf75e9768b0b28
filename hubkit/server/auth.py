"""Tokens: who a request is, what it may read and write, and self-authorizing upload URLs."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from hubkit.server.storage import Repo, RepoNotFound, Storage, StorageError


class Unauthorized(StorageError):
    status = 401


class Forbidden(StorageError):
    status = 403


@dataclass(frozen=True)
class Caller:
    """The authenticated user (``None`` for anonymous requests)."""

    user: str | None

    def can_read(self, repo: Repo) -> bool:
        return not repo.private or self.user == repo.namespace

    def require_read(self, repo: Repo) -> None:
        # Private repos are indistinguishable from missing ones to everybody else, as on the Hub.
        if not self.can_read(repo):
            raise RepoNotFound(f"Repository Not Found for {repo.type}: {repo.repo_id}")

    def require_user(self) -> str:
        if self.user is None:
            raise Unauthorized("Authorization header with a valid token is required to write")
        return self.user

    def require_write(self, repo: Repo) -> str:
        self.require_read(repo)
        return self.require_namespace(repo.namespace)

    def require_contribute(self, repo: Repo, create_pr: bool) -> str:
        """Write access, or, for a pull request, any signed-in user who can read the repo (community PRs)."""
        if not create_pr:
            return self.require_write(repo)
        self.require_read(repo)
        return self.require_user()

    def require_namespace(self, namespace: str) -> str:
        user = self.require_user()
        if user != namespace:
            raise Forbidden(
                f"You don't have the rights to write to namespace {namespace!r} (you are {user!r})"
            )
        return user


def caller_from_header(storage: Storage, authorization: str | None) -> Caller:
    """Anonymous without a header; 401 for a malformed or unknown token (never silently anonymous)."""
    if not authorization:
        return Caller(None)
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Invalid credentials in Authorization header")
    user = storage.user_for_token(token.strip())
    if user is None:
        raise Unauthorized("Invalid credentials in Authorization header")
    return Caller(user)


class Signer:
    """HMAC-signed, expiring capabilities: LFS upload URLs (sent without auth) and Xet CAS tokens."""

    def __init__(self, secret: bytes | None = None):
        self.secret = secret or secrets.token_bytes(32)

    def sign(self, *fields: str, ttl: int = 3600) -> str:
        exp = str(int(time.time()) + ttl)
        mac = hmac.new(self.secret, "\n".join((*fields, exp)).encode(), hashlib.sha256).hexdigest()
        return f"{exp}.{mac}"

    def verify(self, signature: str, *fields: str) -> bool:
        exp, _, mac = signature.partition(".")
        if not exp.isdigit() or int(exp) < time.time():
            return False
        expected = hmac.new(self.secret, "\n".join((*fields, exp)).encode(), hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, mac)

    @staticmethod
    def expiry(signature: str) -> int:
        return int(signature.partition(".")[0])
