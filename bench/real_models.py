"""Every hubkit method on a real Stable Diffusion checkpoint: train, save, load as users do, headline number.

    python bench/real_models.py PATH [--methods spm,rece,lcm-lora,sara,lora-finetune,quantize]
        [--concept "Van Gogh"] [--surrogate "a painting"] [--dataset DIR] [--clip DIR] [--steps N]
        [--device cuda] [--out .bench/real_models] [--quick]

``PATH`` is a local pipeline folder in diffusers layout (SD 1.x, SD 2.x or SDXL: the family is read from its
configs). Each method trains with a recipe sized for a GPU (``--steps`` overrides the step counts,
``--quick`` makes every run a few steps and small images: a smoke test, which the test suite runs on the
tiny pipelines of :mod:`hubkit.architectures`), writes its artifact folder under ``--out``, loads it back
through hubkit's method registry onto a fresh copy of the base (the card's loader) and measures, on the
same seeds as the base:

- erasers (``spm``, ``rece``): how much the concept's images change against other prompts' images (mean
  absolute pixel change, and their ratio: specificity); with ``--clip`` (a local CLIP folder,
  ``transformers`` layout) the concept's presence: the share of images CLIP matches to the concept rather
  than the surrogate, before and after;
- ``lcm-lora`` (needs ``--dataset``): seconds per image at its 4 steps against the base at 25 guided steps
  (× faster); with ``--clip`` the CLIP score of both (% of the teacher's);
- ``sara`` / ``lora-finetune`` (need ``--dataset``): the dataset's denoising loss at fixed noise and
  timesteps, base against fine-tuned (% lower), and the share of the UNet that trained;
- ``quantize`` (W8A8): artifact bytes against the float UNet's (× smaller), PSNR of its images to the base's,
  seconds per image ratio.

Prints a table and writes ``<out>/results.json``. A method that cannot run on the checkpoint (a missing
dataset, a family it refuses) is reported with its reason, and the others still run.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

METHODS = ("spm", "rece", "lcm-lora", "sara", "lora-finetune", "quantize")
PROMPTS = (
    "a photo of a lighthouse on a cliff at sunset",
    "a bowl of fruit on a wooden table",
    "a portrait of an old fisherman",
    "a city street in the rain at night",
)
console = Console(width=200)


# -- the base and its images ----------------------------------------------------------------------------


class Base:
    """The checkpoint: a fresh pipeline per use (a method's loader changes the pipeline it is given), and the
    base's own images cached by (prompt, steps, guidance)."""

    def __init__(self, path: Path, device: str, dtype: torch.dtype, size: int | None, seeds: int):
        from hubkit.architectures import architecture_of

        self.path, self.device, self.dtype, self.seeds = path, device, dtype, seeds
        self.arch = architecture_of(path)
        self.size = size
        self.images: dict[tuple[str, int, float], np.ndarray] = {}

    def load(self) -> Any:
        from diffusers import DiffusionPipeline

        pipe = DiffusionPipeline.from_pretrained(str(self.path), torch_dtype=self.dtype)
        pipe.set_progress_bar_config(disable=True)
        return pipe.to(self.device)

    @functools.cached_property
    def pipe(self) -> Any:
        """The base as it is, loaded once: its own images, timings and losses (never given to a loader)."""
        return self.load()

    def draw(self, pipe: Any, prompt: str, steps: int, guidance: float, **settings: Any) -> np.ndarray:
        """``seeds`` images of ``prompt`` (seeds 0…n-1), float32 in [0, 1], (n, H, W, 3)."""
        size = {"height": self.size, "width": self.size} if self.size else {}
        out = []
        for seed in range(self.seeds):
            generator = torch.Generator(self.device).manual_seed(seed)
            with torch.no_grad():
                image = pipe(
                    prompt,
                    num_inference_steps=steps,
                    guidance_scale=guidance,
                    generator=generator,
                    output_type="np",
                    **size,
                    **settings,
                ).images
            out.append(np.asarray(image, dtype=np.float32))
        return np.concatenate(out)

    def base_images(self, prompt: str, steps: int = 25, guidance: float = 7.5) -> np.ndarray:
        key = (prompt, steps, guidance)
        if key not in self.images:
            self.images[key] = self.draw(self.pipe, prompt, steps, guidance)
        return self.images[key]


def load_artifact(base: Base, folder: Path) -> tuple[Any, dict[str, Any]]:
    """The artifact as hubkit's registry loads it (the method its card names) on a fresh base, and the call
    settings its card records (an LCM-LoRA's steps and guidance)."""
    from hubkit.leaderboard.evaluation import fetch_artifact
    from hubkit.methods import method_for

    artifact = fetch_artifact(str(folder))
    method = method_for(artifact)
    pipe = method.load(artifact, base.load())
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(base.device), method.call_settings(artifact)


def seconds_per_image(
    base: Base, pipe: Any, prompt: str, steps: int, guidance: float, **settings: Any
) -> float:
    base.draw(pipe, prompt, steps, guidance, **settings)  # warm-up (kernels, allocator)
    if base.device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    base.draw(pipe, prompt, steps, guidance, **settings)
    if base.device.startswith("cuda"):
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / base.seeds


def mean_change(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).mean())


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a - b) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(1 / mse)


class Clip:
    """A local CLIP (``transformers`` folder): zero-shot choice between texts, and the CLIP score."""

    def __init__(self, folder: str, device: str):
        from transformers import CLIPModel, CLIPProcessor

        self.model = CLIPModel.from_pretrained(folder).to(device).eval()
        self.processor = CLIPProcessor.from_pretrained(folder)
        self.device = device

    @torch.no_grad()
    def _features(self, images: np.ndarray, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        pixels = [(im * 255).round().astype(np.uint8) for im in images]
        inputs = self.processor(text=texts, images=pixels, return_tensors="pt", padding=True).to(self.device)
        out = self.model(**inputs)
        image = torch.nn.functional.normalize(out.image_embeds.float(), dim=-1)
        text = torch.nn.functional.normalize(out.text_embeds.float(), dim=-1)
        return image, text

    def share_matching(self, images: np.ndarray, texts: list[str]) -> float:
        """Share of images closer to ``texts[0]`` than to every other text."""
        image, text = self._features(images, texts)
        return float(((image @ text.T).argmax(dim=1) == 0).float().mean())

    def score(self, images: np.ndarray, prompt: str) -> float:
        """CLIP score: 100 × mean cosine(image, prompt), floored at 0 (Hessel et al.)."""
        image, text = self._features(images, [prompt])
        return float((100 * (image @ text.T)).clamp(min=0).mean())


# -- the recipes ------------------------------------------------------------------------------------------


def recipe(method: str, args: argparse.Namespace, base: Base) -> tuple[str, Any]:
    """(registry name, config) of ``method`` for a real checkpoint; ``--quick``: a few steps, small images."""
    quick, steps = args.quick, args.steps
    if method in ("lcm-lora", "sara", "lora-finetune") and not args.dataset:
        raise SkipMethod("needs --dataset (captioned images of the model's domain: imagefolder + metadata)")
    small = {"resolution": 64} if quick else {}
    if method == "spm":
        from hubkit.adapters.spm import SPMConfig

        return "spm", SPMConfig(
            concepts=[args.concept],
            surrogate=args.surrogate,
            steps=steps or (2 if quick else 500),
            batch_size=1 if quick else 4,
            sampling_steps=2 if quick else 25,
            anchors_per_step=1 if quick else 4,
            warmup_steps=0 if quick else 20,
            **small,
        )
    if method == "rece":
        from hubkit.adapters.rece.config import RECEConfig

        quick_rounds = {"rounds": 1, "contexts": 0} if quick else {}
        return "rece", RECEConfig(concepts=[args.concept], surrogate=args.surrogate, **quick_rounds)
    if method == "lcm-lora":
        from hubkit.adapters.lcm_lora import LCMLoRAConfig

        # diffusers' LCM-LoRA script's settings (rank 64, lr 1e-4, ω ∈ [3, 15]), fewer steps than its 4000
        return "lcm-lora", LCMLoRAConfig(
            dataset=args.dataset,
            rank=4 if quick else 64,
            lr=1e-4,
            w_min=3.0,
            w_max=15.0,
            steps=steps or (2 if quick else 1000),
            batch_size=1 if quick else 8,
            warmup_steps=0 if quick else 50,
            **small,
        )
    if method in ("sara", "lora-finetune"):
        from hubkit.adapters.lora_finetune.config import LoRAFineTuneConfig
        from hubkit.adapters.sara.config import SaRAConfig

        settings = {
            "dataset": args.dataset,
            "steps": steps or (2 if quick else 500),
            "batch_size": 1 if quick else 4,
            "warmup_steps": 0 if quick else 20,
            **small,
        }
        if method == "sara":  # the paper's learning-rate rule (lr 0); the sparse file only, no merged UNet
            return "sara", SaRAConfig(
                **settings, lr=0.0, rank_layers=1 if quick else 8, save_merged_unet=False
            )
        return "lora-finetune", LoRAFineTuneConfig(**settings, lr=1e-4, rank=4 if quick else 16)
    from hubkit.adapters.quantize.config import QuantizeConfig

    return "quantize", QuantizeConfig(
        weights="int8",
        prompts=list(args.prompts),
        **({"calibration_steps": 2, "timestep_groups": 1} if quick else {}),
    )


class SkipMethod(Exception):
    """The method cannot run on this checkpoint with these arguments; the message says why."""


def train(method: str, args: argparse.Namespace, base: Base) -> tuple[Path, dict[str, Any]]:
    from hubkit.methods import get_method

    name, config = recipe(method, args, base)
    out = Path(args.out) / method
    pipe = base.load()
    start = time.perf_counter()
    facts = get_method(name).train(args.base_id, config, out, pipe=pipe, progress=True, force=True)
    facts["wall_seconds"] = round(time.perf_counter() - start, 1)
    del pipe
    return out, facts


# -- headline numbers -----------------------------------------------------------------------------------


def measure_eraser(base: Base, folder: Path, args: argparse.Namespace, clip: Clip | None) -> dict[str, Any]:
    pipe, settings = load_artifact(base, folder)
    concept_prompt, steps = args.concept_prompt.format(args.concept), args.sample_steps
    concept = base.draw(pipe, concept_prompt, steps, 7.5, **settings)
    others = [base.draw(pipe, p, steps, 7.5, **settings) for p in args.prompts]
    base_concept = base.base_images(concept_prompt, steps)
    base_others = [base.base_images(p, steps) for p in args.prompts]
    change = mean_change(concept, base_concept)
    other = float(np.mean([mean_change(a, b) for a, b in zip(others, base_others, strict=True)]))
    row = {
        "concept change": change,
        "other change": other,
        "specificity": change / max(other, 1e-8),
        "headline": f"concept images change {change / max(other, 1e-8):.1f}× more than other prompts'",
    }
    if clip is not None:
        texts = [args.concept, args.surrogate or "a picture"]
        before, after = clip.share_matching(base_concept, texts), clip.share_matching(concept, texts)
        row.update({"presence before": before, "presence after": after})
        row["headline"] = f"CLIP concept presence {before:.2f} → {after:.2f}; " + row["headline"]
    return row


def measure_lcm(base: Base, folder: Path, args: argparse.Namespace, clip: Clip | None) -> dict[str, Any]:
    pipe, settings = load_artifact(base, folder)
    prompt, teacher_steps = args.prompts[0], args.sample_steps
    student_steps = settings.pop("num_inference_steps", 4)
    student_guidance = settings.pop("guidance_scale", 1.0)
    fast = seconds_per_image(base, pipe, prompt, student_steps, student_guidance, **settings)
    slow = seconds_per_image(base, base.pipe, prompt, teacher_steps, 7.5)
    row = {
        "student s/image": fast,
        "teacher s/image": slow,
        "speedup": slow / fast,
        "headline": f"{student_steps} steps: {slow / fast:.1f}× faster than {teacher_steps} guided steps",
    }
    if clip is not None:
        student = [base.draw(pipe, p, student_steps, student_guidance, **settings) for p in args.prompts]
        scores = [clip.score(im, p) for im, p in zip(student, args.prompts, strict=True)]
        teacher_scores = [clip.score(base.base_images(p, teacher_steps), p) for p in args.prompts]
        share = float(np.mean(scores)) / max(float(np.mean(teacher_scores)), 1e-8)
        row.update(
            {"clip score": float(np.mean(scores)), "teacher clip score": float(np.mean(teacher_scores))}
        )
        row["headline"] += f"; CLIP score {share:.1%} of the teacher's"
    return row


def denoising_loss(pipe: Any, images: torch.Tensor, captions: list[str], device: str) -> float:
    """The ε / v MSE over the dataset at 4 fixed timesteps with fixed noise (seed 0): one number per model."""
    from diffusers import DDPMScheduler

    from hubkit.conditioning import encode, unet_kwargs

    noise_sched = DDPMScheduler.from_config(pipe.scheduler.config)
    generator = torch.Generator().manual_seed(0)
    dtype = pipe.unet.dtype
    losses = []
    with torch.no_grad():
        for i in range(images.shape[0]):
            pixels = images[i : i + 1].to(device, dtype).float().div(127.5).sub(1).to(dtype)
            latent = pipe.vae.encode(pixels).latent_dist.mean * pipe.vae.config.scaling_factor
            cond = encode(pipe, [captions[i]], device)
            for t in (100, 300, 600, 900):
                noise = torch.randn(latent.shape, generator=generator).to(device, dtype)
                timestep = torch.tensor([t], device=device)
                noisy = noise_sched.add_noise(latent, noise, timestep)
                kind = noise_sched.config.prediction_type
                target = noise if kind == "epsilon" else noise_sched.get_velocity(latent, noise, timestep)
                pred = pipe.unet(noisy, timestep, **unet_kwargs(pipe, cond, noisy)).sample
                losses.append(float(((pred.float() - target.float()) ** 2).mean()))
    return float(np.mean(losses))


def measure_finetune(
    base: Base, folder: Path, args: argparse.Namespace, facts: dict[str, Any]
) -> dict[str, Any]:
    from hubkit.finetune import load_image_captions, pipeline_resolution

    pipe, _ = load_artifact(base, folder)
    size = 64 if args.quick else pipeline_resolution(pipe)
    data = load_image_captions(args.dataset, None, "train", "image", "caption", size)
    before = denoising_loss(base.pipe, data.images, data.captions, base.device)
    after = denoising_loss(pipe, data.images, data.captions, base.device)
    return {
        "loss before": before,
        "loss after": after,
        "trained share": facts.get("share"),
        "headline": f"dataset denoising loss {before:.4f} → {after:.4f} ({1 - after / before:.1%} lower), "
        f"{facts.get('share', 0):.2%} of the UNet trained",
    }


def unet_bytes(folder: Path) -> int:
    """Bytes of the UNet's weights: the plain files (not ``.fp16`` / other variants) when there are any."""
    files = sorted(folder.glob("diffusion_pytorch_model*.safetensors"))
    plain = [f for f in files if f.name.count(".") == 1]  # a variant reads model.fp16.safetensors
    return sum(f.stat().st_size for f in plain or files)


def measure_quantize(base: Base, folder: Path, args: argparse.Namespace) -> dict[str, Any]:
    pipe, _ = load_artifact(base, folder)
    steps = args.sample_steps
    quantized = [base.draw(pipe, p, steps, 7.5) for p in args.prompts]
    fidelity = [psnr(a, base.base_images(p, steps)) for a, p in zip(quantized, args.prompts, strict=True)]
    weights = sum(f.stat().st_size for f in folder.rglob("*.safetensors"))
    float_unet = unet_bytes(base.path / "unet")
    fast = seconds_per_image(base, pipe, args.prompts[0], steps, 7.5)
    slow = seconds_per_image(base, base.pipe, args.prompts[0], steps, 7.5)
    return {
        "artifact bytes": weights,
        "float UNet bytes": float_unet,
        "psnr": float(np.median(fidelity)),
        "time ratio": fast / slow,
        "headline": f"{float_unet / max(weights, 1):.1f}× smaller UNet file, median PSNR "
        f"{np.median(fidelity):.1f} dB to the base's images, {fast / slow:.2f}× the base's time per image",
    }


def run_method(method: str, base: Base, args: argparse.Namespace, clip: Clip | None) -> dict[str, Any]:
    console.rule(f"{method} on {base.path.name} ({base.arch})")
    try:
        folder, facts = train(method, args, base)
        if method in ("spm", "rece"):
            row = measure_eraser(base, folder, args, clip)
        elif method == "lcm-lora":
            row = measure_lcm(base, folder, args, clip)
        elif method in ("sara", "lora-finetune"):
            row = measure_finetune(base, folder, args, facts)
        else:
            row = measure_quantize(base, folder, args)
    except SkipMethod as why:
        return {"status": "skipped", "headline": str(why)}
    except Exception as err:  # one method's failure must not hide the others' numbers
        traceback.print_exc()
        return {"status": "failed", "headline": f"{type(err).__name__}: {err}"}
    return {"status": "ok", "train seconds": facts["wall_seconds"], "artifact": str(folder), **row}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "path", type=Path, help="a local SD 1.x / 2.x / SDXL pipeline folder (diffusers layout)"
    )
    parser.add_argument(
        "--base-id",
        default=None,
        help="the checkpoint's Hub repo id, for the cards (default: local/<folder>)",
    )
    parser.add_argument(
        "--methods", default=",".join(METHODS), help="comma-separated, of: " + ", ".join(METHODS)
    )
    parser.add_argument("--concept", default="Van Gogh", help="what the erasers erase")
    parser.add_argument(
        "--concept-prompt", default="a painting by {}", help="the erasers' test prompt, with {}"
    )
    parser.add_argument("--surrogate", default="", help="what the concept becomes ('' = unconditional)")
    parser.add_argument("--dataset", default="", help="captioned images (imagefolder + metadata.jsonl)")
    parser.add_argument("--prompts", nargs="+", default=list(PROMPTS), help="prompts sampled for the numbers")
    parser.add_argument("--clip", default=None, help="a local CLIP folder (transformers) for CLIP numbers")
    parser.add_argument("--steps", type=int, default=None, help="training steps of every method")
    parser.add_argument(
        "--seeds", type=int, default=None, help="images per prompt (default 4; 1 with --quick)"
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--dtype", default=None, help="float16 / bfloat16 / float32 (default: float16 on CUDA)"
    )
    parser.add_argument("--out", default=".bench/real_models", help="where artifacts and results.json go")
    parser.add_argument("--quick", action="store_true", help="a few steps and small images: a smoke test")
    args = parser.parse_args(argv)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        parser.error(f"unknown method {unknown[0]!r}; known: {', '.join(METHODS)}")
    if not args.path.is_dir():
        parser.error(f"{args.path} is not a folder")
    args.base_id = args.base_id or f"local/{args.path.resolve().name}"
    dtype_name = args.dtype or ("float16" if args.device.startswith("cuda") else "float32")
    dtype = getattr(torch, dtype_name)
    args.sample_steps = 2 if args.quick else 25
    seeds = args.seeds or (1 if args.quick else 4)
    try:
        base = Base(args.path, args.device, dtype, 64 if args.quick else None, seeds)
    except ValueError as err:
        parser.error(f"{args.path}: {err}")
    clip = Clip(args.clip, args.device) if args.clip else None
    console.print(f"{args.path} is {base.arch}; {args.device}, {dtype_name}; methods: {', '.join(methods)}")
    results = {m: run_method(m, base, args, clip) for m in methods}
    report(base, results)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summary = {"path": str(args.path), "architecture": base.arch, "device": args.device, "methods": results}
    (out / "results.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    console.print(f"wrote {out / 'results.json'}")
    return 0 if all(r["status"] != "failed" for r in results.values()) else 1


def report(base: Base, results: dict[str, dict[str, Any]]) -> None:
    table = Table(title=f"hubkit methods on {base.path} ({base.arch})")
    for column in ("method", "status", "train s", "headline"):
        table.add_column(column)
    for method, row in results.items():
        seconds = row.get("train seconds")
        table.add_row(method, row["status"], "" if seconds is None else f"{seconds:.0f}", row["headline"])
    console.print(table)


if __name__ == "__main__":
    sys.exit(main())
