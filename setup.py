"""The package list, found rather than kept by hand (everything else is in pyproject.toml).

The folders ``adapters/`` and ``pipelines/`` map to the import names ``hubkit.adapters`` and
``hubkit.pipelines`` (``[tool.setuptools.package-dir]``), which ``[tool.setuptools.packages.find]`` cannot
express: it finds ``spm`` in ``adapters/`` but does not prefix it. So a new method folder needs only its
entry-point line: every folder that holds Python code under a mapped folder is a package (a folder without
``__init__.py`` is packaged as a namespace package rather than silently left out), except the metric folders,
which are ``evaluate`` modules shipped as data (``hubkit.metrics`` package data).
"""

from __future__ import annotations

from pathlib import Path

from setuptools import setup

HERE = Path(__file__).resolve().parent
FOLDERS = {
    "hubkit": "hubkit",
    "adapters": "hubkit.adapters",
    "pipelines": "hubkit.pipelines",
    "model_cards": "hubkit.model_cards",
}  # as [tool.setuptools.package-dir]
DATA_FOLDERS = ("hubkit.metrics.",)  # evaluate modules: <name>/<name>.py, loaded by path, not imported


def _packages(folder: str, name: str) -> list[str]:
    root = HERE / folder
    found = [name]
    for path in sorted(p for p in root.rglob("*") if p.is_dir()):
        parts = path.relative_to(root).parts
        if "__pycache__" in parts or any(not part.isidentifier() for part in parts):
            continue
        package = ".".join([name, *parts])
        if not package.startswith(DATA_FOLDERS) and any(path.glob("*.py")):
            found.append(package)
    return found


setup(packages=[p for folder, name in FOLDERS.items() for p in _packages(folder, name)])
