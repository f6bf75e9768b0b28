"""The procedural ``shapes`` world: determinism, attribute correctness, held-out pairs, captions."""

from __future__ import annotations

import numpy as np
import pytest

from hubkit.world.shapes import (
    BACKGROUNDS,
    CAPTION_TEMPLATES,
    COLOURS,
    HELD_OUT_PAIRS,
    SHAPES,
    SIZES,
    ShapeSpec,
    build_dataset,
    render,
    render_batch,
    sample_specs,
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
    for shape in SHAPES:
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
