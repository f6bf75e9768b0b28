"""Security rules of the embedded Hub, checked through the stock client and through raw HTTP.

Rules under test (issue text): Bearer tokens; a token writes only its own namespace; private repos are 404
(RepoNotFound) to everyone else, anonymous included, and absent from listings; public repos are readable
anonymously; paths with ``..``, absolute paths, NUL or backslashes are refused; uploaded LFS/Xet content whose
sha256 or size does not match is refused and leaves nothing behind; request size limits; correct
``X-Error-Code`` headers. Plus a hypothesis fuzz of the NDJSON commit endpoint.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from conftest import USERS, HubServer
from huggingface_hub import CommitOperationAdd
from huggingface_hub.errors import (
    BadRequestError,
    EntryNotFoundError,
    HfHubHTTPError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from hubkit.server import xet

pytestmark = pytest.mark.integration

MIB = 1 << 20


# --------------------------------------------------------------------------- helpers


def client(hub: HubServer, user: str | None = "alice", token: str | None = None) -> httpx.Client:
    headers = {}
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    elif user is not None:
        headers["authorization"] = f"Bearer {USERS[user]}"
    return httpx.Client(base_url=hub.url, headers=headers, timeout=60)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def ndjson(*items: Any) -> bytes:
    return b"\n".join(item if isinstance(item, bytes) else json.dumps(item).encode() for item in items)


HEADER = {"key": "header", "value": {"summary": "x"}}


def file_line(path: str, data: bytes = b"evil") -> dict:
    return {"key": "file", "value": {"path": path, "content": b64(data), "encoding": "base64"}}


def post_commit(http: httpx.Client, repo_id: str, body: bytes, revision: str = "main") -> httpx.Response:
    return http.post(
        f"/api/models/{repo_id}/commit/{revision}",
        content=body,
        headers={"content-type": "application/x-ndjson"},
    )


def repo_state(http: httpx.Client, repo_id: str) -> tuple:
    """Everything a rejected request must leave alone: refs (heads) and the recursive tree with oids."""
    refs = http.get(f"/api/models/{repo_id}/refs")
    refs.raise_for_status()
    tree = http.get(f"/api/models/{repo_id}/tree/main", params={"recursive": "true"})
    tree.raise_for_status()
    commits = http.get(f"/api/models/{repo_id}/commits/main")
    commits.raise_for_status()
    entries = sorted((e["path"], e["type"], e.get("oid"), e.get("size")) for e in tree.json())
    return refs.json(), entries, [c["id"] for c in commits.json()]


def head_sha(http: httpx.Client, repo_id: str) -> str:
    response = http.get(f"/api/models/{repo_id}/revision/main")
    response.raise_for_status()
    return response.json()["sha"]


def blob_files(data_dir: Path) -> set[str]:
    return {p.name for p in (data_dir / "blobs").rglob("*") if p.is_file()}


def tmp_files(data_dir: Path) -> list[Path]:
    return [p for p in (data_dir / "tmp").rglob("*") if p.is_file()]


def lfs_batch(
    http: httpx.Client, repo_id: str, objects: list[dict], operation: str = "upload"
) -> httpx.Response:
    return http.post(
        f"/{repo_id}.git/info/lfs/objects/batch",
        json={"operation": operation, "transfers": ["basic"], "objects": objects, "hash_algo": "sha256"},
        headers={"accept": "application/vnd.git-lfs+json", "content-type": "application/vnd.git-lfs+json"},
    )


def upload_href(http: httpx.Client, repo_id: str, oid: str, size: int) -> str:
    response = lfs_batch(http, repo_id, [{"oid": oid, "size": size}])
    assert response.status_code == 200, response.text
    (obj,) = response.json()["objects"]
    assert "error" not in obj, obj
    return obj["actions"]["upload"]["href"]


def raw_http(url: str, request_head: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send only a request head (no body) on a plain socket and read the answer.

    Used for bodies announced as too large: the server must answer from the Content-Length alone, without
    the client having to push megabytes into a connection that is about to be closed.
    """
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall(request_head)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        length = int(headers.get("content-length", "0"))
        while len(rest) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            rest += chunk
    return status, headers, rest


@pytest.fixture
def alice_repo(hub: HubServer, repo_name: str) -> str:
    """A public repo of alice with a small regular file and an LFS file."""
    api = hub.api("alice")
    repo_id = f"alice/{repo_name}"
    api.create_repo(repo_id)
    api.create_commit(
        repo_id,
        [
            CommitOperationAdd("hello.txt", b"hello world\n"),
            CommitOperationAdd("weights.safetensors", b"\x00weights" * 100),
        ],
        commit_message="seed",
    )
    return repo_id


@pytest.fixture
def http(hub: HubServer) -> Iterator[httpx.Client]:
    with client(hub, "alice") as c:
        yield c


# --------------------------------------------------------------------------- tokens and namespaces


def _status(err: BaseException) -> int:
    assert isinstance(err, HfHubHTTPError)
    return err.response.status_code


def test_foreign_namespace_writes_are_403_and_change_nothing(hub: HubServer, alice_repo: str, http) -> None:
    alice, bob = hub.api("alice"), hub.api("bob")
    alice.create_branch(alice_repo, branch="dev")
    alice.create_tag(alice_repo, tag="v1")
    before = repo_state(http, alice_repo)

    attempts = {
        "upload_file": lambda: bob.upload_file(
            path_or_fileobj=b"bob was here", path_in_repo="bob.txt", repo_id=alice_repo
        ),
        "upload_lfs": lambda: bob.upload_file(
            path_or_fileobj=b"\x00bob" * 1000, path_in_repo="bob.safetensors", repo_id=alice_repo
        ),
        "delete_file": lambda: bob.delete_file("hello.txt", repo_id=alice_repo),
        "create_branch": lambda: bob.create_branch(alice_repo, branch="bob-branch"),
        "delete_branch": lambda: bob.delete_branch(alice_repo, branch="dev"),
        "create_tag": lambda: bob.create_tag(alice_repo, tag="bob-tag"),
        "delete_tag": lambda: bob.delete_tag(alice_repo, tag="v1"),
        "settings": lambda: bob.update_repo_settings(alice_repo, private=True),
        "move": lambda: bob.move_repo(alice_repo, f"bob/{alice_repo.split('/')[1]}"),
        "delete_repo": lambda: bob.delete_repo(alice_repo),
        "create_repo": lambda: bob.create_repo(f"alice/{alice_repo.split('/')[1]}-bob"),
    }
    for name, attempt in attempts.items():
        with pytest.raises(HfHubHTTPError) as info:
            attempt()
        assert _status(info.value) == 403, name
        assert not isinstance(info.value, RepositoryNotFoundError), name

    assert repo_state(http, alice_repo) == before
    assert not alice.model_info(alice_repo).private
    assert not alice.repo_exists(f"{alice_repo}-bob")
    assert not bob.repo_exists(f"bob/{alice_repo.split('/')[1]}")

    # The raw upload entry points refuse bob too: LFS batch and the Xet write token.
    with client(hub, "bob") as as_bob:
        oid = hashlib.sha256(b"x").hexdigest()
        assert lfs_batch(as_bob, alice_repo, [{"oid": oid, "size": 1}]).status_code == 403
        assert as_bob.get(f"/api/models/{alice_repo}/xet-write-token/main").status_code == 403
        assert post_commit(as_bob, alice_repo, ndjson(HEADER, file_line("b.txt"))).status_code == 403

    # Positive control: the same calls work in bob's own namespace.
    own = f"bob/{alice_repo.split('/')[1]}-own"
    bob.create_repo(own)
    bob.upload_file(path_or_fileobj=b"bob was here", path_in_repo="bob.txt", repo_id=own)
    bob.create_branch(own, branch="bob-branch")
    bob.create_tag(own, tag="bob-tag")
    assert sorted(bob.list_repo_files(own)) == [".gitattributes", "bob.txt"]


def test_owner_cannot_move_a_repo_into_another_namespace(hub: HubServer, alice_repo: str, http) -> None:
    before = repo_state(http, alice_repo)
    with pytest.raises(HfHubHTTPError) as info:
        hub.api("alice").move_repo(alice_repo, f"bob/{alice_repo.split('/')[1]}")
    assert _status(info.value) == 403
    assert repo_state(http, alice_repo) == before
    assert not hub.api("bob").repo_exists(f"bob/{alice_repo.split('/')[1]}")


def test_anonymous_writes_are_401(hub: HubServer, alice_repo: str, repo_name: str, http) -> None:
    anon = hub.api(None)
    before = repo_state(http, alice_repo)
    with pytest.raises(HfHubHTTPError) as info:
        anon.create_repo(f"alice/{repo_name}-anon")
    assert _status(info.value) == 401
    with pytest.raises(HfHubHTTPError) as info:
        anon.upload_file(path_or_fileobj=b"anon", path_in_repo="anon.txt", repo_id=alice_repo)
    assert _status(info.value) == 401
    with pytest.raises(HfHubHTTPError) as info:
        anon.create_branch(alice_repo, branch="anon")
    assert _status(info.value) == 401

    with client(hub, None) as raw:
        assert post_commit(raw, alice_repo, ndjson(HEADER, file_line("anon.txt"))).status_code == 401
        oid = hashlib.sha256(b"x").hexdigest()
        assert lfs_batch(raw, alice_repo, [{"oid": oid, "size": 1}]).status_code == 401
        assert raw.get(f"/api/models/{alice_repo}/xet-write-token/main").status_code == 401
        created = raw.post("/api/repos/create", json={"name": f"{repo_name}-raw", "organization": "alice"})
        assert created.status_code == 401
    assert repo_state(http, alice_repo) == before
    assert not hub.api("alice").repo_exists(f"alice/{repo_name}-anon")


@pytest.mark.parametrize(
    "authorization",
    ["Bearer not-a-real-token", "Bearer", "Basic YWxpY2U6c2VjcmV0", "alice-secret-token", "Bearer alice"],
)
def test_invalid_credentials_are_401_everywhere(hub: HubServer, alice_repo: str, authorization: str) -> None:
    with httpx.Client(base_url=hub.url, headers={"authorization": authorization}) as raw:
        for method, path in [
            ("GET", "/api/whoami-v2"),
            ("GET", f"/api/models/{alice_repo}"),  # public: still 401, never silently anonymous
            ("GET", f"/{alice_repo}/resolve/main/hello.txt"),
            ("GET", "/api/models"),
            ("POST", f"/api/models/{alice_repo}/commit/main"),
        ]:
            response = raw.request(method, path, content=ndjson(HEADER, file_line("x.txt")))
            assert response.status_code == 401, (method, path, response.text)
            assert response.headers["x-error-message"] == "Invalid credentials in Authorization header"
    assert "x.txt" not in hub.api("alice").list_repo_files(alice_repo)


def test_invalid_token_through_the_client(hub: HubServer, alice_repo: str) -> None:
    from huggingface_hub import HfApi

    api = HfApi(endpoint=hub.url, token="definitely-not-a-token")
    with pytest.raises(HfHubHTTPError) as info:
        api.whoami()
    assert _status(info.value) == 401
    with pytest.raises(HfHubHTTPError) as info:
        api.model_info(alice_repo)
    assert _status(info.value) == 401
    with pytest.raises(HfHubHTTPError) as info:
        api.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=alice_repo)
    assert _status(info.value) == 401
    assert hub.api("alice").whoami()["name"] == "alice"
    assert hub.api("bob").whoami()["name"] == "bob"


# --------------------------------------------------------------------------- private and public repos


def test_private_repo_is_invisible_to_others(hub: HubServer, repo_name: str, tmp_path: Path) -> None:
    alice = hub.api("alice")
    repo_id = f"alice/{repo_name}"
    alice.create_repo(repo_id, private=True)
    alice.upload_file(path_or_fileobj=b"secret\n", path_in_repo="secret.txt", repo_id=repo_id)
    assert alice.model_info(repo_id).private

    for who in (None, "bob"):
        api = hub.api(who)
        with pytest.raises(RepositoryNotFoundError):
            api.model_info(repo_id)
        with pytest.raises(RepositoryNotFoundError):
            api.hf_hub_download(repo_id, "secret.txt", cache_dir=tmp_path / f"cache-{who}")
        with pytest.raises(RepositoryNotFoundError):
            api.list_repo_files(repo_id)
        with pytest.raises(RepositoryNotFoundError):
            api.list_repo_refs(repo_id)
        with pytest.raises(RepositoryNotFoundError):
            api.list_repo_commits(repo_id)
        assert api.file_exists(repo_id, "secret.txt") is False
        assert api.repo_exists(repo_id) is False
        assert repo_id not in {m.id for m in api.list_models(author="alice")}
        assert repo_id not in {m.id for m in api.list_models(search=repo_name)}
        # Writing to it looks exactly like writing to a missing repo (404, not 403).
        if who == "bob":
            with pytest.raises(RepositoryNotFoundError):
                api.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=repo_id)
            with pytest.raises(RepositoryNotFoundError):
                api.delete_repo(repo_id)

    # Raw: every read route answers 404 RepoNotFound, like a repo that does not exist.
    with client(hub, None) as anon, client(hub, "bob") as bob:
        for raw in (anon, bob):
            for path in [
                f"/api/models/{repo_id}",
                f"/api/models/{repo_id}/revision/main",
                f"/api/models/{repo_id}/tree/main",
                f"/api/models/{repo_id}/refs",
                f"/api/models/{repo_id}/commits/main",
                f"/{repo_id}/resolve/main/secret.txt",
            ]:
                response = raw.get(path)
                assert response.status_code == 404, path
                assert response.headers["x-error-code"] == "RepoNotFound", path
                assert b"secret\n" not in response.content
            assert lfs_batch(raw, repo_id, [{"oid": "0" * 64, "size": 1}], "download").status_code == 404

    assert repo_id in {m.id for m in alice.list_models(author="alice")}
    assert alice.file_exists(repo_id, "secret.txt")
    path = alice.hf_hub_download(repo_id, "secret.txt", cache_dir=tmp_path / "cache-alice")
    assert Path(path).read_bytes() == b"secret\n"
    assert alice.model_info(repo_id).sha == alice.list_repo_commits(repo_id)[0].commit_id

    # Making it public makes it readable anonymously; private again hides it again.
    alice.update_repo_settings(repo_id, private=False)
    assert hub.api(None).repo_exists(repo_id)
    alice.update_repo_settings(repo_id, private=True)
    assert not hub.api(None).repo_exists(repo_id)


def test_public_repo_is_readable_anonymously(hub: HubServer, alice_repo: str, tmp_path: Path) -> None:
    anon = hub.api(None)
    assert anon.repo_exists(alice_repo)
    assert sorted(anon.list_repo_files(alice_repo)) == [".gitattributes", "hello.txt", "weights.safetensors"]
    path = anon.hf_hub_download(alice_repo, "hello.txt", cache_dir=tmp_path / "c1")
    assert Path(path).read_bytes() == b"hello world\n"
    folder = Path(anon.snapshot_download(alice_repo, cache_dir=tmp_path / "c2"))
    assert (folder / "weights.safetensors").read_bytes() == b"\x00weights" * 100
    assert alice_repo in {m.id for m in anon.list_models(author="alice")}
    assert anon.model_info(alice_repo).sha == hub.api("alice").model_info(alice_repo).sha


# --------------------------------------------------------------------------- paths


BAD_PATHS = [
    "../evil",
    "/abs",
    "/etc/passwd",
    "a/../b",
    "a/..",
    "..",
    ".",
    "a\\b",
    "..\\evil",
    "nul\0byte",
    "./x",
    "a/./b",
    "a//b",
    "a/",
    "",
    ".git/config",
    ".git",
    "x" * 1025,
    "tab\there",
    "new\nline",
]


@pytest.mark.parametrize(
    ("key", "path"),
    [
        pytest.param(key, path, id=f"{key}-{path!r:.30}")
        for key in ("file", "lfsFile", "deletedFile", "deletedFolder")
        for path in BAD_PATHS
        if not (key == "deletedFolder" and path == "a/")  # the client names folders to delete "a/"
    ],
)
def test_bad_paths_are_refused_and_change_nothing(hub: HubServer, alice_repo: str, http, key: str, path: str):
    before = repo_state(http, alice_repo)
    if key == "file":
        line = file_line(path)
    elif key == "lfsFile":
        line = {"key": key, "value": {"path": path, "algo": "sha256", "oid": "0" * 64, "size": 4}}
    else:
        line = {"key": key, "value": {"path": path}}
    response = post_commit(http, alice_repo, ndjson(HEADER, line, file_line("innocent.txt")))
    assert response.status_code == 400, response.text
    assert response.json()["error"]
    assert repo_state(http, alice_repo) == before
    assert not (hub.data_dir.parent / "evil").exists()
    assert not (hub.data_dir / "evil").exists()


@pytest.mark.parametrize("path", ["../evil", "/abs", "a\\b", "a//b", ".git/config"])
def test_bad_paths_are_refused_by_preupload(http, alice_repo: str, path: str) -> None:
    response = http.post(
        f"/api/models/{alice_repo}/preupload/main", json={"files": [{"path": path, "sample": "", "size": 1}]}
    )
    assert response.status_code == 400, response.text


@pytest.mark.parametrize(
    "path", ["%2e%2e/%2e%2e/hub.sqlite", "..%2f..%2fhub.sqlite", "%2Fetc%2Fpasswd", "a%5Cb"]
)
def test_resolve_does_not_escape_the_repo(hub: HubServer, alice_repo: str, path: str) -> None:
    raw_path = f"/{alice_repo}/resolve/main/{path}"
    status, headers, body = raw_http(
        hub.url, f"GET {raw_path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
    )
    assert status == 404
    assert headers["x-error-code"] == "EntryNotFound"
    assert b"SQLite" not in body and b"root:" not in body


def test_paths_with_odd_but_legal_characters_round_trip(hub: HubServer, alice_repo: str, tmp_path) -> None:
    """The path check refuses only what it must: unicode, spaces and dots inside names are fine."""
    api = hub.api("alice")
    names = ["dir with space/ünïcödé.txt", "a.b/c..d/.hidden", "emoji-😀.txt", "..dots-prefix", "x/y/z.txt"]
    api.create_commit(alice_repo, [CommitOperationAdd(n, n.encode()) for n in names], commit_message="odd")
    assert set(names) <= set(api.list_repo_files(alice_repo))
    folder = Path(api.snapshot_download(alice_repo, cache_dir=tmp_path / "c"))
    for n in names:
        assert (folder / n).read_bytes() == n.encode()


# --------------------------------------------------------------------------- LFS content checks


def test_lfs_put_with_wrong_content_or_size_is_refused(hub: HubServer, alice_repo: str, http) -> None:
    before = repo_state(http, alice_repo)
    blobs_before = blob_files(hub.data_dir)
    data = os.urandom(256 * 1024)
    oid = hashlib.sha256(data).hexdigest()
    href = upload_href(http, alice_repo, oid, len(data))
    assert urlsplit(href).netloc == urlsplit(hub.url).netloc

    with httpx.Client(timeout=60) as anon:  # the href is self-authorizing: no token sent, as the client does
        wrong = bytearray(data)
        wrong[12345] ^= 1
        bad_sha = anon.put(href, content=bytes(wrong))
        assert bad_sha.status_code == 400
        assert "sha256" in bad_sha.json()["error"]

        short = anon.put(href, content=data[:-1])
        assert short.status_code == 400

        def chunked(payload: bytes) -> Iterator[bytes]:  # no Content-Length: size checked while streaming
            for i in range(0, len(payload), 65536):
                yield payload[i : i + 65536]

        assert anon.put(href, content=chunked(data + b"extra")).status_code == 400
        assert anon.put(href, content=chunked(data[:-10])).status_code == 400

        # Tampered capability URLs are 403: the size, oid and user are signed.
        assert (
            anon.put(
                href.replace(f"size={len(data)}", f"size={len(data) + 1}"), content=data + b"!"
            ).status_code
            == 403
        )
        other = hashlib.sha256(b"other").hexdigest()
        assert anon.put(href.replace(oid, other), content=b"other").status_code == 403
        assert anon.put(href.replace("user=alice", "user=bob"), content=data).status_code == 403
        assert anon.put(href.split("&sig=")[0], content=data).status_code == 403

    assert blob_files(hub.data_dir) == blobs_before
    assert hashlib.sha256(bytes(wrong)).hexdigest() not in blob_files(hub.data_dir)
    assert tmp_files(hub.data_dir) == []

    # A commit naming the never-uploaded oid is refused (422) and leaves the repo alone.
    lfs_line = {
        "key": "lfsFile",
        "value": {"path": "big.bin", "algo": "sha256", "oid": oid, "size": len(data)},
    }
    refused = post_commit(http, alice_repo, ndjson(HEADER, lfs_line))
    assert refused.status_code == 422, refused.text
    verify = http.post(f"/api/models/{alice_repo}/lfs-verify", json={"oid": oid, "size": len(data)})
    assert verify.status_code == 400
    assert repo_state(http, alice_repo) == before

    # The honest upload through the same href still works, and then the commit lands.
    with httpx.Client(timeout=60) as anon:
        assert anon.put(href, content=data).status_code == 200
    assert oid in blob_files(hub.data_dir)
    assert (
        http.post(f"/api/models/{alice_repo}/lfs-verify", json={"oid": oid, "size": len(data)}).status_code
        == 200
    )
    wrong_size = {
        "key": "lfsFile",
        "value": {"path": "big.bin", "algo": "sha256", "oid": oid, "size": len(data) + 1},
    }
    assert post_commit(http, alice_repo, ndjson(HEADER, wrong_size)).status_code == 422
    assert repo_state(http, alice_repo) == before
    assert post_commit(http, alice_repo, ndjson(HEADER, lfs_line)).status_code == 200
    assert http.get(f"/{alice_repo}/resolve/main/big.bin").content == data


def test_lfs_batch_refuses_malformed_objects(http, alice_repo: str) -> None:
    response = lfs_batch(
        http,
        alice_repo,
        [
            {"oid": "XYZ", "size": 1},
            {"oid": "0" * 64, "size": -1},
            {"oid": "0" * 64, "size": "1"},
            {"oid": "0" * 63, "size": 1},
            "not-an-object",
        ],
    )
    assert response.status_code == 200
    objects = response.json()["objects"]
    assert len(objects) == 5
    assert all(o["error"]["code"] == 422 and "actions" not in o for o in objects)
    assert lfs_batch(http, alice_repo, [], operation="steal").status_code == 400


# --------------------------------------------------------------------------- Xet content checks


def _u32(n: int) -> bytes:
    return n.to_bytes(4, "little")


def _u64(n: int) -> bytes:
    return n.to_bytes(8, "little")


def make_xorb(chunks: list[bytes]) -> tuple[str, bytes]:
    """An uncompressed xorb as hf_xet uploads it, and the hash it must be uploaded under."""
    body = b"".join(_u64((len(c) << 8) | (len(c) << 40)) + c for c in chunks)
    return xet.xorb_hash(chunks), body


def make_shard(files: list[tuple[list[tuple[str, int, int, int]], str | None]]) -> bytes:
    """A shard: per file its terms (xorb hash, chunk start, chunk end, unpacked bytes) and declared sha256."""
    out = bytearray(xet.SHARD_HEADER_TAG + _u64(xet.SHARD_VERSION) + _u64(0))
    for index, (terms, sha256) in enumerate(files):
        flags = xet.FILE_FLAG_METADATA_EXT if sha256 else 0
        out += hashlib.sha256(b"file%d" % index).digest() + _u32(flags) + _u32(len(terms)) + bytes(8)
        for xorb_hash, start, end, unpacked in terms:
            out += xet.hex_to_hash(xorb_hash) + _u32(0) + _u32(unpacked) + _u32(start) + _u32(end)
        if sha256:
            out += xet.hex_to_hash(sha256) + bytes(16)
    out += xet.BOOKEND + bytes(16)  # end of the file-info section
    out += xet.BOOKEND + bytes(16)  # empty CAS-info section
    return bytes(out)


class Cas:
    """The Xet CAS of a server, with a write token for one repo obtained like hf_xet does."""

    def __init__(self, http: httpx.Client, repo_id: str):
        response = http.get(f"/api/models/{repo_id}/xet-write-token/main")
        assert response.status_code == 200, response.text
        info = response.json()
        self.url = info["casUrl"]
        self.http = httpx.Client(headers={"authorization": f"Bearer {info['accessToken']}"}, timeout=60)

    def xorb(self, xorb_hash: str, body: bytes) -> httpx.Response:
        return self.http.post(f"{self.url}/v1/xorbs/default/{xorb_hash}", content=body)

    def shard(self, body: bytes) -> httpx.Response:
        return self.http.post(f"{self.url}/v1/shards", content=body)


def test_xet_shard_content_is_checked(hub: HubServer, alice_repo: str, http) -> None:
    cas = Cas(http, alice_repo)
    before = repo_state(http, alice_repo)
    chunks = [os.urandom(4000), os.urandom(3000)]
    content = b"".join(chunks)
    sha = hashlib.sha256(content).hexdigest()
    xorb_hash, body = make_xorb(chunks)
    assert cas.xorb(xorb_hash, body).status_code == 200
    blobs_before = blob_files(hub.data_dir)

    # The declared sha256 does not match what the xorb chunks rebuild.
    lie = hashlib.sha256(b"something else").hexdigest()
    refused = cas.shard(make_shard([([(xorb_hash, 0, 2, len(content))], lie)]))
    assert refused.status_code == 400, refused.text
    # A term whose byte count does not match the chunks.
    assert cas.shard(make_shard([([(xorb_hash, 0, 2, len(content) + 1)], sha)])).status_code == 400
    # Chunk indices outside the xorb.
    assert cas.shard(make_shard([([(xorb_hash, 1, 3, len(content))], sha)])).status_code == 400
    # A xorb that was never uploaded.
    unknown = xet.hash_to_hex(hashlib.sha256(b"no such xorb").digest())
    assert cas.shard(make_shard([([(unknown, 0, 1, 10)], None)])).status_code == 400
    # Garbage instead of a shard.
    assert cas.shard(b"not a shard at all").status_code == 400
    assert blob_files(hub.data_dir) == blobs_before
    assert tmp_files(hub.data_dir) == []

    lfs_line = {
        "key": "lfsFile",
        "value": {"path": "x.bin", "algo": "sha256", "oid": sha, "size": len(content)},
    }
    assert post_commit(http, alice_repo, ndjson(HEADER, lfs_line)).status_code == 422
    assert repo_state(http, alice_repo) == before

    # The honest shard is accepted, stores exactly the content, and the commit then lands.
    accepted = cas.shard(make_shard([([(xorb_hash, 0, 2, len(content))], sha)]))
    assert accepted.status_code == 200, accepted.text
    assert blob_files(hub.data_dir) == blobs_before | {sha}
    assert post_commit(http, alice_repo, ndjson(HEADER, lfs_line)).status_code == 200
    assert http.get(f"/{alice_repo}/resolve/main/x.bin").content == content


def test_xet_xorb_must_match_its_hash(hub: HubServer, alice_repo: str, http) -> None:
    """A xorb uploaded under someone else's hash would poison every later upload of that content."""
    cas = Cas(http, alice_repo)
    real_hash, _ = make_xorb([b"the real content" * 100])
    _, forged_body = make_xorb([b"forged content!!" * 100])
    response = cas.xorb(real_hash, forged_body)
    assert response.status_code == 400, response.text
    assert not (hub.data_dir / "xorbs" / real_hash).exists()
    assert cas.xorb(real_hash, b"\x00garbage").status_code == 400
    assert cas.xorb("not-a-hash", forged_body).status_code in (400, 404)
    assert tmp_files(hub.data_dir) == []
    good_hash, good_body = make_xorb([b"the real content" * 100])
    assert cas.xorb(good_hash, good_body).status_code == 200
    assert (hub.data_dir / "xorbs" / good_hash).is_file()


def test_xet_cas_requires_a_valid_xet_token(hub: HubServer, alice_repo: str, http) -> None:
    xorb_hash, body = make_xorb([b"abc" * 100])
    shard = make_shard([([(xorb_hash, 0, 1, 300)], None)])
    token = http.get(f"/api/models/{alice_repo}/xet-write-token/main").json()["accessToken"]
    _user, repo_type, repo_id, sig = token.split(":")
    forged = f"bob:{repo_type}:{repo_id}:{sig}"
    for headers in ({}, {"authorization": f"Bearer {USERS['alice']}"}, {"authorization": f"Bearer {forged}"}):
        with httpx.Client(base_url=hub.url, headers=headers) as raw:
            assert raw.post(f"/cas/v1/xorbs/default/{xorb_hash}", content=body).status_code == 401
            assert raw.post("/cas/v1/shards", content=shard).status_code == 401
    assert not (hub.data_dir / "xorbs" / xorb_hash).exists()


# --------------------------------------------------------------------------- size limits


@pytest.fixture(scope="module")
def small_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubServer]:
    """A server that accepts uploads of at most 1 MiB per object."""
    server = HubServer(tmp_path_factory.mktemp("small") / "data", extra_args=("--max-upload-mb", "1")).start()
    yield server
    server.stop()


def test_upload_limit_at_batch_and_put_time(
    small_hub: HubServer, repo_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = small_hub.api("alice")
    repo_id = f"alice/{repo_name}"
    api.create_repo(repo_id)
    big = os.urandom(2 * MIB)
    small = os.urandom(1000)
    with client(small_hub, "alice") as http:
        before = repo_state(http, repo_id)
        response = lfs_batch(
            http,
            repo_id,
            [
                {"oid": hashlib.sha256(big).hexdigest(), "size": len(big)},
                {"oid": hashlib.sha256(small).hexdigest(), "size": len(small)},
            ],
        )
        assert response.status_code == 200
        refused, accepted = response.json()["objects"]
        assert refused["error"]["code"] == 413 and "actions" not in refused
        assert "error" not in accepted and accepted["actions"]["upload"]["href"]

        # Pushing 2 MiB to the href signed for 1000 bytes is refused, with or without Content-Length.
        href = accepted["actions"]["upload"]["href"]
        with httpx.Client(timeout=60) as anon:
            assert anon.put(href, content=big).status_code in (400, 413)
            assert anon.put(
                href, content=iter([big[i : i + 65536] for i in range(0, len(big), 65536)])
            ).status_code in (
                400,
                413,
            )
        assert hashlib.sha256(big).hexdigest() not in blob_files(small_hub.data_dir)
        assert tmp_files(small_hub.data_dir) == []
        assert repo_state(http, repo_id) == before

    # Through the client, in both protocols: refused, nothing stored, repo unchanged.
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    with pytest.raises(ValueError, match="exceeds the limit"):  # the LFS batch answered an error entry
        api.upload_file(path_or_fileobj=big, path_in_repo="big.safetensors", repo_id=repo_id)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", False)
    with pytest.raises(OSError, match="400"):  # hf_xet: the shard was refused
        api.upload_file(path_or_fileobj=big, path_in_repo="big.safetensors", repo_id=repo_id)
    assert hashlib.sha256(big).hexdigest() not in blob_files(small_hub.data_dir)
    assert sorted(api.list_repo_files(repo_id)) == [".gitattributes"]


def test_put_href_signed_before_a_lower_limit_is_refused(tmp_path: Path, repo_name: str) -> None:
    """A signed upload URL does not bypass the size limit the server runs with now (413)."""
    server = HubServer(tmp_path / "data").start()
    try:
        server.api("alice").create_repo(f"alice/{repo_name}")
        big = os.urandom(2 * MIB)
        oid = hashlib.sha256(big).hexdigest()
        with client(server, "alice") as http:
            href = upload_href(http, f"alice/{repo_name}", oid, len(big))
        server.stop()
        server.extra_args = ("--max-upload-mb", "1")
        server.start()
        href = href.replace(urlsplit(href).netloc, urlsplit(server.url).netloc)
        with httpx.Client(timeout=60) as anon:
            response = anon.put(href, content=big)
        assert response.status_code == 413, response.text
        assert oid not in blob_files(server.data_dir)
        assert tmp_files(server.data_dir) == []
    finally:
        server.kill9()


def test_json_body_over_16_mib_is_413(hub: HubServer, repo_name: str) -> None:
    limit = 16 * MIB
    repo_id = f"alice/{repo_name}"
    hub.api("alice").create_repo(repo_id)
    paths = ["/api/repos/create", f"/api/models/{repo_id}/preupload/main", "/api/validate-yaml"]
    for path in paths:
        status, headers, body = raw_http(
            hub.url,
            (
                f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {USERS['alice']}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {limit + 1}\r\n\r\n"
            ).encode(),
        )
        assert status == 413, (path, status, body)
        assert "exceeds the limit" in headers["x-error-message"]

    # Without a Content-Length (chunked), the body is counted while it is read.
    def stream(total: int) -> Iterator[bytes]:
        yield b'{"files": [], "pad": "'
        for start in range(0, total, MIB):
            yield b"x" * min(MIB, total - start)
        yield b'"}'

    with client(hub, "alice") as http:
        for path in paths[1:]:
            try:
                status = http.post(path, content=stream(limit + MIB)).status_code
            except httpx.TransportError:  # closed before the client finished sending: a refusal too
                status = 413
            assert status == 413, path
        ok = http.post(f"/api/models/{repo_id}/preupload/main", content=stream(limit - MIB))
        assert ok.status_code == 200, ok.text
    assert hub.api("alice").repo_exists(repo_id)


# --------------------------------------------------------------------------- X-Error-Code headers


def test_error_codes_on_raw_responses_and_client_exceptions(hub: HubServer, alice_repo: str, http, tmp_path):
    alice = hub.api("alice")
    head = head_sha(http, alice_repo)

    missing_repo = http.get("/api/models/alice/no-such-repo-here")
    assert missing_repo.status_code == 404
    assert missing_repo.headers["x-error-code"] == "RepoNotFound"
    missing_repo_file = http.get("/alice/no-such-repo-here/resolve/main/hello.txt")
    assert (missing_repo_file.status_code, missing_repo_file.headers["x-error-code"]) == (404, "RepoNotFound")
    with pytest.raises(RepositoryNotFoundError):
        alice.model_info("alice/no-such-repo-here")
    with pytest.raises(RepositoryNotFoundError):
        alice.hf_hub_download("alice/no-such-repo-here", "hello.txt", cache_dir=tmp_path / "c0")

    missing_rev = http.get(f"/api/models/{alice_repo}/revision/no-such-branch")
    assert (missing_rev.status_code, missing_rev.headers["x-error-code"]) == (404, "RevisionNotFound")
    missing_rev_file = http.get(f"/{alice_repo}/resolve/no-such-branch/hello.txt")
    assert (missing_rev_file.status_code, missing_rev_file.headers["x-error-code"]) == (
        404,
        "RevisionNotFound",
    )
    with pytest.raises(RevisionNotFoundError):
        alice.model_info(alice_repo, revision="no-such-branch")
    with pytest.raises(RevisionNotFoundError):
        alice.hf_hub_download(alice_repo, "hello.txt", revision="no-such-branch", cache_dir=tmp_path / "c1")
    with pytest.raises(RevisionNotFoundError):
        alice.list_repo_files(alice_repo, revision="0123456789abcdef0123456789abcdef01234567")

    for method in ("GET", "HEAD"):
        missing_file = http.request(method, f"/{alice_repo}/resolve/main/no/such/file.txt")
        assert missing_file.status_code == 404
        assert missing_file.headers["x-error-code"] == "EntryNotFound"
        assert missing_file.headers["x-repo-commit"] == head
    with pytest.raises(RemoteEntryNotFoundError) as info:
        alice.hf_hub_download(alice_repo, "no/such/file.txt", cache_dir=tmp_path / "c2")
    assert isinstance(info.value, EntryNotFoundError)
    assert alice.file_exists(alice_repo, "no/such/file.txt") is False

    # Client text echoed into X-Error-Message (control characters, trailing blanks) must not break the answer.
    for rev in ("%01bad", "trailing%20", "%C3%A9t%C3%A9%09", "%FF%FE"):
        odd = http.get(f"/api/models/{alice_repo}/revision/{rev}")
        assert (odd.status_code, odd.headers["x-error-code"]) == (404, "RevisionNotFound"), rev

    missing_dir = http.get(f"/api/models/{alice_repo}/tree/main/no-such-dir")
    assert (missing_dir.status_code, missing_dir.headers["x-error-code"]) == (404, "EntryNotFound")

    delete_missing = post_commit(
        http, alice_repo, ndjson(HEADER, {"key": "deletedFile", "value": {"path": "nope"}})
    )
    assert (delete_missing.status_code, delete_missing.headers["x-error-code"]) == (404, "EntryNotFound")
    assert "A file with this name doesn't exist" in delete_missing.json()["error"]
    with pytest.raises(EntryNotFoundError):
        alice.delete_file("nope.txt", repo_id=alice_repo)

    bad = post_commit(http, alice_repo, b"{not json")
    assert bad.status_code == 400
    assert bad.headers["x-error-message"]
    with pytest.raises(BadRequestError):
        alice.create_branch(alice_repo, branch="bad..name")
    assert head_sha(http, alice_repo) == head


# --------------------------------------------------------------------------- hostile JSON elsewhere


HOSTILE_JSON = [
    b"[" * 50_000 + b"]" * 50_000,
    b'{"a":' * 5000 + b"1" + b"}" * 5000,
    b"9" * 5000,
    b'{"name": "\\ud800", "tag": "\\udfff", "sdk": "\\ud800"}',
    b'{"name": 5, "organization": ["x"], "type": {"a": 1}, "sdk": [1], "tag": [1], "startingPoint": 5}',
    b'{"files": [1, "x", null], "paths": {"a": 1}, "objects": [1], "operation": "upload"}',
    b'{"fromRepo": ["a"], "toRepo": {"b": 1}, "type": 7}',
    b'{"name": "valid-name-sdk", "sdk": {"a": [1]}, "private": [1], "visibility": {"x": 1}}',
    b'{"name": "valid-name-sdk2", "sdk": "\\ud800", "tag": "v\\u0001", "startingPoint": "\\ud800"}',
    b'{"files": [{"path": "a", "size": 1e400, "sample": 5}], "paths": ["\\ud800", 5, null]}',
    b"\xff\xfe\x00",
    b"null",
    b"[]",
    b'"string"',
    b"NaN",
    b"",
]


@pytest.mark.parametrize("body", HOSTILE_JSON, ids=lambda b: repr(b[:24]))
def test_hostile_json_bodies_never_cause_500(hub: HubServer, alice_repo: str, http, body: bytes) -> None:
    before = repo_state(http, alice_repo)
    endpoints = [
        ("POST", "/api/repos/create"),
        ("POST", "/api/repos/move"),
        ("DELETE", "/api/repos/delete"),
        ("PUT", f"/api/models/{alice_repo}/settings"),
        ("POST", f"/api/models/{alice_repo}/preupload/main"),
        ("POST", f"/api/models/{alice_repo}/paths-info/main"),
        ("POST", f"/api/models/{alice_repo}/branch/fuzz-branch"),
        ("POST", f"/api/models/{alice_repo}/tag/main"),
        ("POST", f"/api/models/{alice_repo}/lfs-verify"),
        ("POST", f"/{alice_repo}.git/info/lfs/objects/batch"),
        ("POST", "/api/validate-yaml"),
        ("POST", f"/api/models/{alice_repo}/commit/main"),
        ("POST", f"/api/models/{alice_repo}/discussions"),
        *(("POST", f"/api/models/{alice_repo}/discussions/1/{action}") for action in ("comment", "title")),
        *(("POST", f"/api/models/{alice_repo}/discussions/1/{action}") for action in ("status", "merge")),
        ("POST", f"/api/models/{alice_repo}/discussions/1/comment/0123456789abcdef01234567/edit"),
        ("POST", f"/api/models/{alice_repo}/duplicate"),
    ]
    for method, path in endpoints:
        response = http.request(method, path, content=body, headers={"content-type": "application/json"})
        assert response.status_code < 500, (method, path, response.status_code, response.text[:200])
    after = repo_state(http, alice_repo)
    assert after[1:] == before[1:]
    assert after[0]["tags"] == before[0]["tags"]
    assert {b["name"] for b in after[0]["branches"]} <= {b["name"] for b in before[0]["branches"]} | {
        "fuzz-branch"
    }
    assert hub.api("alice").repo_exists(alice_repo)


# --------------------------------------------------------------------------- fuzz of the commit endpoint


@pytest.fixture(scope="module")
def fuzz_target(hub: HubServer) -> Iterator[tuple[httpx.Client, str]]:
    repo_id = "alice/fuzz-target"
    api = hub.api("alice")
    api.create_repo(repo_id)
    api.create_commit(
        repo_id,
        [CommitOperationAdd("keep.txt", b"keep"), CommitOperationAdd("dir/inner.txt", b"inner")],
        commit_message="seed",
    )
    with client(hub, "alice") as http:
        yield http, repo_id


_SENTINEL_HEAD = "<HEAD>"
_SENTINEL_EXISTING = "<EXISTING>"
_UPLOADED_OID = hashlib.sha256(b"keep").hexdigest()  # a blob that exists (regular file content)

weird_paths = st.one_of(
    st.sampled_from(
        [
            "ok.txt",
            "dir/new.txt",
            "keep.txt",
            "dir",
            "dir/inner.txt/sub",
            _SENTINEL_EXISTING,
            "../evil",
            "/abs",
            "a/../b",
            "a\\b",
            "nul\0",
            "./x",
            "a//b",
            ".git/config",
            "",
            " ",
            "\ud800",
            "a\udfffb",
            "\u202e.txt",
            "\x7f",
            "x" * 1100,
        ]
    ),
    st.text(max_size=40),
    st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x10FFFF), max_size=10),
)
json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)
oids = st.one_of(
    st.just(_UPLOADED_OID),
    st.just("0" * 64),
    st.text(alphabet="0123456789abcdefABCDEF", min_size=60, max_size=68),
    json_values,
)
sizes = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70), st.just(4), st.just(True), st.floats(), json_values
)
contents = st.one_of(
    st.binary(max_size=64).map(b64),
    st.text(max_size=30),  # mostly invalid base64
    st.just("!!!not base64!!!"),
    json_values,
)


@st.composite
def commit_lines(draw: st.DrawFn) -> Any:
    hostile = ["header", "file", "lfsFile", "deletedFile", "deletedFolder", "junk", "raw", "value"]
    kind = draw(st.sampled_from([*hostile, *["good_file"] * 5, "good_lfs", "good_delete"]))
    if kind == "good_file":
        path = draw(st.sampled_from(["ok.txt", "dir/new.txt", "keep.txt", "deep/a/b/c.txt", "ünï cödé.txt"]))
        return file_line(path, draw(st.binary(max_size=32)))
    if kind == "good_lfs":
        size = draw(st.sampled_from([4, 4, 5]))  # the "keep" blob is 4 bytes long
        return {
            "key": "lfsFile",
            "value": {"path": "lfs.bin", "algo": "sha256", "oid": _UPLOADED_OID, "size": size},
        }
    if kind == "good_delete":
        return {
            "key": draw(st.sampled_from(["deletedFile", "deletedFolder"])),
            "value": {"path": _SENTINEL_EXISTING},
        }
    if kind == "header":
        value: dict[str, Any] = {}
        if draw(st.booleans()):
            value["summary"] = draw(st.one_of(st.text(max_size=30), json_values, st.just("\ud800")))
        if draw(st.booleans()):
            value["description"] = draw(st.one_of(st.text(max_size=30), json_values))
        if draw(st.booleans()):
            value["parentCommit"] = draw(
                st.one_of(
                    st.just(_SENTINEL_HEAD),
                    st.just("0" * 40),
                    st.text(alphabet="0123456789abcdef", max_size=45),
                    json_values,
                )
            )
        return {"key": "header", "value": value}
    if kind == "file":
        value = {"path": draw(weird_paths), "content": draw(contents)}
        if draw(st.booleans()):
            value["encoding"] = draw(st.sampled_from(["base64", "utf-8", "utf8", "hex", "", None, 5]))
        return {"key": "file", "value": value}
    if kind == "lfsFile":
        value = {
            "path": draw(weird_paths),
            "oid": draw(oids),
            "algo": draw(st.sampled_from(["sha256", "md5"])),
        }
        if draw(st.booleans()):
            value["size"] = draw(sizes)
        return {"key": "lfsFile", "value": value}
    if kind in ("deletedFile", "deletedFolder"):
        return {"key": kind, "value": {"path": draw(st.one_of(weird_paths, json_values))}}
    if kind == "junk":
        return {"key": draw(st.one_of(st.text(max_size=10), json_values)), "value": draw(json_values)}
    if kind == "value":
        return draw(json_values)
    return draw(
        st.sampled_from(
            [
                b"{not json",
                b"\xff\xfe\xfd",
                b"[" * 3000 + b"]" * 3000,
                b'{"key": "file", "value": {"path": "a", "content": "'
                + b"9" * 10
                + b'", "size": '
                + b"9" * 5000
                + b"}}",
                b'{"key":"header","value":{"summary":"\\ud800"}}',
                b'{"key":"file","value":{"path":"\\udc00","content":"aGk=","encoding":"base64"}}',
                b"NaN",
                b"",
                b"   ",
            ]
        )
    )


def _render(line: Any, head: str, existing: list[str]) -> bytes:
    if isinstance(line, bytes):
        return line
    text = json.dumps(line)
    text = text.replace(json.dumps(_SENTINEL_HEAD)[1:-1], head)
    pick = existing[len(text) % len(existing)] if existing else "keep.txt"
    return text.replace(json.dumps(_SENTINEL_EXISTING)[1:-1], pick).encode()


@pytest.mark.slow
@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    header=st.one_of(
        st.none(), st.just(HEADER), st.just({"key": "header", "value": {"parentCommit": _SENTINEL_HEAD}})
    ),
    lines=st.lists(commit_lines(), max_size=5),
    separator=st.sampled_from([b"\n", b"\r\n", b"\n\n"]),
)
def test_fuzz_commit_endpoint(
    fuzz_target: tuple[httpx.Client, str], header: dict | None, lines: list, separator: bytes
) -> None:
    http, repo_id = fuzz_target
    before = repo_state(http, repo_id)
    head = before[2][0]
    files = [path for path, kind, _, _ in before[1] if kind == "file"]
    body = separator.join(_render(line, head, files) for line in ([header] if header else []) + lines)
    response = post_commit(http, repo_id, body)
    assert response.status_code < 500, (body[:500], response.text[:500])
    event(f"status {response.status_code}")
    after = repo_state(http, repo_id)
    if response.status_code == 200:
        assert after[2][0] == response.json()["commitOid"] != head
        assert after[2][1] == head
    else:
        assert response.status_code in (400, 404, 409, 412, 413, 422), response.status_code
        assert response.json()["error"]
        assert after == before, body[:500]
