"""Suites as data: shipped suites load, are pinned by version + digest, and expand to the right prompts."""

from __future__ import annotations

import json

import pytest

from hubkit.leaderboard.suite import SuiteError, available_suites, load_suite, suite_key
from hubkit.world import shapes

# Changing what a suite generates or computes must bump its version: update the pin with the bump.
PINNED = {
    "shapes-erasure_concept-red": (
        1,
        "sha256:b526cc9e6ea783142eb1020a44aaec744e51d4d4cfc6e51a0a5d69da5d63edfb",
    ),
    "shapes-heldout": (1, "sha256:2b8dabde8695a88c5a22752cff54f769a21b444c2385672b78302aed1d6ce972"),
    "shapes-paraphrase": (1, "sha256:ff5fbe30231ff6e123d2a977e6f16fc08fc8f613e51f556aa1c3aae0cb730075"),
    "shapes-quality": (1, "sha256:9580eae7feed51fd175a692a451efbe7754511fa33fc051ebbf4d57484a4a77e"),
    "shapes-speed": (1, "sha256:8b887c163e1c4ba5aaf3f2f689c89380387808ae022328c9be515d285cab7609"),
}


def _load(name: str):
    return load_suite(name, {"concept": "red"} if name == "shapes-erasure" else {})


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
    from hubkit.leaderboard.suite import SUITES_DIR

    return SUITES_DIR / f"{name}.json"


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
