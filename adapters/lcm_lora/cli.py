"""``hubkit train lcm-lora``: distil a LoRA from a base pipeline and write a publishable folder."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer

from hubkit.cli_common import EndpointOption, TokenOption, exit_on, given
from hubkit.training import prepare_training, write_trained_folder

from .config import LCMLoRAConfig

__all__ = ["distill_to_folder", "train_command"]


def distill_to_folder(
    base: str,
    config: LCMLoRAConfig,
    out: str | os.PathLike[str],
    *,
    repo_id: str | None = None,
    pipe: Any = None,
    progress: bool = True,
    force: bool = False,
    endpoint: str | None = None,
    token: str | None = None,
) -> dict[str, Any]:
    """Distil, then write ``out`` (LoRA, ``hubkit.json``, README.md) whole or not at all; return facts."""
    from .card import lcm_lora_card
    from .serialization import WEIGHT_NAME, save_lcm_lora
    from .train import ADAPTER_NAME, DistillError, distill_lcm_lora, remove_lora

    out, pipe = prepare_training(
        base, out, pipe=pipe, force=force, endpoint=endpoint, token=token, error=DistillError
    )
    result = distill_lcm_lora(pipe, config, progress=progress)
    unet = result.unet
    lora = sum(p.numel() for n, p in unet.named_parameters() if f".{ADAPTER_NAME}." in n and "lora_" in n)
    unet_parameters = sum(p.numel() for n, p in unet.named_parameters() if "lora_" not in n)
    facts = {
        "parameters": lora,
        "unet_parameters": unet_parameters,
        "share": lora / unet_parameters,
        "train_seconds": round(result.seconds, 1),
        "device": str(unet.device),
        "final_loss": sum(result.losses[-50:]) / len(result.losses[-50:]),
    }

    info = {"base_model": base, "facts": facts}
    try:
        write_trained_folder(
            out,
            WEIGHT_NAME,
            lambda folder: save_lcm_lora(folder, unet, config, ADAPTER_NAME, info),
            lambda facts: lcm_lora_card(config, base, repo_id, facts=facts),
            facts,
        )
    finally:
        remove_lora(unet)  # the caller's pipeline gets its UNet back as it was
    return facts


def train_command(
    base: Annotated[str, typer.Option("--base", help="Teacher pipeline: Hub repo id or local folder.")],
    out: Annotated[Path, typer.Option("--out", help="Folder to write (LoRA, hubkit.json, README.md).")],
    variant: Annotated[str, typer.Option(help="lcm | rg-lcd (judge-reward-guided).")] = "lcm",
    steps: Annotated[int | None, typer.Option(help="Distillation steps.")] = None,
    rank: Annotated[int | None, typer.Option(help="LoRA rank (alpha follows unless --alpha).")] = None,
    alpha: Annotated[float | None, typer.Option(help="LoRA alpha.")] = None,
    lr: Annotated[float | None, typer.Option(help="Learning rate.")] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", help="Images per step.")] = None,
    w_min: Annotated[float | None, typer.Option("--w-min", help="Lowest teacher guidance ω.")] = None,
    w_max: Annotated[float | None, typer.Option("--w-max", help="Highest teacher guidance ω.")] = None,
    ema_decay: Annotated[
        float | None, typer.Option("--ema-decay", help="EMA decay of the target network; 0: none.")
    ] = None,
    reward_scale: Annotated[
        float | None, typer.Option("--reward-scale", help="rg-lcd: weight of the judge reward.")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed.")] = None,
    repo_id: Annotated[str | None, typer.Option("--repo-id", help="Repo id the card's snippets use.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace a non-empty --out folder.")] = False,
    endpoint: EndpointOption = None,
    token: TokenOption = None,
) -> None:
    """Distil a few-step LoRA from --base by consistency distillation; then `hubkit publish OUT REPO`."""
    from rich.console import Console

    overrides = given(
        steps=steps,
        rank=rank,
        alpha=alpha if alpha is not None else (float(rank) if rank is not None else None),
        lr=lr,
        batch_size=batch_size,
        w_min=w_min,
        w_max=w_max,
        ema_decay=ema_decay,
        reward_scale=reward_scale,
        seed=seed,
    )
    with exit_on(ValueError):  # DistillError, bad settings
        config = LCMLoRAConfig(variant=variant, **overrides)
        facts = distill_to_folder(
            base, config, out, repo_id=repo_id, force=force, endpoint=endpoint, token=token
        )
    Console().print(
        f"{config.variant.upper()} LoRA: {facts['parameters']:,} parameters "
        f"({facts['share'] * 100:.2f} % of the UNet), {facts['file_bytes']:,} bytes, distilled in "
        f"{facts['train_seconds']:.0f} s → [green]{out}[/]\n"
        f"sample with {config.scheduler}, {config.num_inference_steps} steps, guidance "
        f"{config.guidance_scale:g}\nnext: hubkit publish {out} <namespace>/<name>",
        highlight=False,
    )
