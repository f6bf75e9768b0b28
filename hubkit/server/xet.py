"""Decoder for what the ``hf_xet`` client uploads to a Xet CAS: xorbs and shards.

The embedded Hub accepts Xet uploads (research notes, hub-api.md §6.3) so that ``huggingface_hub`` ≥ 1.20
can push large files. The client cuts each file into content-defined chunks, packs compressed chunks into
*xorbs* (``POST /v1/xorbs/default/{hash}``) and then sends a *shard* (``POST /v1/shards``) that lists, per
file, which chunk ranges of which xorbs make up the file. This module turns those bodies back into file
bytes; the HTTP routes live elsewhere.

Formats as written by hf_xet 1.8 (layouts match xet-core's ``cas_object`` and ``mdb_shard`` crates):

* xorb: repeated ``[8-byte chunk header][payload]``; header = ``version u8 (0) | compressed_len u24 |
  scheme u8 | uncompressed_len u24``, little endian. Uploads carry no footer; stored xorbs end with a
  footer that starts with ``b"XETBLOB"``.
* shard: 48-byte header (32-byte tag, ``version u64`` = 2, ``footer_size u64``), the file-info section
  and the CAS-info section, each made of 48-byte records and closed by a bookend record whose hash is
  32×0xFF, then (only when ``footer_size`` > 0) lookup tables and a footer.
* hashes are 32 raw bytes read as four little-endian u64 words; their text form is the hex of each word.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import BinaryIO

import lz4.frame

try:  # Optional: only needed to check that a xorb's content matches the hash it was uploaded under.
    import blake3
except ImportError:  # pragma: no cover - exercised only where blake3 is missing
    blake3 = None

__all__ = [
    "MAX_CHUNK_BYTES",
    "MAX_XORB_BYTES",
    "ShardFile",
    "ShardTerm",
    "XetFormatError",
    "chunk_hash",
    "decode_xorb",
    "hash_to_hex",
    "hex_to_hash",
    "parse_shard",
    "reconstruct",
    "xorb_hash",
]

HASH_BYTES = 32
CHUNK_HEADER_BYTES = 8
# Xet caps chunks at 128 KiB and xorbs at 64 MiB of unpacked data; the slack tolerates other writers
# while still bounding what a small, highly compressed body can make us allocate.
MAX_CHUNK_BYTES = 1 << 20
MAX_XORB_BYTES = 128 << 20
XORB_FOOTER_IDENT = b"XETBLOB"

SCHEME_NONE = 0
SCHEME_LZ4 = 1
SCHEME_BG4_LZ4 = 2

SHARD_HEADER_TAG = b"HFRepoMetaData\x00" + bytes(
    [85, 105, 103, 69, 106, 123, 129, 87, 131, 165, 189, 217, 92, 205, 209, 74, 169]
)
SHARD_VERSION = 2
SHARD_HEADER_BYTES = 48
RECORD_BYTES = 48
BOOKEND = b"\xff" * HASH_BYTES
FILE_FLAG_VERIFICATION = 1 << 31
FILE_FLAG_METADATA_EXT = 1 << 30

# blake3 keys of xet-core's merklehash crate: chunk (leaf) hashes and internal merkle nodes.
_DATA_KEY = bytes(
    [102, 151, 245, 119, 91, 149, 80, 222, 49, 53, 203, 172, 165, 151, 24, 28,
     157, 228, 33, 16, 155, 235, 43, 88, 180, 208, 176, 75, 147, 173, 242, 41]
)  # fmt: skip
_NODE_KEY = bytes(
    [1, 126, 197, 199, 165, 71, 41, 150, 253, 148, 102, 102, 180, 138, 2, 230,
     93, 221, 83, 111, 55, 199, 109, 210, 248, 99, 82, 230, 74, 83, 113, 63]
)  # fmt: skip
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


class XetFormatError(ValueError):
    """A xorb or shard body is malformed, truncated, oversized or inconsistent with the stored data."""


# --------------------------------------------------------------------------- hashes


def hash_to_hex(raw32: bytes | memoryview) -> str:
    """Render a raw 32-byte Xet hash the way Xet does in URLs and APIs (hex of four LE u64 words)."""
    raw = bytes(raw32)
    if len(raw) != HASH_BYTES:
        raise XetFormatError(f"a Xet hash is {HASH_BYTES} bytes, got {len(raw)}")
    return "".join(raw[i : i + 8][::-1].hex() for i in range(0, HASH_BYTES, 8))


def hex_to_hash(s: str) -> bytes:
    """Parse a 64-hex-digit Xet hash into its raw bytes; ``hash_to_hex`` of the result is canonical."""
    if not isinstance(s, str) or len(s) != 2 * HASH_BYTES or not _HEX_DIGITS.issuperset(s):
        raise XetFormatError(f"not a Xet hash (64 hex digits expected): {s!r:.80}")
    return b"".join(bytes.fromhex(s[i : i + 16])[::-1] for i in range(0, 2 * HASH_BYTES, 16))


def chunk_hash(chunk: bytes) -> str:
    """Xet's content hash of one chunk (keyed blake3); needs the optional ``blake3`` package."""
    return hash_to_hex(_blake3().blake3(chunk, key=_DATA_KEY).digest())


def xorb_hash(chunks: Sequence[bytes]) -> str:
    """The hash a xorb is named by: the merkle root over its chunks' (hash, length) pairs.

    A server calls this to refuse a xorb whose body does not match the hash in its upload URL, so that
    a bad upload cannot shadow other content with the same name. Needs the optional ``blake3`` package.
    """
    nodes = [(chunk_hash(c), len(c)) for c in chunks]
    if not nodes:
        return "0" * (2 * HASH_BYTES)
    while len(nodes) > 1:
        merged: list[tuple[str, int]] = []
        start = 0
        while start < len(nodes):
            end = _next_cut(nodes, start)
            group = nodes[start:end]
            text = "".join(f"{h} : {n}\n" for h, n in group).encode()
            node = hash_to_hex(_blake3().blake3(text, key=_NODE_KEY).digest())
            merged.append((node, sum(n for _, n in group)))
            start = end
        nodes = merged
    return nodes[0][0]


def _next_cut(nodes: Sequence[tuple[str, int]], start: int) -> int:
    """End of the merkle group starting at ``start``: xet-core cuts after a node whose last hash word is
    0 mod 4, keeping groups between 2 and 9 nodes (mean branching factor 4)."""
    if len(nodes) - start <= 2:
        return len(nodes)
    end = min(start + 9, len(nodes))
    for i in range(start + 2, end):
        if int(nodes[i][0][48:], 16) % 4 == 0:
            return i + 1
    return end


def _blake3() -> ModuleType:
    if blake3 is None:
        raise RuntimeError("Xet hash checks need the 'blake3' package (pip install blake3)")
    return blake3


# --------------------------------------------------------------------------- xorbs


def decode_xorb(data: bytes | memoryview) -> list[bytes]:
    """Decompress every chunk of a xorb body, in order; chunk indices are what shard terms refer to.

    Reading stops at a ``XETBLOB`` footer (stored xorbs have one, uploads do not). Anything else that is
    not a complete, valid chunk raises ``XetFormatError``.
    """
    view = memoryview(data).cast("B")
    size = len(view)
    chunks: list[bytes] = []
    offset = unpacked = 0
    while offset < size:
        if view[offset] != 0:
            if view[offset : offset + len(XORB_FOOTER_IDENT)] == XORB_FOOTER_IDENT:
                break
            raise XetFormatError(f"xorb chunk {len(chunks)} at byte {offset}: unknown header version")
        if size - offset < CHUNK_HEADER_BYTES:
            raise XetFormatError(f"xorb truncated inside the header of chunk {len(chunks)}")
        header = int.from_bytes(view[offset : offset + CHUNK_HEADER_BYTES], "little")
        clen = (header >> 8) & 0xFFFFFF
        scheme = (header >> 32) & 0xFF
        ulen = (header >> 40) & 0xFFFFFF
        if ulen > MAX_CHUNK_BYTES or clen > 2 * MAX_CHUNK_BYTES:
            raise XetFormatError(f"xorb chunk {len(chunks)} too large ({clen} stored, {ulen} unpacked)")
        unpacked += ulen
        if unpacked > MAX_XORB_BYTES:
            raise XetFormatError(f"xorb unpacks to more than {MAX_XORB_BYTES} bytes")
        start = offset + CHUNK_HEADER_BYTES
        if start + clen > size:
            raise XetFormatError(
                f"xorb truncated: chunk {len(chunks)} needs {clen} bytes, {size - start} left"
            )
        try:
            chunks.append(_decompress(view[start : start + clen], scheme, ulen))
        except XetFormatError as exc:
            raise XetFormatError(f"xorb chunk {len(chunks)}: {exc}") from None
        offset = start + clen
    if not chunks:
        raise XetFormatError("xorb holds no chunks")
    return chunks


def _decompress(payload: memoryview, scheme: int, ulen: int) -> bytes:
    if scheme == SCHEME_NONE:
        out = bytes(payload)
    elif scheme == SCHEME_LZ4:
        out = _lz4_frame(payload, ulen)
    elif scheme == SCHEME_BG4_LZ4:
        out = _bg4_regroup(_lz4_frame(payload, ulen))
    else:
        raise XetFormatError(f"unknown compression scheme {scheme}")
    if len(out) != ulen:
        raise XetFormatError(f"unpacks to {len(out)} bytes, header says {ulen}")
    return out


def _lz4_frame(payload: memoryview, ulen: int) -> bytes:
    """Decompress exactly one LZ4 frame, never producing more than ``ulen`` + 1 bytes (bomb guard)."""
    decoder = lz4.frame.LZ4FrameDecompressor()
    try:
        out = decoder.decompress(payload, max_length=ulen)
        if not decoder.eof and decoder.decompress(b"", max_length=1):
            raise XetFormatError(f"unpacks to more than the {ulen} bytes its header says")
    except RuntimeError as exc:  # the lz4 binding reports corrupt frames as RuntimeError
        raise XetFormatError(f"corrupt LZ4 frame ({exc})") from None
    if not decoder.eof:
        raise XetFormatError("truncated LZ4 frame")
    if decoder.unused_data:
        raise XetFormatError(f"{len(decoder.unused_data)} stray bytes after the LZ4 frame")
    return out


def _bg4_regroup(grouped: bytes) -> bytes:
    """Undo byte grouping: the stored buffer holds bytes 0, 4, 8… then 1, 5, 9… then 2… then 3…."""
    out = bytearray(len(grouped))
    pos = 0
    for lane in range(4):
        n = len(range(lane, len(grouped), 4))
        out[lane::4] = grouped[pos : pos + n]
        pos += n
    return bytes(out)


# --------------------------------------------------------------------------- shards


@dataclass(frozen=True)
class ShardTerm:
    """One piece of a file: chunks ``[chunk_start, chunk_end)`` of a xorb, ``unpacked_bytes`` long."""

    xorb_hash: str
    chunk_start: int
    chunk_end: int
    unpacked_bytes: int


@dataclass(frozen=True)
class ShardFile:
    """A file described by a shard: its Xet hash, its pieces in order, and its sha256 when sent."""

    file_hash: str
    terms: tuple[ShardTerm, ...]
    sha256: str | None

    @property
    def size(self) -> int:
        return sum(term.unpacked_bytes for term in self.terms)


def parse_shard(data: bytes | memoryview) -> list[ShardFile]:
    """Read the files a shard describes; the CAS-info section is checked for shape but not returned."""
    view = memoryview(data).cast("B")
    size = len(view)
    if size < SHARD_HEADER_BYTES:
        raise XetFormatError(f"shard truncated: {size} bytes, the header alone is {SHARD_HEADER_BYTES}")
    if view[:HASH_BYTES] != SHARD_HEADER_TAG:
        raise XetFormatError("not a Xet shard (wrong header tag)")
    version = int.from_bytes(view[32:40], "little")
    if version != SHARD_VERSION:
        raise XetFormatError(f"unsupported shard version {version} (expected {SHARD_VERSION})")
    footer_size = int.from_bytes(view[40:48], "little")
    if footer_size > size - SHARD_HEADER_BYTES:
        raise XetFormatError(f"shard truncated: footer of {footer_size} bytes does not fit")
    end = size - footer_size

    files: list[ShardFile] = []
    offset = SHARD_HEADER_BYTES
    while True:
        _need(offset, RECORD_BYTES, end, f"header of file record {len(files)}")
        if view[offset : offset + HASH_BYTES] == BOOKEND:
            offset += RECORD_BYTES
            break
        record, offset = _parse_file_record(view, offset, end, len(files))
        files.append(record)

    offset = _skip_cas_section(view, offset, end)
    if footer_size == 0 and offset != size:
        raise XetFormatError(f"{size - offset} unexpected bytes after the shard's CAS-info section")
    return files


def _parse_file_record(view: memoryview, offset: int, end: int, index: int) -> tuple[ShardFile, int]:
    """Parse one file record at ``offset``; return it and the offset just past it."""
    file_hash = hash_to_hex(view[offset : offset + HASH_BYTES])
    flags = int.from_bytes(view[offset + 32 : offset + 36], "little")
    n_terms = int.from_bytes(view[offset + 36 : offset + 40], "little")
    has_verification = bool(flags & FILE_FLAG_VERIFICATION)
    has_metadata = bool(flags & FILE_FLAG_METADATA_EXT)
    n_records = 1 + n_terms * (2 if has_verification else 1) + (1 if has_metadata else 0)
    _need(offset, n_records * RECORD_BYTES, end, f"file record {index} ({file_hash})")

    terms = []
    for t in range(n_terms):
        at = offset + RECORD_BYTES * (1 + t)
        unpacked, start, stop = (int.from_bytes(view[at + k : at + k + 4], "little") for k in (36, 40, 44))
        if start >= stop:
            raise XetFormatError(f"file {file_hash} term {t}: empty chunk range [{start}, {stop})")
        terms.append(ShardTerm(hash_to_hex(view[at : at + HASH_BYTES]), start, stop, unpacked))

    sha256 = None
    if has_metadata:
        at = offset + RECORD_BYTES * (n_records - 1)
        sha256 = hash_to_hex(view[at : at + HASH_BYTES])  # xet-core stores the sha256 as a Xet hash
    return ShardFile(file_hash, tuple(terms), sha256), offset + n_records * RECORD_BYTES


def _skip_cas_section(view: memoryview, offset: int, end: int) -> int:
    """Walk the CAS-info section (xorb headers + per-chunk entries) to its bookend; return the end offset."""
    while True:
        _need(offset, RECORD_BYTES, end, "CAS-info section")
        if view[offset : offset + HASH_BYTES] == BOOKEND:
            return offset + RECORD_BYTES
        n_chunks = int.from_bytes(view[offset + 36 : offset + 40], "little")
        _need(offset, (1 + n_chunks) * RECORD_BYTES, end, f"CAS-info section ({n_chunks} chunks announced)")
        offset += (1 + n_chunks) * RECORD_BYTES


def _need(offset: int, length: int, end: int, what: str) -> None:
    if offset + length > end:
        raise XetFormatError(f"shard truncated in the {what}")


# --------------------------------------------------------------------------- files


def reconstruct(
    file: ShardFile, load_xorb: Callable[[str], Sequence[bytes]], out: BinaryIO
) -> tuple[str, int]:
    """Write a shard file's bytes to ``out`` and return ``(sha256 hex, size)``.

    Only one decoded xorb is held at a time (consecutive terms of the same xorb share it), so memory stays
    at about one xorb (≤ 64 MiB) whatever the file size. ``out`` may hold partial data when this raises:
    write to a temporary file and discard it on error.
    """
    digest = hashlib.sha256()
    total = 0
    loaded_hash: str | None = None
    chunks: Sequence[bytes] = ()
    for index, term in enumerate(file.terms):
        if term.xorb_hash != loaded_hash:
            chunks = ()  # drop the previous xorb before loading the next one
            try:
                chunks = load_xorb(term.xorb_hash)
            except KeyError:
                raise XetFormatError(f"unknown xorb {term.xorb_hash} (file {file.file_hash})") from None
            loaded_hash = term.xorb_hash
        if not 0 <= term.chunk_start < term.chunk_end <= len(chunks):
            raise XetFormatError(
                f"file {file.file_hash} term {index}: chunks [{term.chunk_start}, {term.chunk_end}) are "
                f"outside xorb {term.xorb_hash} ({len(chunks)} chunks)"
            )
        written = 0
        for i in range(term.chunk_start, term.chunk_end):
            out.write(chunks[i])
            digest.update(chunks[i])
            written += len(chunks[i])
        if written != term.unpacked_bytes:
            raise XetFormatError(
                f"file {file.file_hash} term {index}: {written} bytes, the shard says {term.unpacked_bytes}"
            )
        total += written
    sha256 = digest.hexdigest()
    if file.sha256 is not None and sha256 != file.sha256:
        raise XetFormatError(f"file {file.file_hash}: sha256 is {sha256}, the shard says {file.sha256}")
    return sha256, total
