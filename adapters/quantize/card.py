"""The quantized UNet's card: the ``quantized`` template, what the stock path gives, calibration settings."""

from __future__ import annotations

from typing import Any

from huggingface_hub import ModelCard

from hubkit.cards.render import render_card, settings_table

from .config import QuantizeConfig

__all__ = ["quantize_card"]

_USAGE = """from diffusers import DiffusionPipeline, UNet2DConditionModel

# Stock diffusers (pip install sdnq): integer weights, dequantized on the fly; float activations.
unet = UNet2DConditionModel.from_pretrained("{repo}", subfolder="unet")
pipe = DiffusionPipeline.from_pretrained("{base}", unet=unet)

# hubkit: the same weights with the calibrated static int8 activations the card's numbers were measured with,
# on the CPU's int8 kernels where they are faster (kernels="auto"; "reference" runs the float reference).
from hubkit.pipelines.quantize import load_quantized_unet

pipe = load_quantized_unet(DiffusionPipeline.from_pretrained("{base}"), "{repo}")
image = pipe("{prompt}").images[0]"""


def _sections(rows: list[tuple[str, str]], facts: dict[str, Any]) -> dict[str, str]:
    sections = {"Calibration": settings_table(rows, facts, time_label="calibration + quantization time")}
    sensitive = facts.get("most_sensitive")
    if sensitive:
        lines = ["| layer | output error when quantized alone (relative) |", "|---|---|"]
        lines += [f"| `{p}` | {v:.2e} |" for p, v in sorted(sensitive.items(), key=lambda kv: -kv[1])]
        intro = (
            "Each layer quantized alone, the UNet replayed on the calibration trajectories: the layers that "
            "moved its output most (the int8 layers under int4 are picked from this, per byte)."
        )
        sections["Most sensitive layers (measured)"] = intro + "\n\n" + "\n".join(lines)
    return sections


def quantize_card(
    config: QuantizeConfig,
    base_model: str,
    repo_id: str | None = None,
    *,
    facts: dict[str, Any] | None = None,
) -> ModelCard:
    facts = facts or {}
    repo = repo_id or "<this repo>"
    acts = (
        "int8, static per tensor, one scale per timestep group" if config.activations == "int8" else "float"
    )
    group = "per output channel" if config.groups == -1 else f"groups of {config.groups} input channels"
    kept = facts.get("float_layers") or config.keep_float
    quantization = {
        "weights": f"{config.weights} symmetric, {group} (per kernel tap for convs)",
        "activations": acts,
        "layers": "every Linear and Conv2d of the UNet"
        + (f" except {', '.join(kept)} (float)" if kept else ""),
        "int8 under int4": (", ".join(facts.get("int8_layers") or []) or "none")
        + (
            f" (measured: most output error per byte, within {config.int8_budget:.1%} of the fp32 bytes)"
            if config.bits < 8 and config.int8_budget > 0
            else ""
        ),
        "rounding": "clip search per scale group, weighted by calibrated channel energy"
        if config.clip_search
        else "round to nearest from the absolute maximum",
        "format": "SDNQ (the sdnq quantization backend of diffusers)",
    }
    if "file_bytes" in facts and "float_unet_bytes" in facts:
        quantization["size"] = (
            f"{facts['file_bytes']:,} bytes ({facts['float_unet_bytes'] / facts['file_bytes']:.2f}× smaller "
            "than the fp32 UNet)"
        )
    prompts = (
        f"{len(config.prompts)} given prompts"
        if config.prompts
        else f"{facts.get('calibration_prompts', config.calibration_prompts)} captions of "
        f"`{config.calibration_dataset}`"
    )
    rows = [
        ("calibration prompts", prompts),
        ("calibration sampling", f"{config.calibration_steps} steps, the base pipeline's own scheduler"),
        (
            "timestep groups",
            f"{config.timestep_groups} (starting at t = {facts.get('timestep_bounds', '…')})",
        ),
        ("seed", str(config.seed)),
    ]
    prompt = facts.get("prompt") or "a red circle"
    return render_card(
        "quantized",
        method="quantize",
        repo_id=repo_id,
        base_model=base_model,
        tags=["quantize", f"w{config.bits}a{8 if config.activations == 'int8' else 32}", "sdnq"],
        quantization=quantization,
        requirements=["sdnq", "hubkit"],
        prompt=prompt,
        usage=_USAGE.format(repo=repo, base=base_model, prompt=prompt),
        sections=_sections(rows, facts),
        limitations=(
            "The stock path (diffusers + sdnq) runs the integer weights with float activations; the card's "
            "measured numbers use hubkit's loader (static int8 activations too). Measured on the reference "
            "world's judge and prompts (see Evaluation)."
        ),
    )
