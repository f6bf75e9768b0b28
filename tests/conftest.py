"""Shared fixtures: an isolated Hugging Face home per test process and real ``hubkit serve`` subprocesses."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

# Must happen before huggingface_hub is imported anywhere: its cache paths are read at import time.
_HF_HOME = tempfile.mkdtemp(prefix="hubkit-test-hfhome-")
os.environ["HF_HOME"] = _HF_HOME
os.environ["HUBKIT_HOME"] = tempfile.mkdtemp(prefix="hubkit-test-home-")
os.environ["HUBKIT_PORT"] = "0"  # replaced per process below: never the user's own embedded Hub
os.environ.pop("HF_ENDPOINT", None)
os.environ.pop("HF_TOKEN", None)
os.environ.pop("HF_HUB_OFFLINE", None)
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["DISABLE_SAFETENSORS_CONVERSION"] = "1"
os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
os.environ.setdefault("SDNQ_USE_TORCH_COMPILE", "0")  # sdnq test-compiles its kernels at import (~30 s)
# xdist workers share the cores: give each (and the subprocesses it starts) its share of threads, since
# oversubscribed OpenMP threads run several times slower than one thread per core.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1:
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // _WORKERS)))

USERS = {"alice": "alice-secret-token", "bob": "bob-secret-token"}


def package_folders() -> dict[str, str]:
    """Repo folder -> import name it ships as, from pyproject.toml's [tool.setuptools.package-dir]."""
    import tomllib

    pyproject = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    return {folder: package for package, folder in pyproject["tool"]["setuptools"]["package-dir"].items()}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


os.environ["HUBKIT_PORT"] = str(free_port())


@pytest.fixture(scope="session", autouse=True)
def _stop_embedded_hub() -> Iterator[None]:
    """Code under test may start the embedded Hub on demand; it must not outlive the test session."""
    yield
    pid_file = Path(os.environ["HUBKIT_HOME"]) / "hub" / "server.pid"
    if pid_file.exists():
        os.kill(int(pid_file.read_text()), signal.SIGTERM)


class HubServer:
    """A ``hubkit serve`` subprocess on a free port over ``data_dir``; can be stopped, killed, restarted."""

    def __init__(self, data_dir: Path, users: dict[str, str] | None = None, extra_args: tuple[str, ...] = ()):
        self.data_dir = Path(data_dir)
        self.users = dict(USERS if users is None else users)
        self.extra_args = extra_args
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.log = self.data_dir.parent / f"server-{self.port}.log"

    def start(self) -> HubServer:
        cmd = [
            sys.executable,
            "-m",
            "hubkit",
            "serve",
            "--port",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
        ]
        for name, token in self.users.items():
            cmd += ["--user", f"{name}:{token}"]
        cmd += list(self.extra_args)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/api/version", timeout=1):
                    return self
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"hubkit serve did not start:\n{self.log.read_text()}") from None
                time.sleep(0.1)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill9(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def restart(self) -> HubServer:
        self.stop()
        return self.start()

    def api(self, user: str | None):
        from huggingface_hub import HfApi

        return HfApi(endpoint=self.url, token=self.users[user] if user else False)


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubServer]:
    """One server per test module (alice and bob as users)."""
    server = HubServer(tmp_path_factory.mktemp("hub") / "data").start()
    yield server
    server.stop()


@pytest.fixture
def fresh_hub(tmp_path: Path) -> Iterator[HubServer]:
    """A server of its own for tests that restart or kill it."""
    server = HubServer(tmp_path / "data").start()
    yield server
    server.kill9()


@pytest.fixture(scope="session")
def tiny_arch_folder(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """``tiny_arch_folder(arch)``: the folder of the tiny random-weight pipeline of ``arch`` (``sd15``,
    ``sd21``, ``sdxl``: :mod:`hubkit.architectures`), saved once per session on first use; the stock pipeline
    class's ``from_pretrained`` loads it. Treat it as read-only: every test shares it."""
    from hubkit.architectures import save_tiny_pipeline

    root = tmp_path_factory.mktemp("tiny-architectures")

    def folder(arch: str) -> Path:
        path = root / arch
        if not (path / "model_index.json").is_file():
            save_tiny_pipeline(arch, path)
        return path

    return folder


@pytest.fixture(params=["xet", "lfs"])
def transfer(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Upload protocol: the client's default (Xet) or classic LFS, as with ``HF_HUB_DISABLE_XET=1``."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", request.param == "lfs")
    return request.param


_counter = iter(range(1_000_000))


@pytest.fixture
def repo_name(request: pytest.FixtureRequest) -> str:
    """A repo name unique within the module's server."""
    base = re.sub(r"-{2,}", "-", "".join(c if c.isalnum() else "-" for c in request.node.name))[:60].strip(
        "-"
    )
    return f"{base}-{next(_counter)}"


SPACES_DIR = Path(__file__).resolve().parents[1] / "spaces"


def start_space(
    tmp: Path, env: dict[str, str], space: str = "leaderboard"
) -> tuple[subprocess.Popen, str, Path]:
    """Start ``spaces/<space>/app.py`` as a subprocess; return it, its URL and its log once it answers."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = tmp / f"space-{port}.log"
    full_env = {
        **os.environ,
        "GRADIO_SERVER_NAME": "127.0.0.1",
        "GRADIO_SERVER_PORT": str(port),
        "GRADIO_ANALYTICS_ENABLED": "False",
        "GRADIO_TEMP_DIR": str(tmp / "gradio"),
        "HF_HOME": str(tmp / "hf-home"),
        **env,
    }
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, str(SPACES_DIR / space / "app.py")],
            env=full_env,
            cwd=tmp,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 90
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return proc, url, log
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                stop_space(proc)
                pytest.fail(f"the {space} Space did not start:\n{log.read_text()[-4000:]}")
            time.sleep(0.2)


@contextmanager
def running_space(tmp: Path, env: dict[str, str], space: str) -> Iterator[tuple[str, Path]]:
    """``start_space`` for the length of a ``with`` block: the Space's URL and log; stopped on the way out."""
    proc, url, log = start_space(tmp, env, space=space)
    try:
        yield url, log
    finally:
        stop_space(proc)


def stop_space(proc: subprocess.Popen) -> None:
    """Stop a background server process (a Space, a Hub): terminate, then kill after 10 s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def tiny_spm(pipe, concepts: list[str], boost: float, steps: int = 2, **config) -> tuple[dict, object]:
    """An SPM trained a couple of steps on ``pipe``: (weights, config). A few steps barely move B away from
    zero, so B is scaled by ``boost`` to make the SPM's effect visible in outputs."""
    from hubkit.adapters.spm import SPMConfig, train_spm

    cfg = SPMConfig(
        concepts=list(concepts), steps=steps, batch_size=2, sampling_steps=4, anchors_per_step=1, **config
    )
    result = train_spm(pipe, cfg, progress=False)
    weights = {p: (d, u * boost, a) for p, (d, u, a) in result.network.adapter_weights("spm").items()}
    result.network.detach_hooks()
    return weights, cfg


@contextmanager
def alice_base_model(hub) -> Iterator[tuple[str, object]]:
    """alice's base model (tiny-sd-shapes) published on the test Hub: its repo id and the pipeline of its
    weights, for training adapters on it with one torch thread."""
    import torch

    from hubkit.world.base_model import assemble_pipeline
    from hubkit.world.publish import publish_world

    publish_world(endpoint=hub.url, token=hub.users["alice"], namespace="alice", only=["tiny-sd-shapes"])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a shared 2-core machine: one thread is far faster than two fighting
    try:
        yield "alice/tiny-sd-shapes", assemble_pipeline()  # the weights published as tiny-sd-shapes
    finally:
        torch.set_num_threads(threads)


def publish_tiny_spms(hub, tmp: Path, spms: dict[str, str], boost: float, extra: dict | None = None) -> None:
    """alice's base model (tiny-sd-shapes) and a tiny SPM per ``{repo: concept}`` on the test Hub, each with
    its card; ``extra`` maps more repo ids to a function of the red SPM's (weights, config)."""
    from hubkit.adapters.spm import save_spm
    from hubkit.adapters.spm.card import spm_card

    from hubkit.hub import publish

    token = hub.users["alice"]
    with alice_base_model(hub) as (base, pipe):
        trained = {repo: tiny_spm(pipe, [concept], boost) for repo, concept in spms.items()}
    first = next(iter(trained.values()))
    trained.update({repo: make(*first) for repo, make in (extra or {}).items()})
    for repo, (weights, config) in trained.items():
        folder = tmp / repo.split("/")[1]
        save_spm(folder, weights, config, {"base_model": base})
        spm_card(config, base, repo).save(str(folder / "README.md"))
        publish(folder, repo, endpoint=hub.url, token=token)


def publish_tiny_lcm_lora(
    hub, tmp: Path, repo: str, extra: dict[str, Callable[[Path], None]] | None = None
) -> str:
    """alice's base model and an LCM-LoRA distilled from it in two steps, published as ``repo`` with its card;
    ``extra`` maps more repo ids to a function that alters (in place) a copy of the LoRA's folder before it is
    published there. Returns the base model's repo id."""
    from hubkit.adapters.lcm_lora import LCMLoRAConfig, distill_lcm_lora, remove_lora, save_lcm_lora
    from hubkit.adapters.lcm_lora.card import lcm_lora_card

    from hubkit.hub import publish

    config = LCMLoRAConfig(steps=2, batch_size=4, rank=4, alpha=4)
    alter = {repo: None, **(extra or {})}
    with alice_base_model(hub) as (base, pipe):
        distilled = distill_lcm_lora(pipe, config, progress=False)
        for repo_id in alter:
            save_lcm_lora(tmp / repo_id, distilled.unet, config, "lcm", {"base_model": base})
        remove_lora(distilled.unet)
    for repo_id, change in alter.items():
        folder = tmp / repo_id
        lcm_lora_card(config, base, repo_id).save(str(folder / "README.md"))
        if change is not None:
            change(folder)
        publish(folder, repo_id, endpoint=hub.url, token=hub.users["alice"])
    return base


def publish_tiny_quantized(
    hub, tmp: Path, repos: dict[str, str], extra: dict[str, Callable[[Path], None]] | None = None
) -> str:
    """alice's base model and a quantized UNet of it per ``{repo: weights}`` (``int8`` / ``int4``, int8
    activations calibrated on two prompts at 4 steps; int4 without the measured int8 layers, whose per-layer
    replays test_quantize_hub covers), published with their cards; ``extra`` maps more repo
    ids to a function that alters (in place) a copy of the first one's folder. Returns the base's repo id."""
    import shutil

    from hubkit.adapters.quantize.config import QuantizeConfig

    from hubkit.hub import publish
    from hubkit.methods import get_method

    token = hub.users["alice"]
    folders = {}
    with alice_base_model(hub) as (base, pipe):
        for repo, weights in repos.items():
            config = QuantizeConfig(
                weights=weights,
                prompts=["a red circle", "a blue square"],
                calibration_steps=4,
                timestep_groups=2,
                int8_budget=0.0,
            )
            folders[repo] = tmp / repo.split("/")[1]
            get_method("quantize").train(
                base, config, folders[repo], pipe=pipe, repo_id=repo, force=True, progress=False,
                endpoint=hub.url, token=token,
            )  # fmt: skip
    first = next(iter(folders.values()))
    for repo, change in (extra or {}).items():
        folders[repo] = tmp / repo.split("/")[1]
        shutil.copytree(first, folders[repo])
        change(folders[repo])
    for repo, folder in folders.items():
        publish(folder, repo, endpoint=hub.url, token=token)
    return base


def third_party_imports(app: Path) -> set[str]:
    """The top-level packages a Space's ``app.py`` imports that do not come with Python."""
    import ast

    found: set[str] = set()
    for node in ast.walk(ast.parse(app.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module.partition(".")[0])
        elif isinstance(node, ast.Import):
            found.update(alias.name.partition(".")[0] for alias in node.names)
    return found - set(sys.stdlib_module_names) - {"__future__"}


CHROMIUM = Path("/usr/bin/chromium")
"""Playwright cannot download browsers here: the browser tests drive the Debian package's Chromium."""


@contextmanager
def chromium_page(timeout_ms: int, width: int = 1400, height: int = 1100) -> Iterator[object]:
    """A Playwright page of a headless system Chromium, every wait bounded by ``timeout_ms``."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: install the Debian package 'chromium' (make test installs it)")
    from playwright.sync_api import sync_playwright

    flags = "--headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-sync"
    flags += " --disable-background-networking --disable-component-update"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=flags.split())
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.set_default_timeout(timeout_ms)
            yield page
        finally:
            browser.close()
