"""The wheel, installed (not editable) in a fresh venv, works from a folder outside the repo (issue 11,
item 4).

The wheel is built from a copy of the files git knows (tracked, plus untracked ones that are not ignored), so
no stale ``build/`` folder or local leftover gets into it and the shared working tree is not written to. The
fresh venv sees the project's dependencies through a ``.pth`` line naming this venv's site-packages: a plain
path line does not run the ``.pth`` files inside that folder, so the editable hubkit stays out of sight.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import time
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import free_port, package_folders, stop_space

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
# Folder in the repo -> folder in the wheel.
FOLDERS = {folder: package.replace(".", "/") for folder, package in package_folders().items()}
USER, TOKEN = "alice", "alice-wheel-test-token"


@dataclass
class Installed:
    wheel: Path
    venv: Path
    python: Path
    hubkit: Path  # the venv's console script
    site: Path
    env: dict[str, str]


def _source_files() -> list[str]:
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: the wheel test compares the wheel against git's file list")
    out = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    return sorted(f for f in out.split("\0") if f and (ROOT / f).is_file())


def _run(cmd: list[str | Path], **kwargs) -> subprocess.CompletedProcess:
    out = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kwargs)
    assert out.returncode == 0, f"{cmd} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    for name in _source_files():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, src / name)
    wheelhouse = tmp / "wheelhouse"
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            ".",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            wheelhouse,
        ],
        cwd=src,
        timeout=300,
    )
    (wheel,) = wheelhouse.glob("hubkit-*.whl")

    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], timeout=120)
    python = venv / "bin" / "python"
    site = Path(
        _run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip()
    )
    # The dependencies, without the editable hubkit: a path line, not this venv's .pth files.
    (site / "hubkit-test-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "-q", wheel])

    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "HF_ENDPOINT", "HF_TOKEN", "HF_HUB_OFFLINE"}
    }
    env |= {
        "PATH": f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
        "HF_HOME": str(tmp / "hf-home"),
        "HUBKIT_HOME": str(tmp / "hubkit-home"),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "OMP_NUM_THREADS": env.get("OMP_NUM_THREADS", "1"),
    }
    return Installed(wheel, venv, python, venv / "bin" / "hubkit", site, env)


def test_the_wheel_holds_every_package_and_data_file(installed):
    """Every file git has under a packaged folder (code, suites, demo artifacts, weights, templates, metric
    scripts) is in the wheel: a file that no package-data pattern matches fails here, not on a user's
    machine."""
    with zipfile.ZipFile(installed.wheel) as wheel:
        names = set(wheel.namelist())
    expected = {}
    for name in _source_files():
        folder, _, rest = name.partition("/")
        if folder in FOLDERS and rest:
            expected[f"{FOLDERS[folder]}/{rest}"] = name
    missing = sorted(source for target, source in expected.items() if target not in names)
    assert not missing, (
        "files in git that the wheel lacks (a package folder setup.py does not find, or data no pattern in "
        "pyproject.toml [tool.setuptools.package-data] matches):\n" + "\n".join(missing)
    )
    methods = sorted(
        f"{FOLDERS[family]}/{p.name}"
        for family in ("adapters", "pipelines")
        for p in (ROOT / family).iterdir()
        if (p / "__init__.py").is_file()
    )
    assert methods and all(f"{m}/__init__.py" in names for m in methods), methods
    junk = sorted(n for n in names if "__pycache__" in n or n.endswith((".pyc", ".pyo")))
    assert not junk, junk
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    with zipfile.ZipFile(installed.wheel) as wheel:
        assert "[hubkit.methods]" in wheel.read(entry_points).decode()


# Runs in the fresh venv, from a folder outside the repo: imports every module of the installed hubkit,
# reads the package data the way users' code does, and reports where everything came from.
PROBE = r"""
import importlib, importlib.metadata, json, sys
from pathlib import Path

import hubkit

root = Path(hubkit.__file__).resolve().parent
modules = []
for file in sorted(root.rglob("*.py")):
    parts = list(file.relative_to(root.parent).with_suffix("").parts)
    if parts[:2] == ["hubkit", "metrics"] and len(parts) > 3:
        continue  # evaluate modules: data that evaluate.load() runs by path (and their Space apps)
    if parts[-1] == "__main__":
        continue  # `python -m hubkit`: running it is not importing it
    if parts[-1] == "__init__":
        parts = parts[:-1]
    modules.append(".".join(parts))
failed = {}
for name in modules:
    try:
        importlib.import_module(name)
    except Exception as err:
        failed[name] = f"{type(err).__name__}: {err}"

outside = sorted(
    f"{name}: {module.__file__}"
    for name, module in list(sys.modules.items())
    if name.split(".")[0] == "hubkit" and getattr(module, "__file__", None)
    and not Path(module.__file__).resolve().is_relative_to(root)
)
distribution = importlib.metadata.distribution("hubkit")
methods = {}
for ep in importlib.metadata.entry_points(group="hubkit.methods"):
    methods[ep.name] = ep.load().__module__

from hubkit.cards import SCHEMAS, render_card, template_text, validate_card
from hubkit.leaderboard.suite import available_suites, load_suite
from hubkit.metrics import METRICS, load_metric

suite = load_suite("shapes-quality")
card = render_card("adapter", method="spm", base_model="hubkit/tiny-sd-shapes", repo_id="alice/spm-red")
templates = {kind.value: len(template_text(kind)) for kind in SCHEMAS}
shipped_suites = sorted({p.stem for p in root.rglob("suites/*.json")})
metric = load_metric("prompt_alignment")
print(json.dumps({
    "file": hubkit.__file__,
    "modules": modules,
    "failed": failed,
    "outside": outside,
    "distribution": str(distribution.locate_file("hubkit/__init__.py")),
    "methods": methods,
    "suite": [suite.name, sum(len(g) for g in suite.groups.values())],
    "card_problems": [str(p) for p in validate_card(card)],
    "card_has_method_tag": "hubkit-method:spm" in card.content,
    "templates": templates,
    "missing_suites": sorted(set(shipped_suites) - set(available_suites())),
    "metrics": sorted(METRICS),
    "metric": metric.compute(predictions=["shape=circle"], references=["shape=circle"]),
}))
"""


def _start_server(installed: Installed, cwd: Path, data: Path) -> tuple[subprocess.Popen, str, Path]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = cwd / "serve.log"
    cmd = [
        installed.hubkit,
        "serve",
        "--port",
        str(port),
        "--data-dir",
        str(data),
        "--user",
        f"{USER}:{TOKEN}",
    ]
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(c) for c in cmd], cwd=cwd, env=installed.env, stdout=out, stderr=subprocess.STDOUT
        )
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"{url}/api/version", timeout=1):
                return proc, url, log
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"the wheel's hubkit serve did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)


def test_the_installed_wheel_serves_publishes_and_imports_every_module(installed, tmp_path):
    outside = tmp_path / "elsewhere"  # a working directory with no hubkit source in or above it
    outside.mkdir()
    assert not outside.resolve().is_relative_to(ROOT)
    proc, url, log = _start_server(installed, outside, tmp_path / "hub-data")
    try:
        published = subprocess.run(
            [installed.hubkit, "world", "publish", "--endpoint", url, "--token", TOKEN, "--namespace", USER],
            cwd=outside,
            env=installed.env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert published.returncode == 0, (
            published.stdout[-3000:] + published.stderr[-3000:] + "\nserver log:\n" + log.read_text()[-3000:]
        )
        for repo in ("alice/shapes", "alice/shapes-judge", "alice/tiny-sd-shapes"):
            assert repo in published.stdout, published.stdout

        from huggingface_hub import HfApi

        files = HfApi(endpoint=url, token=TOKEN).list_repo_files(f"{USER}/tiny-sd-shapes")
        assert {"model_index.json", "unet/diffusion_pytorch_model.safetensors", "README.md"} <= set(files)
    finally:
        stop_space(proc)

    probe = subprocess.run(
        [installed.python, "-c", PROBE],
        cwd=outside,
        env=installed.env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert probe.returncode == 0, probe.stderr[-4000:]
    result = json.loads(probe.stdout.strip().splitlines()[-1])

    site = installed.site.resolve()
    assert Path(result["file"]).resolve().is_relative_to(site), result[
        "file"
    ]  # the wheel's copy, not the repo
    assert Path(result["distribution"]).resolve().is_relative_to(site), result["distribution"]
    assert result["outside"] == [], result["outside"]
    assert result["failed"] == {}, result["failed"]
    for family in ("adapters", "pipelines"):
        for folder in (ROOT / family).iterdir():
            if (folder / "__init__.py").is_file():
                assert f"hubkit.{family}.{folder.name}" in result["modules"]
    assert {"spm", "lcm-lora"} <= set(result["methods"]), result["methods"]
    assert result["suite"][0] == "shapes-quality" and result["suite"][1] > 0
    assert result["card_problems"] == [] and result["card_has_method_tag"]
    assert result["templates"] and all(n > 0 for n in result["templates"].values())
    assert result["missing_suites"] == [], "suites shipped but not found by load_suite"
    assert result["metric"]
