"""hubkit fast-sampling Space: a teacher and its distilled few-step LoRA (LCM-LoRA) on one prompt, timed.

Runs on a Hugging Face Space or locally against any Hub that ``HF_ENDPOINT`` names, hubkit's embedded one
included. Two pipelines are loaded from the same base repo with stock diffusers (``StableDiffusionPipeline``)
and kept: the teacher samples with the base model's own scheduler and classifier-free guidance; the student
gets the LoRA and the scheduler its ``hubkit.json`` names through ``hubkit.pipelines.lcm_lora.load_lcm_lora``
(swapped with ``unload_lcm_lora`` when another LoRA is asked for). Both run the same prompt from the same
seed, and each call is timed with ``time.perf_counter``: nothing of the method is re-implemented here.

Settings are read from the environment: ``HUBKIT_LCM_REPO`` (the LoRA offered, default
``hubkit/lcm-lora-shapes``), ``HUBKIT_BASE_REPO`` (the base model when the LoRA's card names none, default
``hubkit/tiny-sd-shapes``), ``HF_ENDPOINT``, ``HF_TOKEN``, ``GRADIO_SERVER_NAME`` and ``GRADIO_SERVER_PORT``.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import gradio as gr
import pandas as pd
from diffusers import StableDiffusionPipeline
from hubkit.pipelines.lcm_lora import load_lcm_lora, unload_lcm_lora
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

DEFAULT_LORA = "hubkit/lcm-lora-shapes"
DEFAULT_BASE = "hubkit/tiny-sd-shapes"
DEFAULT_PROMPT = "a red circle on a white background"
STUDENT_STEPS = (1, 8, 4)
"""The student's steps slider: least, most, default (LCM-LoRA's recipe is 4)."""
TEACHER_STEPS = (1, 100, 25)
TEACHER_GUIDANCE = 7.5
SHOWN_PIXELS = 256
"""Images are upscaled (nearest neighbour: every generated pixel stays a crisp square) to this width."""
ADAPTER = "lcm"
TABLE_TYPES = {
    "role": "str",
    "model": "str",
    "scheduler": "str",
    "steps": "number",
    "guidance": "number",
    "seconds": "number",
}

ABOUT = """
## How to read it

Both images start from the same noise (same seed). The **teacher** is the base model with its own scheduler
and classifier-free guidance 7.5, so every step runs the UNet twice (with and without the prompt). The
**student** is the same base model with a LoRA distilled from it by latent consistency distillation
(LCM-LoRA, Luo et al. 2023): it samples in 1 to 8 steps with `LCMScheduler` and guidance 1, one UNet pass a
step, because the guidance was baked in during distillation.

The table gives each pipeline's wall-clock seconds for this call (the LoRA is fused into the student's UNet,
so it adds nothing per step); the speed-up is the teacher's seconds over the student's.

Type any LCM-LoRA repo id (`namespace/name`) to try another. With the base model left empty, the one the
LoRA's card names (`base_model`) is used. LoRAs are loaded with `hubkit.pipelines.lcm_lora.load_lcm_lora`
onto a stock diffusers pipeline; see the LoRA's model card for the code.
"""


# ------------------------------------------------------------------------------------------ settings


def _env(name: str, default: str | None = None) -> str | None:
    """The environment variable ``name``, read at call time; ``default`` when unset or empty."""
    return os.environ.get(name) or default


def default_lora() -> str:
    """The LoRA repo the page opens with (``HUBKIT_LCM_REPO``)."""
    return _env("HUBKIT_LCM_REPO", DEFAULT_LORA)


def fallback_base() -> str:
    """The base model used when none is typed and the LoRA's card names none (``HUBKIT_BASE_REPO``)."""
    return _env("HUBKIT_BASE_REPO", DEFAULT_BASE)


# --------------------------------------------------------------------------------------------- model


class Pair:
    """The teacher and student pipelines of one base model (the student with one LoRA), behind one lock."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.base: str | None = None
        self.teacher: Any = None
        self.student: Any = None
        self.lora: str | None = None
        self.settings: dict[str, Any] = {}

    def use_base(self, base: str) -> None:
        """Both pipelines of ``base``, loaded unless they are already (the student without a LoRA then)."""
        if base == self.base:
            return
        self.base = self.teacher = self.student = self.lora = None
        teacher = base_pipeline(base, StableDiffusionPipeline)
        self.student = base_pipeline(base, StableDiffusionPipeline)
        self.teacher, self.base, self.settings = teacher, base, {}

    def use_lora(self, lora: str) -> dict[str, Any]:
        """Put ``lora`` (and its scheduler) on the student in place of the one it has; its call settings."""
        if lora == self.lora:
            return self.settings
        pipe = self.student
        if self.lora is not None:
            unload_lcm_lora(pipe, ADAPTER)
            self.lora, self.settings = None, {}
        try:
            settings = load_lcm_lora(pipe, lora, ADAPTER, fuse=True, token=hub_token())
        except Exception as err:
            if ADAPTER in (getattr(pipe.unet, "peft_config", None) or {}):  # a half-made load
                pipe.delete_adapters(ADAPTER)
            text = first_line(err)
            if "does not fit" in text:  # load_lcm_lora's word for weights the UNet cannot take
                cause = first_line(err.__cause__ or err)
                fit = f"The LoRA `{lora}` does not fit the base model `{self.base}` (made for another UNet?)"
                raise LoadError(f"{fit}: {cause}") from err
            raise LoadError(f"Cannot load the LoRA `{lora}` from {hub_name()}: {text}") from err
        self.lora, self.settings = lora, settings
        return settings

    def warm_up(self) -> None:
        """Load the default LoRA and its base ahead of the first request (errors wait for it)."""
        try:
            with self.lock:
                lora = repo_id(default_lora(), "LoRA")
                self.use_base(card_base_model(lora, "LoRA") or fallback_base())
                self.use_lora(lora)
        except Exception as err:
            print(f"warm-up: {err}", flush=True)


PAIR = Pair()


def generate(
    prompt: str,
    steps: float | int | None = STUDENT_STEPS[2],
    teacher_steps: float | int | None = TEACHER_STEPS[2],
    seed: float | int | None = 0,
    lora: str | None = None,
    base: str | None = None,
) -> tuple[Image.Image, Image.Image, pd.DataFrame, str]:
    """``prompt`` through the teacher (``teacher_steps``, guidance 7.5) and the student (the LoRA at
    ``steps``), same seed: the two images, the timing table and a status line with the speed-up. An empty
    ``lora`` is the page's default; an empty ``base`` is the one the LoRA's card names."""
    prompt = (prompt or "").strip()
    if not prompt:
        raise refused("Enter a prompt.", "No prompt")
    steps = whole(steps, STUDENT_STEPS[2], *STUDENT_STEPS[:2], "The student's steps")
    teacher_steps = whole(teacher_steps, TEACHER_STEPS[2], *TEACHER_STEPS[:2], "The teacher's steps")
    seed = whole(seed, 0, 0, 2**32 - 1, "The seed")
    with PAIR.lock:
        try:
            lora = repo_id((lora or "").strip() or default_lora(), "LoRA")
            typed = repo_id(base, "base model") if base and base.strip() else None
            from_card = card_base_model(lora, "LoRA")  # also: does the LoRA repo exist at all?
            base = typed or from_card or fallback_base()
            PAIR.use_base(base)
            settings = PAIR.use_lora(lora)
        except LoadError as err:
            raise refused(str(err), "Cannot load") from err
        guidance = float(settings["guidance_scale"])
        teacher_image, teacher_s = timed(PAIR.teacher, prompt, teacher_steps, TEACHER_GUIDANCE, seed)
        student_image, student_s = timed(PAIR.student, prompt, steps, guidance, seed)
        schedulers = type(PAIR.teacher.scheduler).__name__, type(PAIR.student.scheduler).__name__
    rows = [
        ("teacher", base, schedulers[0], teacher_steps, TEACHER_GUIDANCE, teacher_s),
        ("student", f"{base} + {lora}", schedulers[1], steps, guidance, student_s),
    ]
    table = pd.DataFrame([(*row[:5], round(row[5], 3)) for row in rows], columns=list(TABLE_TYPES))
    where = "typed" if typed else ("from the LoRA's card" if from_card else "the Space's default")
    status = (
        f"Student **{teacher_s / student_s:.1f}× faster**: {steps} steps in {student_s:.2f} s against the "
        f"teacher's {teacher_steps} in {teacher_s:.2f} s · base `{base}` ({where}) · LoRA `{lora}` · "
        f"seed {seed}"
    )
    return enlarged(teacher_image, SHOWN_PIXELS), enlarged(student_image, SHOWN_PIXELS), table, status


# ------------------------------------------------------------------------------------------------ UI


def build_demo() -> gr.Blocks:
    """The Space's Blocks; nothing is loaded until the first Generate (or the warm-up of ``__main__``)."""
    low, high, default = STUDENT_STEPS
    with gr.Blocks(title="hubkit Fast sampling") as demo:
        gr.Markdown(
            "# hubkit Fast sampling\nA base model (the teacher, many steps with guidance) against the same "
            "model with a distilled few-step LoRA (LCM-LoRA, the student), same prompt and seed, timed."
        )
        with gr.Row():
            prompt = gr.Textbox(value=DEFAULT_PROMPT, label="Prompt", elem_id="prompt", scale=4, max_lines=2)
            button = gr.Button("Generate", variant="primary", elem_id="generate-button", scale=1)
        with gr.Row():
            steps = gr.Slider(low, high, value=default, step=1, label="Student steps", elem_id="steps")
            teacher_steps = gr.Slider(
                TEACHER_STEPS[0],
                TEACHER_STEPS[1],
                value=TEACHER_STEPS[2],
                step=1,
                label="Teacher steps",
                elem_id="teacher-steps",
            )
            seed = gr.Number(value=0, precision=0, minimum=0, label="Seed", elem_id="seed")
        with gr.Row():
            lora = gr.Textbox(value=default_lora(), label="LCM-LoRA repo", elem_id="lora", max_lines=1)
            base = gr.Textbox(
                value="",
                label="Base model repo",
                placeholder=f"empty: the LoRA card's base_model, else {fallback_base()}",
                elem_id="base",
                max_lines=1,
            )
        status = gr.Markdown(elem_id="speed-status")
        with gr.Row():
            shown = {"format": "png", "type": "pil", "height": SHOWN_PIXELS + 40, "interactive": False}
            teacher = gr.Image(label="Teacher", elem_id="teacher-image", **shown)
            student = gr.Image(label="Student (LCM-LoRA)", elem_id="student-image", **shown)
        table = gr.Dataframe(
            value=empty_table(TABLE_TYPES),
            datatype=list(TABLE_TYPES.values()),
            interactive=False,
            label="Wall-clock seconds of each pipeline for this call",
            elem_id="timing-table",
        )
        gr.Markdown(ABOUT, elem_id="about")
        wiring = {
            "fn": generate,
            "inputs": [prompt, steps, teacher_steps, seed, lora, base],
            "outputs": [teacher, student, table, status],
        }
        button.click(**wiring, api_name="generate")
        prompt.submit(**wiring, api_name="generate_submit", api_visibility="private")  # Enter: the same
    return demo


demo = build_demo()


def main() -> None:
    """Serve the page, loading the default models meanwhile."""
    serve(demo, PAIR.warm_up)


if __name__ == "__main__":
    main()
