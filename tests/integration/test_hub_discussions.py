"""Pull-request review on the embedded Hub with the stock ``HfApi`` and ``hf`` CLI: the PR ``hubkit eval``
opens on someone else's card is listed, read with its diff, commented and merged by the repo's owner."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from huggingface_hub import CommitOperationAdd, ModelCard
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("hub-discussions")]

TINY_SUITE = Path(__file__).parents[1] / "data" / "tiny-suite.json"


def _status(call) -> int:
    with pytest.raises(HfHubHTTPError) as err:
        call()
    return err.value.response.status_code


def _repo_with_files(hub, name: str, files: dict[str, bytes], private: bool = False) -> tuple[str, str]:
    api = hub.api("alice")
    repo_id = api.create_repo(f"alice/{name}", private=private).repo_id
    ops = [CommitOperationAdd(path, data) for path, data in files.items()]
    return repo_id, api.create_commit(repo_id, ops, commit_message="files").oid


def _edit(api, repo_id: str, files: dict[str, bytes], **kwargs):
    ops = [CommitOperationAdd(path, data) for path, data in files.items()]
    return api.create_commit(repo_id, ops, commit_message=kwargs.pop("message", "edit"), **kwargs)


@pytest.mark.slow
def test_eval_pull_request_is_reviewed_and_merged_by_the_owner(hub, tmp_path):
    from typer.testing import CliRunner

    from hubkit.cli import app
    from hubkit.world.publish import publish_world

    publish_world(endpoint=hub.url, token=hub.users["alice"], namespace="alice", only=["tiny-sd-shapes"])
    repo_id = "alice/tiny-sd-shapes"
    alice, bob = hub.api("alice"), hub.api("bob")
    evaluated = alice.model_info(repo_id).sha
    args = [
        "eval",
        repo_id,
        "--suite",
        str(TINY_SUITE),
        "--results-repo",
        "bob/results",
        "--endpoint",
        hub.url,
    ]
    out = CliRunner().invoke(
        app, [*args, "--token", hub.users["bob"], "--json", str(tmp_path / "record.json")]
    )
    assert out.exit_code == 0, out.output
    record = json.loads((tmp_path / "record.json").read_text())
    assert alice.model_info(repo_id).sha == evaluated  # bob cannot write the card: a pull request instead

    (pr,) = alice.get_repo_discussions(repo_id, discussion_type="pull_request", discussion_status="open")
    assert (pr.author, pr.title, pr.status) == ("bob", "hubkit eval: tiny v1 results", "open")
    details = alice.get_discussion_details(repo_id, pr.num)
    assert details.target_branch == "refs/heads/main" and details.conflicting_files == []
    assert [(e.type, getattr(e, "oid", None)) for e in details.events] == [
        ("comment", None),
        ("commit", record["card_commit"]),
    ]
    assert "diff --git a/README.md b/README.md\n" in details.diff
    assert "new file mode 100644" in details.diff and "+++ b/.eval_results/tiny.yaml\n" in details.diff
    readme = details.diff.split("diff --git a/README.md b/README.md\n")[1].split("diff --git")[0]
    added = [line for line in readme.splitlines() if line.startswith("+") and not line.startswith("+++")]
    # the card's results, pointing at bob's record, as a reviewer reads them
    assert any("bob/results" in line for line in added), readme[:4000]

    alice.comment_discussion(repo_id, pr.num, "Numbers look right, merging.")
    assert _status(lambda: bob.merge_pull_request(repo_id, pr.num)) == 403
    assert alice.model_info(repo_id).sha == evaluated
    alice.merge_pull_request(repo_id, pr.num)

    merged = alice.get_discussion_details(repo_id, pr.num)
    assert merged.status == "merged" and merged.merge_commit_oid == alice.model_info(repo_id).sha
    assert [e.type for e in merged.events] == ["comment", "commit", "comment", "status-change"]
    card = ModelCard.load(alice.hf_hub_download(repo_id, "README.md"))
    on_card = {r.metric_type: r.metric_value for r in card.data.eval_results if r.dataset_config == "tiny"}
    assert on_card == {k: round(v, 6) for k, v in record["metrics"].items()}
    assert [d.num for d in alice.get_repo_discussions(repo_id, discussion_status="closed")] == [pr.num]


def test_stale_pull_request_conflicts_and_a_disjoint_one_lands_on_top(hub):
    repo_id, base = _repo_with_files(hub, "stale", {"a.txt": b"a\n", "b.txt": b"b\n"})
    alice, bob = hub.api("alice"), hub.api("bob")
    # Both PRs start from `base` (the client's parent_commit contract), then main moves on a.txt.
    on_a = _edit(bob, repo_id, {"a.txt": b"a by bob\n"}, create_pr=True, parent_commit=base)
    on_b = _edit(bob, repo_id, {"b.txt": b"b by bob\n"}, create_pr=True, parent_commit=base)
    moved = _edit(alice, repo_id, {"a.txt": b"a by alice\n"}).oid
    num_a, num_b = (int(info.pr_num) for info in (on_a, on_b))

    assert alice.get_discussion_details(repo_id, num_a).conflicting_files == ["a.txt"]
    with pytest.raises(HfHubHTTPError) as err:
        alice.merge_pull_request(repo_id, num_a)
    assert err.value.response.status_code == 409 and "a.txt" in str(err.value)
    assert alice.model_info(repo_id).sha == moved
    assert alice.get_discussion_details(repo_id, num_a).status == "open"

    alice.merge_pull_request(repo_id, num_b)
    head = alice.model_info(repo_id).sha
    assert alice.get_discussion_details(repo_id, num_b).merge_commit_oid == head
    assert [c.commit_id for c in alice.list_repo_commits(repo_id)][1] == moved  # one commit on top of main
    read = {
        p: Path(alice.hf_hub_download(repo_id, p, revision=head)).read_bytes() for p in ("a.txt", "b.txt")
    }
    assert read == {"a.txt": b"a by alice\n", "b.txt": b"b by bob\n"}


def test_discussions_list_filters_edits_and_permissions(hub):
    repo_id, _ = _repo_with_files(hub, "talk", {"notes.txt": b"notes\n"})
    alice, bob, anonymous = hub.api("alice"), hub.api("bob"), hub.api(None)
    question = bob.create_discussion(repo_id, "Which seed?", description="Seed 0 or 1?")
    draft = alice.create_pull_request(repo_id, "Alice's draft")
    bobs_pr = bob.create_pull_request(repo_id, "Bob's PR")
    assert (question.num, draft.num, bobs_pr.num) == (1, 2, 3)  # one sequence with refs/pr/N
    assert (question.status, draft.status, draft.target_branch) == ("open", "draft", "refs/heads/main")

    def nums(**filters) -> list[int]:
        return [d.num for d in anonymous.get_repo_discussions(repo_id, **filters)]

    assert nums() == [3, 2, 1]
    assert nums(discussion_type="discussion") == [1] and nums(discussion_type="pull_request") == [3, 2]
    assert nums(author="bob") == [3, 1] and nums(discussion_status="closed") == []

    # Comments: anyone signed in; edits: the comment's author only; nothing anonymous.
    comment = alice.comment_discussion(repo_id, question.num, "Seed 0.")
    edited = alice.edit_discussion_comment(repo_id, question.num, comment.id, "Seed 0, always.")
    assert (edited.content, edited.edited, edited.number_of_edits) == ("Seed 0, always.", True, 1)
    assert alice.get_discussion_details(repo_id, question.num).events[-1] == edited
    assert _status(lambda: bob.edit_discussion_comment(repo_id, question.num, comment.id, "no")) == 403
    assert _status(lambda: anonymous.comment_discussion(repo_id, question.num, "hi")) == 401
    assert _status(lambda: anonymous.create_discussion(repo_id, "hi")) == 401

    # Title and status: the author or a writer.
    assert bob.rename_discussion(repo_id, question.num, "Which seed, really?").old_title == "Which seed?"
    assert _status(lambda: bob.rename_discussion(repo_id, draft.num, "mine")) == 403
    closed = bob.change_discussion_status(repo_id, question.num, "closed", comment="Answered.")
    assert closed.new_status == "closed" and nums(discussion_status="closed") == [1]
    assert _status(lambda: bob.change_discussion_status(repo_id, draft.num, "closed")) == 403

    # Pushing to refs/pr/N: its author or a writer; a draft must be opened before it merges.
    _edit(bob, repo_id, {"bob.txt": b"from bob\n"}, revision=bobs_pr.git_reference)
    assert _status(lambda: _edit(bob, repo_id, {"x.txt": b"x"}, revision=draft.git_reference)) == 403
    _edit(alice, repo_id, {"alice.txt": b"from alice\n"}, revision=draft.git_reference)
    assert _status(lambda: alice.merge_pull_request(repo_id, draft.num)) == 400
    alice.change_discussion_status(repo_id, draft.num, "open")
    alice.merge_pull_request(repo_id, draft.num, comment="Ship it")
    assert "alice.txt" in alice.list_repo_files(repo_id)
    assert _status(lambda: alice.change_discussion_status(repo_id, draft.num, "closed")) == 400

    # Private repos: discussions are as invisible as the repo.
    private_id, _ = _repo_with_files(hub, "secret", {"s.txt": b"s"}, private=True)
    alice.create_discussion(private_id, "Private")
    with pytest.raises(RepositoryNotFoundError):
        list(bob.get_repo_discussions(private_id))


def test_pull_request_diff_and_upload_folder_into_a_pull_request(hub, tmp_path):
    repo_id, _ = _repo_with_files(hub, "folder-pr", {"config.json": b'{"a": 1}\n'})
    folder = tmp_path / "upload"
    folder.mkdir()
    (folder / "config.json").write_bytes(b'{"a": 2}\n')
    (folder / "weights.safetensors").write_bytes(b"\0" * 2048)
    info = hub.api("bob").upload_folder(folder_path=folder, repo_id=repo_id, create_pr=True)
    num = int(info.pr_num)
    details = hub.api("alice").get_discussion_details(repo_id, num)
    assert details.author == "bob" and details.is_pull_request
    assert [e.type for e in details.events] == ["comment", "commit"]
    assert '-{"a": 1}\n+{"a": 2}\n' in details.diff
    # An LFS file shows as its pointer, as in git.
    assert (
        "+++ b/weights.safetensors\n@@ -0,0 +1,3 @@\n+version https://git-lfs.github.com/spec/v1\n"
        in details.diff
    )
    assert sorted(hub.api("alice").list_repo_files(repo_id, revision=details.git_reference)) == [
        ".gitattributes",
        "config.json",
        "weights.safetensors",
    ]


def _hf(hub, user: str, *args: str) -> subprocess.CompletedProcess:
    env = os.environ | {"HF_ENDPOINT": hub.url, "HF_TOKEN": hub.users[user]}
    hf = Path(sys.executable).parent / "hf"
    return subprocess.run([str(hf), *args], env=env, capture_output=True, text=True, timeout=60)


def test_hf_repos_ls_and_duplicate(hub):
    source, head = _repo_with_files(hub, "to-copy", {"w.bin": b"\0" * 100, "README.md": b"# copy me\n"})
    copied = _hf(hub, "bob", "repos", "duplicate", source, "bob/copied", "--format", "json")
    assert copied.returncode == 0, copied.stderr
    assert json.loads(copied.stdout)["to_id"] == "bob/copied"
    bob = hub.api("bob")
    assert bob.model_info("bob/copied").sha == head  # main with its history, same commit ids
    assert sorted(bob.list_repo_files("bob/copied")) == [".gitattributes", "README.md", "w.bin"]
    refused = _hf(hub, "bob", "repos", "duplicate", source, "alice/bobs-copy")
    assert refused.returncode != 0 and "403" in refused.stderr + refused.stdout

    listed = _hf(hub, "bob", "repos", "ls", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    rows = {r["id"]: r for r in json.loads(listed.stdout)}
    assert "bob/copied" in rows and not any(i.startswith("alice/") for i in rows)
    assert rows["bob/copied"]["type"] == "model" and rows["bob/copied"]["visibility"] == "public"


def test_pages_bad_input_and_missing_things_answer_in_the_hub_error_shape(hub):
    import httpx

    repo_id, _ = _repo_with_files(hub, "many", {"x.txt": b"x"})
    headers = {"authorization": f"Bearer {hub.users['bob']}"}
    with httpx.Client(base_url=f"{hub.url}/api/models/{repo_id}", headers=headers, timeout=30) as http:
        for i in range(51):
            assert http.post("/discussions", json={"title": f"Q{i}", "description": ""}).status_code == 200
        alice = hub.api("alice")
        listed = list(alice.get_repo_discussions(repo_id))  # two pages of 50
        assert [d.num for d in listed] == list(range(51, 0, -1))
        first_page = http.get("/discussions", params={"p": 0}).json()
        assert (first_page["count"], first_page["start"], len(first_page["discussions"])) == (51, 0, 50)

        def error(response: httpx.Response, status: int) -> str:
            assert response.status_code == status, response.text
            assert response.headers["x-error-message"] == response.json()["error"]
            return response.json()["error"]

        assert "type" in error(http.get("/discussions", params={"type": "issues"}), 400)
        assert "status" in error(http.get("/discussions", params={"status": "merged"}), 400)
        assert "#99" in error(http.get("/discussions/99"), 404)
        assert "title" in error(http.post("/discussions", json={"title": ["x"]}), 400)
        assert "title" in error(http.post("/discussions", json={"title": "   "}), 400)
        assert "not a pull request" in error(alice_post(hub, repo_id, "/discussions/1/merge"), 400)
        empty = hub.api("alice").create_pull_request(repo_id, "Nothing yet").num
        alice.change_discussion_status(repo_id, empty, "open")
        assert "no commits" in error(alice_post(hub, repo_id, f"/discussions/{empty}/merge"), 400)

        comment = alice.comment_discussion(repo_id, 1, "Off topic")
        with pytest.warns(UserWarning, match="irreversible"):  # the client's own warning
            hidden = alice.hide_discussion_comment(repo_id, 1, comment.id)  # a writer hides anyone's comment
        assert (hidden.hidden, hidden.content) == (True, "This comment has been hidden")
        own = http.post("/discussions/1/comment", json={"comment": "mine"}).json()["newMessage"]
        assert error(http.post(f"/discussions/1/comment/{comment.id}/edit", json={"content": "x"}), 403)
        assert http.post(f"/discussions/1/comment/{own['id']}/hide").json()["updatedComment"]["data"][
            "hidden"
        ]


def alice_post(hub, repo_id: str, path: str):
    import httpx

    headers = {"authorization": f"Bearer {hub.users['alice']}"}
    return httpx.post(f"{hub.url}/api/models/{repo_id}{path}", headers=headers, timeout=30)
