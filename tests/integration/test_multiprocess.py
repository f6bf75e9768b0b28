"""Training and evaluation on two processes (``accelerate launch``, gloo DDP on this CPU): they train what
one process accumulating the same micro-batches trains and write one artifact; they evaluate to the very
metric values of one process and publish one record. Both commands run in one launch (each process start
costs seconds of CPU)."""

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

DATA = Path(__file__).parents[1] / "data"
WEIGHTS = "pytorch_lora_weights.safetensors"
SPM = {"concepts": ["red"], "steps": 3, "batch_size": 1, "sampling_steps": 3, "anchors_per_step": 1}
SPM_OPTIONS = ["--concept", "red", "--steps", "3", "--batch-size", "1", "--sampling-steps", "3"]
SPM_OPTIONS += ["--anchors-per-step", "1"]


def launch(*commands: list[str]) -> subprocess.CompletedProcess:
    """``hubkit`` ``commands`` in two processes started once by ``accelerate launch --multi_gpu
    --num_processes 2`` (torchrun under accelerate: two gloo processes on this CPU-only machine, where
    ``--cpu`` would start one without MPI), one torch thread each."""
    accelerate = Path(sys.executable).with_name("accelerate")
    flags = ["--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no"]
    flags += ["--dynamo_backend", "no", "--main_process_port", "0"]
    cmd = [str(accelerate), "launch", *flags, str(DATA / "cli_commands.py"), *map(json.dumps, commands)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HUBKIT_DEBUG": "1"}
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)


@pytest.fixture(scope="module")
def base_repo(hub, tiny_arch_folder) -> str:
    """The tiny random-weight SD 1.x pipeline, with a card, on the test Hub as alice's."""
    api = hub.api("alice")
    api.create_repo("alice/tiny-sd15")
    api.upload_folder(repo_id="alice/tiny-sd15", folder_path=tiny_arch_folder("sd15"))
    card = b"---\nlibrary_name: diffusers\npipeline_tag: text-to-image\n---\n# tiny SD 1.x\n"
    api.upload_file(path_or_fileobj=card, path_in_repo="README.md", repo_id="alice/tiny-sd15")
    return "alice/tiny-sd15"


@pytest.fixture(scope="module")
def launched(hub, base_repo, tmp_path_factory):
    """Two processes: ``hubkit train spm`` (3 steps, 1 x_t per process per step), ``hubkit eval`` of the base
    on the tiny suite, publishing to alice/results, and ``hubkit train rece`` (no gradient training: the main
    process alone); the base's commits before the eval."""
    root = tmp_path_factory.mktemp("two-processes")
    hub_options = ["--endpoint", hub.url, "--token", hub.users["alice"]]
    commits = len(hub.api("alice").list_repo_commits(base_repo))
    train = [
        "train",
        "spm",
        "--base",
        base_repo,
        *SPM_OPTIONS,
        *hub_options,
        "--out",
        str(root / "out" / "spm"),
    ]
    evaluate = [
        "eval",
        base_repo,
        "--suite",
        str(DATA / "tiny-suite.json"),
        "--results-repo",
        "alice/results",
    ]
    evaluate += [*hub_options, "--json", str(root / "record.json")]
    rece = [
        "train",
        "rece",
        "--base",
        base_repo,
        "--concept",
        "red",
        *hub_options,
        "--out",
        str(root / "rece"),
    ]
    done = launch(train, evaluate, rece)
    assert done.returncode == 0, done.stderr[-4000:]
    return root, done.stdout, commits


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each launched process: the single-process run computes the same way
    yield
    torch.set_num_threads(threads)


def test_two_processes_train_what_one_accumulating_their_micro_batches_trains(
    hub, base_repo, launched, tmp_path, one_thread
):
    from hubkit.adapters.spm import SPMConfig

    from hubkit.methods import get_method

    root, stdout, _ = launched
    assert stdout.count("next: hubkit publish") == 2  # the main process reports: SPM, RECE
    assert sorted(p.name for p in (root / "out").iterdir()) == ["spm"]  # no staging left, no checkpoints
    two = load_file(str(root / "out" / "spm" / WEIGHTS))
    facts = json.loads((root / "out" / "spm" / "hubkit.json").read_text())["facts"]
    assert facts["processes"] == 2
    card = (root / "out" / "spm" / "README.md").read_text()
    assert "`accelerate launch --multi_gpu --num_processes 2 -m hubkit.cli train spm --base" in card

    # One process accumulating 2 micro-batches of 1 per step: the two processes' micro-batches.
    config = SPMConfig(**SPM, gradient_accumulation_steps=2)
    hub_options = {"endpoint": hub.url, "token": hub.users["alice"]}
    get_method("spm").train(base_repo, config, tmp_path / "one", progress=False, **hub_options)
    one = load_file(str(tmp_path / "one" / WEIGHTS))
    assert one.keys() == two.keys()
    assert max(float(one[k].abs().max()) for k in one if "lora_B" in k) > 1e-3  # B left its zero init
    for key, value in one.items():
        torch.testing.assert_close(two[key], value, rtol=1e-4, atol=1e-6, msg=key)


def test_two_processes_evaluate_to_the_metrics_of_one_and_publish_one_record(
    hub, base_repo, launched, one_thread
):
    from hubkit.leaderboard.evaluation import evaluate

    root, stdout, commits = launched
    api = hub.api("alice")
    record = json.loads((root / "record.json").read_text())
    revision = record["model"]["revision"]
    one = evaluate(
        base_repo, DATA / "tiny-suite.json", revision=revision, push=False, endpoint=hub.url,
        token=hub.users["alice"], progress=False,
    )  # fmt: skip
    assert record["metrics"] == one["metrics"]  # the same images, judged once: equal, not merely close
    assert record["settings"]["processes"] == 2 and record["settings"]["images"] == one["settings"]["images"]
    assert stdout.count("record published to alice/results") == 1
    assert len(api.list_repo_commits(base_repo)) == commits + 1  # one card write-back
    assert record["card_commit"] == api.model_info(base_repo).sha
    published = [
        f for f in api.list_repo_files("alice/results", repo_type="dataset") if f.startswith("results/")
    ]
    path = f"results/{base_repo}/tiny/{revision}"
    assert sorted(published) == [f"{path}.json", f"{path}.samples.parquet"]


def test_a_method_without_gradient_training_runs_on_the_main_process_alone(launched):
    root, _, _ = launched
    assert sorted(p.name for p in root.iterdir() if p.name.startswith("rece")) == ["rece"]
    facts = json.loads((root / "rece" / "hubkit.json").read_text())["facts"]
    assert "processes" not in facts and facts["command"].startswith("hubkit train rece")
