"""Tests for hubkit.server.xet: bodies captured from the real hf_xet client, and malformed inputs.

The integration tests run a tiny CAS on 127.0.0.1 that answers what hf_xet 1.8 calls (research notes
hub-api.md §6.3) and drive ``hf_xet`` the way huggingface_hub 2.4 does (``_commit_api._upload_xet_files``):
a ``XetSession`` upload commit that finds the CAS through ``token_refresh_url``.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import hf_xet
import lz4.frame
import pytest

from hubkit.server import xet
from hubkit.server.xet import (
    ShardFile,
    ShardTerm,
    XetFormatError,
    decode_xorb,
    hash_to_hex,
    hex_to_hash,
    parse_shard,
    reconstruct,
)

MIB = 1 << 20


# --------------------------------------------------------------------------- synthetic encoders


def _u32(n: int) -> bytes:
    return n.to_bytes(4, "little")


def _u64(n: int) -> bytes:
    return n.to_bytes(8, "little")


def _bg4_split(data: bytes) -> bytes:
    return b"".join(data[lane::4] for lane in range(4))


def _chunk(data: bytes, scheme: int = 0, *, clen: int | None = None, ulen: int | None = None) -> bytes:
    """One xorb chunk as hf_xet writes it; ``clen``/``ulen`` override the header to forge bad ones."""
    if scheme == 0:
        payload = data
    elif scheme == 1:
        payload = lz4.frame.compress(data)
    else:
        payload = lz4.frame.compress(_bg4_split(data))
    clen = len(payload) if clen is None else clen
    ulen = len(data) if ulen is None else ulen
    header = (clen << 8) | (scheme << 32) | (ulen << 40)
    return _u64(header) + payload


def _raw_hash(seed: int) -> bytes:
    return hashlib.sha256(seed.to_bytes(4, "little")).digest()


@dataclass
class _File:
    file_hash: bytes
    terms: list[tuple[bytes, int, int, int]]  # xorb hash, chunk start, chunk end, unpacked bytes
    sha256: str | None = None
    verification: bool = True


def _shard(files: list[_File], xorbs: dict[bytes, list[int]] | None = None, footer: bytes = b"") -> bytes:
    """A shard laid out like hf_xet's: header, file section, CAS section (xorb → chunk lengths), footer."""
    out = bytearray(xet.SHARD_HEADER_TAG + _u64(xet.SHARD_VERSION) + _u64(len(footer)))
    for f in files:
        flags = (xet.FILE_FLAG_VERIFICATION if f.verification else 0) | (
            xet.FILE_FLAG_METADATA_EXT if f.sha256 else 0
        )
        out += f.file_hash + _u32(flags) + _u32(len(f.terms)) + bytes(8)
        for xorb_hash, start, end, unpacked in f.terms:
            out += xorb_hash + _u32(0) + _u32(unpacked) + _u32(start) + _u32(end)
        if f.verification:
            out += bytes(48) * len(f.terms)
        if f.sha256:
            out += hex_to_hash(f.sha256) + bytes(16)
    out += xet.BOOKEND + bytes(16)
    for xorb_hash, lengths in (xorbs or {}).items():
        out += xorb_hash + _u32(0) + _u32(len(lengths)) + _u32(sum(lengths)) + _u32(0)
        pos = 0
        for n in lengths:
            out += _raw_hash(pos) + _u32(pos) + _u32(n) + _u32(0) + _u32(0)
            pos += n
    out += xet.BOOKEND + bytes(16)
    return bytes(out + footer)


# --------------------------------------------------------------------------- hashes


def test_hash_rendering_is_hex_of_little_endian_words() -> None:
    raw = bytes(range(32))
    expected = "07060504030201000f0e0d0c0b0a090817161514131211101f1e1d1c1b1a1918"
    assert hash_to_hex(raw) == expected
    assert hex_to_hash(expected) == raw
    assert hex_to_hash(expected.upper()) == raw


@pytest.mark.parametrize(
    "bad", ["", "00" * 31, "00" * 33, "g" * 64, "٠" * 64, " " + "0" * 63, "0x" + "0" * 62]
)
def test_hex_to_hash_rejects_malformed(bad: str) -> None:
    with pytest.raises(XetFormatError):
        hex_to_hash(bad)


def test_hash_to_hex_rejects_wrong_length() -> None:
    with pytest.raises(XetFormatError):
        hash_to_hex(b"\x00" * 31)


# --------------------------------------------------------------------------- xorbs


@pytest.mark.parametrize("scheme", [0, 1, 2])
@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 1023, 4096])
def test_decode_xorb_schemes(scheme: int, n: int) -> None:
    rng = random.Random(n)
    data = bytes(rng.getrandbits(8) for _ in range(n))
    tail = bytes(range(256)) * 17  # compressible, so LZ4 schemes really compress
    assert decode_xorb(_chunk(data, scheme) + _chunk(tail, scheme)) == [data, tail]


def test_bg4_regroup_interleaves_the_four_lanes() -> None:
    # "abcdefg" is stored as lane 0 (a, e), lane 1 (b, f), lane 2 (c, g), lane 3 (d).
    assert xet._bg4_regroup(b"aebfcgd") == b"abcdefg"
    assert decode_xorb(_u64((7 << 8) | (7 << 40)) + b"abcdefg") == [b"abcdefg"]


def test_decode_xorb_accepts_memoryview_and_stops_at_footer() -> None:
    body = _chunk(b"a" * 100, 1) + _chunk(b"bcd", 0)
    footer = b"XETBLOB\x01" + b"\x00" * 40
    assert decode_xorb(memoryview(body + footer)) == [b"a" * 100, b"bcd"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "no chunks"),
        (b"XETBLOB\x01", "no chunks"),
        (_chunk(b"abc")[:5], "truncated inside the header"),
        (_chunk(b"abcdef")[:-1], "truncated"),
        (_chunk(b"abcdef") + b"\x00\x01", "truncated inside the header"),
        (_chunk(b"abcdef", clen=7), "truncated"),  # compressed length past the end
        (_chunk(b"abcdef", ulen=7), "header says 7"),
        (_chunk(b"x" * 500, 1, ulen=499), "more than"),
        (_chunk(b"x" * 500, 1, ulen=501), "header says 501"),
        (_chunk(b"abc", 3), "unknown compression scheme 3"),
        (b"\x01" + _chunk(b"abc")[1:], "unknown header version"),
        (_chunk(b"abc") + b"garbage!", "unknown header version"),
        (_chunk(b"", ulen=xet.MAX_CHUNK_BYTES + 1), "too large"),
        (_chunk(b"", clen=2 * xet.MAX_CHUNK_BYTES + 1), "too large"),
    ],
)
def test_decode_xorb_rejects_malformed(body: bytes, message: str) -> None:
    with pytest.raises(XetFormatError, match=message):
        decode_xorb(body)


def test_decode_xorb_rejects_bad_compressed_length() -> None:
    good = _chunk(bytes(range(256)) * 8, 1)
    clen = (int.from_bytes(good[:8], "little") >> 8) & 0xFFFFFF
    short = _chunk(bytes(range(256)) * 8, 1, clen=clen - 1)[: 8 + clen - 1]
    with pytest.raises(XetFormatError, match="truncated LZ4 frame"):
        decode_xorb(short)
    long = _chunk(bytes(range(256)) * 8, 1, clen=clen + 1) + b"\x00"
    with pytest.raises(XetFormatError, match="stray bytes"):
        decode_xorb(long)


@pytest.mark.parametrize("offset", [0, 1, 4, 5, 6])  # LZ4 magic, frame descriptor, header checksum
def test_decode_xorb_rejects_corrupt_lz4(offset: int) -> None:
    body = bytearray(_chunk(bytes(range(256)) * 8, 1))
    body[8 + offset] ^= 0x5A
    with pytest.raises(XetFormatError, match=r"LZ4|header says|more than"):
        decode_xorb(bytes(body))


def test_decode_xorb_bounds_decompression() -> None:
    bomb = lz4.frame.compress(bytes(16 * MIB))  # ~64 KiB that would unpack to 16 MiB
    header = (len(bomb) << 8) | (1 << 32) | (xet.MAX_CHUNK_BYTES << 40)
    with pytest.raises(XetFormatError, match="more than"):
        decode_xorb(_u64(header) + bomb)


def test_decode_xorb_bounds_total_size(monkeypatch: pytest.MonkeyPatch) -> None:
    """Many small frames that each unpack to a legal chunk must not add up to an unbounded xorb."""
    monkeypatch.setattr(xet, "MAX_XORB_BYTES", 4 * MIB)
    chunk = _chunk(bytes(MIB), 1)
    assert len(decode_xorb(chunk * 4)) == 4
    with pytest.raises(XetFormatError, match="more than 4194304 bytes"):
        decode_xorb(chunk * 5)


# --------------------------------------------------------------------------- shards


def _two_file_shard(footer: bytes = b"") -> tuple[bytes, bytes, bytes]:
    xa, xb = _raw_hash(1), _raw_hash(2)
    files = [
        _File(_raw_hash(10), [(xa, 0, 2, 300), (xb, 1, 3, 50)], hashlib.sha256(b"x").hexdigest()),
        _File(_raw_hash(11), [(xb, 0, 1, 7)], None, verification=False),
    ]
    return _shard(files, {xa: [100, 200], xb: [7, 20, 30]}, footer), xa, xb


def test_parse_shard_synthetic() -> None:
    shard, xa, xb = _two_file_shard()
    files = parse_shard(shard)
    assert files == [
        ShardFile(
            hash_to_hex(_raw_hash(10)),
            (ShardTerm(hash_to_hex(xa), 0, 2, 300), ShardTerm(hash_to_hex(xb), 1, 3, 50)),
            hashlib.sha256(b"x").hexdigest(),
        ),
        ShardFile(hash_to_hex(_raw_hash(11)), (ShardTerm(hash_to_hex(xb), 0, 1, 7),), None),
    ]
    assert [f.size for f in files] == [350, 7]


def test_parse_shard_with_footer_ignores_tables_before_it() -> None:
    shard, _, _ = _two_file_shard(footer=b"\x01" * 200)
    tables = b"\x07" * 96  # lookup tables sit between the CAS section and the footer
    shard = shard[:-200] + tables + shard[-200:]
    assert len(parse_shard(shard)) == 2


def test_parse_shard_rejects_every_truncation() -> None:
    shard, _, _ = _two_file_shard()
    for cut in range(len(shard)):
        with pytest.raises(XetFormatError):
            parse_shard(shard[:cut])


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda s: b"X" + s[1:], "wrong header tag"),
        (lambda s: s[:32] + _u64(3) + s[40:], "unsupported shard version 3"),
        (lambda s: s[:40] + _u64(len(s)) + s[48:], "footer"),
        (lambda s: s + b"\x00" * 48, "unexpected bytes"),
        (lambda s: s[: 48 + 36] + _u32(1000) + s[48 + 40 :], "truncated"),  # n_entries too large
    ],
)
def test_parse_shard_rejects_malformed(mutate: Callable[[bytes], bytes], message: str) -> None:
    shard, _, _ = _two_file_shard()
    with pytest.raises(XetFormatError, match=message):
        parse_shard(mutate(shard))


def test_parse_shard_rejects_empty_term_range() -> None:
    shard = _shard([_File(_raw_hash(1), [(_raw_hash(2), 3, 3, 0)])])
    with pytest.raises(XetFormatError, match="empty chunk range"):
        parse_shard(shard)


# --------------------------------------------------------------------------- reconstruct


def _loader(xorbs: dict[str, list[bytes]], calls: list[str] | None = None) -> Callable[[str], list[bytes]]:
    def load(h: str) -> list[bytes]:
        if calls is not None:
            calls.append(h)
        return xorbs[h]

    return load


def test_reconstruct_streams_terms_and_reuses_loaded_xorb() -> None:
    xorbs = {"a": [b"00", b"11", b"22"], "b": [b"33", b"4"]}
    terms = (
        ShardTerm("a", 0, 2, 4),
        ShardTerm("a", 2, 3, 2),
        ShardTerm("b", 0, 2, 3),
        ShardTerm("a", 1, 2, 2),
    )
    expected = b"0011223341" + b"1"
    file = ShardFile("f", terms, hashlib.sha256(expected).hexdigest())
    out, calls = io.BytesIO(), list[str]()
    assert reconstruct(file, _loader(xorbs, calls), out) == (hashlib.sha256(expected).hexdigest(), 11)
    assert out.getvalue() == expected
    assert calls == ["a", "b", "a"]


def test_reconstruct_empty_file() -> None:
    out = io.BytesIO()
    assert reconstruct(ShardFile("f", (), None), _loader({}), out) == (hashlib.sha256().hexdigest(), 0)


@pytest.mark.parametrize(
    ("term", "sha256", "message"),
    [
        (ShardTerm("a", 1, 4, 4), None, "outside xorb a"),
        (ShardTerm("a", 3, 4, 1), None, "outside xorb a"),
        (ShardTerm("a", 0, 2, 5), None, "the shard says 5"),
        (ShardTerm("zz", 0, 1, 1), None, "unknown xorb zz"),
        (ShardTerm("a", 0, 1, 1), "0" * 64, "sha256"),
    ],
)
def test_reconstruct_rejects_inconsistent_files(term: ShardTerm, sha256: str | None, message: str) -> None:
    with pytest.raises(XetFormatError, match=message):
        reconstruct(ShardFile("f", (term,), sha256), _loader({"a": [b"x", b"yy", b"z"]}), io.BytesIO())


# --------------------------------------------------------------------------- merkle hashes


def test_xorb_hash_of_one_chunk_is_the_chunk_hash() -> None:
    assert xet.xorb_hash([b"abc"]) == xet.chunk_hash(b"abc")
    assert xet.xorb_hash([b"abc", b"d"]) != xet.xorb_hash([b"abcd"])


# --------------------------------------------------------------------------- the real client


@dataclass
class _Capture:
    """What the capture CAS received; cleared between tests."""

    xorbs: dict[str, bytes] = field(default_factory=dict)
    shards: list[bytes] = field(default_factory=list)
    log: list[tuple[str, str, str | None]] = field(default_factory=list)  # method, path, Authorization

    def decoded_xorbs(self) -> dict[str, list[bytes]]:
        return {h: decode_xorb(body) for h, body in self.xorbs.items()}

    def files(self) -> list[ShardFile]:
        return [f for shard in self.shards for f in parse_shard(shard)]


_Cas = tuple[str, _Capture]  # base URL of the capture server, what it received


class _CasHandler(BaseHTTPRequestHandler):
    """The routes hf_xet 1.8 calls during an upload, answered the way the research notes prescribe."""

    protocol_version = "HTTP/1.1"
    capture: _Capture

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _answer(self, status: int, body: object) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self) -> None:
        self.capture.log.append(("GET", self.path, self.headers["Authorization"]))
        if "/xet-write-token/" in self.path:
            base = f"http://127.0.0.1:{self.server.server_address[1]}"
            self._answer(
                200, {"casUrl": f"{base}/cas", "accessToken": "xet-token", "exp": int(time.time()) + 3600}
            )
        else:  # /cas/v1/chunks/default/{chunk}: global dedup miss
            self._answer(404, {"error": "not found"})

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.capture.log.append(("POST", self.path, self.headers["Authorization"]))
        if self.path.startswith("/cas/v1/xorbs/default/"):
            self.capture.xorbs[self.path.rsplit("/", 1)[1]] = body
            self._answer(200, {"was_inserted": True})
        elif self.path == "/cas/v1/shards":
            self.capture.shards.append(body)
            self._answer(200, {"result": 1})
        else:  # /cas/v1/xorb-grants/…, /cas/v2/shards, /v1/telemetry: the client falls back or ignores
            self._answer(404, {"error": "not found"})


@pytest.fixture(scope="module")
def cas_server() -> Iterator[_Cas]:
    capture = _Capture()
    handler = type("Handler", (_CasHandler,), {"capture": capture})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", capture
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def cas(cas_server: _Cas) -> _Cas:
    url, capture = cas_server
    capture.xorbs.clear()
    capture.shards.clear()
    capture.log.clear()
    return url, capture


def _upload(url: str, cache: Path, payloads: list[bytes], monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Upload with hf_xet as huggingface_hub 2.4 does; ``cache`` isolates the client's shard cache."""
    monkeypatch.setenv("HF_HOME", str(cache))
    monkeypatch.setenv("HF_XET_CACHE", str(cache / "xet"))
    session = hf_xet.XetSession()
    with session.new_upload_commit(
        token_refresh_url=f"{url}/api/models/alice/repo/xet-write-token/main",
        token_refresh_headers={"Authorization": "Bearer hf_user_token"},
        custom_headers={"user-agent": "hubkit-tests"},
    ) as commit:
        handles = [commit.start_upload_bytes(p, sha256=hf_xet.COMPUTE_SHA256) for p in payloads]
    return [h.result().xet_info for h in handles]


def _schemes(body: bytes) -> set[int]:
    """Compression schemes used in a xorb body, read independently of the code under test."""
    found, offset = set[int](), 0
    while offset < len(body):
        header = int.from_bytes(body[offset : offset + 8], "little")
        found.add((header >> 32) & 0xFF)
        offset += 8 + ((header >> 8) & 0xFFFFFF)
    return found


def _text(n: int) -> bytes:
    rng = random.Random(0)
    words = ["".join(rng.choice("etaoinshrdlu") for _ in range(rng.randint(2, 9))) for _ in range(400)]
    return " ".join(rng.choice(words) for _ in range(n // 4)).encode()[:n]


def _words32(n: int) -> bytes:
    return b"".join(i.to_bytes(4, "little") for i in range(n // 4))


def _rebuild(file: ShardFile, xorbs: dict[str, list[bytes]]) -> bytes:
    out = io.BytesIO()
    sha256, size = reconstruct(file, _loader(xorbs), out)
    assert (sha256, size) == (hashlib.sha256(out.getvalue()).hexdigest(), len(out.getvalue()))
    return out.getvalue()


@pytest.mark.integration
@pytest.mark.parametrize(
    ("make", "scheme"),
    [
        pytest.param(lambda: b"hello xet\n", 0, id="small"),
        pytest.param(lambda: random.Random(1).randbytes(3 * MIB), 0, id="random-3MB"),
        pytest.param(lambda: _text(3 * MIB), 1, id="text-3MB-lz4"),
        pytest.param(lambda: _words32(3 * MIB), 2, id="u32-3MB-bg4"),
    ],
)
def test_real_client_round_trip(
    make: Callable[[], bytes], scheme: int, cas: _Cas, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, capture = cas
    payload = make()
    (info,) = _upload(url, tmp_path, [payload], monkeypatch)

    assert len(capture.xorbs) == 1
    assert len(capture.shards) == 1
    assert scheme in _schemes(next(iter(capture.xorbs.values())))
    (file,) = capture.files()
    assert file.file_hash == info.hash
    assert file.sha256 == info.sha256 == hashlib.sha256(payload).hexdigest()
    assert file.size == len(payload)
    assert _rebuild(file, capture.decoded_xorbs()) == payload
    # The Hub token only goes to the token route; CAS calls carry the short-lived Xet token.
    assert ("GET", "/api/models/alice/repo/xet-write-token/main", "Bearer hf_user_token") in capture.log
    assert all(auth == "Bearer xet-token" for _, path, auth in capture.log if path.startswith("/cas/"))


@pytest.mark.integration
def test_real_client_two_files_in_one_commit(
    cas: _Cas, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, capture = cas
    payloads = [random.Random(2).randbytes(2 * MIB), _text(MIB) + _words32(MIB)]
    infos = _upload(url, tmp_path, payloads, monkeypatch)

    files = {f.file_hash: f for f in capture.files()}
    xorbs = capture.decoded_xorbs()
    assert len(files) == 2
    assert set().union(*map(_schemes, capture.xorbs.values())) == {0, 1, 2}
    for info, payload in zip(infos, payloads, strict=True):
        assert _rebuild(files[info.hash], xorbs) == payload


@pytest.mark.integration
def test_real_client_empty_file(cas: _Cas, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url, capture = cas
    (info,) = _upload(url, tmp_path, [b""], monkeypatch)
    assert capture.xorbs == {}
    (file,) = capture.files()
    assert (file.file_hash, file.terms, file.sha256) == (info.hash, (), hashlib.sha256().hexdigest())
    assert _rebuild(file, {}) == b""


@pytest.mark.integration
def test_real_client_skips_xorbs_it_has_uploaded_before(
    cas: _Cas, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The client's shard cache makes later shards point at earlier xorbs: a server must keep them."""
    url, capture = cas
    first = random.Random(3).randbytes(MIB)
    _upload(url, tmp_path, [first], monkeypatch)
    kept = capture.decoded_xorbs()
    capture.xorbs.clear()
    capture.shards.clear()

    (info,) = _upload(url, tmp_path, [first], monkeypatch)
    assert capture.xorbs == {}
    (file,) = capture.files()
    assert file.file_hash == info.hash
    assert _rebuild(file, kept) == first


@pytest.mark.integration
def test_real_client_large_file_spans_xorbs(
    cas: _Cas, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, capture = cas
    payload = random.Random(4).randbytes(72 * MIB)
    (info,) = _upload(url, tmp_path, [payload], monkeypatch)

    assert len(capture.xorbs) >= 2
    assert max(map(len, capture.xorbs.values())) <= 64 * MIB + 1024 * 8  # 64 MiB of chunks plus headers
    (file,) = capture.files()
    loads: list[str] = []

    def load(h: str) -> list[bytes]:  # decode on demand, as a server reading stored xorbs would
        loads.append(h)
        return decode_xorb(capture.xorbs[h])

    with open(tmp_path / "out.bin", "wb") as out:
        sha256, size = reconstruct(file, load, out)
    assert (sha256, size) == (info.sha256, len(payload))
    assert sorted(loads) == sorted(capture.xorbs)  # each xorb decoded once
    assert (tmp_path / "out.bin").read_bytes() == payload


@pytest.mark.integration
def test_real_client_bodies_reject_truncation(
    cas: _Cas, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, capture = cas
    _upload(url, tmp_path, [_text(300_000), b"tiny"], monkeypatch)
    (shard,) = capture.shards
    for cut in range(0, len(shard), 7):
        with pytest.raises(XetFormatError):
            parse_shard(shard[:cut])
    body = next(iter(capture.xorbs.values()))
    for cut in (1, 7, 8, 9, len(body) // 2, len(body) - 1):
        with pytest.raises(XetFormatError):
            decode_xorb(body[:cut])


@pytest.mark.integration
def test_real_client_xorb_hash_matches_upload_url(
    cas: _Cas, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, capture = cas
    _upload(url, tmp_path, [random.Random(5).randbytes(3 * MIB), _text(MIB), b"abc"], monkeypatch)
    for name, chunks in capture.decoded_xorbs().items():
        assert xet.xorb_hash(chunks) == name
    bad = capture.decoded_xorbs().popitem()[1]
    assert xet.xorb_hash([*bad[:-1], bad[-1] + b"!"]) != xet.xorb_hash(bad)


@pytest.mark.integration
def test_stored_xorbs_and_shards_with_footers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A ``local://`` CAS makes hf_xet write xorbs and shards the way a server stores them (with footers)."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HF_XET_CACHE", str(tmp_path / "home" / "xet"))
    store = tmp_path / "cas"
    store.mkdir()
    payload = random.Random(6).randbytes(200_000) + _text(300_000)
    with hf_xet.XetSession().new_upload_commit(endpoint=f"local://{store}") as commit:
        handle = commit.start_upload_bytes(payload, sha256=hf_xet.COMPUTE_SHA256)
    info = handle.result().xet_info

    xorb_files = [p for p in store.rglob("default.*") if p.suffix != ".tagset"]
    assert xorb_files
    xorbs = {}
    for path in xorb_files:
        body = path.read_bytes()
        assert b"XETBLOB" in body
        xorbs[path.name.split(".", 1)[1]] = decode_xorb(body)
    shard_paths = list((store / "xet" / "xorbs" / "shards").glob("*.mdb"))
    assert shard_paths
    for path in shard_paths:
        shard = path.read_bytes()
        assert int.from_bytes(shard[40:48], "little") > 0  # footer present
        (file,) = parse_shard(shard)
        assert file.file_hash == info.hash
        assert _rebuild(file, xorbs) == payload
