"""Labelled image grids: what people look at to see what a model does."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

DEMO_PROMPTS = (
    "a red circle on a white background",
    "a blue square on a black background",
    "a green triangle on a gray background",
    "a yellow diamond on a black background",
    "a large orange cross",
    "a small purple ring",
    "a crimson circle",
    "a blue box",
)


def label_grid(
    rows: Sequence[tuple[str, Sequence[Image.Image]]], scale: int = 3, label_width: int = 330
) -> Image.Image:
    """One row per label: the text on the left, the images (upscaled, pixels kept sharp) to its right."""
    font = ImageFont.load_default()
    cell = max(img.width for _, images in rows for img in images) * scale
    columns = max(len(images) for _, images in rows)
    grid = Image.new("RGB", (label_width + columns * (cell + 4), len(rows) * (cell + 4)), "white")
    draw = ImageDraw.Draw(grid)
    for r, (label, images) in enumerate(rows):
        y = r * (cell + 4)
        draw.text((6, y + cell // 2 - 6), label, fill="black", font=font)
        for c, img in enumerate(images):
            grid.paste(img.resize((cell, cell), Image.Resampling.NEAREST), (label_width + c * (cell + 4), y))
    return grid


def sample_grid(
    pipe, prompts: Sequence[str] = DEMO_PROMPTS, seeds: Sequence[int] = (0, 1, 2, 3), out: Path | None = None
) -> Image.Image:
    """Generate ``prompts`` × ``seeds`` with the pipeline's default call settings and lay them out."""
    import torch

    rows = []
    for prompt in prompts:
        generators = [torch.Generator("cpu").manual_seed(s) for s in seeds]
        images = pipe([prompt] * len(seeds), generator=generators).images
        rows.append((prompt, images))
    grid = label_grid(rows)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        grid.save(out)
    return grid
