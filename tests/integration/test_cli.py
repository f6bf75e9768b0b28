"""The ``hubkit`` command as a user runs it: serve, publish, pull, card check, and ``make demo``'s module."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import HubServer, free_port
from PIL import Image

pytestmark = pytest.mark.integration

VALID_CARD = """---
license: apache-2.0
library_name: diffusers
pipeline_tag: text-to-image
base_model: hubkit/tiny-sd-shapes
base_model_relation: adapter
tags:
- hubkit
- hubkit-method:spm
- hubkit-kind:adapter
- lora
- base_model:adapter:hubkit/tiny-sd-shapes
---
# An adapter

Load it with `pipe.load_lora_weights("alice/adapter")`.
"""


def hubkit(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "hubkit", *args], capture_output=True, text=True, env=full_env, timeout=300
    )


@pytest.fixture
def artifact(tmp_path: Path) -> Path:
    folder = tmp_path / "adapter"
    folder.mkdir()
    (folder / "pytorch_lora_weights.safetensors").write_bytes(os.urandom(1024))
    (folder / "README.md").write_text(VALID_CARD)
    return folder


def test_version_and_help():
    out = hubkit("--version")
    assert out.returncode == 0 and out.stdout.strip().startswith("hubkit ")
    help_text = hubkit("--help").stdout
    for command in ("serve", "publish", "pull", "card"):
        assert command in help_text


def test_the_command_and_the_server_start_without_torch():
    """``hubkit serve`` / ``publish`` / ``--help`` import no ML stack: every Hub start and CLI call would pay
    seconds for it. ``hubkit train``'s commands (the methods' configs) are built when that group is used."""
    script = (
        "import sys; from typer.main import get_command; import hubkit.cli, hubkit.server.app; "
        "heavy = sorted(m for m in ('torch', 'peft', 'transformers', 'diffusers') if m in sys.modules); "
        "group = get_command(hubkit.cli.app); ctx = group.context_class(group); "
        "train = group.get_command(ctx, 'train'); print(heavy, 'peft' in sys.modules, end=' '); "
        "print(sorted(train.list_commands(train.context_class(train)))[:2], 'peft' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "[] False ['lcm-lora', 'lora-finetune'] True", out.stderr


def test_serve_creates_default_user_token(tmp_path: Path):
    server = HubServer(tmp_path / "data", users={}).start()
    try:
        token_file = tmp_path / "data" / "token"
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        token = token_file.read_text().strip()
        assert str(token_file) in server.log.read_text()
        from huggingface_hub import HfApi

        assert HfApi(endpoint=server.url, token=token).whoami()["name"] == "hubkit"
        server.restart()  # the same token keeps working after a restart
        assert token_file.read_text().strip() == token
        assert HfApi(endpoint=server.url, token=token).whoami()["name"] == "hubkit"
    finally:
        server.stop()


@pytest.mark.parametrize("disable_xet", ["", "1"], ids=["xet", "HF_HUB_DISABLE_XET=1"])
def test_publish_pull_and_card_check(hub, artifact: Path, disable_xet: str):
    token = hub.users["alice"]
    repo_id = f"alice/adapter-{'lfs' if disable_xet else 'xet'}"
    xorbs_before = len(list((hub.data_dir / "xorbs").iterdir()))
    env = {"HF_HUB_DISABLE_XET": disable_xet}
    out = hubkit("publish", str(artifact), repo_id, "--endpoint", hub.url, "--token", token, env=env)
    assert out.returncode == 0, out.stderr
    assert f"published {repo_id}" in out.stdout
    # The weights went through the protocol the environment asked for.
    assert (len(list((hub.data_dir / "xorbs").iterdir())) > xorbs_before) == (not disable_xet)

    out = hubkit("pull", repo_id, "--endpoint", hub.url, "--token", token, env=env)
    assert out.returncode == 0, out.stderr
    local = Path(out.stdout.strip().splitlines()[-1])
    assert (local / "pytorch_lora_weights.safetensors").read_bytes() == (
        artifact / "pytorch_lora_weights.safetensors"
    ).read_bytes()

    out = hubkit("card", "check", repo_id, "--endpoint", hub.url, "--token", token)
    assert out.returncode == 0, out.stdout + out.stderr


def test_publish_refuses_invalid_card_and_names_every_problem(hub, artifact: Path):
    (artifact / "README.md").write_text("---\nlicense: apache-2.0\n---\n# no metadata\n")
    out = hubkit(
        "publish", str(artifact), "alice/broken", "--endpoint", hub.url, "--token", hub.users["alice"]
    )
    assert out.returncode == 1
    for missing in ("library_name", "pipeline_tag", "hubkit"):
        assert missing in out.stderr
    assert not hub.api("alice").repo_exists("alice/broken")  # nothing was created


def test_publish_errors_are_clear(hub, artifact: Path):
    no_token = hubkit("publish", str(artifact), "alice/x", "--endpoint", hub.url, env={"HF_TOKEN": ""})
    assert no_token.returncode == 1
    assert "token" in no_token.stderr.lower()

    bad = hubkit("publish", str(artifact), "alice/x", "--endpoint", hub.url, "--token", "wrong-token")
    assert bad.returncode == 1 and "rejected" in bad.stderr

    foreign = hubkit("publish", str(artifact), "alice/x", "--endpoint", hub.url, "--token", hub.users["bob"])
    assert foreign.returncode == 1 and "Not allowed" in foreign.stderr

    missing = hubkit("pull", "alice/does-not-exist", "--endpoint", hub.url, "--token", hub.users["alice"])
    assert missing.returncode == 1 and "No such repo" in missing.stderr


@pytest.mark.slow
@pytest.mark.timeout(2400)  # two demo runs; the first trains and evaluates everything on one core
def test_demo_runs_against_its_own_embedded_hub(tmp_path: Path):
    import urllib.request

    from huggingface_hub import HfApi

    port, space_port = free_port(), free_port()
    env = {
        "HUBKIT_HOME": str(tmp_path / "home"),
        "HUBKIT_PORT": str(port),
        "HUBKIT_SPACE_PORT": str(space_port),
        "HF_HOME": str(tmp_path / "hf"),
        "HF_ENDPOINT": "",
        "HF_TOKEN": "",
        # Smoke-run training where a method ships no demo artifact (the shipped ones are published as is).
        "HUBKIT_DEMO_STEPS": "3",
        # One method exercises the generic flow (publish or reuse, evaluate beside the base, plots, Space);
        # every other method's artifacts are tested end to end in its own *_hub test. Each method added here
        # costs `make test` time on one core (this test was its critical path: 800 s on the shipped suites,
        # 145 s on the cut-down ones below).
        # RECE: its artifact is computed in seconds and ranked on three suites (quality, erasure, attack).
        "HUBKIT_DEMO_METHODS": "rece",
        # The demo's suites cut down (3 steps, one seed, few pairs, attack budgets of one step), same names:
        # the flow is under test here, the shipped suites' numbers in the benches and the *_hub tests.
        "HUBKIT_SUITE_PATH": str(Path(__file__).resolve().parents[1] / "data" / "demo-suites"),
    }
    env = {k: v for k, v in {**os.environ, **env}.items() if v != ""}
    run = {"capture_output": True, "text": True, "env": env, "timeout": 1500, "cwd": tmp_path}
    out = subprocess.run([sys.executable, "-m", "hubkit.demo"], **run)
    pid_files = [tmp_path / "home" / "hub" / "server.pid", tmp_path / "home" / "leaderboard-space.pid"]
    try:
        assert out.returncode == 0, out.stdout + out.stderr
        assert "export HF_ENDPOINT=" in out.stdout
        grid = Image.open(tmp_path / ".demo" / "tiny-sd-shapes-grid.png")
        assert grid.width > 4 * 96 and grid.height >= 8 * 96  # 8 prompts × 4 seeds, upscaled 3×
        # The leaderboard: the base model evaluated (its baseline row), the table printed, the Space serving.
        assert "finished hubkit/tiny-sd-shapes" in out.stdout and "shapes-quality (v1)" in out.stdout
        # RECE: computed, published, evaluated on quality, erasing red and attacks, beside the base.
        assert "Training hubkit/rece-red" in out.stdout and "RECE erasing red" in out.stdout
        assert "Published hubkit/rece-red" in out.stdout and "finished hubkit/rece-red" in out.stdout
        for suite in ("shapes-erasure", "shapes-attack"):
            assert f"Baseline: hubkit/tiny-sd-shapes on {suite}_concept-red" in out.stdout
        assert "hubkit/spm-red" not in out.stdout  # HUBKIT_DEMO_METHODS leaves the others out
        for plot in ("shapes-erasure*erasure_tradeoff.png", "shapes-attack*robustness_tradeoff.png"):
            plots = list((tmp_path / ".demo" / "plots").glob(plot))
            assert plots and all(p.stat().st_size > 1000 for p in plots), plot
        space_url = f"http://127.0.0.1:{space_port}/"
        assert space_url in out.stdout
        with urllib.request.urlopen(space_url, timeout=10) as page:
            assert page.status == 200
        api = HfApi(endpoint=f"http://127.0.0.1:{port}")
        repos = ["hubkit/shapes-judge", "hubkit/tiny-sd-shapes"]
        commits = {r: len(api.list_repo_commits(r)) for r in repos}
        assert api.model_info("hubkit/tiny-sd-shapes").card_data.eval_results  # written back by the eval
        # A second run reuses the Hub and the fresh results: nothing published, nothing evaluated again.
        again = subprocess.run([sys.executable, "-m", "hubkit.demo"], **run)
        assert again.returncode == 0, again.stdout + again.stderr
        assert "queued   hubkit/" not in again.stdout and "claimed  hubkit/" not in again.stdout
        assert "hubkit/rece-red is on the Hub: reused" in again.stdout
        assert "shapes-quality (v1)" in again.stdout
        assert {r: len(api.list_repo_commits(r)) for r in repos} == commits
    finally:
        for pid_file in pid_files:
            if pid_file.exists():
                os.kill(int(pid_file.read_text()), 15)


def test_embedded_hub_refuses_a_server_of_another_data_dir(hub, tmp_path: Path):
    from hubkit.hub import HubError, ensure_embedded_hub

    with pytest.raises(HubError, match="does not serve"):
        ensure_embedded_hub(port=hub.port, data_dir=tmp_path / "elsewhere")
    found = ensure_embedded_hub(port=hub.port, data_dir=hub.data_dir)
    assert found.url == hub.url and found.embedded
