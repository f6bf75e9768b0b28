"""The shipped ``shapes`` judge: acceptance accuracy (the base world and the novel heart), input types,
features, Hub round trip, card."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml
from huggingface_hub import ModelCard
from PIL import Image

from hubkit.cards import validate_card
from hubkit.world.judge import (
    EVAL_SEED,
    NOVEL_PREFIX,
    WEIGHTS_DIR,
    ShapesJudge,
    evaluate_judge,
    judge_card,
    load_judge,
    train_judge,
    train_seed,
)
from hubkit.world.shapes import (
    ATTRIBUTES,
    COLOURS,
    NOVEL_SHAPES,
    NOVEL_TRAINED_COLOURS,
    SHAPES,
    render_batch,
    sample_specs,
)

ACCEPTANCE_SEED = 2024  # neither the card's seed (EVAL_SEED) nor a training seed (>= 10**7)
# What evaluate_judge reports: the base world's attributes, then the same on the novel shapes' images.
ACCURACY_KEYS = [*ATTRIBUTES, *(NOVEL_PREFIX + name for name in ATTRIBUTES)]


@pytest.fixture(scope="module")
def judge() -> ShapesJudge:
    return load_judge()


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return render_batch(sample_specs(24, 7, split="all"))


def test_shipped_files() -> None:
    assert {"config.json", "model.safetensors", "README.md"} <= {p.name for p in WEIGHTS_DIR.iterdir()}
    config = json.loads((WEIGHTS_DIR / "config.json").read_text())
    assert config["attributes"] == {name: list(values) for name, values in ATTRIBUTES.items()}
    assert config["image_size"] == 32


def test_acceptance_accuracy_per_attribute(judge: ShapesJudge) -> None:
    assert train_seed(0, 0) > max(ACCEPTANCE_SEED, EVAL_SEED)
    accuracy = evaluate_judge(judge, n=2000, seed=ACCEPTANCE_SEED)
    assert list(accuracy) == ACCURACY_KEYS
    for name, value in accuracy.items():
        assert value >= 0.99, f"{name}: {value:.4f}"


def test_heart_images_are_read_in_every_colour(judge: ShapesJudge) -> None:
    # The base model never saw a heart; the judge reads it in the colours a fine-tune trains on and the rest.
    specs = sample_specs(400, ACCEPTANCE_SEED + 1, split="novel")
    predicted = judge.predict(render_batch(specs))
    for name in ATTRIBUTES:
        truth = [getattr(s, name) for s in specs]
        accuracy = np.mean([p == t for p, t in zip(predicted[name], truth, strict=True)])
        assert accuracy >= 0.99, f"heart {name}: {accuracy:.4f}"
    for colour in COLOURS:
        read = [p for p, s in zip(predicted["shape"], specs, strict=True) if s.colour == colour]
        assert read and np.mean([p == "heart" for p in read]) >= 0.95, (
            colour,
            colour in NOVEL_TRAINED_COLOURS,
        )


def test_base_world_images_are_never_read_as_a_heart(judge: ShapesJudge) -> None:
    specs = sample_specs(400, ACCEPTANCE_SEED + 2, split="all")
    predicted = judge.predict(render_batch(specs))
    assert not set(predicted["shape"]) & set(NOVEL_SHAPES)
    assert np.mean([p == s.shape for p, s in zip(predicted["shape"], specs, strict=True)]) >= 0.99
    assert set(SHAPES) <= set(predicted["shape"])


def test_shipped_card_accuracy_is_what_the_weights_measure(judge: ShapesJudge) -> None:
    # The published card copies the shipped card's numbers: they must match the shipped weights.
    assert judge.accuracy == evaluate_judge(judge)


def test_small_and_self_describing(judge: ShapesJudge) -> None:
    assert sum(p.numel() for p in judge.parameters()) <= 300_000
    assert judge.attributes == {name: list(values) for name, values in ATTRIBUTES.items()}
    assert list(judge.attributes) == list(ATTRIBUTES)  # head order survives config.json's sorted keys
    assert not judge.training


def test_forward_and_features_shapes(judge: ShapesJudge, images: np.ndarray) -> None:
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        logits = judge(x)
    assert {name: tuple(t.shape) for name, t in logits.items()} == {
        name: (len(images), len(values)) for name, values in ATTRIBUTES.items()
    }
    features = judge.features(images, batch_size=5)
    assert features.shape == (len(images), judge.feature_dim)
    assert features.dtype == torch.float32 and not features.requires_grad
    assert torch.allclose(features, judge.features(x), atol=1e-5)
    assert judge.features(np.zeros((0, 32, 32, 3), np.uint8)).shape == (0, judge.feature_dim)


def test_predict_accepts_three_input_types(judge: ShapesJudge, images: np.ndarray) -> None:
    from_numpy = judge.predict(images)
    from_pil = judge.predict([Image.fromarray(im) for im in images])
    from_tensor = judge.predict(torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255, batch_size=7)
    assert from_numpy == from_pil == from_tensor
    assert all(len(v) == len(images) for v in from_numpy.values())
    specs = sample_specs(24, 7, split="all")
    assert from_numpy["colour"] == [s.colour for s in specs]
    proba = judge.predict_proba(images)
    assert torch.allclose(proba["shape"].sum(-1), torch.ones(len(images)), atol=1e-5)


def test_predict_resizes_other_sizes(judge: ShapesJudge) -> None:
    specs = sample_specs(16, 11, split="all")
    big = render_batch(specs, size=64)
    predicted = judge.predict(big)
    for name in ("colour", "background", "size"):
        assert predicted[name] == [getattr(s, name) for s in specs]


def test_save_and_load_round_trip(judge: ShapesJudge, images: np.ndarray, tmp_path) -> None:
    judge.save_pretrained(tmp_path)
    assert {"config.json", "model.safetensors", "README.md"} <= {p.name for p in tmp_path.iterdir()}
    assert validate_card(tmp_path / "README.md", "pipeline") == []
    again = ShapesJudge.from_pretrained(tmp_path)
    assert not again.training
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        a, b = judge(x), again(x)
    assert all(torch.equal(a[name], b[name]) for name in a)
    assert torch.equal(judge.features(x), again.features(x))


def test_card_validates_and_holds_accuracies() -> None:
    accuracy = {"shape": 0.9985, "colour": 1.0, "background": 1.0, "size": 0.9995, "novel/shape": 0.998}
    card = judge_card(accuracy)
    assert validate_card(card, "pipeline") == []
    assert card.data.pipeline_tag == "image-classification"
    assert "hubkit" in card.data.tags
    meta = yaml.safe_load(str(card).split("---")[1])
    results = meta["model-index"][0]["results"]
    assert {r["dataset"]["split"]: r["metrics"][0]["value"] for r in results} == accuracy
    assert {r["task"]["type"] for r in results} == {"image-classification"}
    assert {r["dataset"]["type"] for r in results} == {"hubkit/shapes"}
    assert {r["metrics"][0]["type"] for r in results} == {"accuracy"}
    assert validate_card(judge_card(None), "pipeline") == []
    assert "novel shapes (heart): shape 99.80%" in card.text


def test_shipped_card_holds_the_measured_accuracy(judge: ShapesJudge) -> None:
    card = ModelCard.load(WEIGHTS_DIR / "README.md")
    assert validate_card(card, "pipeline") == []
    assert judge.accuracy is not None and list(judge.accuracy) == ACCURACY_KEYS
    assert min(judge.accuracy.values()) >= 0.99


def test_train_judge_few_steps_is_deterministic() -> None:
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        first = train_judge(steps=3, batch_size=8, seed=1, progress=False)
        second = train_judge(steps=3, batch_size=8, seed=1, progress=False)
    finally:
        torch.set_num_threads(torch_threads)
    assert isinstance(first, ShapesJudge) and not first.training
    state_a, state_b = first.state_dict(), second.state_dict()
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)
    accuracy = evaluate_judge(first, n=32, seed=3)
    assert list(accuracy) == ACCURACY_KEYS and all(0.0 <= v <= 1.0 for v in accuracy.values())
    assert list(evaluate_judge(first, n=8, seed=3, novel=False)) == list(ATTRIBUTES)
