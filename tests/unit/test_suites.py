"""Suites as data: shipped suites load, are pinned by version + digest, and expand to the right prompts."""

from __future__ import annotations

import json

import pytest

from hubkit.leaderboard.suite import SuiteError, available_suites, load_suite, suite_key
from hubkit.world import shapes

# Changing what a suite generates or computes must bump its version: update the pin with the bump.
PINNED = {
    "shapes-acquisition": (1, "sha256:fb86f89f578ff741cc68c61d00636736e8e6b193425725a78a140859f9f0fc97"),
    "shapes-attack_concept-red": (
        1,
        "sha256:ba699a562634cc32ac070b93256f9642d8978c2edbb22939bf13935077712222",
    ),
    "shapes-erasure_concept-red": (
        1,
        "sha256:b526cc9e6ea783142eb1020a44aaec744e51d4d4cfc6e51a0a5d69da5d63edfb",
    ),
    "shapes-fidelity": (1, "sha256:0c2d534c35de33ba8c3a8806deed8e91e96385e1fcdc25f7000da7a15213fec0"),
    "shapes-heldout": (1, "sha256:2b8dabde8695a88c5a22752cff54f769a21b444c2385672b78302aed1d6ce972"),
    "shapes-paraphrase": (1, "sha256:ff5fbe30231ff6e123d2a977e6f16fc08fc8f613e51f556aa1c3aae0cb730075"),
    "shapes-quality": (1, "sha256:9580eae7feed51fd175a692a451efbe7754511fa33fc051ebbf4d57484a4a77e"),
    "shapes-speed": (1, "sha256:8b887c163e1c4ba5aaf3f2f689c89380387808ae022328c9be515d285cab7609"),
}


def _load(name: str):
    return load_suite(name, {"concept": "red"} if name in ("shapes-erasure", "shapes-attack") else {})


def test_shipped_suites_are_pinned_by_version_and_digest() -> None:
    assert available_suites() == sorted({key.split("_")[0] for key in PINNED})
    found = {s.key: (s.version, s.digest) for s in map(_load, available_suites())}
    assert found == PINNED


def test_quality_suite_covers_every_trained_pair_with_four_seeds() -> None:
    suite = load_suite("shapes-quality")
    prompts = suite.groups["trained"]
    assert {(p.labels["shape"], p.labels["colour"]) for p in prompts} == set(shapes.trained_pairs())
    assert all(p.seeds == (0, 1, 2, 3) for p in prompts)
    assert suite.n_images == 4 * len(shapes.trained_pairs()) == 172
    assert suite.call_settings == {"num_inference_steps": 25, "guidance_scale": 7.5}


def test_heldout_and_paraphrase_suites() -> None:
    heldout = load_suite("shapes-heldout").groups["held_out"]
    assert {(p.labels["shape"], p.labels["colour"]) for p in heldout} == set(shapes.HELD_OUT_PAIRS)
    colour_words = load_suite("shapes-paraphrase").groups["colour_words"]
    for prompt in colour_words:
        assert prompt.labels["colour"] not in prompt.text.split()  # the canonical word never appears
        assert any(w in prompt.text for w in shapes.SYNONYMS["colour"][prompt.labels["colour"]])


@pytest.mark.parametrize("concept", ["red", "triangle"])
def test_erasure_suite_groups_follow_the_concept(concept: str) -> None:
    suite = load_suite("shapes-erasure", {"concept": concept})
    attribute = "colour" if concept in shapes.COLOURS else "shape"
    neighbours = set(json.loads(_suite_file("shapes-erasure").read_text())["neighbours"][concept])
    assert suite.key == f"shapes-erasure_concept-{concept}"
    assert all(p.labels[attribute] == concept for p in suite.groups["target"])
    assert all(p.labels[attribute] == concept and concept not in p.text for p in suite.groups["paraphrase"])
    assert {p.labels[attribute] for p in suite.groups["neighbour"]} == neighbours
    assert all(p.labels[attribute] not in neighbours | {concept} for p in suite.groups["unrelated"])
    args = {m.args.get("concept") for m in suite.metrics if m.metric == "concept_presence"}
    assert args == {f"{attribute}={concept}"}


def _suite_file(name: str):
    from hubkit.leaderboard.suite import suite_files

    return suite_files()[name]


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("shapes-erasure", {}, "missing ['concept']"),
        ("shapes-erasure", {"concept": "velvet"}, "not a colour or shape"),
        ("shapes-erasure", {"concept": " "}, "not a colour or shape"),
        ("shapes-erasure", {"concept": "white"}, "not a colour or shape"),  # a background, not erasable here
        ("shapes-quality", {"concept": "red"}, "unknown ['concept']"),
        ("shapes-nope", {}, "unknown suite 'shapes-nope'"),
    ],
)
def test_bad_suite_parameters_are_named(name: str, params: dict, message: str) -> None:
    with pytest.raises(SuiteError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_suite(name, params)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"metrics": [{"metric": "nope", "group": "g", "outputs": {"a": "a"}}]}, "unknown metric 'nope'"),
        ({"metrics": [{"metric": "prompt_alignment", "group": "x", "outputs": {"a": "a"}}]}, "unknown group"),
        ({"metrics": [{"metric": "prompt_alignment", "group": "g"}]}, "names no outputs"),
        ({"groups": {"g": {"pairs": "some"}}}, "pairs must be"),
        ({"groups": {"g": {"concept": "with"}}}, "no concept parameter"),
    ],
)
def test_bad_suite_files_are_named(tmp_path, change: dict, message: str) -> None:
    data = {
        "name": "t",
        "version": 1,
        "groups": {"g": {"pairs": "held_out"}},
        "metrics": [{"metric": "prompt_alignment", "group": "g", "outputs": {"alignment": "alignment"}}],
    }
    path = tmp_path / "t.json"
    path.write_text(json.dumps(data | change))
    with pytest.raises(SuiteError, match=message):
        load_suite(path)
    path.write_text("{not json")
    with pytest.raises(SuiteError, match="not valid JSON"):
        load_suite(path)


def test_suite_key_is_path_safe() -> None:
    assert suite_key("shapes-erasure", {"concept": "red"}) == "shapes-erasure_concept-red"
    assert suite_key("shapes-quality", {}) == "shapes-quality"


def test_shipped_suites_declare_plots_of_their_own_columns() -> None:
    for name in available_suites():
        suite = _load(name)
        assert suite.plots, f"{name} declares no plot"
        for plot in suite.plots:
            measured = {c for m in suite.metrics for c in m.outputs.values()} | {"unet_evals"}
            assert {plot.x, plot.y} <= measured and plot.suite == suite.name
            assert plot.sweep == (next(iter(suite.sweep)) if suite.sweep else None)
    erasure = load_suite("shapes-erasure", {"concept": "red"}).plots[0].to_json()
    assert erasure["x"] == "target_presence" and erasure["x_transform"] == "1-x"
    assert erasure["colour"] == "method" and erasure["better"] == "top right"
    assert load_suite("shapes-speed").plots[0].sweep == "num_inference_steps"  # curves over the steps


def _tiny_suite(tmp_path, **extra):
    data = {
        "name": "t",
        "version": 1,
        "parameters": {"concept": "a colour"},
        "neighbours": {"red": ["orange"]},
        "groups": {"g": {"pairs": "held_out"}},
        "metrics": [{"metric": "prompt_alignment", "group": "g", "outputs": {"alignment": "alignment"}}],
        **extra,
    }
    path = tmp_path / "t.json"
    path.write_text(json.dumps(data))
    return load_suite(path, {"concept": "red"})


def test_plots_are_not_part_of_the_digest(tmp_path) -> None:
    """A plot is presentation: declaring or changing one neither changes the digest nor needs a version."""
    plain = _tiny_suite(tmp_path)
    plotted = _tiny_suite(tmp_path, plots=[{"name": "p", "x": "unet_evals", "y": "alignment", "log_x": True}])
    assert plain.plots == () and plotted.digest == plain.digest
    (plot,) = plotted.plots
    assert plot.to_json() == {
        "suite": "t",
        "name": "p",
        "title": "p",
        "x": "unet_evals",
        "y": "alignment",
        "x_label": "unet_evals",
        "y_label": "alignment",
        "x_transform": None,
        "y_transform": None,
        "log_x": True,
        "log_y": False,
        "colour": "method",
        "better": None,
        "sweep": None,
    }
    coloured = _tiny_suite(
        tmp_path, plots=[{"name": "p", "x": "alignment", "y": "alignment", "colour": "concept"}]
    )
    assert coloured.plots[0].colour == "concept"  # a suite parameter may colour the points


@pytest.mark.parametrize(
    ("plots", "message"),
    [
        ({"name": "p"}, "'plots' must be a list"),
        (["p"], "plot 1: a plot declaration must be a JSON object"),
        ([{"x": "alignment", "y": "alignment"}], "plot 1: 'name' must be"),
        (
            [{"name": "p", "x": "alinement", "y": "alignment"}],
            r"plot 'p': x must be a metric column .*'alinement'",
        ),
        ([{"name": "p", "x": "alignment"}], "plot 'p': y must be a metric column"),
        (
            [{"name": "p", "x": "alignment", "y": "alignment", "x_transform": "log"}],
            "plot 'p': x_transform must be one of",
        ),
        (
            [{"name": "p", "x": "alignment", "y": "alignment", "log_y": "yes"}],
            "plot 'p': log_y must be true or false",
        ),
        (
            [{"name": "p", "x": "alignment", "y": "alignment", "colour": "shape"}],
            "plot 'p': colour must be one of",
        ),
        (
            [{"name": "p", "x": "alignment", "y": "alignment", "better": "up"}],
            "plot 'p': better must be one of",
        ),
        (
            [{"name": "p", "x": "alignment", "y": "alignment", "colour_by": "method"}],
            r"plot 'p': unknown keys \['colour_by'\]",
        ),
        ([{"name": "p", "x": "alignment", "y": "alignment"}] * 2, "plot 'p': declared twice"),
    ],
)
def test_bad_plot_declarations_are_named(tmp_path, plots, message: str) -> None:
    with pytest.raises(SuiteError, match="^suite t[,:] " + message):
        _tiny_suite(tmp_path, plots=plots)


def test_novel_shape_groups_draw_the_world_splits() -> None:
    """The acquisition suite asks for the novel shape in the colours a fine-tune saw and in the others."""
    suite = load_suite("shapes-acquisition")
    pairs = {
        g: {(p.labels["shape"], p.labels["colour"]) for p in prompts} for g, prompts in suite.groups.items()
    }
    assert pairs["novel_trained"] == set(shapes.novel_pairs("trained"))
    assert pairs["novel_unseen"] == set(shapes.novel_pairs("unseen"))
    assert pairs["trained"] == set(shapes.trained_pairs())
    assert suite.n_images == 16 * 8 + 4 * 43


def test_suite_path_adds_suites_and_replaces_installed_ones(tmp_path, monkeypatch) -> None:
    shipped = load_suite("shapes-quality")
    quality = {
        "name": "shapes-quality",
        "version": 1,
        "generation": {"num_inference_steps": 3},
        "groups": {"g": {"pairs": "held_out"}},
        "metrics": [{"metric": "prompt_alignment", "group": "g", "outputs": {"alignment": "alignment"}}],
    }
    (tmp_path / "shapes-quality.json").write_text(json.dumps(quality))
    (tmp_path / "mine.json").write_text(json.dumps({**quality, "name": "mine"}))
    monkeypatch.setenv("HUBKIT_SUITE_PATH", str(tmp_path))
    replaced = load_suite("shapes-quality")
    assert replaced.version == 1 and replaced.digest != shipped.digest
    assert len(replaced.groups["g"]) == len(shapes.HELD_OUT_PAIRS) < len(shipped.groups["trained"])
    assert "mine" in available_suites() and "shapes-erasure" in available_suites()
    monkeypatch.setenv("HUBKIT_SUITE_PATH", str(tmp_path / "missing"))
    with pytest.raises(SuiteError, match=r"HUBKIT_SUITE_PATH names .*missing, which is not a folder"):
        available_suites()
