"""``shapes``: a deterministic procedural world of one coloured shape on a plain background, with captions.

Every image is a pure function of its attributes and a jitter seed, so datasets, judges and tests can be
regenerated bit for bit anywhere. A fixed list of (shape, colour) pairs is held out of training to measure
compositional generalization.

Beyond the base model's world (:data:`SHAPES`) the world knows novel shapes (:data:`NOVEL_SHAPES`, the
heart) that the shipped base model never saw: fine-tuning methods teach them from images in
:data:`NOVEL_TRAINED_COLOURS` and are tested on every colour (:func:`novel_pairs`, splits ``novel*``). The
judge reads every shape, novel ones included (split ``world``).
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle", "diamond", "cross", "ring")
"""The shapes the base model was trained on (``hubkit/world/train.py`` draws split ``train``)."""
NOVEL_SHAPES = ("heart",)
"""Shapes the shipped base model never saw, for fine-tuning methods to teach; the judge reads them."""
COLOURS = {
    "red": (220, 30, 30),
    "green": (30, 170, 50),
    "blue": (30, 60, 220),
    "yellow": (240, 210, 20),
    "orange": (245, 130, 20),
    "purple": (130, 40, 180),
    "cyan": (20, 200, 210),
    "pink": (245, 110, 180),
}
BACKGROUNDS = {"white": (245, 245, 245), "black": (15, 15, 15), "gray": (128, 128, 128)}
SIZES = ("small", "large")
ATTRIBUTES = {
    "shape": SHAPES + NOVEL_SHAPES,  # novel shapes last: the base shapes keep their label ids
    "colour": tuple(COLOURS),
    "background": tuple(BACKGROUNDS),
    "size": SIZES,
}
# A fine-tune sees a novel shape in half of the colours and is tested on all of them: the other half
# measures whether the new shape composes with colours it was never shown in.
NOVEL_TRAINED_COLOURS = ("red", "green", "blue", "yellow")
NOVEL_UNSEEN_COLOURS = tuple(c for c in COLOURS if c not in NOVEL_TRAINED_COLOURS)

# Words the captions never use, meaning one attribute value: probes of what the text encoder carries over
# (paraphrase suites, erasure leakage). Three per value, most common sense first.
SYNONYMS = {
    "colour": {
        "red": ("crimson", "scarlet", "ruby"),
        "green": ("emerald", "lime", "jade"),
        "blue": ("navy", "azure", "cobalt"),
        "yellow": ("golden", "lemon", "canary"),
        "orange": ("tangerine", "amber", "apricot"),
        "purple": ("violet", "lavender", "plum"),
        "cyan": ("turquoise", "aqua", "teal"),
        "pink": ("magenta", "rose", "fuchsia"),
    },
    "shape": {
        "circle": ("disc", "dot", "round blob"),
        "square": ("box", "block", "tile"),
        "triangle": ("pyramid", "wedge", "trigon"),
        "diamond": ("rhombus", "lozenge", "kite"),
        "cross": ("plus sign", "plus", "crucifix"),
        "ring": ("donut", "hoop", "loop"),
        "heart": ("valentine", "cardioid", "love symbol"),
    },
}

# About 10 % of the 48 (shape, colour) pairs, every shape and colour still seen in other pairs.
HELD_OUT_PAIRS = (
    ("circle", "purple"),
    ("square", "orange"),
    ("triangle", "cyan"),
    ("diamond", "yellow"),
    ("cross", "pink"),
)

# Radius as a fraction of the image side: a clear gap between small and large for the judge.
_RADIUS = {"small": (0.16, 0.21), "large": (0.30, 0.36)}

CAPTION_TEMPLATES = (
    "a {colour} {shape} on a {background} background",
    "a {size} {colour} {shape}",
    "{colour} {shape}",
    "a {size} {colour} {shape} on {background}",
    "a picture of a {colour} {shape}",
)


@dataclass(frozen=True)
class ShapeSpec:
    """What one image shows; ``seed`` drives the size and position jitter."""

    shape: str
    colour: str
    background: str
    size: str
    seed: int = 0

    def __post_init__(self) -> None:
        for name, values in ATTRIBUTES.items():
            if getattr(self, name) not in values:
                raise ValueError(
                    f"unknown {name} {getattr(self, name)!r}; expected one of {', '.join(values)}"
                )

    @property
    def held_out(self) -> bool:
        return (self.shape, self.colour) in HELD_OUT_PAIRS

    def caption(self, template: int = 0) -> str:
        return CAPTION_TEMPLATES[template % len(CAPTION_TEMPLATES)].format(**asdict(self))


def trained_pairs() -> list[tuple[str, str]]:
    """The (shape, colour) pairs the base model was trained on."""
    return [(s, c) for s in SHAPES for c in COLOURS if (s, c) not in HELD_OUT_PAIRS]


def novel_pairs(colours: str = "all") -> list[tuple[str, str]]:
    """(novel shape, colour) pairs: ``all`` colours, the ``trained`` ones (what a fine-tune sees) or the
    ``unseen`` ones (only for testing)."""
    chosen = {"all": tuple(COLOURS), "trained": NOVEL_TRAINED_COLOURS, "unseen": NOVEL_UNSEEN_COLOURS}
    if colours not in chosen:
        raise ValueError(f"colours must be {', '.join(chosen)}, not {colours!r}")
    return [(s, c) for s in NOVEL_SHAPES for c in chosen[colours]]


def render(spec: ShapeSpec, size: int = 32, supersample: int = 4) -> Image.Image:
    """Draw ``spec`` at ``size``×``size`` pixels (antialiased by drawing larger and downsampling)."""
    rng = random.Random(spec.seed)
    big = size * supersample
    radius = rng.uniform(*_RADIUS[spec.size]) * big
    margin = radius + 0.04 * big
    cx, cy = rng.uniform(margin, big - margin), rng.uniform(margin, big - margin)
    image = Image.new("RGB", (big, big), BACKGROUNDS[spec.background])
    draw = ImageDraw.Draw(image)
    fill = COLOURS[spec.colour]
    _draw_shape(draw, spec.shape, cx, cy, radius, fill, BACKGROUNDS[spec.background])
    return image.resize((size, size), Image.Resampling.LANCZOS)


def _draw_shape(
    draw: ImageDraw.ImageDraw,
    shape: str,
    cx: float,
    cy: float,
    r: float,
    fill: tuple[int, int, int],
    background: tuple[int, int, int],
) -> None:
    if shape == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
    elif shape == "ring":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
        inner = 0.55 * r
        draw.ellipse((cx - inner, cy - inner, cx + inner, cy + inner), fill=background)
    elif shape == "square":
        s = 0.85 * r
        draw.rectangle((cx - s, cy - s, cx + s, cy + s), fill=fill)
    elif shape == "diamond":
        draw.polygon([(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)], fill=fill)
    elif shape == "triangle":
        points = [
            (cx + r * math.cos(a), cy + r * math.sin(a)) for a in (-math.pi / 2, math.pi / 6, 5 * math.pi / 6)
        ]
        draw.polygon(points, fill=fill)
    elif shape == "cross":
        w = 0.33 * r
        draw.rectangle((cx - r, cy - w, cx + r, cy + w), fill=fill)
        draw.rectangle((cx - w, cy - r, cx + w, cy + r), fill=fill)
    elif shape == "heart":
        # Two round lobes on top, a point at the bottom: drawn from shapes the autoencoder already
        # reproduces (discs, straight edges), so a fine-tune of the UNet alone can learn to draw it.
        lobe = 0.5 * r
        for x in (cx - lobe, cx + lobe):
            draw.ellipse((x - lobe, cy - 0.7 * r, x + lobe, cy - 0.7 * r + 2 * lobe), fill=fill)
        point = [(cx - 0.97 * r, cy - 0.15 * r), (cx + 0.97 * r, cy - 0.15 * r), (cx, cy + r)]
        draw.polygon(point, fill=fill)
    else:  # pragma: no cover - ShapeSpec validates names
        raise ValueError(shape)


SPLITS = ("train", "heldout", "all", "novel", "novel-trained", "novel-unseen", "world")
"""Splits of :func:`sample_specs`; the first three are the base model's world (:data:`SHAPES`)."""


def split_pairs(split: str) -> list[tuple[str, str]]:
    """The (shape, colour) pairs a :func:`sample_specs` split draws from."""
    pairs = {
        "train": trained_pairs,
        "heldout": lambda: list(HELD_OUT_PAIRS),
        "all": lambda: [(s, c) for s in SHAPES for c in COLOURS],
        "novel": lambda: novel_pairs("all"),
        "novel-trained": lambda: novel_pairs("trained"),
        "novel-unseen": lambda: novel_pairs("unseen"),
        "world": lambda: [(s, c) for s in ATTRIBUTES["shape"] for c in COLOURS],
    }
    if split not in pairs:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, not {split!r}")
    return pairs[split]()


def sample_specs(n: int, seed: int, split: str = "train") -> list[ShapeSpec]:
    """``n`` random specs of a split's pairs (:func:`split_pairs`), background, size and jitter seed.

    The base model's world: ``train`` never uses held-out pairs, ``heldout`` uses only them, ``all`` both.
    Novel shapes: ``novel`` in every colour, ``novel-trained`` in :data:`NOVEL_TRAINED_COLOURS`,
    ``novel-unseen`` in the others. ``world``: every shape (novel ones included) in every colour.
    """
    pairs = split_pairs(split)
    rng = random.Random(seed)
    specs = []
    for _ in range(n):
        shape, colour = rng.choice(pairs)
        specs.append(
            ShapeSpec(
                shape, colour, rng.choice(tuple(BACKGROUNDS)), rng.choice(SIZES), seed=rng.getrandbits(32)
            )
        )
    return specs


def render_batch(specs: Sequence[ShapeSpec], size: int = 32) -> np.ndarray:
    """Images as a uint8 array (N, size, size, 3)."""
    return np.stack([np.asarray(render(s, size)) for s in specs])


def iter_examples(n: int, seed: int, split: str = "train", size: int = 32) -> Iterator[dict]:
    """Rows for a ``datasets.Dataset``: image, attributes, a caption (template chosen by the seed)."""
    for spec in sample_specs(n, seed, split):
        row = asdict(spec)
        row["image"] = render(spec, size)
        row["caption"] = spec.caption(spec.seed)
        row["held_out"] = spec.held_out
        yield row


def build_dataset(n: int = 20_000, seed: int = 0, split: str = "train", size: int = 32):
    """The ``shapes`` split as a ``datasets.Dataset`` with an ``Image`` feature and attribute columns."""
    from datasets import ClassLabel, Dataset, Features, Value
    from datasets import Image as ImageFeature

    features = Features(
        {
            "image": ImageFeature(),
            "caption": Value("string"),
            "shape": ClassLabel(names=list(ATTRIBUTES["shape"])),
            "colour": ClassLabel(names=list(COLOURS)),
            "background": ClassLabel(names=list(BACKGROUNDS)),
            "size": ClassLabel(names=list(SIZES)),
            "seed": Value("int64"),
            "held_out": Value("bool"),
        }
    )
    rows = list(iter_examples(n, seed, split, size))
    columns = {name: [row[name] for row in rows] for name in features}
    return Dataset.from_dict(columns, features=features)
