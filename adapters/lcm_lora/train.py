"""Latent consistency distillation into a LoRA (LCM-LoRA), and its reward-guided sibling, on ``accelerate``.

One step, for a batch of (image, caption) pairs (diffusers' ``train_lcm_distill_lora_sd_wds.py``):

1. z₀ = VAE latents; a grid index n ~ U{0..N−1} per sample, t_s = grid[n], t_e = max(t_s − T/N, 0);
   z_s = forward-diffused z₀ at t_s; a guidance weight ω ~ U[w_min, w_max] per sample.
2. Student (LoRA on, with gradient): f_θ(z_s, t_s) = c_skip(t_s)·z_s + c_out(t_s)·x̂₀(z_s, t_s).
3. Teacher (LoRA off, no gradient): conditional and unconditional predictions, ω-form guidance
   x̂ = x̂_c + ω(x̂_c − x̂_u) on both x̂₀ and ε̂, one DDIM step of the skipping-step solver t_s → t_e.
4. Target (no gradient): f_θ⁻(ẑ_{t_e}, t_e) with θ⁻ an EMA of the LoRA (the LCM paper; ``ema_decay``), or
   θ⁻ = θ with ``ema_decay=0`` (the LoRA script). Computed before the student, whose graph θ⁻ would clobber.
5. Loss: pseudo-Huber √((f_θ − f_θ⁻)² + c²) − c, gradients clipped; AdamW with warm-up; θ⁻ ← EMA.

On SDXL (``train_lcm_distill_lora_sdxl.py``) the teacher's unconditional branch is zeros and every UNet call
gets the pooled embedding and the time ids (:mod:`hubkit.conditioning`).

``rg-lcd`` adds −reward_scale·R(decode(f_θ(z_s))): a reward on the student's *one-step* output, as RG-LCD
does (no backpropagation through multi-step sampling). Here R is the reference world's judge: the mean
log-probability of the prompted attributes (shape and colour), differentiable through the VAE decoder.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

from hubkit.conditioning import TextConditioning, encode, move_text_encoders, unconditional, unet_kwargs
from hubkit.finetune import FineTuneError, ImageCaptions, load_image_captions, pipeline_resolution
from hubkit.training import StepContext, TrainingStep, run_training, settings_from_config

from .config import LCMLoRAConfig
from .serialization import ADAPTER_NAME

__all__ = [
    "ADAPTER_NAME",
    "DistillError",
    "DistillResult",
    "LCMStep",
    "boundary_scalings",
    "distill_lcm_lora",
    "judge_reward",
    "remove_lora",
    "shapes_batches",
]

SIGMA_DATA = 0.5

Batch = tuple[torch.Tensor, list[str], list[dict[str, str]]]  # images in [-1, 1], captions, attributes
Reward = Callable[[torch.Tensor, list[dict[str, str]]], torch.Tensor]  # images in [0, 1] → [B]


class DistillError(ValueError):
    """A LoRA cannot be distilled from this teacher (wrong pipeline, bad settings...)."""


@dataclass
class DistillResult:
    unet: Any  # the teacher's UNet with the trained LoRA attached as adapter ``ADAPTER_NAME``
    config: LCMLoRAConfig
    seconds: float
    losses: list[float] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)


def remove_lora(unet: Any, adapter_name: str = ADAPTER_NAME) -> None:
    """Take one distilled LoRA off the UNet; the last one out takes PEFT's wrapper layers with it, so the
    UNet's modules and state dict are the teacher's again."""
    unet.delete_adapters(adapter_name)
    if not getattr(unet, "peft_config", None):
        unet.unload_lora()


@contextmanager
def _weights_swapped(params: list[torch.Tensor], replacement: list[torch.Tensor] | None) -> Iterator[None]:
    """``params`` hold ``replacement``'s values inside the block (nothing changes when it is None)."""
    if replacement is None:
        yield
        return
    kept = [p.detach().clone() for p in params]
    with torch.no_grad():
        for p, value in zip(params, replacement, strict=True):
            p.copy_(value)
    try:
        yield
    finally:
        with torch.no_grad():
            for p, value in zip(params, kept, strict=True):
                p.copy_(value)


def boundary_scalings(t: torch.Tensor, timestep_scaling: float) -> tuple[torch.Tensor, torch.Tensor]:
    """c_skip, c_out of the consistency parameterisation: f(x, 0) = x, an x̂₀-predictor elsewhere."""
    scaled = (t.float() * timestep_scaling) ** 2
    c_skip = SIGMA_DATA**2 / (scaled + SIGMA_DATA**2)
    c_out = (t.float() * timestep_scaling) / (scaled + SIGMA_DATA**2) ** 0.5
    return c_skip, c_out


def _x0_and_eps(out: torch.Tensor, z: torch.Tensor, alpha: torch.Tensor, sigma: torch.Tensor, kind: str):
    """(x̂₀, ε̂) from a model output of ``prediction_type`` ``kind`` at z = α·x₀ + σ·ε."""
    if kind == "epsilon":
        return (z - sigma * out) / alpha, out
    if kind == "v_prediction":
        return alpha * z - sigma * out, alpha * out + sigma * z
    if kind == "sample":
        return out, (z - alpha * out) / sigma
    raise DistillError(f"unsupported prediction_type {kind!r}")


def caption_batch(data: ImageCaptions, batch_size: int, seed: int, index: int) -> Batch:
    """Batch ``index`` of random rows of a dataset in memory (no attributes): a function of (seed, index)
    only, so a resumed run, or one process of several, reads its own batches directly."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + index)
    pick = torch.randint(len(data), (batch_size,), generator=generator)
    images = data.images[pick].float().div(127.5).sub(1)
    return images, [data.captions[i] for i in pick.tolist()], [{} for _ in range(batch_size)]


def shapes_batch(batch_size: int, seed: int, size: int, index: int) -> Batch:
    """Batch ``index`` of the reference world's training split (what ``tiny-sd-shapes`` learnt from): a
    function of (seed, index) only, as :func:`caption_batch`."""
    from hubkit.world.shapes import CAPTION_TEMPLATES, render_batch, sample_specs

    specs = sample_specs(batch_size, seed=seed * 1_000_003 + index)
    images = torch.from_numpy(render_batch(specs, size)).permute(0, 3, 1, 2).float().div(127.5).sub(1)
    captions = [s.caption(int(s.seed) % len(CAPTION_TEMPLATES)) for s in specs]
    return images, captions, [{"shape": s.shape, "colour": s.colour} for s in specs]


def shapes_batches(batch_size: int, seed: int, size: int = 32, start: int = 0) -> Iterator[Batch]:
    """Endless :func:`shapes_batch` es from batch ``start`` on (where an interrupted run stopped)."""
    return (shapes_batch(batch_size, seed, size, index) for index in itertools.count(start))


def judge_reward(judge: Any) -> Reward:
    """R(images, attributes) = mean log-probability the (frozen) judge gives each prompted attribute."""
    judge.eval().requires_grad_(False)

    def reward(images: torch.Tensor, attributes: list[dict[str, str]]) -> torch.Tensor:
        logits = judge(images)
        total = images.new_zeros(images.shape[0])
        for name in ("shape", "colour"):
            classes = list(judge.attributes[name])
            index = torch.tensor([classes.index(a[name]) for a in attributes], device=images.device)
            total = total + logits[name].log_softmax(-1).gather(1, index[:, None]).squeeze(1)
        return total / 2

    return reward


def _check(pipe: Any) -> None:
    unet = getattr(pipe, "unet", None)
    if unet is None or getattr(pipe, "vae", None) is None or not hasattr(pipe, "encode_prompt"):
        raise DistillError(
            f"unsupported teacher {type(pipe).__name__}: LCM-LoRA needs a text-to-image pipeline with a VAE, "
            "a UNet and encode_prompt (e.g. StableDiffusionPipeline)"
        )
    if getattr(unet.config, "cross_attention_dim", None) is None:
        raise DistillError(f"unsupported teacher architecture {type(unet).__name__}: no cross-attention")


class _PromptCache:
    """Prompt conditionings, each caption encoded once (captions repeat; the text encoders are frozen)."""

    def __init__(self, pipe: Any, device: torch.device):
        self.pipe, self.device = pipe, device
        self.cache: dict[str, TextConditioning] = {}

    def __call__(self, captions: list[str]) -> TextConditioning:
        missing = [c for c in dict.fromkeys(captions) if c not in self.cache]
        if missing:
            with torch.no_grad():
                cond = encode(self.pipe, missing, self.device).detach()
            self.cache.update((c, cond[i]) for i, c in enumerate(missing))
        return TextConditioning.cat([self.cache[c] for c in captions])


class LCMStep(TrainingStep):
    """One consistency-distillation step (the recipe above) for :func:`hubkit.training.run_training`. The
    EMA target network θ⁻ is state the checkpoints carry; micro-batch ``index`` reads batch ``index`` of the
    data, so a resumed run sees the batches an uninterrupted one would, and each of several processes its
    own."""

    def __init__(
        self,
        pipe: Any,
        config: LCMLoRAConfig,
        batches: Iterator[Batch] | None,
        reward: Reward | None,
        data: ImageCaptions | None = None,
    ):
        self.pipe, self.config, self.given_batches, self.reward = pipe, config, batches, reward
        self.data = data
        self.position = 0  # the index of the next batch a caller's iterator yields
        self.description = f"{config.variant.upper()} distillation"
        self.has_lora = False
        self.ema: list[torch.Tensor] | None = None

    def setup(self, device: torch.device) -> None:
        from diffusers import DDPMScheduler

        pipe, config = self.pipe, self.config
        self.device = device
        torch.manual_seed(config.seed)  # the LoRA's init
        self.unet, self.vae = pipe.unet.to(device), pipe.vae.to(device).eval().requires_grad_(False)
        move_text_encoders(pipe, device)
        self.params = self._add_lora()
        # The target network θ⁻: an EMA of the LoRA (the LCM paper) or, with ema_decay 0, the online LoRA
        # itself under no_grad (LCM-LoRA's script, which saves the memory of a second UNet).
        self.ema = [p.detach().clone() for p in self.params] if config.ema_decay else None
        noise = DDPMScheduler.from_config(pipe.scheduler.config)
        self.kind = noise.config.prediction_type
        self.alphas_cumprod = noise.alphas_cumprod.to(device)
        N = config.num_ddim_timesteps
        self.skip = len(self.alphas_cumprod) // N
        self.grid = torch.arange(1, N + 1, device=device) * self.skip - 1  # {T/N − 1, …, T − 1}
        # ᾱ one grid point lower
        self.alpha_prev = torch.cat([self.alphas_cumprod[:1], self.alphas_cumprod[self.grid[:-1]]])
        if config.variant == "rg-lcd" and self.reward is None:
            from hubkit.world.judge import load_judge

            self.reward = judge_reward(load_judge(device=device))
        self.prompts = _PromptCache(pipe, device)
        # The teacher's unconditional branch as its pipeline guides: the empty prompt, or zeros on SDXL (as
        # diffusers' SDXL LCM-LoRA script does); SDXL's time ids are the conditional rows'.
        with torch.no_grad():
            self.uncond = unconditional(pipe, device).detach()

    def _add_lora(self) -> list[torch.nn.Parameter]:
        from peft import LoraConfig

        unet, config = self.unet, self.config
        unet.requires_grad_(False)
        if ADAPTER_NAME in (getattr(unet, "peft_config", None) or {}):
            raise DistillError(f"the UNet already has an adapter named {ADAPTER_NAME!r}; unload it first")
        lora = LoraConfig(
            r=config.rank,
            lora_alpha=config.alpha,
            target_modules=list(config.target_modules),
            init_lora_weights=True,
        )
        try:
            unet.add_adapter(lora, adapter_name=ADAPTER_NAME)
        except ValueError as err:
            raise DistillError(f"cannot put a LoRA on this UNet: {err}") from err
        self.has_lora = True
        unet.set_adapter(ADAPTER_NAME)
        unet.train()
        params = [p for n, p in unet.named_parameters() if "lora_" in n and f".{ADAPTER_NAME}." in n]
        for p in params:
            p.requires_grad_(True)
        return params

    def parameters(self) -> list[torch.nn.Parameter]:
        return self.params

    def abort(self) -> None:
        if self.has_lora:
            remove_lora(self.unet)  # the teacher as it was

    def batch(self, index: int) -> Batch:
        """Batch ``index``: drawn directly from the dataset or the world; a caller's iterator is read
        forward to it (indices only grow: the batches of earlier steps, or of the other processes, are
        skipped)."""
        config = self.config
        if self.given_batches is None and self.data is not None:
            return caption_batch(self.data, config.batch_size, config.seed, index)
        if self.given_batches is None:
            return shapes_batch(config.batch_size, config.seed, self.vae.config.sample_size, index)
        for _ in range(index - self.position):
            next(self.given_batches)
        self.position = index + 1
        return next(self.given_batches)

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return {f"ema.{i}": t for i, t in enumerate(self.ema or [])}

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        if self.ema is None:
            return super().load_state_tensors(tensors)
        with torch.no_grad():
            for i, target in enumerate(self.ema):
                target.copy_(tensors[f"ema.{i}"])

    def after_update(self, step: int) -> None:
        if self.ema is not None:
            with torch.no_grad():
                for target, online in zip(self.ema, self.params, strict=True):
                    target.lerp_(online, 1 - self.config.ema_decay)

    def _target(self, z_s, t_s, t_e, n, emb, w, a_s, s_s) -> torch.Tensor:
        """f_θ⁻ at the teacher's one-step solution ẑ_{t_e} (no gradient): teacher guided by ω, then θ⁻."""
        unet, kind, b = self.unet, self.kind, z_s.shape[0]
        z_both = torch.cat([z_s, z_s])
        cond_both = TextConditioning.cat([emb, self.uncond.expand(b)])
        unet.disable_adapters()  # the teacher is the frozen base
        try:
            both = unet(z_both, torch.cat([t_s, t_s]), **unet_kwargs(self.pipe, cond_both, z_both)).sample
        finally:
            unet.enable_adapters()
        x0_c, eps_c = _x0_and_eps(both[:b], z_s, a_s, s_s, kind)
        x0_u, eps_u = _x0_and_eps(both[b:], z_s, a_s, s_s, kind)
        x0 = x0_c + w * (x0_c - x0_u)
        eps_hat = eps_c + w * (eps_c - eps_u)
        a_prev = _bcast(self.alpha_prev[n])
        z_e = a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps_hat
        a_e, s_e = _bcast(self.alphas_cumprod[t_e].sqrt()), _bcast((1 - self.alphas_cumprod[t_e]).sqrt())
        with _weights_swapped(self.params, self.ema):
            target_out = unet(z_e, t_e, **unet_kwargs(self.pipe, emb, z_e)).sample
        x0_target, _ = _x0_and_eps(target_out, z_e, a_e, s_e, kind)
        c_skip_e, c_out_e = (_bcast(c) for c in boundary_scalings(t_e, self.config.timestep_scaling))
        return c_skip_e * z_e + c_out_e * x0_target

    def __call__(self, ctx: StepContext) -> dict[str, torch.Tensor]:
        config, device, generator = self.config, self.device, ctx.generator
        images, captions, attributes = self.batch(ctx.index)
        b = images.shape[0]
        sf = self.vae.config.scaling_factor
        with torch.no_grad():
            z0 = self.vae.encode(images.to(device)).latent_dist.sample(generator=generator) * sf
        emb = self.prompts(captions)
        n = torch.randint(0, config.num_ddim_timesteps, (b,), generator=generator).to(device)
        t_s = self.grid[n]
        t_e = (t_s - self.skip).clamp(min=0)
        eps = torch.randn(z0.shape, generator=generator).to(device)
        a_s, s_s = _bcast(self.alphas_cumprod[t_s].sqrt()), _bcast((1 - self.alphas_cumprod[t_s]).sqrt())
        z_s = a_s * z0 + s_s * eps
        w = _bcast(config.w_min + (config.w_max - config.w_min) * torch.rand(b, generator=generator)).to(
            device
        )
        with torch.no_grad():
            target = self._target(z_s, t_s, t_e, n, emb, w, a_s, s_s)
        # The student runs after the target: swapping θ⁻ in place would break the student's saved graph.
        out = self.unet(z_s, t_s, **unet_kwargs(self.pipe, emb, z_s)).sample
        x0_student, _ = _x0_and_eps(out, z_s, a_s, s_s, self.kind)
        c_skip_s, c_out_s = (_bcast(c) for c in boundary_scalings(t_s, config.timestep_scaling))
        student = c_skip_s * z_s + c_out_s * x0_student
        diff = (student.float() - target.float()) ** 2
        loss = ((diff + config.huber_c**2).sqrt() - config.huber_c).mean()
        if config.variant != "rg-lcd":
            return {"loss": loss}
        assert self.reward is not None
        decoded = self.vae.decode(student / sf).sample.add(1).div(2).clamp(0, 1)
        r = self.reward(decoded, attributes).mean()
        return {"loss": loss - config.reward_scale * r, "reward": r}


def _bcast(x: torch.Tensor) -> torch.Tensor:
    return x.float().view(-1, 1, 1, 1)


def distill_lcm_lora(
    pipe: Any,
    config: LCMLoRAConfig,
    *,
    batches: Iterator[Batch] | None = None,
    reward: Reward | None = None,
    endpoint: str | None = None,
    token: str | None = None,
    **loop: Any,
) -> DistillResult:
    """Distil ``pipe`` (the teacher) into a LoRA on its own UNet, on the shared loop; returns the UNet with
    the LoRA attached (a failed run takes it off again).

    ``batches`` yields (images in [-1, 1], captions, attributes); by default ``config.dataset`` (a local
    folder, or a dataset repo on the Hub at ``endpoint``), else the reference world's training split.
    ``reward`` (rg-lcd) scores decoded images in [0, 1]; the world's judge by default. ``loop``:
    :func:`hubkit.training.run_training`'s options (``progress``, ``on_step``, and with ``out``, the artifact
    folder the caller writes, ``checkpoint_every`` and ``resume``: a resumed run gives bit for bit the
    uninterrupted run's LoRA, same seed, on a CPU).
    """
    _check(pipe)
    data = None
    if batches is None and config.dataset.strip():
        data = load_distillation_data(pipe, config, endpoint, token)
    step = LCMStep(pipe, config, batches, reward, data)
    run = run_training(step, **settings_from_config(config, schedule="constant"), **loop)
    pipe.unet.eval()
    return DistillResult(pipe.unet, config, run.seconds, run.history["loss"], run.history.get("reward", []))


def load_distillation_data(
    pipe: Any, config: LCMLoRAConfig, endpoint: str | None = None, token: str | None = None
) -> ImageCaptions:
    """``config.dataset`` in memory at the teacher's resolution (or ``config.resolution``)."""
    size = pipeline_resolution(pipe, config.resolution)
    columns = (config.image_column, config.caption_column, size)
    try:
        return load_image_captions(
            config.dataset, config.dataset_config, config.split, *columns, endpoint=endpoint, token=token
        )
    except FineTuneError as err:
        raise DistillError(str(err)) from err
