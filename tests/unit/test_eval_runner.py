"""The suite runner on the real base pipeline (a few images at 3 steps): reproducible, counted, recorded."""

from __future__ import annotations

from pathlib import Path

import pytest
from huggingface_hub import ModelCard

from hubkit.cards import render_card, validate_card
from hubkit.cards.render import set_eval_results
from hubkit.leaderboard import records
from hubkit.leaderboard.runner import run_suite
from hubkit.leaderboard.suite import load_suite
from hubkit.methods import Artifact, MethodError, available_methods, get_method, method_for

TINY_SUITE = Path(__file__).parents[1] / "data" / "tiny-suite.json"


@pytest.fixture(scope="module")
def pipe():
    from hubkit.world.base_model import assemble_pipeline

    return assemble_pipeline()


@pytest.fixture(scope="module")
def judge():
    from hubkit.world.judge import load_judge

    return load_judge()


@pytest.fixture(scope="module")
def first_run(pipe, judge):
    return run_suite(pipe, load_suite(TINY_SUITE), judge, progress=False)


def test_two_runs_give_identical_numbers(pipe, judge, first_run) -> None:
    again = run_suite(pipe, load_suite(TINY_SUITE), judge, progress=False)
    assert again.metrics == first_run.metrics  # exact, not approximately
    assert [s["image_sha256"] for s in again.samples] == [s["image_sha256"] for s in first_run.samples]


def test_metrics_samples_and_settings(first_run) -> None:
    m = first_run.metrics
    assert set(m) == {"alignment", "alignment_colour", "fd", "unet_evals"}
    assert 0.0 <= m["alignment"] <= 1.0 and m["fd"] > 0
    assert m["unet_evals"] == 2 * 3  # 3 steps, classifier-free guidance runs the UNet twice per step
    assert len(first_run.samples) == 5 * 2  # 5 held-out pairs x 2 seeds
    assert first_run.settings["images"] == 10 and first_run.settings["num_inference_steps"] == 3
    sample = first_run.samples[0]
    assert sample["prompt"] == "a purple circle" and sample["asked_colour"] == "purple"
    assert len(sample["image_sha256"]) == 64 and "judged_colour" in sample


def test_method_settings_override_the_suite_and_guidance_one_halves_the_evals(pipe, judge) -> None:
    result = run_suite(
        pipe, load_suite(TINY_SUITE), judge, method_settings={"guidance_scale": 1.0}, progress=False
    )
    assert result.metrics["unet_evals"] == 3
    assert result.settings["guidance_scale"] == 1.0


def test_sweep_with_baseline_gives_per_point_columns(pipe, judge, tmp_path) -> None:
    import json

    data = json.loads(TINY_SUITE.read_text())
    data["groups"]["held_out"]["seeds"] = [0]
    data |= {"sweep": {"num_inference_steps": [1, 2]}, "baseline": {"num_inference_steps": 2}}
    data["metrics"].append(
        {"metric": "sampling_cost", "group": "held_out", "outputs": {"time_ratio": "time_ratio"}}
    )
    path = tmp_path / "sweep.json"
    path.write_text(json.dumps(data))
    result = run_suite(pipe, load_suite(path), judge, baseline_pipe=pipe, progress=False)
    assert result.metrics["unet_evals@1"] == 2 and result.metrics["unet_evals@2"] == 4
    assert result.metrics["time_ratio@1"] > 0 and "alignment@2" in result.metrics
    with pytest.raises(ValueError, match="needs a 'baseline'"):
        data.pop("baseline")
        path.write_text(json.dumps(data))
        run_suite(pipe, load_suite(path), judge, progress=False)


def test_record_and_card_write_back(first_run) -> None:
    suite = load_suite(TINY_SUITE)
    model = records.ModelFacts("alice/m", "a" * 40, "pipeline", "pipeline", None, None, 10, 20)
    record = records.build_record(model, suite, first_run, "sha256:j", 1.5)
    assert record["schema_version"] == 1 and record["suite"]["digest"] == suite.digest
    assert record["metrics"] == first_run.metrics and record["env"]["hubkit"]
    results = records.eval_results_of(record, "http://hub/x.json")
    assert {r.metric_type for r in results} == set(first_run.metrics)
    card = render_card("pipeline", repo_id="alice/m", title="m", description="A test pipeline.")
    card = ModelCard(str(card))
    set_eval_results(card, results, model_name="m")
    set_eval_results(card, results, model_name="m")  # again: replaced, not appended
    text = str(card)
    assert text.count("## Evaluation") == 1 and "| alignment |" in text
    reloaded = ModelCard(text)
    assert {r.metric_type: r.metric_value for r in reloaded.data.eval_results} == {
        k: round(v, 6) for k, v in first_run.metrics.items()
    }
    assert validate_card(text) == []
    yaml_text = records.eval_results_yaml(record, "http://hub/x.json").decode()
    assert "task_id: tiny/alignment" in yaml_text


def test_method_registry(tmp_path) -> None:
    assert {"pipeline", "lora"} <= set(available_methods())
    (tmp_path / "model_index.json").write_text("{}")
    assert method_for(Artifact("x", tmp_path)).name == "pipeline"
    tagged = Artifact("x", tmp_path, card_data={"tags": ["hubkit", "hubkit-method:lora"]})
    assert method_for(tagged).name == "lora"
    with pytest.raises(MethodError, match="unknown method 'nope'"):
        get_method("nope")
    with pytest.raises(MethodError, match="cannot tell which method"):
        method_for(Artifact("y", tmp_path / "empty"))
    with pytest.raises(MethodError, match="needs a base pipeline"):
        get_method("lora").load(tagged, None)


def test_artifact_counts_parameters_from_safetensors_headers(tmp_path) -> None:
    import torch
    from safetensors.torch import save_file

    (tmp_path / "sub").mkdir()
    save_file({"a": torch.zeros(3, 4), "b": torch.zeros(5)}, tmp_path / "sub" / "w.safetensors")
    (tmp_path / ".cache").mkdir()
    (tmp_path / ".cache" / "junk").write_bytes(b"x" * 100)
    artifact = Artifact("x", tmp_path)
    assert artifact.parameters == 17
    assert artifact.size_bytes == (tmp_path / "sub" / "w.safetensors").stat().st_size
