"""hubkit erasure Space: one prompt through a base model and through the same model with SPMs, side by side.

Runs on a Hugging Face Space or locally against any Hub that ``HF_ENDPOINT`` names, hubkit's embedded one
included. The base pipeline is loaded once with stock diffusers (``StableDiffusionPipeline``) and kept; SPMs
are put on it by hubkit's facilitated transport (``hubkit.pipelines.spm.load_spm``), kept between calls and
loaded or unloaded as the selection changes. Every number shown (permeability, the scale an SPM is applied at)
comes from hubkit: nothing of the method is re-implemented here.

Settings are read from the environment: ``HUBKIT_BASE_MODEL`` (default ``hubkit/tiny-sd-shapes``),
``HUBKIT_SPMS`` (comma-separated SPM repos offered, default ``hubkit/spm-red,hubkit/spm-triangle``),
``HF_ENDPOINT``, ``HF_TOKEN``, ``GRADIO_SERVER_NAME`` and ``GRADIO_SERVER_PORT``.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import gradio as gr
import pandas as pd
import torch
from diffusers import StableDiffusionPipeline
from hubkit.adapters.spm import SPMError
from hubkit.pipelines.spm import FacilitatedTransport, load_spm, unload_spm
from PIL import Image

from hubkit.space_kit import (
    LoadError,
    base_pipeline,
    env_list,
    first_line,
    hub_name,
    hub_token,
    refused,
    repo_selection,
)

DEFAULT_BASE_MODEL = "hubkit/tiny-sd-shapes"
DEFAULT_SPMS = "hubkit/spm-red,hubkit/spm-triangle"
DEFAULT_PROMPT = "a red circle on a white background"
STEPS = 25
GUIDANCE = 7.5
DEFAULT_IMAGES = 4
MAX_IMAGES = 8
MAX_SPMS = 8
SHOWN_PIXELS = 256
"""Images are upscaled (nearest neighbour: every generated pixel stays a crisp square) to this width."""
TABLE_COLUMNS = ["spm", "concepts", "permeability", "scale"]

ABOUT = """
## How to read it

Both columns use the same seed, so they start from the same noise: the left one is the base model, the right
one the same model with the selected SPMs (concept *semi-permeable membranes*, Lyu et al., CVPR 2024).

With **facilitated transport** on, each SPM is let through by its **permeability** for the prompt: m = the
largest, over the concepts it erases, of max(cosine of the text encoder's hidden states, share of the
concept's tokens found in the prompt). It is applied at **scale** m² (hubkit's default, the official code's
behaviour), so a prompt naming the concept gets the full erasure and unrelated prompts are left almost alone.
With transport off every SPM is applied at scale 1 on every prompt, as a plain LoRA would be.

Add any SPM repo of the Hub by typing its id (`namespace/name`) in the selector. SPMs are loaded with
`hubkit.pipelines.spm.load_spm` onto a stock diffusers pipeline; see the SPM model cards for the code.
"""


# ------------------------------------------------------------------------------------------ settings


def base_model() -> str:
    """The base pipeline repo every SPM is applied to."""
    return os.environ.get("HUBKIT_BASE_MODEL") or DEFAULT_BASE_MODEL


def default_spms() -> list[str]:
    """The SPM repos offered (and selected) when the page opens."""
    return env_list("HUBKIT_SPMS", DEFAULT_SPMS)


def selection(repos: list[str] | str | None) -> list[str]:
    """The SPM repos asked for: checked ids, in order, without duplicates."""
    return repo_selection(repos, "SPM", MAX_SPMS)


# --------------------------------------------------------------------------------------------- model


class Eraser:
    """The base pipeline (loaded once) and the SPMs on it (repo id → adapter name), behind one lock."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pipe: Any = None
        self.model: str | None = None
        self.loaded: dict[str, str] = {}
        self._names = itertools.count()

    def pipeline(self) -> Any:
        """The base pipeline, loaded on first use (and again if ``HUBKIT_BASE_MODEL`` changed)."""
        wanted = base_model()
        if self.pipe is None or self.model != wanted:
            self.pipe, self.model, self.loaded = None, None, {}
            self.pipe, self.model = base_pipeline(wanted, StableDiffusionPipeline), wanted
        return self.pipe

    @property
    def transport(self) -> FacilitatedTransport | None:
        return getattr(self.pipe, "spm", None) if self.pipe is not None else None

    def select(self, repos: list[str]) -> FacilitatedTransport | None:
        """Load the SPMs of ``repos`` that are not loaded yet and unload the others; ``pipe.spm`` or None."""
        pipe = self.pipeline()
        for repo in [r for r in self.loaded if r not in repos]:
            unload_spm(pipe, self.loaded.pop(repo))
        for repo in repos:
            if repo in self.loaded:
                continue
            name = f"spm{next(self._names)}"  # repo ids may hold '.', which adapter names may not
            try:
                load_spm(pipe, repo, adapter_name=name, token=hub_token())
            except SPMError as err:
                text = first_line(err)
                if "another UNet" in text or "unsupported base architecture" in text:
                    raise LoadError(
                        f"The SPM `{repo}` does not fit the base model `{self.model}`: {text}"
                    ) from err
                raise LoadError(f"Cannot load the SPM `{repo}` from {hub_name()}: {text}") from err
            except Exception as err:
                raise LoadError(
                    f"Cannot load the SPM `{repo}` from {hub_name()} "
                    f"({type(err).__name__}: {first_line(err)})"
                ) from err
            self.loaded[repo] = name
        return self.transport

    def warm_up(self) -> None:
        """Load the base model and the default SPMs ahead of the first request (errors wait for it)."""
        try:
            with self.lock:
                self.select(selection(default_spms()))
        except Exception as err:
            print(f"warm-up: {err}", flush=True)


ERASER = Eraser()


@contextmanager
def spms_off(ft: FacilitatedTransport | None) -> Iterator[None]:
    """The stock pipeline for one call: transport off at scale 0, so every SPM adds nothing."""
    if ft is None:
        yield
        return
    enabled, scale = ft.enabled, ft.scale
    ft.enabled, ft.scale = False, 0.0
    try:
        yield
    finally:
        ft.enabled, ft.scale = enabled, scale


def _shown(images: list[Image.Image], seed: int, what: str) -> list[tuple[Image.Image, str]]:
    out = []
    for i, image in enumerate(images):
        height = round(SHOWN_PIXELS * image.height / image.width)
        big = image.resize((SHOWN_PIXELS, height), Image.Resampling.NEAREST)
        out.append((big, f"{what} · seed {seed} · #{i + 1}"))
    return out


def empty_table() -> pd.DataFrame:
    """The permeability table with its columns and no rows."""
    dtypes = {"spm": "object", "concepts": "object", "permeability": "float64", "scale": "float64"}
    return pd.DataFrame({name: pd.Series(dtype=dtype) for name, dtype in dtypes.items()})


def permeability_table(
    ft: FacilitatedTransport | None, prompt: str, repos: list[str], names: dict[str, str]
) -> pd.DataFrame:
    """One row per SPM: its concepts, its permeability m for ``prompt`` (hubkit's) and the scale it was
    applied at in the last call (m ** power with transport on, the transport's fixed scale with it off)."""
    if ft is None or not repos:
        return empty_table()
    m = ft.last_permeability if ft.enabled and ft.last_permeability else ft.permeability([prompt])
    rows = []
    for repo in repos:
        name = names[repo]
        value = float(m[name][0])
        applied = value**ft.power * ft.scale if ft.enabled else ft.scale
        rows.append(
            {
                "spm": repo,
                "concepts": ", ".join(ft.concepts[name]),
                "permeability": round(value, 4),
                "scale": round(float(applied), 4),
            }
        )
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


def erase(
    prompt: str,
    spms: list[str] | str | None = None,
    seed: float | int | None = 0,
    transport: bool = True,
    images: float | int | None = DEFAULT_IMAGES,
) -> tuple[list, list, pd.DataFrame, str]:
    """Sample ``prompt`` with the base model and with the SPMs ``spms`` (same seed): the two galleries, each
    SPM's permeability and applied scale, and a status line."""
    prompt = (prompt or "").strip()
    if not prompt:
        raise refused("Enter a prompt.", "No prompt")
    seed = int(seed or 0)
    count = int(images or DEFAULT_IMAGES)
    if seed < 0 or not 1 <= count <= MAX_IMAGES:
        raise refused(f"The seed must be ≥ 0 and the number of images 1 to {MAX_IMAGES}.", "Bad input")
    started = time.perf_counter()
    with ERASER.lock:
        try:
            repos = selection(spms)
            ft = ERASER.select(repos)
        except LoadError as err:
            raise refused(str(err), "Cannot load") from err
        pipe = ERASER.pipe
        call = {
            "prompt": prompt,
            "num_images_per_prompt": count,
            "num_inference_steps": STEPS,
            "guidance_scale": GUIDANCE,
        }
        with spms_off(ft):
            base = pipe(**call, generator=torch.Generator().manual_seed(seed)).images
        if ft is not None:
            ft.enabled, ft.scale = bool(transport), 1.0
        erased = pipe(**call, generator=torch.Generator().manual_seed(seed)).images
        table = permeability_table(ft, prompt, repos, ERASER.loaded)
        model, power = ERASER.model, (ft.power if ft is not None else 2.0)
    seconds = time.perf_counter() - started
    mode = (
        f"facilitated transport **on** (each SPM at scale {'m²' if power == 2 else f'm^{power:g}'})"
        if transport
        else "facilitated transport **off** (every SPM at scale 1)"
    )
    with_spms = (
        f"{len(repos)} SPM{'s' if len(repos) != 1 else ''}" if repos else "no SPM (both columns alike)"
    )
    status = (
        f"`{model}` vs `{model}` + {with_spms} · {mode} · seed {seed} · {STEPS} steps, guidance "
        f"{GUIDANCE:g} · {count} images each in {seconds:.1f} s"
    )
    return _shown(base, seed, "base"), _shown(erased, seed, "erased"), table, status


# ------------------------------------------------------------------------------------------------ UI


def build_demo() -> gr.Blocks:
    """The Space's Blocks; nothing is loaded until the first Generate (or the warm-up of ``__main__``)."""
    spms = default_spms()
    with gr.Blocks(title="hubkit Erasure") as demo:
        gr.Markdown(
            "# hubkit Erasure\nA prompt through the base model and through the same model with SPMs "
            f"(concept erasure) loaded from the Hub, side by side. Base model: `{base_model()}`."
        )
        with gr.Row():
            prompt = gr.Textbox(value=DEFAULT_PROMPT, label="Prompt", elem_id="prompt", scale=4, max_lines=2)
            generate = gr.Button("Generate", variant="primary", elem_id="generate-button", scale=1)
        with gr.Row():
            spm_select = gr.Dropdown(
                choices=spms,
                value=spms,
                multiselect=True,
                allow_custom_value=True,
                label="SPMs (type a repo id, namespace/name, to add another)",
                elem_id="spm-select",
                scale=3,
            )
            seed = gr.Number(value=0, precision=0, minimum=0, label="Seed", elem_id="seed", scale=1)
            images = gr.Slider(
                1, MAX_IMAGES, value=DEFAULT_IMAGES, step=1, label="Images", elem_id="images", scale=1
            )
            transport = gr.Checkbox(
                value=True,
                label="Facilitated transport",
                info="off: every SPM at full strength",
                elem_id="transport",
                scale=1,
            )
        status = gr.Markdown(elem_id="erasure-status")
        with gr.Row():
            base_gallery = gr.Gallery(
                label="Base model", columns=4, height=300, format="png", elem_id="base-gallery"
            )
            erased_gallery = gr.Gallery(
                label="With the SPMs", columns=4, height=300, format="png", elem_id="erased-gallery"
            )
        table = gr.Dataframe(
            value=empty_table(),
            datatype=["str", "str", "number", "number"],
            interactive=False,
            label="Permeability m of each SPM for the prompt, and the scale it was applied at",
            elem_id="permeability-table",
        )
        gr.Markdown(ABOUT, elem_id="about")
        inputs = [prompt, spm_select, seed, transport, images]
        outputs = [base_gallery, erased_gallery, table, status]
        generate.click(erase, inputs=inputs, outputs=outputs, api_name="erase")
        prompt.submit(
            erase, inputs=inputs, outputs=outputs, api_name="erase_submit", api_visibility="private"
        )
    return demo


demo = build_demo()

if __name__ == "__main__":
    threading.Thread(target=ERASER.warm_up, name="warm-up", daemon=True).start()
    demo.launch(
        server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        server_port=int(os.environ.get("GRADIO_SERVER_PORT", 7860)),
    )
