"""The procedural ``shapes`` world: determinism, attribute correctness, held-out pairs, captions, the
novel shape (heart) and its splits and dataset config."""

from __future__ import annotations

import hashlib
from dataclasses import astuple

import numpy as np
import pytest

from hubkit.world.shapes import (
    ATTRIBUTES,
    BACKGROUNDS,
    CAPTION_TEMPLATES,
    COLOURS,
    HELD_OUT_PAIRS,
    NOVEL_SHAPES,
    NOVEL_TRAINED_COLOURS,
    NOVEL_UNSEEN_COLOURS,
    SHAPES,
    SIZES,
    SPLITS,
    SYNONYMS,
    ShapeSpec,
    build_dataset,
    novel_pairs,
    render,
    render_batch,
    sample_specs,
    split_pairs,
    trained_pairs,
)


def test_vocabulary_is_as_specified():
    assert len(SHAPES) >= 6 and {"circle", "square", "triangle"} <= set(SHAPES)
    assert len(COLOURS) >= 8 and {"red", "green", "blue", "yellow"} <= set(COLOURS)
    assert len(BACKGROUNDS) >= 3 and {"white", "black"} <= set(BACKGROUNDS)
    assert len(CAPTION_TEMPLATES) >= 3


def test_held_out_pairs_are_about_ten_percent_and_never_trained():
    total = len(SHAPES) * len(COLOURS)
    assert 0.08 <= len(HELD_OUT_PAIRS) / total <= 0.12
    assert not set(HELD_OUT_PAIRS) & set(trained_pairs())
    train = sample_specs(3000, seed=1, split="train")
    assert not any(s.held_out for s in train)
    # Every shape and every colour still appears in training, only the pairs are new.
    assert {s.shape for s in train} == set(SHAPES) and {s.colour for s in train} == set(COLOURS)
    assert all(s.held_out for s in sample_specs(200, seed=2, split="heldout"))


def test_rendering_is_deterministic():
    specs = sample_specs(50, seed=7, split="all")
    assert sample_specs(50, seed=7, split="all") == specs
    assert np.array_equal(render_batch(specs), render_batch(specs))
    assert not np.array_equal(render_batch(specs), render_batch(sample_specs(50, seed=8, split="all")))


@pytest.mark.parametrize("background", list(BACKGROUNDS))
@pytest.mark.parametrize("colour", list(COLOURS))
def test_pixels_show_the_attributes(colour, background):
    for shape in ATTRIBUTES["shape"]:
        for seed in range(3):
            spec = ShapeSpec(shape, colour, background, "large", seed=seed)
            pixels = np.asarray(render(spec)).reshape(-1, 3).astype(int)
            bg = np.array(BACKGROUNDS[background])
            fg = np.array(COLOURS[colour])
            near_bg = np.abs(pixels - bg).sum(1) < 12
            near_fg = np.abs(pixels - fg).sum(1) < 12
            assert near_bg.mean() > 0.4, "the background fills most of the image"
            assert near_fg.sum() >= 20, f"{spec}: the shape is drawn in its colour"


def test_size_attribute_separates_areas():
    def area(size: str, seed: int) -> int:
        pixels = np.asarray(render(ShapeSpec("square", "red", "black", size, seed=seed))).astype(int)
        return int((np.abs(pixels - np.array(BACKGROUNDS["black"])).sum(-1) > 60).sum())

    small = [area("small", s) for s in range(20)]
    large = [area("large", s) for s in range(20)]
    assert max(small) < min(large)
    assert set(SIZES) == {"small", "large"}


def test_render_size_is_a_parameter():
    assert render(ShapeSpec("circle", "red", "white", "small"), size=64).size == (64, 64)


def test_unknown_attribute_is_refused():
    with pytest.raises(ValueError, match="unknown colour"):
        ShapeSpec("circle", "mauve", "white", "small")


def test_captions_name_the_attributes():
    spec = ShapeSpec("triangle", "blue", "white", "small", seed=3)
    captions = {spec.caption(t) for t in range(len(CAPTION_TEMPLATES))}
    assert "a blue triangle on a white background" in captions and "blue triangle" in captions
    assert all("blue" in c and "triangle" in c for c in captions)


def test_dataset_has_image_feature_and_columns():
    ds = build_dataset(n=40, seed=0)
    assert ds.num_rows == 40
    assert set(ds.column_names) >= {"image", "caption", "shape", "colour", "background", "size", "held_out"}
    row = ds[0]
    assert row["image"].size == (32, 32)
    names = ds.features["shape"].names
    assert names[row["shape"]] in row["caption"]
    assert not any(ds["held_out"])


def test_dataset_shape_labels_keep_the_base_ids_and_add_the_novel_ones():
    names = build_dataset(n=4, seed=0).features["shape"].names
    assert names == [*SHAPES, *NOVEL_SHAPES]  # novel shapes last: the base shapes keep their ids


# --- the novel shape ------------------------------------------------------------------------------------


def test_novel_vocabulary():
    # The base model's shapes are exactly what it was trained on; the judge and specs know the heart too.
    assert SHAPES == ("circle", "square", "triangle", "diamond", "cross", "ring")
    assert NOVEL_SHAPES == ("heart",) and not set(NOVEL_SHAPES) & set(SHAPES)
    assert ATTRIBUTES["shape"] == SHAPES + NOVEL_SHAPES
    assert NOVEL_TRAINED_COLOURS == ("red", "green", "blue", "yellow")
    assert set(NOVEL_TRAINED_COLOURS) | set(NOVEL_UNSEEN_COLOURS) == set(COLOURS)
    assert len(NOVEL_UNSEEN_COLOURS) == 4 and not set(NOVEL_TRAINED_COLOURS) & set(NOVEL_UNSEEN_COLOURS)
    assert novel_pairs() == [("heart", c) for c in COLOURS]
    assert novel_pairs("trained") == [("heart", c) for c in NOVEL_TRAINED_COLOURS]
    assert novel_pairs("unseen") == [("heart", c) for c in NOVEL_UNSEEN_COLOURS]
    with pytest.raises(ValueError, match="all, trained, unseen"):
        novel_pairs("some")


def test_heart_synonyms_are_words_the_captions_never_use():
    words = SYNONYMS["shape"]["heart"]
    assert len(words) == 3
    captions = " ".join(CAPTION_TEMPLATES)
    for word in words:
        assert word not in captions and word not in ATTRIBUTES["shape"]
        assert not any(
            word in other for s, others in SYNONYMS["shape"].items() if s != "heart" for other in others
        )


def _mask(shape: str, size: str, seed: int) -> np.ndarray:
    pixels = np.asarray(render(ShapeSpec(shape, "red", "black", size, seed=seed))).astype(int)
    return np.abs(pixels - np.array(BACKGROUNDS["black"])).sum(-1) > 60


@pytest.mark.parametrize("size", SIZES)
def test_heart_renders_and_differs_from_every_other_shape(size):
    for seed in range(5):
        heart = _mask("heart", size, seed)
        assert heart.sum() >= (40 if size == "small" else 120), "a visible heart"
        # Two lobes and a point: it fills less of its bounding box than a square, and is no base shape.
        rows, cols = np.nonzero(heart)
        box = (np.ptp(rows) + 1) * (np.ptp(cols) + 1)
        assert heart.sum() < 0.85 * box
        for other in SHAPES:
            mask = _mask(other, size, seed)
            iou = (heart & mask).sum() / (heart | mask).sum()
            assert iou < 0.8, f"heart vs {other} ({size}, seed {seed}): IoU {iou:.2f}"
            assert (heart ^ mask).sum() >= (15 if size == "small" else 40)


def _digest(split: str, n: int = 500, seed: int = 3) -> str:
    h = hashlib.sha256()
    for spec in sample_specs(n, seed, split):
        h.update(repr(astuple(spec)).encode())
    return h.hexdigest()


def test_base_splits_are_unchanged_by_the_novel_shapes():
    # Computed before the heart existed: datasets, suites and the base model's data reproduce bit for bit.
    assert _digest("train") == "dda2860186539db28d1d074880e239a4e6375544ef21379067fab6494d84dfee"
    assert _digest("heldout") == "57f40736bc4ec59966d2d4aa6b7dd466acf7a9a4c1f5b92f36958b4fb0cc26ed"
    assert _digest("all") == "ed55dadadd36a91f1f704d040b5d07715c5a8e6735b985c30c110df0081bb6f5"
    assert not any(
        s.shape in NOVEL_SHAPES for split in ("train", "heldout", "all") for s in sample_specs(500, 4, split)
    )


@pytest.mark.parametrize(
    ("split", "expected"),
    [
        ("novel", {("heart", c) for c in COLOURS}),
        ("novel-trained", {("heart", c) for c in NOVEL_TRAINED_COLOURS}),
        ("novel-unseen", {("heart", c) for c in NOVEL_UNSEEN_COLOURS}),
        ("world", {(s, c) for s in (*SHAPES, *NOVEL_SHAPES) for c in COLOURS}),
    ],
)
def test_novel_splits_draw_only_their_pairs(split, expected):
    assert set(split_pairs(split)) == expected
    specs = sample_specs(1500, seed=5, split=split)
    assert {(s.shape, s.colour) for s in specs} == expected  # only, and every one
    assert sample_specs(1500, seed=5, split=split) == specs
    assert {s.background for s in specs} == set(BACKGROUNDS) and {s.size for s in specs} == set(SIZES)


def test_unknown_split_lists_the_valid_ones():
    assert SPLITS == ("train", "heldout", "all", "novel", "novel-trained", "novel-unseen", "world")
    with pytest.raises(ValueError, match="train, heldout, all, novel, novel-trained, novel-unseen, world"):
        sample_specs(3, 0, split="hearts")


def test_novel_dataset_config_loads(tmp_path, monkeypatch):
    """``write_dataset`` writes configs ``default`` (unchanged) and ``novel``; stock ``load_dataset`` reads
    both from the folder (small splits here; the published sizes are in ``publish``)."""
    from datasets import load_dataset
    from huggingface_hub import DatasetCard

    from hubkit.cards import validate_card
    from hubkit.world import publish

    assert publish.NOVEL_SPLITS == {"train": ("novel-trained", 2_000, 3), "test": ("novel", 800, 4)}
    small = {name: (source, 24, seed) for name, (source, _, seed) in publish.DATASET_SPLITS.items()}
    monkeypatch.setattr(publish, "DATASET_SPLITS", small)
    monkeypatch.setattr(
        publish,
        "NOVEL_SPLITS",
        {name: (source, 40, seed) for name, (source, _, seed) in publish.NOVEL_SPLITS.items()},
    )
    folder = tmp_path / "shapes"
    folder.mkdir()
    publish.write_dataset(folder)
    card = DatasetCard.load(folder / "README.md")
    assert validate_card(card, "dataset") == []
    assert [c["config_name"] for c in card.data.configs] == ["default", "novel"]
    assert "novel" in card.text and "heart" in card.text

    cache = str(tmp_path / "cache")
    train = load_dataset(str(folder), "novel", split="train", cache_dir=cache)
    test = load_dataset(str(folder), "novel", split="test", cache_dir=cache)
    names = train.features["shape"].names
    assert train.num_rows == 40 and test.num_rows == 40
    assert {names[i] for i in train["shape"]} == {"heart"} == {names[i] for i in test["shape"]}
    colours = train.features["colour"].names
    assert {colours[i] for i in train["colour"]} == set(NOVEL_TRAINED_COLOURS)
    assert {colours[i] for i in test["colour"]} & set(NOVEL_UNSEEN_COLOURS)
    assert train[0]["image"].size == (32, 32) and "heart" in train[0]["caption"]
    # The default config reads only its own files: the base world, no heart.
    default = load_dataset(str(folder), split="test", cache_dir=cache)
    assert default.num_rows == 24 and names.index("heart") not in default["shape"]
