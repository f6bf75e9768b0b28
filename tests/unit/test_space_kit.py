"""The helpers every Space shares: repo ids a visitor types, settings from the environment."""

from __future__ import annotations

import pytest

from hubkit.space_kit import LoadError, env_list, first_line, repo_id, repo_selection


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
