"""Trade-off plots of the leaderboard table, drawn from the plots its suites declare.

A suite declares its plots (``"plots"`` in its JSON; see ``PlotSpec`` in ``hubkit/leaderboard/suite.py``): two
metric columns, how to colour the points, which corner is better. This module draws any such declaration over
the suite's rows: one point per row, every point labelled, axes fitted to the data; in a suite with a sweep,
one curve per row through its ``metric@value`` columns. It knows no suite, metric or method by name.

The leaderboard Space draws with this same file: ``spaces/leaderboard/leaderboard_plots.py`` is a copy (a
test keeps the two equal), so apart from ``declared_plots`` (hubkit's side only) it needs nothing but pandas
and matplotlib.
"""

from __future__ import annotations

import io
import itertools
import json
import math
import re
from typing import Any

import numpy as np
import pandas as pd

PLOTS_FILE = "plots.json"
"""Beside ``leaderboard.parquet`` in the results dataset: the declarations of the suites in the table."""
SCHEMA_VERSION = 1
PALETTE = "tab10"
LABEL_SIZE = 7.5

__all__ = [
    "PLOTS_FILE",
    "declared_plots",
    "draw",
    "plot_all",
    "plots_json",
    "png_name",
    "read_plots_json",
    "to_png",
]


# ----------------------------------------------------------------------------------- declarations


def declared_plots(table: pd.DataFrame) -> dict[str, list[dict[str, Any]]]:
    """The plot declarations of the suites in ``table``, by suite name, as hubkit's suites give them today
    (a suite hubkit cannot load, e.g. one evaluated from a file, has none)."""
    from hubkit.leaderboard.suite import SuiteError, load_suite

    found: dict[str, list[dict[str, Any]]] = {}
    if table.empty or "suite" not in table.columns:
        return found
    for suite, rows in table.groupby("suite", sort=True):
        params = json.loads(rows["params"].iloc[0] or "{}") if "params" in rows.columns else {}
        try:
            plots = load_suite(str(suite), params).plots
        except SuiteError:
            continue
        if plots:
            found[str(suite)] = [plot.to_json() for plot in plots]
    return found


def plots_json(declarations: dict[str, list[dict[str, Any]]]) -> bytes:
    """``plots.json``: ``{"schema_version": 1, "suites": {suite: [declaration, ...]}}``."""
    document = {"schema_version": SCHEMA_VERSION, "suites": declarations}
    return (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode()


def read_plots_json(data: bytes | str) -> dict[str, list[dict[str, Any]]]:
    """The declarations in a ``plots.json``; ValueError naming the problem when it is not one."""
    document = json.loads(data)
    if not isinstance(document, dict) or not isinstance(document.get("suites"), dict):
        raise ValueError('expected {"schema_version": 1, "suites": {suite: [plot, ...]}}')
    suites = {}
    for suite, plots in document["suites"].items():
        if not isinstance(plots, list) or not all(
            isinstance(p, dict) and {"name", "x", "y"} <= set(p) for p in plots
        ):
            raise ValueError(f"suite {suite!r}: expected a list of plots, each with a name, x and y")
        suites[str(suite)] = plots
    return suites


def png_name(plot: dict[str, Any]) -> str:
    """The file a plot is saved as: ``<suite>-<name>.png``."""
    return f"{plot['suite']}-{plot['name']}.png"


def plot_all(
    table: pd.DataFrame, declarations: dict[str, list[dict[str, Any]]] | None = None
) -> dict[str, bytes]:
    """Every declared plot of the suites in ``table`` as PNG bytes, by file name (``png_name``); plots with
    nothing to show are left out. ``declarations`` default to ``declared_plots(table)``."""
    if declarations is None:
        declarations = declared_plots(table)
    pngs = {}
    for suite, plots in sorted(declarations.items()):
        rows = table[table["suite"] == suite] if "suite" in table.columns else table.iloc[:0]
        for plot in plots:
            figure = draw({"suite": suite, **plot}, rows)
            if figure is not None:
                pngs[png_name({"suite": suite, **plot})] = to_png(figure)
    return pngs


# ------------------------------------------------------------------------------------------- drawing


def _params(row: pd.Series) -> dict[str, Any]:
    try:
        params = json.loads(row.get("params") or "{}")
    except (TypeError, ValueError):
        return {}
    return params if isinstance(params, dict) else {}


def _colour_key(row: pd.Series, column: str) -> str:
    value = row.get(column) if column in row.index else _params(row).get(column)
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)


def _labels(rows: pd.DataFrame) -> list[str]:
    """Model short name, its suite parameters' values, and its revision when one model shows twice."""
    labels = []
    for _, row in rows.iterrows():
        name = str(row.get("model") or "?").rstrip("/").split("/")[-1]
        params = _params(row)
        if params:
            name += " [" + ", ".join(str(v) for v in params.values()) + "]"
        labels.append(name)
    if "revision" not in rows.columns:
        return labels
    revisions = rows["revision"].fillna("").astype(str).tolist()
    shown = {
        label: {r for other, r in zip(labels, revisions, strict=True) if other == label} for label in labels
    }
    return [
        f"{label} @{revision[:7]}" if len(shown[label]) > 1 else label
        for label, revision in zip(labels, revisions, strict=True)
    ]


def _series(plot: dict[str, Any], rows: pd.DataFrame) -> list[dict[str, Any]]:
    """One entry per row with something to draw: its label, colour key and points [(x, y, point label)]."""
    x_name, y_name = plot["x"], plot["y"]
    if plot.get("sweep"):  # x@k, y@k for every sweep value k that has both columns
        pattern = re.compile(re.escape(x_name) + r"@(.+)")
        found = [m.group(1) for c in rows.columns if (m := pattern.fullmatch(c))]
        columns = [(f"{x_name}@{k}", f"{y_name}@{k}", k) for k in sorted(found, key=_sweep_order)]
    else:
        columns = [(x_name, y_name, None)]
    columns = [c for c in columns if c[0] in rows.columns and c[1] in rows.columns]
    series = []
    for label, (_, row) in zip(_labels(rows), rows.iterrows(), strict=True):
        points = []
        for x_column, y_column, point in columns:
            x = _number(row[x_column], plot.get("x_transform"), plot.get("log_x"))
            y = _number(row[y_column], plot.get("y_transform"), plot.get("log_y"))
            if x is not None and y is not None:
                points.append((x, y, point))
        if points:
            colour = _colour_key(row, plot.get("colour") or "method")
            series.append({"label": label, "colour": colour, "points": points})
    return series


def _number(value: Any, transform: str | None, log: bool | None) -> float | None:
    """The value to plot (transformed), or None when it is missing or cannot sit on a log axis."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    number = 1.0 - number if transform == "1-x" else number
    return number if math.isfinite(number) and not (log and number <= 0) else None


def _sweep_order(value: str) -> tuple[int, float | str]:
    try:
        return (0, float(value))
    except ValueError:
        return (1, value)


def _limits(values: list[float], log: bool) -> tuple[float, float]:
    """The data's range with a margin on each side (a decade-fraction on a log axis)."""
    if log:
        low, high = _limits([math.log10(v) for v in values], log=False)
        return 10**low, 10**high
    low, high = min(values), max(values)
    span = high - low
    pad = span * 0.12 if span > 0 else max(abs(high) * 0.05, 0.02)
    return low - pad, high + pad


def _overlap(box, boxes: np.ndarray) -> float:
    """The area ``box`` (a matplotlib Bbox) shares with ``boxes`` (rows of x0, y0, x1, y1), summed."""
    if not len(boxes):
        return 0.0
    width = np.minimum(box.x1, boxes[:, 2]) - np.maximum(box.x0, boxes[:, 0])
    height = np.minimum(box.y1, boxes[:, 3]) - np.maximum(box.y0, boxes[:, 1])
    return float(np.sum(np.clip(width, 0, None) * np.clip(height, 0, None)))


def _obstacles(ax, series: list[dict[str, Any]], swept: bool) -> np.ndarray:
    """Boxes (display space) around every marker and, for curves, along every segment: labels avoid them."""
    boxes = []
    for s in series:
        marks = ax.transData.transform([(x, y) for x, y, _ in s["points"]])
        boxes += [(px - 5, py - 5, px + 5, py + 5) for px, py in marks]
        if swept:
            for (x0, y0), (x1, y1) in itertools.pairwise(marks):
                steps = max(int(math.hypot(x1 - x0, y1 - y0) / 4), 1)
                for t in np.linspace(0, 1, steps + 1):
                    px, py = x0 + t * (x1 - x0), y0 + t * (y1 - y0)
                    boxes.append((px - 2, py - 2, px + 2, py + 2))
    return np.array(boxes, dtype=float).reshape(-1, 4)


# (dx, dy) in points and the text's alignment there; the nearer ones first.
_OFFSETS = [
    (6, 3, "left", "bottom"),
    (6, -3, "left", "top"),
    (-6, 3, "right", "bottom"),
    (-6, -3, "right", "top"),
    (0, 8, "center", "bottom"),
    (0, -8, "center", "top"),
    (14, 14, "left", "bottom"),
    (14, -14, "left", "top"),
    (-14, 14, "right", "bottom"),
    (-14, -14, "right", "top"),
    (0, 22, "center", "bottom"),
    (0, -22, "center", "top"),
]


def _place_labels(ax, labels: list[tuple[float, float, str, dict[str, Any]]], obstacles: np.ndarray) -> None:
    """Annotate each (x, y) with its text where it covers no marker, line or earlier label and stays inside
    the axes, trying nearer spots first; a label set off from its point gets a thin leader line."""
    renderer = ax.figure.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    taken = np.empty((0, 4))
    for x, y, text, style in labels:
        best = None
        for dx, dy, ha, va in _OFFSETS:
            leader = {"arrowstyle": "-", "lw": 0.5, "color": "0.6", "shrinkA": 1, "shrinkB": 4}
            annotation = ax.annotate(
                text,
                (x, y),
                xytext=(dx, dy),
                textcoords="offset points",
                ha=ha,
                va=va,
                annotation_clip=False,
                arrowprops=leader if abs(dx) > 10 or abs(dy) > 10 else None,
                **style,
            )
            annotation.set_in_layout(False)
            box = annotation.get_window_extent(renderer)
            cost = _overlap(box, taken) * 2 + _overlap(box, obstacles)
            outside = max(frame.x0 - box.x0, 0) + max(box.x1 - frame.x1, 0)
            outside += max(frame.y0 - box.y0, 0) + max(box.y1 - frame.y1, 0)
            cost += outside * box.height * 4
            if best is None or cost < best[0]:
                if best is not None:
                    best[1].remove()
                best = (cost, annotation, box)
            else:
                annotation.remove()
            if cost == 0:
                break
        taken = np.vstack([taken, [best[2].x0, best[2].y0, best[2].x1, best[2].y1]])


def _widen_right(ax, ends: list[tuple[float, str]], style: dict[str, Any], log: bool) -> None:
    """Extend the x axis so that each text fits right of its x (display space, plus the label's offset)."""
    renderer = ax.figure.canvas.get_renderer()
    width = ax.get_window_extent(renderer).width
    scale = math.log10 if log else float
    low, high = (scale(v) for v in ax.get_xlim())
    span = high - low
    for x, text in ends:
        probe = ax.text(0, 0, text, **style)
        room = width - probe.get_window_extent(renderer).width - 14  # the 6 pt offset and a margin
        probe.remove()
        if room > width / 4:
            span = max(span, (scale(x) - low) * width / room)
    ax.set_xlim(ax.get_xlim()[0], 10 ** (low + span) if log else low + span)


def draw(plot: dict[str, Any], rows: pd.DataFrame):
    """A matplotlib Figure of ``plot`` (a declaration, as in ``plots.json``) over ``rows`` (the suite's rows
    of the leaderboard table), or None when no row has both values."""
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FuncFormatter, NullFormatter

    series = _series(plot, rows)
    if not series:
        return None
    figure = Figure(figsize=(7.2, 5.0), dpi=110, layout="constrained")
    FigureCanvasAgg(figure)
    ax = figure.add_subplot()
    ax.grid(alpha=0.3)
    keys = sorted({s["colour"] for s in series})
    palette = matplotlib.colormaps[PALETTE]
    colours = {key: palette(n % palette.N) for n, key in enumerate(keys)}
    swept = bool(plot.get("sweep"))
    for s in series:
        xs, ys = [p[0] for p in s["points"]], [p[1] for p in s["points"]]
        colour = colours[s["colour"]]
        if swept:
            ax.plot(xs, ys, marker="o", markersize=5, lw=1.6, color=colour, zorder=3)
        else:
            ax.scatter(xs, ys, s=46, color=colour, edgecolors="white", linewidths=0.8, zorder=3)

    every = [p for s in series for p in s["points"]]
    if plot.get("log_x"):
        ax.set_xscale("log")
    if plot.get("log_y"):
        ax.set_yscale("log")
    ax.set_xlim(*_limits([p[0] for p in every], bool(plot.get("log_x"))))
    ax.set_ylim(*_limits([p[1] for p in every], bool(plot.get("log_y"))))
    for axis, log in ((ax.xaxis, plot.get("log_x")), (ax.yaxis, plot.get("log_y"))):
        ticks = sorted({p[0] if axis is ax.xaxis else p[1] for p in every})
        if log and len(ticks) <= 10:  # a few values (steps, evaluations): tick exactly there
            axis.set_ticks(ticks)
            axis.set_minor_formatter(NullFormatter())
        if log:
            axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))

    ax.set_xlabel(plot.get("x_label") or plot["x"])
    ax.set_ylabel(plot.get("y_label") or plot["y"])
    ax.set_title(plot.get("title") or plot["name"], loc="left", fontsize=11)
    if plot.get("better"):
        ax.set_title(f"{plot['better']} is better", loc="right", fontsize=8, color="0.4")
    handles = [
        Line2D([], [], marker="o", ls="-" if swept else "", color=colours[k], markersize=6, label=k)
        for k in keys
    ]
    legend_title = plot.get("colour") or "method"
    if swept:
        legend_title += f"  ·  numbers on points: {plot['sweep']}"
    figure.legend(
        handles=handles,
        loc="outside lower center",
        ncols=min(len(handles), 5),
        fontsize=8,
        title=legend_title,
        title_fontsize=8,
        frameon=False,
    )

    figure.draw_without_rendering()  # the final layout, so that labels are placed in display space
    style = {"fontsize": LABEL_SIZE, "color": "0.1"}
    if swept:  # room right of each curve's last point for its label
        _widen_right(ax, [(s["points"][-1][0], s["label"]) for s in series], style, bool(plot.get("log_x")))
        figure.draw_without_rendering()
    labels = [(*s["points"][-1][:2], s["label"], style) for s in series]  # a curve's at its last point
    if swept:
        labels += [
            (x, y, str(point), {"fontsize": 6.5, "color": colours[s["colour"]]})
            for s in series
            for x, y, point in s["points"]
        ]
    _place_labels(ax, labels, _obstacles(ax, series, swept))
    return figure


def to_png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
