"""Which Hub to talk to: ``--endpoint``, else ``$HF_ENDPOINT``, else the embedded Hub (started on demand)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from hubkit.server import PID_FILE, default_data_dir, default_port, default_user_token


class HubError(RuntimeError):
    """A Hub operation failed; the message says what to do about it."""


@dataclass(frozen=True)
class Endpoint:
    url: str
    token: str | None  # the embedded Hub's default token, when hubkit started or found it
    embedded: bool


def is_hubkit_server(url: str, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/api/version", timeout=timeout) as resp:
            return json.load(resp).get("server") == "hubkit"
    except (OSError, ValueError, urllib.error.URLError):
        return False


def ensure_embedded_hub(
    port: int | None = None, data_dir: Path | None = None, timeout: float = 60.0
) -> Endpoint:
    """The embedded Hub on 127.0.0.1:``port`` ($HUBKIT_PORT, 8077), started in the background if needed."""
    port = port or default_port()
    data_dir = Path(data_dir or default_data_dir())
    url = f"http://127.0.0.1:{port}"
    if not is_hubkit_server(url):
        data_dir.mkdir(parents=True, exist_ok=True)
        # The child gets its own copy of the log's descriptor; ours is closed right after the start.
        with open(data_dir.parent / "server.log", "ab") as log:
            subprocess.Popen(
                [sys.executable, "-m", "hubkit", "serve", "--port", str(port), "--data-dir", str(data_dir)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while not is_hubkit_server(url):
            if time.monotonic() > deadline:
                raise HubError(
                    f"The embedded Hub did not start on port {port}; see {data_dir.parent / 'server.log'}"
                )
            time.sleep(0.2)
    if not _serves(data_dir):
        raise HubError(
            f"Another hubkit Hub already listens on port {port} but does not serve {data_dir}; stop it, or "
            "choose another port with HUBKIT_PORT (or the data dir with HUBKIT_HOME)."
        )
    token = default_user_token(data_dir)[1] if (data_dir / "token").exists() else None
    return Endpoint(url, token, embedded=True)


def _serves(data_dir: Path) -> bool:
    """Whether a live ``hubkit serve`` process owns ``data_dir`` (it writes its pid there while it runs)."""
    try:
        pid = int((data_dir / PID_FILE).read_text())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return False
    return True


def resolve_endpoint(endpoint: str | None = None) -> Endpoint:
    """The endpoint by precedence: argument, ``HF_ENDPOINT``, embedded Hub."""
    if endpoint:
        return Endpoint(endpoint.rstrip("/"), None, embedded=False)
    if os.environ.get("HF_ENDPOINT"):
        return Endpoint(os.environ["HF_ENDPOINT"].rstrip("/"), None, embedded=False)
    return ensure_embedded_hub()


def resolve_token(token: str | None, endpoint: Endpoint) -> str | None:
    """The token by precedence: argument, ``HF_TOKEN`` / stored login, the embedded Hub's default token."""
    if token:
        return token
    from huggingface_hub import get_token

    return get_token() or endpoint.token
