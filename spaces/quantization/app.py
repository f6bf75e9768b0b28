"""hubkit quantization Space: a base model and the same model with a quantized UNet on one prompt, timed.

Runs on a Hugging Face Space or locally against any Hub that ``HF_ENDPOINT`` names, hubkit's embedded one
included. Two pipelines are loaded from the same base repo with stock diffusers (``StableDiffusionPipeline``)
and kept: one stays fp32; the other gets the quantized UNet through
``hubkit.pipelines.quantize.load_quantized_unet`` (integer weights, calibrated int8 activations, the CPU's
int8 kernels where they are faster; ``unload_quantized_unet`` when another is asked for). Both run the same
prompt from the same seed and each call is timed; the UNets' bytes are the files' sizes on the Hub and the
PSNR is measured between the two images shown: nothing of the method is re-implemented here.

Settings are read from the environment: ``HUBKIT_QUANTIZED_REPO`` (the quantized UNet offered, default
``hubkit/tiny-sd-shapes-w8a8``), ``HUBKIT_BASE_REPO`` (the base model when the card names none, default
``hubkit/tiny-sd-shapes``), ``HF_ENDPOINT``, ``HF_TOKEN``, ``GRADIO_SERVER_NAME`` and ``GRADIO_SERVER_PORT``.
"""

from __future__ import annotations

import math
import os
import threading
from typing import Any

import gradio as gr
import numpy as np
import pandas as pd
from diffusers import StableDiffusionPipeline
from hubkit.pipelines.quantize import load_quantized_unet, unload_quantized_unet
from huggingface_hub import HfApi
from PIL import Image

from hubkit.space_kit import (
    LoadError,
    base_pipeline,
    card_base_model,
    empty_table,
    enlarged,
    first_line,
    hub_name,
    hub_token,
    refused,
    repo_id,
    serve,
    timed,
    whole,
)

DEFAULT_QUANTIZED = "hubkit/tiny-sd-shapes-w8a8"
DEFAULT_BASE = "hubkit/tiny-sd-shapes"
DEFAULT_PROMPT = "a red circle on a white background"
STEPS = (1, 50, 25)
"""The steps slider: least, most, default."""
GUIDANCE = 7.5
UNET_FILE = "unet/diffusion_pytorch_model.safetensors"
SHOWN_PIXELS = 256
TABLE_TYPES = {"model": "str", "UNet": "str", "UNet bytes": "number", "seconds": "number"}

ABOUT = """
## How to read it

Both images start from the same noise (same seed) with the same scheduler, steps and guidance. The left one
is the base model in fp32. The right one is the same pipeline with its UNet replaced by a **quantized** one:
weights stored as int8 or int4 integers (what `W8` / `W4` means), and activations rounded to int8 with
scales calibrated on the base model's own sampling trajectories (`A8`). Only the UNet changes: the text
encoder and the VAE stay as they are.

The table gives each UNet's file size on the Hub and each pipeline's wall-clock seconds for this call. The
status line says how much smaller and faster the quantized UNet is, and how close its image is to the
base's (PSNR in dB: above 30 the difference is hard to see; identical images are shown as ∞).

Type any quantized UNet repo made by `hubkit train quantize` (`namespace/name`) to try another. With the base
model left empty, the one the card names (`base_model`) is used. Quantized UNets are loaded with
`hubkit.pipelines.quantize.load_quantized_unet`; stock diffusers loads the same folder with
`UNet2DConditionModel.from_pretrained(repo, subfolder="unet")` and the `sdnq` package (weight-only): see the
repo's model card.
"""


def _env(name: str, default: str) -> str:
    return os.environ.get(name) or default


def default_quantized() -> str:
    """The quantized UNet the page opens with (``HUBKIT_QUANTIZED_REPO``)."""
    return _env("HUBKIT_QUANTIZED_REPO", DEFAULT_QUANTIZED)


def fallback_base() -> str:
    """The base model used when none is typed and the card names none (``HUBKIT_BASE_REPO``)."""
    return _env("HUBKIT_BASE_REPO", DEFAULT_BASE)


def unet_bytes(repo: str) -> int:
    """The size of ``repo``'s UNet weights file on the Hub (LoadError without one)."""
    try:
        info = HfApi(token=hub_token()).model_info(repo, files_metadata=True)
    except Exception as err:
        raise LoadError(f"Cannot read `{repo}` from {hub_name()}: {first_line(err)}") from err
    sizes = {s.rfilename: s.size for s in info.siblings or []}
    if sizes.get(UNET_FILE) is None:
        raise LoadError(f"`{repo}` has no {UNET_FILE}: not a diffusers UNet repo")
    return int(sizes[UNET_FILE])


class Pair:
    """The fp32 pipeline of one base model and its twin with one quantized UNet, behind one lock."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.base: str | None = None
        self.full: Any = None
        self.quantized_pipe: Any = None
        self.quantized: str | None = None

    def use_base(self, base: str) -> None:
        """Both pipelines of ``base``, loaded unless they are already (the twin then unquantized)."""
        if base == self.base:
            return
        self.base = self.full = self.quantized_pipe = self.quantized = None
        full = base_pipeline(base, StableDiffusionPipeline)
        self.quantized_pipe = base_pipeline(base, StableDiffusionPipeline)
        self.full, self.base = full, base

    def use_quantized(self, repo: str) -> None:
        """Put ``repo``'s quantized UNet on the twin in place of the one it has (a failed load leaves the
        twin unquantized: ``load_quantized_unet`` touches nothing before its checks pass)."""
        if repo == self.quantized:
            return
        if self.quantized is not None:
            unload_quantized_unet(self.quantized_pipe)
            self.quantized = None
        try:
            load_quantized_unet(self.quantized_pipe, repo, token=hub_token())
        except Exception as err:
            raise LoadError(f"Cannot load the quantized UNet `{repo}`: {first_line(err)}") from err
        self.quantized = repo

    def warm_up(self) -> None:
        """Load the default quantized UNet and its base ahead of the first request (errors wait for it)."""
        try:
            with self.lock:
                repo = repo_id(default_quantized(), "quantized UNet")
                self.use_base(card_base_model(repo, "quantized UNet") or fallback_base())
                self.use_quantized(repo)
        except Exception as err:
            print(f"warm-up: {err}", flush=True)


PAIR = Pair()


def psnr(a: Image.Image, b: Image.Image) -> float:
    """PSNR (dB, 8-bit range) between two images of the same size; inf when identical."""
    x, y = (np.asarray(i.convert("RGB"), dtype=np.float64) for i in (a, b))
    mse = float(np.mean((x - y) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def generate(
    prompt: str,
    steps: float | int | None = STEPS[2],
    seed: float | int | None = 0,
    quantized: str | None = None,
    base: str | None = None,
) -> tuple[Image.Image, Image.Image, pd.DataFrame, str]:
    """``prompt`` through the fp32 base and through the base with the quantized UNet, same seed and
    settings: the two images, the bytes-and-seconds table and a status line. An empty ``quantized`` is the
    page's default; an empty ``base`` is the one the quantized UNet's card names."""
    prompt = (prompt or "").strip()
    if not prompt:
        raise refused("Enter a prompt.", "No prompt")
    steps = whole(steps, STEPS[2], *STEPS[:2], "The steps")
    seed = whole(seed, 0, 0, 2**32 - 1, "The seed")
    with PAIR.lock:
        try:
            quantized = repo_id((quantized or "").strip() or default_quantized(), "quantized UNet")
            typed = repo_id(base, "base model") if base and base.strip() else None
            from_card = card_base_model(quantized, "quantized UNet")  # also: does the repo exist?
            base = typed or from_card or fallback_base()
            sizes = unet_bytes(base), unet_bytes(quantized)
            PAIR.use_base(base)
            PAIR.use_quantized(quantized)
        except LoadError as err:
            raise refused(str(err), "Cannot load") from err
        full_image, full_s = timed(PAIR.full, prompt, steps, GUIDANCE, seed)
        quant_image, quant_s = timed(PAIR.quantized_pipe, prompt, steps, GUIDANCE, seed)
    rows = [
        (base, "fp32", sizes[0], round(full_s, 3)),
        (f"{base} + {quantized}", "quantized", sizes[1], round(quant_s, 3)),
    ]
    table = pd.DataFrame(rows, columns=list(TABLE_TYPES))
    where = "typed" if typed else ("from the card" if from_card else "the Space's default")
    fidelity = psnr(quant_image, full_image)
    shown = "∞" if math.isinf(fidelity) else f"{fidelity:.1f}"
    status = (
        f"Quantized UNet **{sizes[0] / sizes[1]:.2f}× smaller**, **{full_s / quant_s:.2f}× the speed** of "
        f"fp32 ({quant_s:.2f} s against {full_s:.2f} s) · PSNR to the base's image **{shown} dB** · base "
        f"`{base}` ({where}) · `{quantized}` · {steps} steps · seed {seed}"
    )
    return enlarged(full_image, SHOWN_PIXELS), enlarged(quant_image, SHOWN_PIXELS), table, status


def build_demo() -> gr.Blocks:
    """The Space's Blocks; nothing is loaded until the first Generate (or the warm-up of ``__main__``)."""
    with gr.Blocks(title="hubkit Quantization") as demo:
        gr.Markdown(
            "# hubkit Quantization\nA base model in fp32 against the same model with a quantized UNet "
            "(integer weights, calibrated int8 activations): same prompt and seed, bytes and seconds of each."
        )
        with gr.Row():
            prompt = gr.Textbox(value=DEFAULT_PROMPT, label="Prompt", elem_id="prompt", scale=4, max_lines=2)
            button = gr.Button("Generate", variant="primary", elem_id="generate-button", scale=1)
        with gr.Row():
            steps = gr.Slider(STEPS[0], STEPS[1], value=STEPS[2], step=1, label="Steps", elem_id="steps")
            seed = gr.Number(value=0, precision=0, minimum=0, label="Seed", elem_id="seed")
        with gr.Row():
            quantized = gr.Textbox(
                value=default_quantized(), label="Quantized UNet repo", elem_id="quantized", max_lines=1
            )
            base = gr.Textbox(
                value="",
                label="Base model repo",
                placeholder=f"empty: the card's base_model, else {fallback_base()}",
                elem_id="base",
                max_lines=1,
            )
        status = gr.Markdown(elem_id="quant-status")
        with gr.Row():
            shown = {"format": "png", "type": "pil", "height": SHOWN_PIXELS + 40, "interactive": False}
            full = gr.Image(label="Base (fp32 UNet)", elem_id="base-image", **shown)
            quant = gr.Image(label="Quantized UNet", elem_id="quantized-image", **shown)
        table = gr.Dataframe(
            value=empty_table(TABLE_TYPES),
            datatype=list(TABLE_TYPES.values()),
            interactive=False,
            label="UNet bytes on the Hub and wall-clock seconds of each pipeline for this call",
            elem_id="cost-table",
        )
        gr.Markdown(ABOUT, elem_id="about")
        wiring = {
            "fn": generate,
            "inputs": [prompt, steps, seed, quantized, base],
            "outputs": [full, quant, table, status],
        }
        button.click(**wiring, api_name="generate")
        prompt.submit(**wiring, api_name="generate_submit", api_visibility="private")
    return demo


demo = build_demo()


def main() -> None:
    """Serve the page, loading the default models meanwhile."""
    serve(demo, PAIR.warm_up)


if __name__ == "__main__":
    main()
