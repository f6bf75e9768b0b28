"""Denoising fine-tuning on (image, caption) data, shared by the methods that teach a base model something
new (SaRA, a LoRA fine-tune...): the data held in memory, and the training step without any adapter.

Each micro-batch: ``batch_size`` (image, caption) pairs — a ``prior_share`` of them from a prior dataset (what
the base model already draws: prior preservation, as DreamBooth) — VAE latents, noise at uniform timesteps,
the ε / v-prediction MSE (on prior rows, with ``prior_target="base"``, towards the base UNet's own
prediction instead of the noise: distillation) with Min-SNR weighting (γ = 5) and caption dropout (10 %) to
the unconditional branch the pipeline guides with (the empty prompt; zeros on SDXL), which keeps
classifier-free guidance working. The UNet is conditioned through :mod:`hubkit.conditioning` (on SDXL: the
pooled embedding, and time ids of the training resolution with no crop, as the pipeline samples). Which
tensors train is the method's choice (``make_params``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from hubkit.conditioning import TextConditioning, encode, move_text_encoders, unconditional, unet_kwargs
from hubkit.config import FineTuneConfig, LayerFineTuneConfig
from hubkit.training import StepContext, TrainingStep

__all__ = [
    "DenoisingStep",
    "FineTuneConfig",
    "FineTuneError",
    "ImageCaptions",
    "LayerFineTuneConfig",
    "check_pipeline",
    "load_fine_tune_data",
    "load_image_captions",
    "open_dataset",
    "pipeline_resolution",
]

MIN_EXAMPLES = 4
CAPTION_DROPOUT = 0.1
SNR_GAMMA = 5.0


class FineTuneError(ValueError):
    """Fine-tuning cannot start: unreadable, empty or too small dataset, unsupported pipeline..."""


def load_fine_tune_data(
    config: FineTuneConfig, pipe: Any, endpoint: str | None = None, token: str | None = None
) -> tuple[ImageCaptions, ImageCaptions | None]:
    """The dataset (and prior dataset, its ``train`` split) of ``config`` in memory, at the resolution of
    ``pipe`` unless the config sets one."""
    columns = (config.image_column, config.caption_column, pipeline_resolution(pipe, config.resolution))
    hub = {"endpoint": endpoint, "token": token}
    data = load_image_captions(config.dataset, config.dataset_config, config.split, *columns, **hub)
    prior = None
    if config.prior_dataset:
        prior = load_image_captions(config.prior_dataset, config.prior_config, "train", *columns, **hub)
    return data, prior


def pipeline_resolution(pipe: Any, resolution: int | None = None) -> int:
    """``resolution`` if given, else the pipeline's native image size (UNet sample size × VAE scale)."""
    if resolution:
        return resolution
    return int(pipe.unet.config.sample_size) * int(getattr(pipe, "vae_scale_factor", 8))


def check_pipeline(pipe: Any, method: str = "fine-tuning") -> None:
    unet, vae = getattr(pipe, "unet", None), getattr(pipe, "vae", None)
    if unet is None or vae is None or not hasattr(pipe, "encode_prompt"):
        raise FineTuneError(
            f"unsupported base pipeline {type(pipe).__name__}: {method} needs a text-to-image pipeline "
            "with a VAE, a UNet and encode_prompt (e.g. StableDiffusionPipeline)"
        )


@dataclass
class ImageCaptions:
    """A dataset held in memory: images as uint8 (N, 3, H, W) at the training resolution, and captions."""

    images: torch.Tensor
    captions: list[str]
    source: str

    def __len__(self) -> int:
        return len(self.captions)


def _to_tensor(image: Any, resolution: int) -> torch.Tensor:
    """Resize the short side to ``resolution`` (antialiased), centre-crop, uint8 (3, H, W)."""
    import numpy as np
    from PIL import Image

    if not isinstance(image, Image.Image):
        raise FineTuneError(f"expected images, got {type(image).__name__}")
    image = image.convert("RGB")
    w, h = image.size
    scale = resolution / min(w, h)
    if scale != 1:
        image = image.resize(
            (max(resolution, round(w * scale)), max(resolution, round(h * scale))), Image.BICUBIC
        )
    w, h = image.size
    left, top = (w - resolution) // 2, (h - resolution) // 2
    image = image.crop((left, top, left + resolution, top + resolution))
    return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)


def open_dataset(
    name: str, config: str | None, split: str, *, endpoint: str | None = None, token: str | None = None
) -> tuple[Any, str]:
    """A split of a local folder (``load_dataset`` reads imagefolder + metadata, parquet, …) or of a Hub
    dataset repo (pulled through hubkit's Hub client: the embedded Hub unless ``endpoint``), and its name for
    messages; :class:`FineTuneError` names what could not be read."""
    from datasets import load_dataset

    from hubkit.hub import HubError, pull

    source = f"{name}" + (f" ({config})" if config else "") + f" [{split}]"
    try:
        local = Path(name).expanduser()
        folder = local if local.exists() else pull(name, repo_type="dataset", endpoint=endpoint, token=token)
        return load_dataset(str(folder), config, split=split), source
    except HubError as err:
        raise FineTuneError(f"cannot load the dataset {source}: {err}") from err
    except Exception as err:  # datasets raises many types (FileNotFoundError, ValueError, ...)
        raise FineTuneError(f"cannot load the dataset {source}: {type(err).__name__}: {err}") from err


def load_image_captions(
    name: str,
    config: str | None,
    split: str,
    image_column: str,
    caption_column: str,
    resolution: int,
    min_examples: int = MIN_EXAMPLES,
    *,
    endpoint: str | None = None,
    token: str | None = None,
) -> ImageCaptions:
    """A local folder (``load_dataset`` reads imagefolder + metadata, parquet, …) or a Hub dataset repo
    (pulled through hubkit's Hub client: the embedded Hub unless ``endpoint``) as :class:`ImageCaptions`; an
    unreadable, empty or too small dataset, or missing columns, raise :class:`FineTuneError` naming it."""
    data, source = open_dataset(name, config, split, endpoint=endpoint, token=token)
    missing = [c for c in (image_column, caption_column) if c not in data.column_names]
    if missing:
        raise FineTuneError(
            f"the dataset {source} has no column {missing[0]!r} (columns: {', '.join(data.column_names)})"
        )
    if len(data) < min_examples:
        raise FineTuneError(
            f"the dataset {source} has {len(data)} examples: fine-tuning needs at least {min_examples}"
        )
    images = torch.stack([_to_tensor(im, resolution) for im in data[image_column]])
    captions = [str(c) for c in data[caption_column]]
    if not all(c.strip() for c in captions):
        raise FineTuneError(f"the dataset {source} has empty captions")
    return ImageCaptions(images, captions, source)


class DenoisingStep(TrainingStep):
    """Denoising fine-tuning on (image, caption) data, the parameters given by ``make_params`` (called in
    :meth:`setup` with the UNet; returns the tensors to train)."""

    description = "fine-tuning"

    def __init__(
        self,
        pipe: Any,
        data: ImageCaptions,
        prior: ImageCaptions | None,
        batch_size: int,
        prior_share: float,
        make_params: Callable[[Any], list[torch.nn.Parameter]],
        prior_target: str = "data",
    ) -> None:
        self.pipe, self.data, self.prior, self.make_params = pipe, data, prior, make_params
        self.prior_target = prior_target
        self.batch_size = batch_size
        self.n_prior = round(batch_size * prior_share) if prior is not None else 0
        if prior is not None and self.n_prior in (0, batch_size):
            raise FineTuneError(
                f"prior_share {prior_share} leaves {'no' if self.n_prior == 0 else 'only'} prior images in a "
                f"batch of {batch_size}"
            )
        self.cache: dict[str, TextConditioning] = {}

    def setup(self, device: torch.device) -> None:
        from diffusers import DDPMScheduler

        self.device = device
        self.unet = self.pipe.unet.to(device)
        self.vae = self.pipe.vae.to(device).eval().requires_grad_(False)
        move_text_encoders(self.pipe, device)
        self.unet.requires_grad_(False)
        # Distillation on the prior rows needs the base UNet as it was: a frozen copy taken before the method
        # adds its tensors (one more UNet in memory; its forward costs no backward).
        self.teacher = None
        if self.n_prior and self.prior_target == "base":
            self.teacher = copy.deepcopy(self.unet).eval()
        self.params = self.make_params(self.unet)
        self.unet.train()
        self.noise = DDPMScheduler.from_config(self.pipe.scheduler.config)
        alphas = self.noise.alphas_cumprod.to(device)
        self.snr = alphas / (1 - alphas)
        self.kind = self.noise.config.prediction_type
        with torch.no_grad():
            self.empty = unconditional(self.pipe, device).detach()  # caption dropout's conditioning

    def parameters(self) -> list[torch.nn.Parameter]:
        return self.params

    def _embed(self, captions: list[str | None]) -> TextConditioning:
        """The captions' conditionings, each caption encoded once; None is the unconditional branch."""
        missing = [c for c in dict.fromkeys(captions) if c is not None and c not in self.cache]
        if missing:
            with torch.no_grad():
                cond = encode(self.pipe, missing, self.device).detach()
            self.cache.update((c, cond[i]) for i, c in enumerate(missing))
        return TextConditioning.cat([self.empty if c is None else self.cache[c] for c in captions])

    def _batch(self, generator: torch.Generator) -> tuple[torch.Tensor, list[str]]:
        parts = [(self.data, self.batch_size - self.n_prior)]
        if self.n_prior:
            parts.append((self.prior, self.n_prior))  # type: ignore[arg-type]
        images, captions = [], []
        for source, n in parts:
            pick = torch.randint(len(source), (n,), generator=generator)
            images.append(source.images[pick])
            captions += [source.captions[i] for i in pick.tolist()]
        return torch.cat(images).to(self.device).float().div(127.5).sub(1), captions

    def denoising_loss(self, ctx: StepContext) -> torch.Tensor:
        return self.row_losses(ctx).mean()

    def row_losses(self, ctx: StepContext) -> torch.Tensor:
        """The weighted loss of each image of the micro-batch (its prior rows last)."""
        g = ctx.generator
        images, captions = self._batch(g)
        b = images.shape[0]
        with torch.no_grad():
            latents = self.vae.encode(images).latent_dist.sample(generator=g) * self.vae.config.scaling_factor
        drop = (torch.rand(b, generator=g) < CAPTION_DROPOUT).tolist()
        emb = self._embed([None if d else c for c, d in zip(captions, drop, strict=True)])
        noise = torch.randn(latents.shape, generator=g).to(self.device)
        t = torch.randint(0, self.noise.config.num_train_timesteps, (b,), generator=g).to(self.device)
        noisy = self.noise.add_noise(latents, noise, t)
        target = noise if self.kind == "epsilon" else self.noise.get_velocity(latents, noise, t)
        pred = self.unet(noisy, t, **unet_kwargs(self.pipe, emb, noisy)).sample
        if self.teacher is not None:  # the prior rows (the batch's last ones) learn the base's prediction
            n = self.n_prior
            with torch.no_grad():
                prior = noisy[-n:]
                taught = self.teacher(prior, t[-n:], **unet_kwargs(self.pipe, emb[-n:], prior)).sample
            target = torch.cat([target[:-n], taught.to(target.dtype)])
        loss = F.mse_loss(pred.float(), target.float(), reduction="none").mean(dim=(1, 2, 3))
        snr = self.snr[t]
        weight = torch.clamp(snr, max=SNR_GAMMA) / (snr if self.kind == "epsilon" else snr + 1)
        return loss * weight

    def __call__(self, ctx: StepContext) -> dict[str, torch.Tensor]:
        return {"loss": self.denoising_loss(ctx)}
