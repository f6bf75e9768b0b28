"""The method protocol: recognition by priority, ``hubkit train`` generated from configs, suites found in
plugins, metric inputs declared by suites."""

from __future__ import annotations

import dataclasses
import json
import shlex
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

from hubkit.methods import Artifact, Method, available_methods, get_method, method_for, suite_dirs


def _artifact(path: Path) -> Artifact:
    return Artifact(source=str(path), path=path)


def _spm_folder(folder: Path) -> Path:
    from hubkit.adapters.spm import SPMConfig, save_spm

    weights = {"down_blocks.0.attentions.0.proj_in": (torch.ones(1, 8), torch.zeros(8, 1), 1.0)}
    save_spm(folder, weights, SPMConfig(concepts=["red"]))
    return folder


def test_recognition_asks_specific_formats_before_generic_ones(tmp_path: Path):
    order = list(available_methods())
    assert order.index("spm") < order.index("lora") < order.index("pipeline")
    assert all(available_methods()[n].priority >= available_methods()["lora"].priority for n in order[:-2])

    spm = _spm_folder(tmp_path / "spm")
    (spm / "hubkit.json").unlink()  # published without hubkit's metadata: no tag, no hubkit.json
    assert method_for(_artifact(spm)).name == "spm"

    plain = tmp_path / "lora"
    plain.mkdir()
    tensors = {"unet.down_blocks.0.attentions.0.proj_in.lora_A.weight": torch.zeros(4, 8)}
    save_file(tensors, str(plain / "pytorch_lora_weights.safetensors"), metadata={"format": "pt"})
    assert method_for(_artifact(plain)).name == "lora"


def test_train_commands_are_generated_from_the_configs():
    from hubkit.cli import app

    trainers = [n for n, cls in available_methods().items() if cls.config_class is not None]
    assert {"spm", "lcm-lora"} <= set(trainers)
    result = CliRunner().invoke(app, ["train", "--help"])
    assert result.exit_code == 0 and all(name in result.output for name in trainers)
    for name in trainers:
        config_class = available_methods()[name].config_class
        result = CliRunner().invoke(app, ["train", name, "--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0, result.output
        for field in dataclasses.fields(config_class):
            option = field.metadata.get("cli") or "--" + field.name.replace("_", "-")
            assert option in result.output, f"{name}: {option} missing from --help"
            assert field.metadata.get("help"), f"{config_class.__name__}.{field.name} has no help"


@pytest.mark.parametrize("name", ["spm", "lcm-lora"])
def test_the_reproducing_command_parses_back_to_the_same_config(name: str, monkeypatch):
    """``command_line`` (recorded with every trained artifact) gives back the config through the CLI."""
    from hubkit import cli_train
    from hubkit.cli import app

    method = get_method(name)
    seen = {}

    def fake_train(self, base, config, out, **kwargs):
        seen.update(base=base, config=config, out=out)
        return {"parameters": 1, "file_bytes": 2, "train_seconds": 3.0, "share": 0.1}

    monkeypatch.setattr(type(method), "train", fake_train)
    for demo in method.demo_artifacts():
        config = dataclasses.replace(demo.config, seed=7, steps=12)
        line = cli_train.command_line(name, config, "ns/base", "out-dir")
        argv = shlex.split(line)
        assert argv[:3] == ["hubkit", "train", name]
        result = CliRunner().invoke(app, argv[1:])
        assert result.exit_code == 0, result.output
        assert seen["config"] == config and seen["base"] == "ns/base" and str(seen["out"]) == "out-dir"


def test_a_bad_option_value_is_one_line_naming_it():
    from hubkit.cli import app

    result = CliRunner().invoke(
        app, ["train", "spm", "--base", "x", "--out", "y", "--concept", "red", "--anchor-source", "moon"]
    )
    assert result.exit_code == 1
    assert "--anchor-source must be one of vocabulary, gaussian" in result.output
    assert "Traceback" not in result.output


def test_suites_are_found_in_method_plugins(tmp_path: Path, monkeypatch):
    from hubkit.leaderboard import suite as suite_module

    class Plugin(Method):
        name = "plugin-under-test"

        @classmethod
        def suites_dir(cls) -> Path:
            return tmp_path

    data = json.loads((suite_module.SUITES_DIR / "shapes-heldout.json").read_text())
    (tmp_path / "plugin-suite.json").write_text(json.dumps({**data, "name": "plugin-suite"}))
    methods = {**available_methods(), Plugin.name: Plugin}
    monkeypatch.setattr("hubkit.methods.available_methods", lambda: methods)
    assert tmp_path in suite_dirs()
    assert "plugin-suite" in suite_module.available_suites()
    assert suite_module.load_suite("plugin-suite").name == "plugin-suite"

    (tmp_path / "shapes-quality.json").write_text(json.dumps({**data, "name": "shapes-quality"}))
    with pytest.raises(suite_module.SuiteError, match="two suites are named 'shapes-quality'"):
        suite_module.load_suite("shapes-quality")


def _suite_file(tmp_path: Path, metric: dict) -> Path:
    suite = {
        "name": "inputs-test",
        "version": 1,
        "generation": {"num_inference_steps": 2, "guidance_scale": 1.0, "batch_size": 4},
        "baseline": {"num_inference_steps": 3, "guidance_scale": 1.0},
        "seeds": [0],
        "groups": {"g": {"pairs": "held_out", "template": "a {colour} {shape}"}},
        "metrics": [metric],
    }
    path = tmp_path / "inputs-test.json"
    path.write_text(json.dumps(suite))
    return path


def test_a_suite_names_what_each_metric_reads(tmp_path: Path):
    from hubkit.leaderboard.suite import SuiteError, load_suite

    plain = load_suite(
        _suite_file(tmp_path, {"metric": "image_fidelity", "group": "g", "outputs": {"psnr": "p"}})
    )
    assert plain.metrics[0].inputs == {"predictions": "images", "references": "baseline_images"}
    swapped = {"predictions": "baseline_images", "references": "images"}
    spec = {"metric": "image_fidelity", "group": "g", "outputs": {"psnr": "p"}, "inputs": swapped}
    assert load_suite(_suite_file(tmp_path, spec)).metrics[0].inputs == swapped
    spec["inputs"] = {"predictions": "pixels"}
    with pytest.raises(SuiteError, match=r"unknown input\(s\) \['pixels'\]"):
        load_suite(_suite_file(tmp_path, spec))


def test_paired_reference_images_come_from_the_suites_baseline(tmp_path: Path):
    """image_fidelity reads the baseline's images of the same prompts and seeds: identical pipelines and
    settings give identical images, fewer steps give a finite PSNR."""
    from hubkit.leaderboard.runner import run_suite
    from hubkit.leaderboard.suite import load_suite
    from hubkit.world.base_model import assemble_pipeline
    from hubkit.world.judge import load_judge

    pipe = assemble_pipeline()
    metric = {"metric": "image_fidelity", "group": "g", "outputs": {"psnr": "psnr", "identical": "same"}}
    suite = load_suite(_suite_file(tmp_path, metric))
    result = run_suite(pipe, suite, load_judge(), baseline_pipe=pipe, progress=False)
    assert 5.0 < result.metrics["psnr"] < 100.0 and result.metrics["same"] == 0.0
    same = run_suite(
        pipe,
        suite,
        load_judge(),
        baseline_pipe=pipe,
        method_settings={"num_inference_steps": 3},
        progress=False,
    )
    assert same.metrics["same"] == 1.0 and np.isclose(same.metrics["psnr"], 100.0)
