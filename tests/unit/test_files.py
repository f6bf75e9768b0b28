"""Atomic writes: whole files and folders or nothing, with ordinary permissions."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from hubkit.files import atomic_file, atomic_folder


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_atomic_file_replaces_whole_and_leaves_nothing_on_error(tmp_path):
    mask = os.umask(0o022)
    try:
        target = atomic_file(tmp_path / "a.txt", lambda p: Path(p).write_text("new"))
        assert target.read_text() == "new" and _mode(target) == 0o644  # not mkstemp's 0600

        def fail(p: str) -> None:
            Path(p).write_text("half")
            raise OSError("disk full")

        with pytest.raises(OSError, match="disk full"):
            atomic_file(target, fail)
    finally:
        os.umask(mask)
    assert target.read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


def test_atomic_folder_refuses_non_empty_and_keeps_the_old_folder_on_error(tmp_path):
    out = tmp_path / "artifact"
    atomic_folder(out, lambda f: (f / "w.bin").write_bytes(b"1"))
    assert (out / "w.bin").read_bytes() == b"1" and _mode(out) & 0o055  # readable by others, as mkdir makes
    with pytest.raises(FileExistsError, match="pass --force"):
        atomic_folder(out, lambda f: (f / "w.bin").write_bytes(b"2"))

    def fail(folder: Path) -> None:
        (folder / "w.bin").write_bytes(b"half")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError, match="interrupted"):
        atomic_folder(out, fail, force=True)
    assert (out / "w.bin").read_bytes() == b"1" and [p.name for p in tmp_path.iterdir()] == ["artifact"]
    atomic_folder(out, lambda f: (f / "w.bin").write_bytes(b"2"), force=True)
    assert (out / "w.bin").read_bytes() == b"2"
