"""The embedded Hub-compatible server (``hubkit serve``)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

DEFAULT_PORT = 8077
DEFAULT_USER = "hubkit"
TOKEN_FILE = "token"
PID_FILE = "server.pid"


def hubkit_home() -> Path:
    return Path(os.environ.get("HUBKIT_HOME") or Path.home() / ".cache" / "hubkit")


def default_port() -> int:
    """``$HUBKIT_PORT`` or 8077: where the embedded Hub listens when nobody says otherwise."""
    value = os.environ.get("HUBKIT_PORT") or str(DEFAULT_PORT)
    try:
        port = int(value)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise ValueError(f"HUBKIT_PORT must be a port number (0-65535), got {value!r}")
    return port


def default_data_dir() -> Path:
    return hubkit_home() / "hub"


def parse_user(spec: str) -> tuple[str, str]:
    """One ``NAME:TOKEN`` string to ``(name, token)``; a ``ValueError`` naming the problem otherwise."""
    from hubkit.server.names import check_repo_name
    from hubkit.server.storage import BadRequest

    name, sep, token = spec.partition(":")
    if not sep or not name or len(token) < 8:
        raise ValueError(f"expected NAME:TOKEN with a token of at least 8 characters, got {spec!r}")
    try:
        return check_repo_name(name, "user name"), token
    except BadRequest as err:
        raise ValueError(str(err)) from err


def parse_users(specs: list[str]) -> dict[str, str]:
    """``NAME:TOKEN`` strings to a mapping; a clear error for anything else."""
    users = {}
    for spec in specs:
        try:
            name, token = parse_user(spec)
        except ValueError as err:
            raise ValueError(f"--user: {err}") from None
        users[name] = token
    return users


def default_user_token(data_dir: Path) -> tuple[str, str, Path]:
    """The default user's token, created once (random, file mode 0600) and reused after restarts."""
    path = Path(data_dir) / TOKEN_FILE
    if path.exists():
        return DEFAULT_USER, path.read_text().strip(), path
    Path(data_dir).mkdir(parents=True, exist_ok=True)
    token = "hk_" + secrets.token_urlsafe(24)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with open(fd, "w") as fh:
        fh.write(token + "\n")
    os.replace(tmp, path)
    return DEFAULT_USER, token, path


def run_server(
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    data_dir: Path | None = None,
    users: list[str] | None = None,
    max_upload_bytes: int | None = None,
) -> None:
    """Serve until interrupted; prints the URL and, for the default user, where its token is stored."""
    import uvicorn

    from hubkit.server.app import create_app
    from hubkit.server.context import Limits

    data_dir = Path(data_dir or default_data_dir())
    user_map = parse_users(users or [])
    if not user_map:
        name, token, path = default_user_token(data_dir)
        user_map = {name: token}
        print(f"user {name!r}: token stored in {path} (mode 0600)", flush=True)
    limits = Limits(max_upload_bytes=max_upload_bytes) if max_upload_bytes else Limits()
    app = create_app(data_dir, limits=limits, users=user_map)
    print(f"hubkit Hub serving http://{host}:{port} (data in {data_dir})", flush=True)
    pid_file = data_dir / PID_FILE
    pid_file.write_text(str(os.getpid()))
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning", timeout_keep_alive=30)
    finally:
        pid_file.unlink(missing_ok=True)
