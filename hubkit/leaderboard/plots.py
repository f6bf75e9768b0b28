"""Trade-off plots of the leaderboard table (PNG bytes): quality vs cost, erasure efficacy vs preservation."""

from __future__ import annotations

import io
import json
import re

import pandas as pd

__all__ = ["erasure_tradeoff", "plot_all", "quality_vs_cost"]


def _figure():
    import matplotlib

    matplotlib.use("Agg")  # files only; never a window
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=110)
    ax.grid(alpha=0.3)
    return plt, fig, ax


def _png(plt, fig) -> bytes:
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def _steps_curves(table: pd.DataFrame) -> dict[str, list[tuple[float, float]]]:
    """Per model, (UNet evaluations, alignment) points of a steps sweep (``alignment@k`` columns)."""
    curves: dict[str, list[tuple[float, float]]] = {}
    for _, row in table.iterrows():
        for column in table.columns:
            match = re.fullmatch(r"alignment@(.+)", column)
            evals = f"unet_evals@{match.group(1)}" if match else None
            if match and evals in table.columns and pd.notna(row[column]) and pd.notna(row[evals]):
                curves.setdefault(row["model"], []).append((float(row[evals]), float(row[column])))
    return {model: sorted(points) for model, points in curves.items()}


def quality_vs_cost(table: pd.DataFrame) -> bytes | None:
    """Prompt alignment against UNet evaluations per image: single points per suite, curves for sweeps."""
    points = table.dropna(subset=[c for c in ("alignment", "unet_evals") if c in table.columns])
    curves = _steps_curves(table)
    if ("alignment" not in table.columns or points.empty) and not curves:
        return None
    plt, fig, ax = _figure()
    if "alignment" in points.columns and "unet_evals" in points.columns:
        for _, row in points.iterrows():
            ax.scatter(row["unet_evals"], row["alignment"], s=40)
            ax.annotate(f"{row['model']} ({row['suite']})", (row["unet_evals"], row["alignment"]), fontsize=7)
    for model, curve in curves.items():
        xs, ys = zip(*curve, strict=True)
        ax.plot(xs, ys, marker="o", label=f"{model} (steps sweep)")
    if curves:
        ax.legend(fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("UNet evaluations per image (log)")
    ax.set_ylabel("prompt alignment")
    ax.set_title("Quality vs cost")
    return _png(plt, fig)


def erasure_tradeoff(table: pd.DataFrame) -> bytes | None:
    """Erasure efficacy (1 − presence of the concept on its prompts) vs preservation (alignment elsewhere)."""
    needed = ("target_presence", "unrelated_alignment")
    if not all(c in table.columns for c in needed):
        return None
    rows = table.dropna(subset=list(needed))
    if rows.empty:
        return None
    plt, fig, ax = _figure()
    for _, row in rows.iterrows():
        concept = json.loads(row["params"] or "{}").get("concept", "?")
        x, y = 1.0 - row["target_presence"], row["unrelated_alignment"]
        ax.scatter(x, y, s=40)
        ax.annotate(f"{row['model']} [{concept}]", (x, y), fontsize=7)
    ax.set_xlim(-0.05, 1.05)
    ax.set_ylim(-0.05, 1.05)
    ax.set_xlabel("efficacy: 1 − presence of the erased concept")
    ax.set_ylabel("preservation: alignment on unrelated prompts")
    ax.set_title("Erasure: efficacy vs preservation (top right is best)")
    return _png(plt, fig)


def plot_all(table: pd.DataFrame) -> dict[str, bytes]:
    plots = {"quality_vs_cost.png": quality_vs_cost(table), "erasure_tradeoff.png": erasure_tradeoff(table)}
    return {name: png for name, png in plots.items() if png is not None}
