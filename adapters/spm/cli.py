"""``hubkit train spm``: train an SPM on a base pipeline and write a publishable folder (weights, card)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer

from hubkit.cli_common import EndpointOption, TokenOption, exit_on, given
from hubkit.training import prepare_training, write_trained_folder

from .config import SPMConfig

__all__ = ["train_command", "train_to_folder"]


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

    out, pipe = prepare_training(
        base, out, pipe=pipe, force=force, endpoint=endpoint, token=token, error=SPMError
    )
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

    write_trained_folder(
        out,
        WEIGHT_NAME,
        lambda folder: save_spm(folder, weights, config, {"base_model": base, "facts": facts}),
        lambda facts: spm_card(config, base, repo_id, facts=facts),
        facts,
    )
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

    overrides = given(
        steps=steps,
        lr=lr,
        erasing_scale=erasing_scale,
        anchoring_strength=anchoring_strength,
        anchors_per_step=anchors_per_step,
        anchor_source=anchor_source,
        templates=template,
        seed=seed,
    )
    with exit_on(SPMError, HubError, ValueError):
        config = SPMConfig(concepts=list(concept), surrogate=surrogate, **overrides)
        facts = train_to_folder(
            base, config, out, repo_id=repo_id, force=force, endpoint=endpoint, token=token
        )
    Console().print(
        f"SPM erasing {', '.join(config.concepts)}: {facts['parameters']:,} parameters "
        f"({facts['share'] * 100:.3f} % of the UNet), {facts['file_bytes']:,} bytes, trained in "
        f"{facts['train_seconds']:.0f} s → [green]{out}[/]\nnext: hubkit publish {out} <namespace>/<name>",
        highlight=False,
    )
