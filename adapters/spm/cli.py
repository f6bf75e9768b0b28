"""``hubkit train spm``: train an SPM on a base pipeline and write a publishable folder (weights, card)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer

from hubkit.cli_common import EndpointOption, TokenOption

from .config import SPMConfig

__all__ = ["train_command", "train_to_folder"]


def _load_base(base: str, endpoint: str | None = None, token: str | None = None) -> Any:
    """The base pipeline from a local folder, or pulled from the Hub (the embedded one by default)."""
    from diffusers import DiffusionPipeline

    from hubkit.hub import pull

    from .model import SPMError

    try:
        path = base if Path(base).is_dir() else pull(base, endpoint=endpoint, token=token)
        pipe = DiffusionPipeline.from_pretrained(path)
    except Exception as err:  # diffusers raises many types for a missing or foreign repo
        raise SPMError(f"cannot load the base pipeline {base!r}: {err}") from err
    pipe.set_progress_bar_config(disable=True)
    return pipe


def train_to_folder(
    base: str,
    config: SPMConfig,
    out: str | os.PathLike[str],
    *,
    repo_id: str | None = None,
    pipe: Any = None,
    progress: bool = True,
    force: bool = False,
    endpoint: str | None = None,
    token: str | None = None,
) -> dict[str, Any]:
    """Train, then write ``out`` (weights, ``hubkit.json``, README.md) whole or not at all; return facts."""
    from .card import spm_card
    from .model import SPMError
    from .serialization import WEIGHT_NAME, save_spm
    from .train import ADAPTER_NAME, train_spm

    out = Path(out)
    if out.exists() and any(out.iterdir()) and not force:
        raise SPMError(f"{out} exists and is not empty (pass --force to replace it)")
    pipe = pipe if pipe is not None else _load_base(base, endpoint, token)
    result = train_spm(pipe, config, progress=progress)
    network = result.network
    unet_parameters = sum(p.numel() for p in pipe.unet.parameters())
    facts = {
        "parameters": network.parameter_count(ADAPTER_NAME),
        "unet_parameters": unet_parameters,
        "share": network.parameter_count(ADAPTER_NAME) / unet_parameters,
        "layers": len(network.paths),
        "train_seconds": round(result.seconds, 1),
        "device": str(pipe.unet.device),
        "final_erasure_loss": sum(result.erasure_losses[-20:]) / len(result.erasure_losses[-20:]),
    }
    weights = network.adapter_weights(ADAPTER_NAME)
    network.detach_hooks()
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    try:
        save_spm(staging, weights, config, {"base_model": base, "facts": facts})
        facts["file_bytes"] = (staging / WEIGHT_NAME).stat().st_size
        spm_card(config, base, repo_id, facts=facts).save(str(staging / "README.md"))
        if out.exists():
            shutil.rmtree(out)
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return facts


def train_command(
    base: Annotated[str, typer.Option("--base", help="Base pipeline: Hub repo id or local folder.")],
    concept: Annotated[list[str], typer.Option("--concept", help="A concept to erase (repeatable).")],
    out: Annotated[Path, typer.Option("--out", help="Folder to write (weights, hubkit.json, README.md).")],
    surrogate: Annotated[str, typer.Option(help="What the concepts turn into; '' = unconditional.")] = "",
    steps: Annotated[int | None, typer.Option(help="Training steps.")] = None,
    lr: Annotated[float | None, typer.Option(help="Learning rate.")] = None,
    erasing_scale: Annotated[
        float | None, typer.Option("--erasing-scale", help="η of the erasure target.")
    ] = None,
    anchoring_strength: Annotated[
        float | None, typer.Option("--anchoring-strength", help="λ of latent anchoring; 0 turns it off.")
    ] = None,
    anchors_per_step: Annotated[int | None, typer.Option("--anchors-per-step")] = None,
    anchor_source: Annotated[
        str | None, typer.Option("--anchor-source", help="vocabulary | gaussian")
    ] = None,
    template: Annotated[
        list[str] | None,
        typer.Option("--template", help="Context the concept is trained in, with {} (repeatable)."),
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed.")] = None,
    repo_id: Annotated[str | None, typer.Option("--repo-id", help="Repo id the card's snippets use.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace a non-empty --out folder.")] = False,
    endpoint: EndpointOption = None,
    token: TokenOption = None,
) -> None:
    """Train an SPM erasing --concept from --base; then `hubkit publish OUT REPO`."""
    from rich.console import Console

    from hubkit.hub import HubError

    from .model import SPMError

    overrides = {
        k: v
        for k, v in {
            "steps": steps,
            "lr": lr,
            "erasing_scale": erasing_scale,
            "anchoring_strength": anchoring_strength,
            "anchors_per_step": anchors_per_step,
            "anchor_source": anchor_source,
            "templates": template,
            "seed": seed,
        }.items()
        if v is not None
    }
    try:
        config = SPMConfig(concepts=list(concept), surrogate=surrogate, **overrides)
        facts = train_to_folder(
            base, config, out, repo_id=repo_id, force=force, endpoint=endpoint, token=token
        )
    except (SPMError, HubError, ValueError) as err:
        typer.secho(f"error: {err}", fg="red", err=True)
        raise typer.Exit(1) from err
    Console().print(
        f"SPM erasing {', '.join(config.concepts)}: {facts['parameters']:,} parameters "
        f"({facts['share'] * 100:.3f} % of the UNet), {facts['file_bytes']:,} bytes, trained in "
        f"{facts['train_seconds']:.0f} s → [green]{out}[/]\nnext: hubkit publish {out} <namespace>/<name>",
        highlight=False,
    )
