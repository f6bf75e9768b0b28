"""Push then pull of one big file through the embedded Hub, side by side with a plain copy on the same disk.

    python bench/bench_transfer.py [--size-mb 200] [--json PATH] [--workdir DIR]

One run: write ``--size-mb`` MB of random bytes, time ``shutil.copyfile`` of it, then for each transfer
protocol (the client's default, Xet, and classic LFS with ``HF_HUB_DISABLE_XET=1``) time ``upload_file`` and
``hf_hub_download`` into a fresh cache against a ``hubkit serve`` subprocess, and check the downloaded bytes
(sha256). The ratio is copy time / Hub time (push + pull): 0.25 means the Hub is 4x slower than a copy.
Each protocol runs in its own interpreter (huggingface_hub reads its environment at import) with its own
``HF_HOME``; the timings exclude imports and server start. Everything lives in one temporary folder, removed
at the end.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

GOAL = 0.25
MB = 1_000_000
USER, TOKEN = "bench", "bench-secret-token"
MODES = {"xet": {}, "lfs": {"HF_HUB_DISABLE_XET": "1"}}


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(8 << 20):
            digest.update(block)
    return digest.hexdigest()


def write_random(path: Path, size: int) -> None:
    with open(path, "wb") as fh:
        left = size
        while left:
            block = os.urandom(min(left, 16 << 20))
            fh.write(block)
            left -= len(block)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(data_dir: Path, log_path: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "hubkit", "serve", "--port", str(port), "--data-dir", str(data_dir)]
    cmd += ["--user", f"{USER}:{TOKEN}"]
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"{url}/api/version", timeout=1):
                return proc, url
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise SystemExit(f"hubkit serve did not start:\n{log_path.read_text()}") from None
            time.sleep(0.1)


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def worker(source: str, repo_id: str) -> dict:
    """Runs in a child interpreter whose environment points huggingface_hub at the server."""
    from huggingface_hub import HfApi, hf_hub_download

    source = Path(source)
    api = HfApi()
    api.create_repo(repo_id, exist_ok=True)
    t0 = time.perf_counter()
    api.upload_file(path_or_fileobj=str(source), path_in_repo=source.name, repo_id=repo_id)
    t1 = time.perf_counter()
    downloaded = hf_hub_download(repo_id, source.name)
    t2 = time.perf_counter()
    return {"upload_s": t1 - t0, "download_s": t2 - t1, "downloaded": downloaded}


def run_mode(mode: str, source: Path, url: str, root: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    env.update(
        HF_ENDPOINT=url,
        HF_TOKEN=TOKEN,
        HF_HOME=str(root / f"hf-home-{mode}"),
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_DISABLE_PROGRESS_BARS="1",
        **MODES[mode],
    )
    code = (
        "import json, sys; from bench_transfer import worker; "
        "print('RESULT' + json.dumps(worker(*sys.argv[1:])))"
    )
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(Path(__file__).parent), env.get("PYTHONPATH")) if p)
    repo_id = f"{USER}/transfer-{mode}"
    proc = subprocess.run(
        [sys.executable, "-c", code, str(source), repo_id], env=env, capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise SystemExit(f"{mode} transfer failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT"))
    return json.loads(line.removeprefix("RESULT"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--size-mb", type=int, default=200, help="file size in MB (10^6 bytes); default 200")
    parser.add_argument("--json", type=Path, help="also write a JSON summary here")
    parser.add_argument("--workdir", type=Path, help="parent of the temporary folder (default: system temp)")
    args = parser.parse_args(argv)
    if args.size_mb <= 0:
        parser.error("--size-mb must be positive")

    from rich.console import Console
    from rich.table import Table

    console = Console()
    size = args.size_mb * MB
    root = Path(tempfile.mkdtemp(prefix="hubkit-bench-", dir=args.workdir))
    results: dict[str, dict] = {}
    try:
        source = root / "payload.bin"
        with console.status(f"writing {args.size_mb} MB of random bytes"):
            write_random(source, size)
            expected = sha256_of(source)

        t0 = time.perf_counter()
        shutil.copyfile(source, root / "copy.bin")
        copy_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        shutil.copyfile(source, root / "copy-durable.bin")
        fd = os.open(root / "copy-durable.bin", os.O_RDONLY)
        os.fsync(fd)  # what the Hub does before it answers: the bytes are on disk
        os.close(fd)
        durable_s = time.perf_counter() - t0
        for name in ("copy.bin", "copy-durable.bin"):
            if sha256_of(root / name) != expected:
                raise SystemExit("plain copy differs from the source")
            (root / name).unlink()

        for mode in MODES:
            # A fresh server (and HF_HOME) per protocol: the second one must not find the blob already there.
            server, url = start_server(root / f"hub-{mode}", root / f"server-{mode}.log")
            try:
                with console.status(f"{mode}: push + pull of {args.size_mb} MB"):
                    res = run_mode(mode, source, url, root)
                ok = sha256_of(Path(res.pop("downloaded"))) == expected
            finally:
                stop_server(server)
            hub_s = res["upload_s"] + res["download_s"]
            results[mode] = {
                **res,
                "hub_s": hub_s,
                "ratio": copy_s / hub_s,
                "ratio_vs_durable_copy": durable_s / hub_s,
                "bytes_equal": ok,
            }
            shutil.rmtree(root / f"hf-home-{mode}", ignore_errors=True)
            shutil.rmtree(root / f"hub-{mode}", ignore_errors=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)

    def mbps(seconds: float) -> str:
        return f"{size / MB / seconds:,.0f}"

    table = Table(title=f"{args.size_mb} MB: push + pull through the embedded Hub vs a plain copy (one run)")
    for col in ("", "step", "seconds", "MB/s", "ratio", "ratio vs fsync'd copy"):
        table.add_column(col, justify="left" if col in ("protocol", "step") else "right")
    table.add_row("copy", "shutil.copyfile", f"{copy_s:.3f}", mbps(copy_s), "", "")
    table.add_row("copy", "copyfile + fsync", f"{durable_s:.3f}", mbps(durable_s), "", "", end_section=True)
    for mode, r in results.items():
        label = mode
        table.add_row(label, "upload_file", f"{r['upload_s']:.3f}", mbps(r["upload_s"]), "", "")
        table.add_row(label, "hf_hub_download", f"{r['download_s']:.3f}", mbps(r["download_s"]), "", "")
        colour = "green" if r["ratio"] >= GOAL else "red"
        table.add_row(
            label,
            "[bold]push + pull[/bold]" + ("" if r["bytes_equal"] else " [red]BYTES DIFFER[/red]"),
            f"{r['hub_s']:.3f}",
            mbps(r["hub_s"]),
            f"[bold {colour}]{r['ratio']:.2f}[/bold {colour}]",
            f"{r['ratio_vs_durable_copy']:.2f}",
            end_section=True,
        )
    console.print(table)
    console.print(
        f"ratio = copy time / (upload + download time); goal >= {GOAL} (the Hub at most {1 / GOAL:.0f}x "
        "slower).\nxet = the client's default protocol, lfs = HF_HUB_DISABLE_XET=1. "
        "Downloads checked by sha256."
    )

    summary = {
        "size_bytes": size,
        "copy_s": copy_s,
        "copy_fsync_s": durable_s,
        "goal_ratio": GOAL,
        "modes": results,
    }
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    if not all(r["bytes_equal"] for r in results.values()):
        console.print("[red]downloaded bytes differ from the uploaded file[/red]")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
