"""Training and evaluation under ``accelerate launch --num_processes 2 --cpu`` (gloo DDP on this CPU): two
processes train what one process accumulating the same micro-batches trains and write one artifact; two
processes evaluate to the very metric values of one and publish one record."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.xdist_group("multiprocess")]

TINY_SUITE = Path(__file__).parents[1] / "data" / "tiny-suite.json"
WEIGHTS = "pytorch_lora_weights.safetensors"


def launch(*args: str) -> subprocess.CompletedProcess:
    """``accelerate launch --multi_gpu --num_processes 2 -m hubkit.cli ARGS``, one torch thread per process:
    torchrun under accelerate, two gloo processes on this CPU-only machine (``--cpu`` would start one
    without MPI)."""
    accelerate = Path(sys.executable).with_name("accelerate")
    flags = ["--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no"]
    flags += ["--dynamo_backend", "no", "--main_process_port", "0"]
    cmd = [str(accelerate), "launch", *flags, "-m", "hubkit.cli", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HUBKIT_DEBUG": "1"}
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)


@pytest.fixture(scope="module")
def base_repo(hub, tiny_arch_folder) -> str:
    """The tiny random-weight SD 1.x pipeline, on the test Hub as alice's."""
    api = hub.api("alice")
    api.create_repo("alice/tiny-sd15")
    api.upload_folder(repo_id="alice/tiny-sd15", folder_path=tiny_arch_folder("sd15"))
    card = b"---\nlibrary_name: diffusers\npipeline_tag: text-to-image\n---\n# tiny SD 1.x\n"
    api.upload_file(path_or_fileobj=card, path_in_repo="README.md", repo_id="alice/tiny-sd15")
    return "alice/tiny-sd15"


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each launched process: the single-process run computes the same way
    yield
    torch.set_num_threads(threads)


def test_two_processes_train_what_one_accumulating_their_micro_batches_trains(
    hub, base_repo, tmp_path, one_thread
):
    from hubkit.adapters.spm import SPMConfig

    from hubkit.methods import get_method

    hub_options = {"endpoint": hub.url, "token": hub.users["alice"]}
    recipe = {"concepts": ["red"], "steps": 3, "batch_size": 1, "sampling_steps": 3, "anchors_per_step": 1}
    options = ["--concept", "red", "--steps", "3", "--batch-size", "1", "--sampling-steps", "3"]
    options += ["--anchors-per-step", "1", "--endpoint", hub.url, "--token", hub.users["alice"]]
    out = tmp_path / "two"
    two = launch("train", "spm", "--base", base_repo, *options, "--out", str(out / "spm"))
    assert two.returncode == 0, two.stderr[-4000:]
    assert two.stdout.count("next: hubkit publish") == 1  # the main process reports
    assert sorted(p.name for p in out.iterdir()) == ["spm"]  # one folder: no staging left, no checkpoints
    two_weights = load_file(str(out / "spm" / WEIGHTS))
    facts = json.loads((out / "spm" / "hubkit.json").read_text())["facts"]
    card = (out / "spm" / "README.md").read_text()
    assert facts["processes"] == 2
    assert "`accelerate launch --num_processes 2 -m hubkit.cli train spm --base" in card

    # One process, accumulating 2 micro-batches of 1 per step: the two processes' micro-batches.
    config = SPMConfig(**recipe, gradient_accumulation_steps=2)
    get_method("spm").train(base_repo, config, tmp_path / "one", progress=False, **hub_options)
    one_weights = load_file(str(tmp_path / "one" / WEIGHTS))
    assert one_weights.keys() == two_weights.keys()
    ups = [k for k in one_weights if "lora_B" in k]
    assert max(float(one_weights[k].abs().max()) for k in ups) > 1e-3  # trained: B left its zero init
    for key, value in one_weights.items():
        torch.testing.assert_close(two_weights[key], value, rtol=1e-4, atol=1e-6, msg=key)


def test_two_processes_evaluate_to_the_metrics_of_one_and_publish_one_record(
    hub, base_repo, tmp_path, one_thread
):
    from hubkit.leaderboard.evaluation import evaluate

    token = hub.users["alice"]
    repo, api = base_repo, hub.api("alice")
    one = evaluate(repo, TINY_SUITE, push=False, endpoint=hub.url, token=token, progress=False)
    commits = len(api.list_repo_commits(repo))

    hub_options = ["--results-repo", "alice/results", "--endpoint", hub.url, "--token", token]
    two = launch("eval", repo, "--suite", str(TINY_SUITE), *hub_options, "--json", str(tmp_path / "two.json"))
    assert two.returncode == 0, two.stderr[-4000:]
    record = json.loads((tmp_path / "two.json").read_text())
    assert record["metrics"] == one["metrics"]  # the same images, judged once: equal, not merely close
    assert record["settings"]["processes"] == 2 and record["settings"]["images"] == one["settings"]["images"]
    assert two.stdout.count("record published to alice/results") == 1
    assert len(api.list_repo_commits(repo)) == commits + 1  # one card write-back
    assert record["card_commit"] == api.model_info(repo).sha
    records = [
        f for f in api.list_repo_files("alice/results", repo_type="dataset") if f.startswith("results/")
    ]
    revision = one["model"]["revision"]
    assert sorted(records) == [
        f"results/{repo}/tiny/{revision}.json",
        f"results/{repo}/tiny/{revision}.samples.parquet",
    ]
