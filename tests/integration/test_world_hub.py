"""The reference world through the Hub: published with cards, idempotently, and loaded by stock code."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from hubkit.cards import check_card_source

pytestmark = [pytest.mark.integration, pytest.mark.slow]

LOAD_AS_A_USER = r"""
import json, sys
import numpy as np, torch
from datasets import load_dataset
from diffusers import StableDiffusionPipeline
from hubkit.world.judge import ShapesJudge

ns = sys.argv[1]
judge = ShapesJudge.from_pretrained(f"{ns}/shapes-judge")
heldout = load_dataset(f"{ns}/shapes", split="heldout")
pipe = StableDiffusionPipeline.from_pretrained(f"{ns}/tiny-sd-shapes")
pipe.set_progress_bar_config(disable=True)
images = pipe(["a red circle on a white background"] * 2, num_inference_steps=10,
              generator=torch.Generator().manual_seed(0)).images
real = judge.predict([row["image"] for row in heldout.select(range(64))])
names = heldout.features["shape"].names
truth = [names[i] for i in heldout.select(range(64))["shape"]]
print(json.dumps({
    "n_heldout": heldout.num_rows,
    "all_held_out": all(heldout["held_out"]),
    "judge_agrees": float(np.mean([p == t for p, t in zip(real["shape"], truth)])),
    "image_size": list(images[0].size),
    "scheduler": type(pipe.scheduler).__name__,
}))
"""


def test_world_publish_is_idempotent_and_loads_with_stock_code(hub, tmp_path):
    from hubkit.world.publish import publish_world

    token = hub.users["alice"]
    first = publish_world(endpoint=hub.url, token=token, namespace="alice")
    assert [r.repo_id for r in first] == ["alice/shapes", "alice/shapes-judge", "alice/tiny-sd-shapes"]
    api = hub.api("alice")
    commits = {r.repo_id: len(api.list_repo_commits(r.repo_id, repo_type=r.repo_type)) for r in first}

    second = publish_world(endpoint=hub.url, token=token, namespace="alice")
    assert [r.commit for r in second] == [r.commit for r in first]  # nothing changed
    assert commits == {
        r.repo_id: len(api.list_repo_commits(r.repo_id, repo_type=r.repo_type)) for r in second
    }

    for repo in first:
        problems = check_card_source(repo.repo_id, repo_type=repo.repo_type, endpoint=hub.url, token=token)
        assert problems == [], (repo.repo_id, problems)
    files = set(api.list_repo_files("alice/tiny-sd-shapes"))
    assert {
        "model_index.json",
        "unet/config.json",
        "vae/config.json",
        "text_encoder/config.json",
        "tokenizer/tokenizer_config.json",
        "scheduler/scheduler_config.json",
        "README.md",
    } <= files

    env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_TOKEN": token, "HF_HOME": str(tmp_path / "hf")}
    out = subprocess.run(
        [sys.executable, "-c", LOAD_AS_A_USER, "alice"], capture_output=True, text=True, env=env, timeout=600
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["n_heldout"] == 1000 and result["all_held_out"]
    assert result["judge_agrees"] >= 0.98
    assert result["image_size"] == [32, 32]
