"""The leaderboard table and its plots: one row per model weights (card commits do not split a model), and
the trade-off plots the suites declare, drawn with fitted axes and labelled points."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
from huggingface_hub.hf_api import RepoFile

from hubkit.leaderboard import records
from hubkit.leaderboard.board import Leaderboard, records_table, to_markdown
from hubkit.leaderboard.plots import declared_plots, draw, plot_all, plots_json, png_name, read_plots_json
from hubkit.leaderboard.suite import load_suite, suite_key

ROOT = Path(__file__).resolve().parents[2]
BASE = "hubkit/tiny-sd-shapes"
ERASER = "hubkit/eraser-red"
SWEEP = {1: (0.1, 30.0), 2: (0.3, 20.0), 4: (0.7, 8.0), 8: (0.9, 3.0), 25: (0.96, 1.8), 50: (0.965, 1.7)}


def record(
    model, revision, suite, metrics, *, card=None, date="2025-06-01T12:00:00Z", method="pipeline", **params
):
    return {
        "model": {
            "id": model,
            "revision": revision,
            "method": method,
            "kind": "pipeline",
            "base_model": None,
        },
        "suite": {"name": suite, "version": 1, "key": suite_key(suite, params), "params": params},
        "metrics": metrics,
        "env": {"hubkit": "0.1.0"},
        "date": date,
        "card_commit": card,
    }


def erased(presence: float, unrelated: float) -> dict[str, float]:
    return {"target_presence": presence, "unrelated_alignment": unrelated}


def demo_records() -> list[dict]:
    """What ``make demo`` leaves: the base evaluated on four suites, each evaluation committing its card
    (so each next one runs at the previous one's card commit), two erasers and a few-step adapter."""
    speed = {f"alignment@{k}": a for k, (a, _) in SWEEP.items()} | {
        f"fd@{k}": f for k, (_, f) in SWEEP.items()
    }
    fast = {f"alignment@{k}": 0.85 + 0.01 * n for n, k in enumerate(SWEEP)}
    fast |= {f"fd@{k}": 3.0 - 0.1 * n for n, k in enumerate(SWEEP)} | {
        f"unet_evals@{k}": float(k) for k in SWEEP
    }
    return [
        record(BASE, "r0", "shapes-quality", {"alignment": 0.96, "fd": 1.8, "unet_evals": 50.0}, card="c1"),
        record(BASE, "c1", "shapes-erasure", erased(0.93, 0.96), card="c2", concept="red"),
        record(BASE, "c2", "shapes-speed", speed | {f"unet_evals@{k}": 2.0 * k for k in SWEEP}, card="c3"),
        record(BASE, "c3", "shapes-heldout", {"alignment": 0.8, "fd": 2.5, "unet_evals": 50.0}, card="c4"),
        record(ERASER, "s1", "shapes-erasure", erased(0.04, 0.95), card="s2", method="eraser", concept="red"),
        record(
            ERASER,
            "s2",
            "shapes-quality",
            {"alignment": 0.95, "fd": 2.0, "unet_evals": 50.0},
            card="s3",
            method="eraser",
        ),
        record("hubkit/few-step", "l1", "shapes-speed", fast, card="l2", method="few-step"),
    ]


def test_weights_revision_follows_card_commits_back() -> None:
    chain = demo_records()
    mine = [r for r in chain if r["model"]["id"] == BASE]
    assert [records.weights_revision(rev, mine) for rev in ("r0", "c1", "c2", "c3", "c4")] == ["r0"] * 5
    assert records.weights_revision("w2", mine) == "w2"  # new weights: not a card commit of any record
    assert records.weights_revision(None, mine) is None  # a local folder
    loop = [record(BASE, "a", "s", {}, card="b"), record(BASE, "b", "s", {}, card="a")]
    assert records.weights_revision("a", loop) in {"a", "b"}  # a broken chain cannot hang


def test_card_commits_do_not_split_a_model() -> None:
    table = records_table(demo_records())
    base = table[table["model"] == BASE]
    assert len(base) == 4 and set(base["revision"]) == {"r0"}  # one model, one revision, on four suites
    assert set(table[table["model"] == ERASER]["revision"]) == {"s1"}
    # A re-evaluation at a later card commit replaces the row; new weights make rows of their own.
    again = record(
        BASE, "c4", "shapes-quality", {"alignment": 0.97, "fd": 1.7, "unet_evals": 50.0}, card="c5"
    )
    new = record(BASE, "w2", "shapes-quality", {"alignment": 0.5, "fd": 9.0, "unet_evals": 50.0}, card="c6")
    table = records_table([*demo_records(), again | {"date": "2025-06-02T00:00:00Z"}, new])
    quality = table[(table["model"] == BASE) & (table["suite"] == "shapes-quality")]
    assert sorted(zip(quality["revision"], quality["alignment"], strict=True)) == [("r0", 0.97), ("w2", 0.5)]
    assert "| hubkit/tiny-sd-shapes | r0 |" in to_markdown(table)


class FakeHub:
    """``list_repo_tree`` / ``list_repo_commits`` of one model whose commits are given as their files."""

    def __init__(self, commits: dict[str, dict[str, str]]):
        self.commits, self.calls = commits, 0

    def list_repo_tree(self, model, revision, recursive):
        self.calls += 1
        return [RepoFile(path=path, size=1, oid=oid) for path, oid in self.commits[revision].items()]

    def list_repo_commits(self, model):
        return [SimpleNamespace(commit_id=sha) for sha in reversed(self.commits)]  # newest first


def test_commits_that_change_only_the_card_keep_the_weights_revision() -> None:
    """Someone edits the README after the evaluations: the same weights, the same row (and fresh)."""
    weights = {"unet/diffusion_pytorch_model.safetensors": "w1", "model_index.json": "m"}
    hub = FakeHub(
        {
            "r0": weights | {"README.md": "a"},
            "c1": weights | {"README.md": "b", ".eval_results/shapes-quality.yaml": "e"},
            "c4": weights | {"README.md": "c"},
            "e5": weights | {"README.md": "d", "hubkit.json": "h", ".gitattributes": "g"},  # edited by hand
            "w2": {**weights, "unet/diffusion_pytorch_model.safetensors": "w2", "README.md": "d"},
        }
    )
    board = Leaderboard(api=hub)
    mine = [r for r in demo_records() if r["model"]["id"] == BASE]
    late = record(BASE, "e5", "shapes-paraphrase", {"alignment_colour": 0.9, "alignment_shape": 0.8})
    found = board.weights_revisions([*mine, late], {BASE: "w2"})
    assert {found[(BASE, rev)] for rev in ("r0", "c1", "c2", "c3", "e5")} == {"r0"}
    assert found[(BASE, "w2")] == "w2"
    table = records_table([*mine, late], found)
    assert len(table) == 5 and set(table["revision"]) == {"r0"}
    assert set(records_table([*mine, late])["revision"]) == {"r0", "e5"}  # records alone cannot tell
    assert board.weights_revisions(mine) == {(BASE, rev): "r0" for rev in ("r0", "c1", "c2", "c3")}
    calls = hub.calls
    board.weights_revisions([*mine, late])
    assert hub.calls == calls  # trees are read once per commit


def test_fresh_at_any_card_commit_of_the_weights(monkeypatch) -> None:
    hub = FakeHub({"r0": {"unet.safetensors": "1"}, "w2": {"unet.safetensors": "2"}})
    board = Leaderboard(api=hub)
    monkeypatch.setattr(
        board, "suites_of", lambda model, rev: [("shapes-quality", {}), ("shapes-heldout", {})]
    )
    assert board.is_fresh(BASE, "c4", demo_records())  # the head after the last card write-back
    assert board.is_fresh(BASE, "r0", demo_records()) and hub.calls == 0  # no need to ask the Hub
    assert not board.is_fresh(BASE, "w2", demo_records())  # new weights


class ConfigHub:
    """``hf_hub_download`` of the UNet and scheduler configs of tiny SD repos (``repo@revision``: arch)."""

    def __init__(self, root: Path, repos: dict[str, str | None]):
        from hubkit.architectures import scheduler_config, unet_config

        self.root, self.downloads = root, []
        for ref, arch in repos.items():
            folder = root / ref
            (folder / "unet").mkdir(parents=True)
            (folder / "scheduler").mkdir()
            unet = unet_config(arch) if arch else {"in_channels": 3}  # None: no Stable Diffusion UNet
            (folder / "unet" / "config.json").write_text(json.dumps(unet))
            prediction = scheduler_config(arch)[1]["prediction_type"] if arch else "epsilon"
            (folder / "scheduler" / "scheduler_config.json").write_text(
                json.dumps({"prediction_type": prediction})
            )

    def hf_hub_download(self, repo, name, revision=None):
        self.downloads.append((repo, revision, name))
        return str(self.root / f"{repo}@{revision}" / name)


def test_rows_name_their_base_architecture_derived_for_older_records(tmp_path) -> None:
    """Records written before evaluations recorded the base's family get it from the base's configs at its
    revision (a pipeline's own); the table has the column, filters by it and shows it."""
    from hubkit.leaderboard.board import of_architecture

    def adapter(model, base, arch=None):
        made = record(model, "a1", "shapes-quality", {"alignment": 0.9}, method="lora")
        made["model"] |= {"kind": "adapter", "base_model": base, "base_revision": "b1"}
        if arch:
            made["model"]["architecture"] = arch
        return made

    hub = ConfigHub(tmp_path, {"alice/xl@b1": "sdxl", "alice/v@b1": "sd21", "hubkit/base@r0": "sd15"})
    hub_judge = ConfigHub(tmp_path / "j", {"alice/judge@b1": None})
    board = Leaderboard(api=hub)
    old = [
        adapter("alice/xl-lora", "alice/xl"),
        adapter("alice/xl-lora-2", "alice/xl"),
        adapter("alice/v-lora", "alice/v"),
    ]
    new = adapter("alice/new", "alice/unreadable", arch="sd1")
    base = record("hubkit/base", "r0", "shapes-quality", {"alignment": 0.96})
    filled = [board.with_architecture(r) for r in [*old, new, base]]
    assert [r["model"]["architecture"] for r in filled] == ["sdxl", "sdxl", "sd2", "sd1", "sd1"]
    assert "architecture" not in old[0]["model"]  # the records themselves are left as they were
    assert sorted({d[:2] for d in hub.downloads}) == [
        ("alice/v", "b1"),
        ("alice/xl", "b1"),
        ("hubkit/base", "r0"),
    ]
    assert len(hub.downloads) == 6  # each base's two configs read once
    assert (
        Leaderboard(api=hub_judge).with_architecture(adapter("j", "alice/judge"))["model"]["architecture"]
        is None
    )

    table = records_table(filled)
    assert list(table.columns[:6]) == ["model", "revision", "method", "kind", "base_model", "architecture"]
    assert list(of_architecture(table, "sdxl")["model"]) == ["alice/xl-lora", "alice/xl-lora-2"]
    assert list(of_architecture(table, None)["model"]) == list(table["model"])
    assert of_architecture(table.drop(columns="architecture"), "sd1").empty  # a table from an older hubkit
    assert "| alice/v-lora | a1 | lora | sd2 | {} | 0.9000 |" in to_markdown(table)
    assert records_table(old)["architecture"].isna().all()  # records alone cannot tell


def test_evaluation_takes_the_family_of_the_base_it_loaded() -> None:
    from hubkit.architectures import unet_config
    from hubkit.leaderboard.evaluation import EvalError, artifact_architecture
    from hubkit.methods import Artifact

    pipe = SimpleNamespace(unet=SimpleNamespace(config=unet_config("sd15")), scheduler=None)
    old = Artifact("alice/old", Path("."))
    assert artifact_architecture(old, pipe) == "sd1"
    tagged = Artifact("alice/xl", Path("."), card_data={"tags": ["base-architecture:sdxl"]})
    with pytest.raises(
        EvalError, match=r"alice/xl says its base is sdxl .* the base it was loaded on is sd1"
    ):
        artifact_architecture(tagged, pipe)
    judge = SimpleNamespace(config={"in_channels": 3})  # no Stable Diffusion UNet: as the artifact says
    assert (
        artifact_architecture(Artifact("a/j", Path("."), hubkit_json={"architecture": "sd2"}), judge) == "sd2"
    )


def test_plot_all_draws_what_the_suites_declare(tmp_path) -> None:
    table = records_table(demo_records())
    declared = declared_plots(table)
    assert set(declared) == {"shapes-quality", "shapes-erasure", "shapes-speed", "shapes-heldout"}
    assert declared["shapes-erasure"] == [
        p.to_json() for p in load_suite("shapes-erasure", {"concept": "red"}).plots
    ]
    pngs = plot_all(table)
    expected = {png_name(p) for plots in declared.values() for p in plots}
    assert set(pngs) == expected and "shapes-erasure-erasure_tradeoff.png" in pngs
    assert all(png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000 for png in pngs.values())
    assert plot_all(table, {}) == {}  # nothing declared, nothing drawn
    assert plot_all(table.iloc[:0]) == {}
    unknown = table.assign(suite="from-a-file")  # a suite hubkit cannot load: no declarations, no error
    assert declared_plots(unknown) == {}


def _texts(figure) -> list[str]:
    return [t.get_text() for t in figure.axes[0].texts]


def test_scatter_axes_fit_the_data_and_every_point_is_labelled() -> None:
    table = records_table(demo_records())
    rows = table[table["suite"] == "shapes-erasure"]
    (plot,) = declared_plots(table)["shapes-erasure"]
    figure = draw(plot, rows)
    ax = figure.axes[0]
    efficacy = sorted(1 - rows["target_presence"])  # 0.07 and 0.96
    low, high = ax.get_xlim()
    assert low < efficacy[0] and high > efficacy[-1] and high - low < 1.3 * (efficacy[-1] - efficacy[0])
    low, high = ax.get_ylim()
    assert 0.9 < low < 0.95 < 0.96 < high < 1.0  # not 0–1: the two points differ by 0.01
    assert sorted(_texts(figure)) == ["eraser-red [red]", "tiny-sd-shapes [red]"]
    assert ax.get_xlabel() == plot["x_label"] and "top right is better" in [
        t.get_text() for t in ax.texts
    ] + [ax.get_title(loc="right")]
    legend = figure.legends[0]
    assert [t.get_text() for t in legend.get_texts()] == ["eraser", "pipeline"]  # coloured by method


def test_a_sweep_draws_one_labelled_curve_per_row() -> None:
    table = records_table(demo_records())
    rows = table[table["suite"] == "shapes-speed"]
    plot = next(p for p in declared_plots(table)["shapes-speed"] if p["y"] == "alignment")
    figure = draw(plot, rows)
    ax = figure.axes[0]
    assert len(ax.lines) == 2 and ax.get_xscale() == "log"
    base = next(line for line in ax.lines if list(line.get_xdata()) == [2.0 * k for k in SWEEP])
    assert list(base.get_ydata()) == [a for a, _ in SWEEP.values()]
    texts = _texts(figure)
    assert {"tiny-sd-shapes", "few-step"} <= set(texts)
    assert texts.count("25") == 2 and texts.count("1") == 2  # each point numbered by its step count
    assert ax.get_xlim()[0] < 1 and ax.get_xlim()[1] > 100


def test_rows_without_the_plotted_columns_draw_nothing() -> None:
    table = records_table(demo_records())
    (plot,) = declared_plots(table)["shapes-erasure"]
    assert draw(plot, table[table["suite"] == "shapes-quality"]) is None
    log_plot = {**plot, "log_x": True, "x_transform": None}
    zero = table[table["suite"] == "shapes-erasure"].assign(target_presence=[0.0, float("nan")])
    assert draw(log_plot, zero) is None  # 0 cannot sit on a log axis; NaN is no value
    twice = pd.concat([table[table["suite"] == "shapes-erasure"]] * 2).reset_index(drop=True)
    twice.loc[2:, "revision"] = "w2"
    assert sorted(_texts(draw(plot, twice)))[:2] == ["eraser-red [red] @s1", "eraser-red [red] @w2"]


def test_plots_json_round_trip() -> None:
    declared = declared_plots(records_table(demo_records()))
    document = json.loads(plots_json(declared))
    assert document["schema_version"] == 1 and read_plots_json(plots_json(declared)) == declared
    with pytest.raises(ValueError, match="expected"):
        read_plots_json(b"[]")
    with pytest.raises(ValueError, match="suite 's'"):
        read_plots_json(json.dumps({"suites": {"s": [{"name": "p"}]}}))


def test_the_space_draws_with_the_same_code() -> None:
    """The Space cannot import hubkit: it ships a copy of plots.py, kept equal here."""
    space_copy = ROOT / "spaces" / "leaderboard" / "leaderboard_plots.py"
    assert space_copy.read_text() == (ROOT / "hubkit" / "leaderboard" / "plots.py").read_text(), (
        "copy hubkit/leaderboard/plots.py to spaces/leaderboard/leaderboard_plots.py"
    )


def test_eval_plot_option_saves_every_declared_plot(tmp_path) -> None:
    from hubkit.leaderboard.cli import _save_plot

    suite = {
        "name": "t",
        "version": 1,
        "groups": {"g": {"pairs": "held_out"}},
        "metrics": [{"metric": "prompt_alignment", "group": "g", "outputs": {"alignment": "alignment"}}],
        "plots": [
            {"name": "cost", "x": "unet_evals", "y": "alignment"},
            {"name": "other", "x": "alignment", "y": "unet_evals"},
        ],
    }
    path = tmp_path / "t.json"
    path.write_text(json.dumps(suite))
    one = record("alice/m", "r", "t", {"alignment": 0.9, "unet_evals": 6.0})
    _save_plot(one, tmp_path / "out" / "plot.png", str(path), {})
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["plot-other.png", "plot.png"]
