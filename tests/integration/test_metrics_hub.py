"""Metric modules as Space repos: published idempotently, loaded from the Hub with ``evaluate.load``."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from hubkit.metrics import METRICS

pytestmark = pytest.mark.integration

LOAD_FROM_HUB = r"""
import json, sys
import evaluate
alignment = evaluate.load(f"{sys.argv[1]}/prompt_alignment")
fd = evaluate.load(f"{sys.argv[1]}/frechet_distance")
print(json.dumps({
    "alignment": alignment.compute(predictions=["colour=red", "shape=circle"],
                                   references=["colour=red", "shape=square"]),
    "fd": fd.compute(predictions=[[0.0, 1.0], [1.0, 0.0]], reference_features=[[0.0, 1.0], [1.0, 0.0]]),
}))
"""


def test_metrics_publish_and_load_with_evaluate(hub, tmp_path):
    from hubkit.metrics.publish import publish_metrics

    token = hub.users["alice"]
    first = publish_metrics(endpoint=hub.url, token=token, namespace="alice")
    assert [r.repo_id for r in first] == [f"alice/{name}" for name in METRICS]
    again = publish_metrics(endpoint=hub.url, token=token, namespace="alice")
    assert [r.commit for r in again] == [r.commit for r in first]
    files = set(hub.api("alice").list_repo_files("alice/prompt_alignment", repo_type="space"))
    assert files == {".gitattributes", "README.md", "app.py", "prompt_alignment.py", "requirements.txt"}
    info = hub.api(None).space_info("alice/prompt_alignment")
    assert info.sdk == "gradio" and "hubkit-kind:metric" in info.tags

    env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf")}
    out = subprocess.run(
        [sys.executable, "-c", LOAD_FROM_HUB, "alice"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["alignment"]["alignment"] == 0.5
    assert result["fd"]["frechet_distance"] == 0.0
