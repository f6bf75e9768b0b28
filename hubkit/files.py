"""Atomic writes: a file, or a whole artifact folder, appears complete or not at all."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["atomic_file", "atomic_folder", "write_lora_artifact"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_file(target: str | os.PathLike[str], write: Callable[[str], None]) -> Path:
    """``write(tmp_path)`` next to ``target``, then rename it over ``target`` (removed on any error). The
    file gets the usual permissions (mkstemp's are owner-only)."""
    target = Path(target)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def atomic_folder(out: str | os.PathLike[str], fill: Callable[[Path], None], force: bool = False) -> Path:
    """``fill(staging)`` a hidden sibling folder, then swap it in as ``out``: a crash or an error leaves
    ``out`` as it was. A non-empty ``out`` is replaced only with ``force``."""
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not force:
        raise FileExistsError(f"{out} exists and is not empty (pass --force to replace it)")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    try:
        fill(staging)
        os.chmod(staging, 0o777 & ~_umask())  # mkdtemp's folder is owner-only
        if out.exists():
            shutil.rmtree(out)
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out


def write_lora_artifact(
    directory: str | os.PathLike[str],
    weight_name: str,
    tensors: dict[str, Any],
    metadata: dict[str, str],
    info: dict[str, Any],
) -> Path:
    """A LoRA-shaped artifact's two files, each written atomically: the safetensors weights (with their
    header ``metadata``) and ``hubkit.json`` (``info``, the method data the Hub and the registry read)."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    atomic_file(
        directory / weight_name, lambda p: save_file(tensors, p, metadata={"format": "pt", **metadata})
    )
    text = json.dumps(info, indent=2, sort_keys=True) + "\n"
    atomic_file(directory / "hubkit.json", lambda p: Path(p).write_text(text))
    return directory
