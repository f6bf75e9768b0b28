"""hubkit's ``evaluate`` metrics: offline loading by local path, cards, known answers, determinism."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from hubkit.metrics import METRICS, load_metric, metric_path, qualified_labels
from hubkit.world.judge import ShapesJudge, load_judge
from hubkit.world.shapes import ATTRIBUTES, render_batch, sample_specs

SEED = 2024  # neither the judge's evaluation seed nor a training seed (>= 10**7)


@pytest.fixture(scope="module")
def judge() -> ShapesJudge:
    return load_judge()


@pytest.fixture(scope="module")
def specs():
    return sample_specs(800, SEED, split="all")


@pytest.fixture(scope="module")
def images(specs) -> np.ndarray:
    return render_batch(specs)


def requested(specs) -> dict[str, list[str]]:
    return {name: [getattr(s, name) for s in specs] for name in ATTRIBUTES}


# --- loading and cards -------------------------------------------------------------------------------------


def test_registry_layout() -> None:
    assert set(METRICS) == {
        "prompt_alignment",
        "concept_presence",
        "frechet_distance",
        "image_fidelity",
        "sampling_cost",
        "attack_success",
    }
    for name, folder in METRICS.items():
        assert metric_path(name) == folder / f"{name}.py"
        assert {p.name for p in folder.iterdir()} >= {f"{name}.py", "README.md", "app.py"}
        # The script must not depend on hubkit: it is published as a Space on its own.
        assert "hubkit" not in "".join(
            line for line in metric_path(name).read_text().splitlines() if line.startswith(("import", "from"))
        )
    with pytest.raises(KeyError, match="unknown metric 'nope'"):
        metric_path("nope")


@pytest.mark.parametrize("name", sorted(METRICS))
def test_card_front_matter(name: str) -> None:
    text = (METRICS[name] / "README.md").read_text()
    meta = yaml.safe_load(text.split("---")[1])
    assert {"evaluate", "metric", "hubkit"} <= set(meta["tags"])
    assert meta["sdk"] == "gradio" and meta["app_file"] == "app.py" and meta["title"]
    assert f'evaluate.load("{name}.py")' in (METRICS[name] / "app.py").read_text()


def test_every_metric_loads_offline_from_its_local_path(tmp_path: Path) -> None:
    """A fresh process, offline flags on and an unreachable endpoint: evaluate.load of each local script."""
    code = (
        "import json, evaluate\n"
        "from hubkit.metrics import METRICS, metric_path, load_metric\n"
        "out = {}\n"
        "for name in METRICS:\n"
        "    a = evaluate.load(str(metric_path(name)))\n"  # plain evaluate.load, by .py path
        "    b = evaluate.load(str(METRICS[name]))\n"  # by folder path
        "    c = load_metric(name)\n"
        "    out[name] = [type(m).__name__ for m in (a, b, c)]\n"
        "print(json.dumps(out))\n"
    )
    env = {
        **os.environ,
        "HF_HOME": str(tmp_path / "hf"),
        "HF_HUB_OFFLINE": "1",
        "HF_EVALUATE_OFFLINE": "1",
        "HF_ENDPOINT": "http://127.0.0.1:9",  # discard port: any network attempt fails
    }
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    loaded = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(loaded) == set(METRICS)
    for classes in loaded.values():
        assert len(set(classes)) == 1 and classes[0] != "Metric"


# --- prompt_alignment and concept_presence -----------------------------------------------------------------


def test_real_images_are_aligned_with_their_prompts(judge, specs, images) -> None:
    metric = load_metric("prompt_alignment")
    result = metric.compute(
        predictions=qualified_labels(judge.predict(images)), references=qualified_labels(requested(specs))
    )
    assert result["n"] == len(specs) * len(ATTRIBUTES)
    assert result["alignment"] >= 0.99, result
    for name in ATTRIBUTES:
        assert result[f"alignment_{name}"] >= 0.98, result


def test_alignment_known_answers() -> None:
    metric = load_metric("prompt_alignment")
    preds = ["colour=red", "colour=blue", "shape=circle", "shape=ring"]
    refs = ["colour=red", "colour=red", "shape=circle", "shape=circle"]
    assert metric.compute(predictions=preds, references=refs) == {
        "alignment": 0.5,
        "alignment_colour": 0.5,
        "alignment_shape": 0.5,
        "n": 4,
    }
    plain = metric.compute(predictions=["red", "blue"], references=["red", "red"], attribute="colour")
    assert plain == {"alignment": 0.5, "alignment_colour": 0.5, "n": 2}
    # add_batch accumulation gives the same answer as one compute call
    metric.add_batch(predictions=preds[:2], references=refs[:2])
    metric.add_batch(predictions=preds[2:], references=refs[2:])
    assert metric.compute()["alignment"] == 0.5
    with pytest.raises(ValueError, match="different attributes"):
        metric.compute(predictions=["colour=red"], references=["shape=red"])
    with pytest.raises(ValueError, match="Mismatch in the number"):
        metric.compute(predictions=["colour=red"], references=["colour=red", "colour=red"])


def test_absent_concept_is_not_present_and_present_concept_is(judge) -> None:
    no_red = [s for s in sample_specs(400, SEED + 1, split="all") if s.colour != "red"]
    metric = load_metric("concept_presence")
    labels = qualified_labels(judge.predict(render_batch(no_red)))
    absent = metric.compute(predictions=labels, concept="colour=red")
    assert absent["n"] == len(no_red)
    assert absent["presence"] <= 0.01, absent
    all_blue = [dataclasses.replace(s, colour="blue") for s in no_red[:200]]
    present = metric.compute(
        predictions=qualified_labels(judge.predict(render_batch(all_blue))), concept="colour=blue"
    )
    assert present["presence"] >= 0.99, present


def test_presence_known_answers() -> None:
    metric = load_metric("concept_presence")
    labels = ["colour=red", "colour=blue", "shape=circle", "colour=red"]
    assert metric.compute(predictions=labels, concept="colour=red") == {"presence": 2 / 3, "count": 2, "n": 3}
    assert metric.compute(predictions=["red", "blue"], concept="red") == {"presence": 0.5, "count": 1, "n": 2}
    with pytest.raises(ValueError, match="concept"):
        metric.compute(predictions=labels)
    with pytest.raises(ValueError, match="no prediction rows"):
        metric.compute(predictions=labels, concept="size=small")


# --- frechet_distance --------------------------------------------------------------------------------------


def test_frechet_distance_real_split_is_small_next_to_noise(judge, images) -> None:
    feats = judge.features(images).numpy()
    real_a, real_b = feats[:400], feats[400:]
    noise = np.random.default_rng(0).integers(0, 256, size=(400, *images.shape[1:]), dtype=np.uint8)
    noise_feats = judge.features(noise).numpy()
    metric = load_metric("frechet_distance")
    fd_real = metric.compute(predictions=real_a.tolist(), reference_features=real_b)["frechet_distance"]
    fd_noise = metric.compute(predictions=noise_feats.tolist(), reference_features=real_b)["frechet_distance"]
    assert 0 <= fd_real < 0.05 * fd_noise, (fd_real, fd_noise)
    # Same set against itself: 0 up to sqrtm round-off.
    fd_self = metric.compute(predictions=real_b.tolist(), reference_features=real_b)["frechet_distance"]
    assert fd_self < 1e-6 * fd_noise
    # Precomputed reference statistics give the same number as raw reference features.
    mu, sigma = real_b.astype(np.float64).mean(0), np.cov(real_b.astype(np.float64), rowvar=False)
    by_stats = metric.compute(predictions=real_a.tolist(), reference_mu=mu, reference_sigma=sigma)
    assert by_stats["frechet_distance"] == pytest.approx(fd_real, rel=1e-9)


def test_frechet_distance_known_answers() -> None:
    metric = load_metric("frechet_distance")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2000, 3))
    # Shifting the mean by (3, 4, 0) adds |d|^2 = 25 and leaves the covariance term at 0.
    assert metric.compute(predictions=(x + np.array([3.0, 4.0, 0.0])).tolist(), reference_features=x)[
        "frechet_distance"
    ] == (pytest.approx(25.0, rel=1e-9))
    # N(0, I) vs N(0, 4I) in 2-D: Tr(I + 4I - 2 * 2I) = 2.
    exact = metric.compute(
        predictions=x[:, :2].tolist(), reference_mu=x[:, :2].mean(0), reference_sigma=4 * np.cov(x[:, :2].T)
    )
    assert exact["frechet_distance"] == pytest.approx(np.trace(np.cov(x[:, :2].T)), rel=1e-9)
    # Singular covariances (fewer samples than dimensions) stay finite and non-negative.
    few = rng.standard_normal((5, 16))
    singular = metric.compute(predictions=few.tolist(), reference_features=few[::-1] + 0.1)
    assert math.isfinite(singular["frechet_distance"]) and singular["frechet_distance"] >= 0
    with pytest.raises(ValueError, match="reference_features or both"):
        metric.compute(predictions=x.tolist())
    with pytest.raises(ValueError, match="dimensions differ"):
        metric.compute(predictions=x.tolist(), reference_features=x[:, :2])


# --- image_fidelity ----------------------------------------------------------------------------------------


def test_image_fidelity_identical_images_hit_the_cap(images) -> None:
    metric = load_metric("image_fidelity")
    result = metric.compute(predictions=list(images[:8]), references=list(images[:8]))
    assert result == {
        "psnr": 100.0, "psnr_median": 100.0, "psnr_min": 100.0, "ssim": 1.0, "identical": 1.0, "n": 8
    }  # fmt: skip


def test_image_fidelity_known_answers(images) -> None:
    metric = load_metric("image_fidelity")
    ref = np.clip(images[:8], 0, 254)
    plus_one = ref + 1  # MSE = 1 exactly -> PSNR = 20 log10(255) = 48.13 dB
    result = metric.compute(predictions=list(plus_one), references=list(ref))
    assert result["psnr"] == pytest.approx(20 * math.log10(255), abs=1e-9)
    assert result["identical"] == 0.0
    assert 0.99 < result["ssim"] < 1.0
    jitter = np.random.default_rng(0).integers(-40, 41, ref.shape)
    noisy = np.clip(ref.astype(int) + jitter, 0, 255).astype(np.uint8)
    worse = metric.compute(predictions=list(noisy), references=list(ref))
    assert worse["psnr"] < result["psnr"] and worse["ssim"] < result["ssim"]
    swapped = metric.compute(predictions=list(ref), references=list(noisy))
    assert swapped["ssim"] == pytest.approx(worse["ssim"], abs=1e-12)  # SSIM is symmetric
    mixed = metric.compute(predictions=[ref[0], noisy[1], plus_one[2]], references=[ref[0], ref[1], ref[2]])
    assert mixed["identical"] == pytest.approx(1 / 3) and mixed["psnr_min"] < 100.0
    assert mixed["psnr_median"] == pytest.approx(20 * math.log10(255), abs=1e-9)  # the middle pair
    with pytest.raises(ValueError, match="sizes differ"):
        metric.compute(predictions=[ref[0]], references=[ref[0, :16]])


# --- sampling_cost -----------------------------------------------------------------------------------------


def test_attack_success_known_answers() -> None:
    metric = load_metric("attack_success")
    rows = ["colour=red", "shape=circle", "colour=blue", "shape=ring", "colour=red", "shape=cross"]
    result = metric.compute(predictions=rows, concept="colour=red", attack_unet_evals=[10, 10, 40])
    assert result == {"success_rate": 2 / 3, "count": 2, "n": 3, "attack_unet_evals": 20.0}
    plain = metric.compute(predictions=["red", "blue"], concept="colour=red")
    assert plain == {"success_rate": 0.5, "count": 1, "n": 2, "attack_unet_evals": 0.0}
    with pytest.raises(ValueError, match="needs concept="):
        metric.compute(predictions=rows)
    with pytest.raises(ValueError, match="2 entries for 3 attacked images"):
        metric.compute(predictions=rows, concept="colour=red", attack_unet_evals=[1, 2])


def test_sampling_cost() -> None:
    metric = load_metric("sampling_cost")
    result = metric.compute(
        unet_evals=[4, 4, 4],
        wall_time_s=[1.0, 1.1, 3.0],
        baseline_wall_time_s=[4.0, 4.4, 6.0],
        peak_memory_bytes=[10, 30, 20],
        artifact_bytes=1234,
        parameters=99,
    )
    assert result == {
        "time_ratio": 0.25,
        "wall_time_s": 1.1,
        "baseline_wall_time_s": 4.4,
        "unet_evals": 4.0,
        "peak_memory_bytes": 30,
        "artifact_bytes": 1234,
        "parameters": 99,
        "n": 3,
    }
    with pytest.raises(ValueError, match="positive"):
        metric.compute(unet_evals=[1], wall_time_s=[0.0], baseline_wall_time_s=[1.0], peak_memory_bytes=[-1])


# --- determinism -------------------------------------------------------------------------------------------


def test_two_runs_give_identical_numbers(specs) -> None:
    def run() -> dict:
        judge = load_judge()
        imgs = render_batch(specs[:300])
        labels = qualified_labels(judge.predict(imgs))
        feats = judge.features(imgs).numpy()
        return {
            "alignment": load_metric("prompt_alignment").compute(
                predictions=labels, references=qualified_labels(requested(specs[:300]))
            ),
            "presence": load_metric("concept_presence").compute(predictions=labels, concept="colour=red"),
            "fd": load_metric("frechet_distance").compute(
                predictions=feats[:150].tolist(), reference_features=feats[150:]
            ),
            "fidelity": load_metric("image_fidelity").compute(
                predictions=list(imgs[:10]), references=list(imgs[10:20])
            ),
        }

    assert run() == run()
