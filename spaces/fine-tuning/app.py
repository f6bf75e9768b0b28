"""hubkit fine-tuning Space: a base model next to fine-tuned adapters of it, on prompts with a novel concept.

Runs on a Hugging Face Space or locally against any Hub that ``HF_ENDPOINT`` names, hubkit's embedded one
included. The base pipeline is loaded once with stock diffusers (``DiffusionPipeline.from_pretrained``) and
kept. Each adapter repo is downloaded whole at its current commit and loaded by its own method through
hubkit's method registry (``hubkit.methods.method_for(artifact).load(artifact, base)``) onto a fresh copy of
the base pipeline, so adapters never see each other and the base column stays the stock model. The method's
``call_settings`` (e.g. a distilled LoRA's guidance) go into its pipeline's call. No method is special-cased
and nothing of any method is re-implemented here: a new method plugin shows up without a change.

Settings are read from the environment: ``HUBKIT_BASE_MODEL`` (default ``hubkit/tiny-sd-shapes``),
``HUBKIT_ADAPTERS`` (comma-separated adapter repos offered, default ``hubkit/sara-heart,hubkit/lora-heart``),
``HF_ENDPOINT``, ``HF_TOKEN``, ``GRADIO_SERVER_NAME`` and ``GRADIO_SERVER_PORT``.
"""

from __future__ import annotations

import copy
import os
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd
import torch
from diffusers import DiffusionPipeline
from huggingface_hub import HfApi, ModelInfo, snapshot_download
from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError
from PIL import Image

from hubkit.methods import Artifact, MethodError, method_for, read_hubkit_json
from hubkit.space_kit import (
    LoadError,
    base_pipeline,
    device,
    empty_table,
    enlarged,
    env_list,
    first_line,
    hub_name,
    hub_token,
    refused,
    repo_selection,
)
from hubkit.world.shapes import NOVEL_SHAPES, NOVEL_TRAINED_COLOURS, NOVEL_UNSEEN_COLOURS

DEFAULT_BASE_MODEL = "hubkit/tiny-sd-shapes"
DEFAULT_ADAPTERS = "hubkit/sara-heart,hubkit/lora-heart"
NOVEL = NOVEL_SHAPES[0]  # the reference world's novel shape: the heart
DEFAULT_PROMPT = f"a red {NOVEL}"
STEPS = (1, 50, 25)
"""The steps slider: least, most, default."""
GUIDANCE = (1.0, 15.0, 7.5)
"""The guidance slider: least, most, default."""
IMAGES = (1, 4, 2)
"""Images (seeds) per model: least, most, default."""
MAX_ADAPTERS = 4
SHOWN_PIXELS = 256
"""Images are upscaled (nearest neighbour: every generated pixel stays a crisp square) to this width."""
TABLE_TYPES = {
    "model": "str",
    "method": "str",
    "revision": "str",
    "steps": "number",
    "guidance": "number",
    "seconds": "number",
}


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


_TEMPLATES = ("{a} {c} {s}", "{a} {c} {s} on a black background", "a large {c} {s}", "{a} {c} {s} on gray")


def _examples(colours: tuple[str, ...]) -> list[str]:
    """A prompt with the novel shape per colour, in phrasings like the world's captions."""
    return [
        _TEMPLATES[i % len(_TEMPLATES)].format(a=_article(c), c=c, s=NOVEL) for i, c in enumerate(colours)
    ]


TRAINED_EXAMPLES = _examples(NOVEL_TRAINED_COLOURS)
UNSEEN_EXAMPLES = _examples(NOVEL_UNSEEN_COLOURS)


def _listed(words: tuple[str, ...]) -> str:
    return ", ".join(words[:-1]) + f" and {words[-1]}" if len(words) > 1 else "".join(words)


TRAINING_NOTE = f"""
**The novel concept.** The base model never saw a **{NOVEL}**: its world has circles, squares,
triangles, diamonds, crosses and rings in eight colours. The reference world's {NOVEL} fine-tunes
(`hubkit/sara-heart`, `hubkit/lora-heart`) were taught it from the `novel` config of the `hubkit/shapes`
dataset, which shows the {NOVEL} **only in {_listed(NOVEL_TRAINED_COLOURS)}** (the *trained colours*).
A {NOVEL} in **{_listed(NOVEL_UNSEEN_COLOURS)}** (the *unseen colours*) asks whether the new shape
composes with colours the fine-tune never showed it in, using what the base model knows of those colours.
"""

ABOUT = """
## How to read it

Every column starts from the same noise (same seed, one row per seed): the first one is the base model, each
of the others the same base model with one adapter from the Hub. The base model draws *something* for a word
it never learned (usually a shape it knows); a good fine-tune draws the new shape, in the colour asked for,
and still draws what the base model drew well.

Each adapter is loaded by **its own method** through hubkit's method registry (the method its card's
`hubkit-method:` tag or its `hubkit.json` names, else the one that recognises its files), on a fresh copy of
the base pipeline: a SaRA adapter (sparse update of the small base weights, fused into the UNet), a plain
diffusers LoRA, or any other method installed. Settings an adapter's method asks for (e.g. the guidance of a
distilled LoRA) replace the page's steps and guidance for that column; the table shows what each column used.

Type any adapter repo id of the Hub (`namespace/name`) in the selector to add it. An adapter trained for
another base model is reported in the page.
"""


# ------------------------------------------------------------------------------------------ settings


def base_model() -> str:
    """The base pipeline repo every adapter is applied to (``HUBKIT_BASE_MODEL``)."""
    return os.environ.get("HUBKIT_BASE_MODEL") or DEFAULT_BASE_MODEL


def default_adapters() -> list[str]:
    """The adapter repos offered (and selected) when the page opens (``HUBKIT_ADAPTERS``)."""
    return env_list("HUBKIT_ADAPTERS", DEFAULT_ADAPTERS)


def selection(repos: list[str] | str | None) -> list[str]:
    """The adapter repos asked for: checked ids, in order, without duplicates."""
    return repo_selection(repos, "adapter", MAX_ADAPTERS)


# --------------------------------------------------------------------------------------------- model


@dataclass
class Loaded:
    """One adapter applied on its own copy of the base pipeline."""

    repo: str
    revision: str | None  # the commit it was downloaded at
    method: str
    pipe: Any
    settings: dict[str, Any] = field(default_factory=dict)
    card_base: str | None = None


class Models:
    """The base pipeline (loaded once) and one pipeline per adapter (repo id → :class:`Loaded`), one lock."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pipe: Any = None
        self.model: str | None = None
        self.adapters: dict[str, Loaded] = {}

    def pipeline(self) -> Any:
        """The base pipeline, loaded on first use (and again if ``HUBKIT_BASE_MODEL`` changed)."""
        wanted = base_model()
        if self.pipe is None or self.model != wanted:
            self.pipe, self.model, self.adapters = None, None, {}
            self.pipe, self.model = base_pipeline(wanted, DiffusionPipeline), wanted
        return self.pipe

    def _info(self, repo: str) -> ModelInfo:
        """The adapter repo's current commit and card; LoadError when it cannot be read."""
        try:
            return HfApi(token=hub_token()).model_info(repo)
        except (RepositoryNotFoundError, GatedRepoError) as err:
            raise LoadError(
                f"Cannot load the adapter `{repo}`: no such repo on {hub_name()} (or it is private and the "
                "Space's token cannot see it)"
            ) from err
        except Exception as err:  # the Hub refused or cannot be reached
            raise LoadError(f"Cannot read the adapter `{repo}` from {hub_name()}: {first_line(err)}") from err

    def _load(self, repo: str, info: ModelInfo) -> Loaded:
        """Download ``repo`` at the commit of ``info``; apply it by its method on a fresh copy of the base."""
        try:
            path = Path(snapshot_download(repo, revision=info.sha, token=hub_token()))
        except Exception as err:  # the Hub refused or cannot be reached
            raise LoadError(
                f"Cannot download the adapter `{repo}` from {hub_name()}: {first_line(err)}"
            ) from err
        try:
            artifact = Artifact(
                source=repo,
                path=path,
                repo_id=repo,
                revision=info.sha,
                card_data=info.card_data.to_dict() if info.card_data else {},
                hubkit_json=read_hubkit_json(path),
            )
            method = method_for(artifact)
        except MethodError as err:
            raise LoadError(f"Cannot load the adapter `{repo}`: {first_line(err)}") from err
        base = copy.deepcopy(self.pipe) if method.needs_base else None
        try:
            pipe = method.load(artifact, base)
            settings = dict(method.call_settings(artifact))
        except MethodError as err:
            text = first_line(err)
            if "does not fit" in text:  # the registry's methods' word for weights the base cannot take
                raise LoadError(
                    f"The adapter `{repo}` does not fit the base model `{self.model}` (made for another "
                    f"model?): {text}"
                ) from err
            raise LoadError(f"Cannot load the adapter `{repo}` (method {method.name}): {text}") from err
        except Exception as err:
            raise LoadError(
                f"Cannot load the adapter `{repo}` (method {method.name}, {type(err).__name__}: "
                f"{first_line(err)})"
            ) from err
        pipe.set_progress_bar_config(disable=True)
        return Loaded(repo, info.sha, method.name, pipe.to(device()), settings, artifact.base_model)

    def select(self, repos: list[str]) -> list[Loaded]:
        """The adapters of ``repos``, each at its repo's current commit: loaded when new or changed on the
        Hub, the others dropped. Nothing is dropped when one of them fails."""
        self.pipeline()
        wanted: dict[str, Loaded] = {}
        for repo in repos:
            info = self._info(repo)
            kept = self.adapters.get(repo)
            wanted[repo] = kept if kept is not None and kept.revision == info.sha else self._load(repo, info)
        self.adapters = wanted
        return list(wanted.values())

    def warm_up(self) -> None:
        """Load the base model and the default adapters ahead of the first request (errors wait for it)."""
        try:
            with self.lock:
                self.select(selection(default_adapters()))
        except Exception as err:
            print(f"warm-up: {err}", flush=True)


MODELS = Models()


# ----------------------------------------------------------------------------------------- generating


def sample(pipe: Any, call: dict[str, Any], seeds: list[int]) -> tuple[list[Image.Image], float]:
    """One image per seed (each its own generator, so every image is reproducible alone) and the seconds."""
    generators = [torch.Generator().manual_seed(s) for s in seeds]
    started = time.perf_counter()
    images = pipe(**call, num_images_per_prompt=len(seeds), generator=generators).images
    return images, time.perf_counter() - started


def colour_note(prompt: str) -> str:
    """What the prompt asks of the reference world's heart fine-tunes: a trained or an unseen colour."""
    words = set(re.findall(r"[a-z]+", prompt.lower()))
    if NOVEL not in words:
        return f"no {NOVEL} in the prompt: the adapters should draw what the base model draws"
    trained = [c for c in NOVEL_TRAINED_COLOURS if c in words]
    unseen = [c for c in NOVEL_UNSEEN_COLOURS if c in words]
    if unseen:
        return f"{NOVEL} in an **unseen colour** ({', '.join(unseen)}): never shown to the fine-tunes"
    if trained:
        return f"{NOVEL} in a **trained colour** ({', '.join(trained)})"
    return f"a {NOVEL} with no colour of the world named"


def _number(value: Any, default: float, low: float, high: float, what: str, whole: bool) -> float:
    """``value`` (``default`` when empty) as a number; refused unless in [low, high] (and whole if asked)."""
    try:
        number = float(default if value is None or value == "" else value)
    except (TypeError, ValueError):
        number = float("nan")
    if not low <= number <= high or (whole and not number.is_integer()):
        kind = "a whole number" if whole else "a number"
        raise refused(f"{what} must be {kind} from {low:g} to {high:g}, got {value}.", "Bad input")
    return number


def compare(
    prompt: str,
    seed: float | int | None = 0,
    steps: float | int | None = STEPS[2],
    guidance: float | int | None = GUIDANCE[2],
    images: float | int | None = IMAGES[2],
    adapters: list[str] | str | None = None,
) -> tuple[list[tuple[Image.Image, str]], pd.DataFrame, str]:
    """``prompt`` through the base model and through each adapter in ``adapters`` (None: the page's
    defaults; empty: the base model alone), ``images`` seeds from ``seed`` on, every model from the same
    noise: the labelled images (one row per seed: base first, then each adapter), a table of what each model
    used and a status line."""
    prompt = (prompt or "").strip()
    if not prompt:
        raise refused("Enter a prompt.", "No prompt")
    seed = int(_number(seed, 0, 0, 2**32 - 1, "The seed", whole=True))
    steps = int(_number(steps, STEPS[2], *STEPS[:2], "The steps", whole=True))
    guidance = _number(guidance, GUIDANCE[2], *GUIDANCE[:2], "The guidance", whole=False)
    count = int(_number(images, IMAGES[2], *IMAGES[:2], "The number of images", whole=True))
    seeds = list(range(seed, seed + count))
    if seeds[-1] > 2**32 - 1:
        raise refused(f"The seeds run past {2**32 - 1}: lower the seed.", "Bad input")
    started = time.perf_counter()
    with MODELS.lock:
        try:
            repos = selection(default_adapters() if adapters is None else adapters)
            loaded = MODELS.select(repos)
        except LoadError as err:
            raise refused(str(err), "Cannot load") from err
        model = MODELS.model
        call = {"prompt": prompt, "num_inference_steps": steps, "guidance_scale": guidance}
        columns = [("base", MODELS.pipe, call)] + [(a.repo, a.pipe, {**call, **a.settings}) for a in loaded]
        results = [(name, used, *sample(pipe, used, seeds)) for name, pipe, used in columns]
    methods = {a.repo: a for a in loaded}
    gallery = [
        (enlarged(shots[i], SHOWN_PIXELS), f"{name} · seed {s}")
        for i, s in enumerate(seeds)
        for name, _used, shots, _seconds in results
    ]
    rows = []
    for name, used, _shots, seconds in results:
        adapter = methods.get(name)
        rows.append(
            {
                "model": model if adapter is None else f"{model} + {name}",
                "method": "base" if adapter is None else adapter.method,
                "revision": "" if adapter is None else (adapter.revision or "")[:10],
                "steps": int(used["num_inference_steps"]),
                "guidance": float(used["guidance_scale"]),
                "seconds": round(seconds, 3),
            }
        )
    table = pd.DataFrame(rows, columns=list(TABLE_TYPES))
    other_bases = [
        f"`{a.repo}` names `{a.card_base}`" for a in loaded if a.card_base and a.card_base != model
    ]
    with_adapters = (
        f"{len(loaded)} adapter{'s' if len(loaded) != 1 else ''}" if loaded else "no adapter (the base alone)"
    )
    status = (
        f"`{model}` and {with_adapters} · {colour_note(prompt)} · seed{'s' if count > 1 else ''} "
        f"{seeds[0]}{f'–{seeds[-1]}' if count > 1 else ''} · {steps} steps, guidance {guidance:g} · "
        f"{time.perf_counter() - started:.1f} s"
    )
    if other_bases:
        status += f" · base model in the card: {'; '.join(other_bases)}"
    return gallery, table, status


# ------------------------------------------------------------------------------------------------ UI


def gallery_columns(adapters: list[str] | None) -> gr.Gallery:
    """The gallery with a column for the base model and one for each adapter selected."""
    return gr.Gallery(columns=1 + len(adapters or []))


def build_demo() -> gr.Blocks:
    """The Space's Blocks; nothing is loaded until the first Compare (or the warm-up of ``__main__``)."""
    adapters = default_adapters()
    with gr.Blocks(title="hubkit Fine-tuning") as demo:
        gr.Markdown(
            "# hubkit Fine-tuning\nA base model next to fine-tuned adapters of it, loaded from the Hub by "
            f"their own methods, on prompts with a shape the base model never saw: the **{NOVEL}**. "
            f"Base model: `{base_model()}`."
        )
        gr.Markdown(TRAINING_NOTE, elem_id="training-note")
        with gr.Row():
            prompt = gr.Textbox(value=DEFAULT_PROMPT, label="Prompt", elem_id="prompt", scale=4, max_lines=2)
            button = gr.Button("Compare", variant="primary", elem_id="compare-button", scale=1)
        with gr.Row():
            gr.Examples(
                [[p] for p in TRAINED_EXAMPLES],
                inputs=[prompt],
                label=f"Trained colours ({_listed(NOVEL_TRAINED_COLOURS)})",
                cache_examples=False,
                elem_id="trained-examples",
            )
            gr.Examples(
                [[p] for p in UNSEEN_EXAMPLES],
                inputs=[prompt],
                label=f"Unseen colours ({_listed(NOVEL_UNSEEN_COLOURS)})",
                cache_examples=False,
                elem_id="unseen-examples",
            )
        with gr.Row():
            adapter_select = gr.Dropdown(
                choices=adapters,
                value=adapters,
                multiselect=True,
                allow_custom_value=True,
                label="Adapters (type a repo id, namespace/name, to add another)",
                elem_id="adapter-select",
                scale=3,
            )
            seed = gr.Number(value=0, precision=0, minimum=0, label="Seed", elem_id="seed", scale=1)
            images = gr.Slider(
                *IMAGES[:2], value=IMAGES[2], step=1, label="Seeds (one row each)", elem_id="images", scale=1
            )
        with gr.Row():
            steps = gr.Slider(*STEPS[:2], value=STEPS[2], step=1, label="Steps", elem_id="steps")
            guidance = gr.Slider(
                *GUIDANCE[:2], value=GUIDANCE[2], step=0.5, label="Guidance", elem_id="guidance"
            )
        status = gr.Markdown(elem_id="fine-tuning-status")
        gallery = gr.Gallery(
            label="Base model, then each adapter (one row per seed)",
            columns=1 + len(adapters),
            height="auto",
            format="png",
            elem_id="comparison-gallery",
        )
        table = gr.Dataframe(
            value=empty_table(TABLE_TYPES),
            datatype=list(TABLE_TYPES.values()),
            interactive=False,
            label="What each column used",
            elem_id="models-table",
        )
        gr.Markdown(ABOUT, elem_id="about")
        wiring = {
            "fn": compare,
            "inputs": [prompt, seed, steps, guidance, images, adapter_select],
            "outputs": [gallery, table, status],
        }
        button.click(**wiring, api_name="compare")
        adapter_select.change(  # one gallery column per model: each row is one seed
            gallery_columns, adapter_select, gallery, api_visibility="private", queue=False
        )
        prompt.submit(**wiring, api_name="compare_submit", api_visibility="private")  # Enter: the same
    return demo


demo = build_demo()

if __name__ == "__main__":
    threading.Thread(target=MODELS.warm_up, name="warm-up", daemon=True).start()
    demo.launch(
        server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        server_port=int(os.environ.get("GRADIO_SERVER_PORT", 7860)),
    )
