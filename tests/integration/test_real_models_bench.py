"""``bench/real_models.py`` on a checkpoint folder: the tiny SD 2.1 (v-prediction) pipeline stands in for a
real one (``--quick``: a few steps, small images). Each method trains, is loaded back through the registry
and reports its headline number; a method without the data it needs is skipped with its reason."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture(scope="module")
def real_models():
    sys.path.insert(0, str(BENCH))
    try:
        import real_models

        yield real_models
    finally:
        sys.path.remove(str(BENCH))


def _dataset(folder: Path) -> Path:
    from hubkit.world import shapes

    folder.mkdir()
    rows = []
    for i, spec in enumerate(shapes.sample_specs(4, 1, "novel-trained")):
        shapes.render(spec).save(folder / f"{i}.png")
        rows.append(json.dumps({"file_name": f"{i}.png", "caption": spec.caption(spec.seed)}))
    (folder / "metadata.jsonl").write_text("\n".join(rows) + "\n")
    return folder


def test_every_method_reports_its_headline_number(real_models, tiny_arch_folder, tmp_path):
    out = tmp_path / "out"
    argv = [str(tiny_arch_folder("sd21")), "--quick", "--out", str(out), "--concept", "red"]
    argv += ["--concept-prompt", "a {} circle", "--prompts", "a blue square", "--dataset"]
    argv += [str(_dataset(tmp_path / "hearts")), "--methods", "rece,lcm-lora,sara,quantize"]
    assert real_models.main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["architecture"] == "sd2"
    rows = results["methods"]
    assert {m: r["status"] for m, r in rows.items()} == dict.fromkeys(rows, "ok")
    assert rows["rece"]["concept change"] > 0 and rows["rece"]["specificity"] > 0
    assert rows["lcm-lora"]["speedup"] > 0 and "faster" in rows["lcm-lora"]["headline"]
    assert rows["sara"]["loss after"] > 0 and 0 < rows["sara"]["trained share"] < 1
    quantize = rows["quantize"]
    assert quantize["float UNet bytes"] > 2.5 * quantize["artifact bytes"] and quantize["psnr"] > 20
    for method in rows:  # each artifact is a folder the registry recognises, with its card
        assert (Path(rows[method]["artifact"]) / "README.md").is_file()


def test_a_method_without_its_data_is_skipped_with_the_reason(real_models, tiny_arch_folder, tmp_path):
    argv = [str(tiny_arch_folder("sd15")), "--quick", "--out", str(tmp_path), "--methods", "lora-finetune"]
    assert real_models.main(argv) == 0
    row = json.loads((tmp_path / "results.json").read_text())["methods"]["lora-finetune"]
    assert row["status"] == "skipped" and "needs --dataset" in row["headline"]


def test_bad_arguments_are_refused(real_models, tmp_path):
    with pytest.raises(SystemExit):
        real_models.main([str(tmp_path / "missing")])
    with pytest.raises(SystemExit):
        real_models.main([str(tmp_path), "--methods", "dreambooth"])
    with pytest.raises(SystemExit):  # a folder that holds no Stable Diffusion UNet
        real_models.main([str(tmp_path), "--quick"])
