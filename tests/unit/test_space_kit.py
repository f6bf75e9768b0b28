"""The helpers every Space shares: repo ids a visitor types, settings from the environment."""

from __future__ import annotations

import pytest

from hubkit.space_kit import (
    LoadError,
    empty_table,
    enlarged,
    env_list,
    first_line,
    repo_id,
    repo_selection,
    whole,
)


def test_repo_id_accepts_namespace_name_only(tmp_path, monkeypatch):
    assert repo_id("  hubkit/sara-heart ", "adapter") == "hubkit/sara-heart"
    for bad, why in [("sara-heart", "namespace/name"), ("a/b/c", "namespace/name"), ("hub kit/x", "")]:
        with pytest.raises(LoadError, match=f"`{bad}` is not a valid adapter repo id.*{why}"):
            repo_id(bad, "adapter")
    (tmp_path / "ns" / "local").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(LoadError, match="names a folder on the Space's disk"):
        repo_id("ns/local", "SPM")


def test_repo_selection_dedupes_in_order_and_caps():
    assert repo_selection("a/x, b/y,,a/x", "SPM", 3) == ["a/x", "b/y"]
    assert repo_selection(None, "SPM", 3) == []
    with pytest.raises(LoadError, match="3 SPMs selected: at most 2 at a time"):
        repo_selection(["a/x", "b/y", "c/z"], "SPM", 2)


def test_env_list_default_unset_and_empty(monkeypatch):
    monkeypatch.delenv("HUBKIT_TEST_LIST", raising=False)
    assert env_list("HUBKIT_TEST_LIST", "a/x,b/y") == ["a/x", "b/y"]
    monkeypatch.setenv("HUBKIT_TEST_LIST", "")
    assert env_list("HUBKIT_TEST_LIST", "a/x") == []
    monkeypatch.setenv("HUBKIT_TEST_LIST", " c/z , c/z")
    assert env_list("HUBKIT_TEST_LIST", "a/x") == ["c/z"]


def test_first_line():
    assert first_line(ValueError("one\ntwo")) == "one"
    assert first_line(KeyError()) == "KeyError"


def test_whole_numbers_in_range_or_a_clear_refusal():
    import gradio as gr

    assert whole(None, 25, 1, 50, "The steps") == 25 and whole("", 4, 1, 8, "x") == 4
    assert whole(7.0, 0, 0, 9, "x") == 7 and whole("3", 0, 0, 9, "x") == 3
    for bad in (2.5, 51, -1, "many"):
        with pytest.raises(gr.Error, match="The steps must be a whole number from 1 to 50"):
            whole(bad, 25, 1, 50, "The steps")


def test_enlarged_keeps_every_pixel_square_and_empty_table_has_typed_columns():
    import numpy as np
    from PIL import Image

    small = Image.fromarray(np.arange(4 * 2 * 3, dtype=np.uint8).reshape(2, 4, 3))
    big = enlarged(small, 16)
    assert big.size == (16, 8)
    assert np.array_equal(np.asarray(big)[::4, ::4], np.asarray(small))  # nearest neighbour, 4x4 blocks
    table = empty_table({"model": "str", "seconds": "number"})
    assert list(table.columns) == ["model", "seconds"] and len(table) == 0
    assert str(table.dtypes["seconds"]) == "float64" and str(table.dtypes["model"]) == "object"
