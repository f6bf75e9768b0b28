"""A method plugin that lives outside hubkit (tests/data/plugins/hubkit-noise-offset: its own distribution,
one entry point) is installed beside hubkit and used through every hubkit command: it appears in ``hubkit
train --help``, trains on the shared loop, publishes, is recognised without its card, evaluates on its own
suite, gets a leaderboard row and its declared plot — with no file of hubkit changed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PLUGIN = Path(__file__).resolve().parents[1] / "data" / "plugins" / "hubkit-noise-offset"
REPO_ROOT = Path(__file__).resolve().parents[2]
HUBKIT_PATHS = ["hubkit", "adapters", "pipelines", "model_cards", "spaces", "pyproject.toml", "setup.py"]

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _git_status() -> str:
    return subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all", "--", *HUBKIT_PATHS],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The plugin installed (not editable) into a folder of its own, put on PYTHONPATH by the commands."""
    tmp = tmp_path_factory.mktemp("plugin")
    source = shutil.copytree(PLUGIN, tmp / "src")  # a build writes build/ and egg-info next to the sources
    site = tmp / "site"
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation"]
    subprocess.run(
        [*pip, "--target", str(site), str(source)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    assert list(site.glob("hubkit_noise_offset-*.dist-info"))
    return site


def test_a_third_party_method_plugin_works_through_every_command(hub, plugin_site: Path, tmp_path: Path):
    from huggingface_hub import HfApi

    from hubkit.world.publish import publish_world

    before = _git_status()
    token = hub.users["alice"]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(plugin_site), os.environ.get("PYTHONPATH", "")]).rstrip(
            os.pathsep
        ),
        "HF_ENDPOINT": hub.url,
        "HF_TOKEN": token,
        "OMP_NUM_THREADS": "1",
        # `leaderboard run` ranks alice's base model too (on shapes-quality): the demo test's cut-down copy
        "HUBKIT_SUITE_PATH": str(PLUGIN.parents[1] / "demo-suites"),
    }

    def hubkit(*args: str) -> subprocess.CompletedProcess:
        done = subprocess.run(
            [sys.executable, "-m", "hubkit", *args],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert done.returncode == 0, f"hubkit {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
        return done

    assert "noise-offset" in hubkit("train", "--help").stdout
    assert "--noise-offset" in hubkit("train", "noise-offset", "--help").stdout

    publish_world(endpoint=hub.url, token=token, namespace="alice", only=["tiny-sd-shapes"])
    out = tmp_path / "noise-offset"
    trained = hubkit(
        "train", "noise-offset", "--base", "alice/tiny-sd-shapes", "--out", str(out), "--steps", "3",
        "--batch-size", "4", "--repo-id", "alice/noise-offset",
    )  # fmt: skip
    assert "noise-offset" in trained.stdout and sorted(p.name for p in out.iterdir()) == [
        "README.md",
        "hubkit.json",
        "pytorch_lora_weights.safetensors",
    ]
    facts = json.loads((out / "hubkit.json").read_text())["facts"]
    assert facts["command"].startswith("hubkit train noise-offset --base alice/tiny-sd-shapes --steps 3")
    assert "hubkit-method:noise-offset" in (out / "README.md").read_text()
    hubkit("publish", str(out), "alice/noise-offset")

    # Published as a third party would, without card or hubkit.json: recognised from the weights' header,
    # read with a range request (the recognising code gets no weights).
    api = HfApi(endpoint=hub.url, token=token)
    api.create_repo("alice/noise-offset-bare")
    api.upload_file(
        path_or_fileobj=out / "pytorch_lora_weights.safetensors",
        path_in_repo="pytorch_lora_weights.safetensors",
        repo_id="alice/noise-offset-bare",
    )
    recognise = (
        "import sys, tempfile; from pathlib import Path; from huggingface_hub import HfApi; "
        "from hubkit.leaderboard.evaluation import fetch_card_files; from hubkit.methods import method_for; "
        f"api = HfApi(endpoint={hub.url!r}, token={token!r}); "
        "print(method_for(fetch_card_files(api, sys.argv[1], None, Path(tempfile.mkdtemp()))).name)"
    )
    for repo, method in [("alice/noise-offset-bare", "noise-offset"), ("alice/noise-offset", "noise-offset")]:
        found = subprocess.run(
            [sys.executable, "-c", recognise, repo], env=env, capture_output=True, text=True, timeout=120
        )
        assert found.stdout.strip() == method, found.stderr

    results = ("--results-repo", "alice/leaderboard-results")
    evaluated = hubkit(
        "eval", "alice/noise-offset", "--suite", "noise-offset-dark", "--json", "record.json", *results
    )
    record = json.loads((tmp_path / "record.json").read_text())
    assert record["model"]["method"] == "noise-offset" and record["suite"]["name"] == "noise-offset-dark"
    assert 0.0 <= record["metrics"]["dark_alignment"] <= 1.0 and record["metrics"]["dark_fd"] > 0
    assert "dark_alignment" in evaluated.stdout

    # The leaderboard finds it among alice's repos (fresh: no re-evaluation) and publishes its row and plot.
    ran = hubkit("leaderboard", "run", *results, "--requests-repo", "alice/leaderboard-requests")
    assert "claimed  alice/noise-offset" not in ran.stdout
    shown = hubkit("leaderboard", "show", "--plots", str(tmp_path / "plots"), "--markdown", *results)
    assert "noise-offset-dark" in shown.stdout and "alice/noise-offset" in shown.stdout
    assert (tmp_path / "plots" / "noise-offset-dark-dark_alignment_vs_fd.png").stat().st_size > 1000

    assert _git_status() == before, "the plugin test changed files of hubkit"
