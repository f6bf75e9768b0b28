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

``rg-lcd`` adds −reward_scale·R(decode(f_θ(z_s))): a reward on the student's *one-step* output, as RG-LCD
does (no backpropagation through multi-step sampling). Here R is the reference world's judge: the mean
log-probability of the prompted attributes (shape and colour), differentiable through the VAE decoder.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from tqdm.auto import tqdm

from .config import LCMLoRAConfig

__all__ = [
    "ADAPTER_NAME",
    "DistillError",
    "DistillResult",
    "boundary_scalings",
    "distill_lcm_lora",
    "judge_reward",
    "remove_lora",
    "shapes_batches",
]

ADAPTER_NAME = "lcm"
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


def shapes_batches(batch_size: int, seed: int, size: int = 32) -> Iterator[Batch]:
    """Endless batches of the reference world's training split (what ``tiny-sd-shapes`` learnt from)."""
    from hubkit.world.shapes import CAPTION_TEMPLATES, render_batch, sample_specs

    step = 0
    while True:
        specs = sample_specs(batch_size, seed=seed * 1_000_003 + step)
        images = torch.from_numpy(render_batch(specs, size)).permute(0, 3, 1, 2).float().div(127.5).sub(1)
        captions = [s.caption(int(s.seed) % len(CAPTION_TEMPLATES)) for s in specs]
        yield images, captions, [{"shape": s.shape, "colour": s.colour} for s in specs]
        step += 1


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
    """Prompt embeddings, each caption encoded once (captions repeat; the text encoder is frozen)."""

    def __init__(self, pipe: Any, device: torch.device):
        self.pipe, self.device, self.cache = pipe, device, {}

    def __call__(self, captions: list[str]) -> torch.Tensor:
        missing = [c for c in dict.fromkeys(captions) if c not in self.cache]
        if missing:
            with torch.no_grad():
                emb = self.pipe.encode_prompt(missing, self.device, 1, False)[0]
            self.cache.update(zip(missing, emb, strict=True))
        return torch.stack([self.cache[c] for c in captions])


def distill_lcm_lora(
    pipe: Any,
    config: LCMLoRAConfig,
    *,
    batches: Iterator[Batch] | None = None,
    reward: Reward | None = None,
    accelerator: Any = None,
    progress: bool = True,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
) -> DistillResult:
    """Distil ``pipe`` (the teacher) into a LoRA on its own UNet; returns the UNet with the LoRA attached.

    ``batches`` yields (images in [-1, 1], captions, attributes); the reference world's training split by
    default. ``reward`` (rg-lcd) scores decoded images in [0, 1]; the world's judge by default.
    """
    from accelerate import Accelerator
    from diffusers import DDPMScheduler
    from diffusers.optimization import get_constant_schedule_with_warmup
    from peft import LoraConfig

    _check(pipe)
    accelerator = accelerator or Accelerator()
    device = accelerator.device
    torch.manual_seed(config.seed)
    unet, vae = pipe.unet.to(device), pipe.vae.to(device).eval().requires_grad_(False)
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
    unet.set_adapter(ADAPTER_NAME)
    unet.train()
    params = [p for n, p in unet.named_parameters() if "lora_" in n and f".{ADAPTER_NAME}." in n]
    for p in params:
        p.requires_grad_(True)
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=0.0)
    # The target network θ⁻: an EMA of the LoRA (the LCM paper) or, with ema_decay 0, the online LoRA itself
    # under no_grad (LCM-LoRA's script, which saves the memory of a second UNet).
    ema = [p.detach().clone() for p in params] if config.ema_decay else None
    lr_schedule = get_constant_schedule_with_warmup(optimizer, config.warmup_steps)
    optimizer, lr_schedule = accelerator.prepare(optimizer, lr_schedule)

    noise = DDPMScheduler.from_config(pipe.scheduler.config)
    kind = noise.config.prediction_type
    alphas_cumprod = noise.alphas_cumprod.to(device)
    T, N = len(alphas_cumprod), config.num_ddim_timesteps
    skip = T // N
    grid = torch.arange(1, N + 1, device=device) * skip - 1  # {T/N − 1, …, T − 1}
    alpha_prev = torch.cat([alphas_cumprod[:1], alphas_cumprod[grid[:-1]]])  # ᾱ one grid point lower

    if config.variant == "rg-lcd" and reward is None:
        from hubkit.world.judge import load_judge

        reward = judge_reward(load_judge(device=device))
    batches = batches or shapes_batches(config.batch_size, config.seed, vae.config.sample_size)
    prompts = _PromptCache(pipe, device)
    uncond = prompts([""])[0]
    sf = vae.config.scaling_factor
    generator = torch.Generator(device="cpu").manual_seed(config.seed)

    def bcast(x: torch.Tensor) -> torch.Tensor:
        return x.float().view(-1, 1, 1, 1)

    losses: list[float] = []
    rewards: list[float] = []
    started = time.perf_counter()
    bar = tqdm(
        range(config.steps), desc=f"{config.variant.upper()} distillation", disable=not progress, leave=False
    )
    try:
        for step in bar:
            images, captions, attributes = next(batches)
            b = images.shape[0]
            with torch.no_grad():
                z0 = vae.encode(images.to(device)).latent_dist.sample(generator=None) * sf
            emb = prompts(captions)
            n = torch.randint(0, N, (b,), generator=generator).to(device)
            t_s = grid[n]
            t_e = (t_s - skip).clamp(min=0)
            eps = torch.randn(z0.shape, generator=generator).to(device)
            a_s, s_s = bcast(alphas_cumprod[t_s].sqrt()), bcast((1 - alphas_cumprod[t_s]).sqrt())
            z_s = a_s * z0 + s_s * eps
            w = bcast(config.w_min + (config.w_max - config.w_min) * torch.rand(b, generator=generator)).to(
                device
            )
            c_skip_s, c_out_s = (bcast(c) for c in boundary_scalings(t_s, config.timestep_scaling))
            c_skip_e, c_out_e = (bcast(c) for c in boundary_scalings(t_e, config.timestep_scaling))

            with torch.no_grad():
                unet.disable_adapters()  # the teacher is the frozen base
                try:
                    both = unet(
                        torch.cat([z_s, z_s]),
                        torch.cat([t_s, t_s]),
                        encoder_hidden_states=torch.cat([emb, uncond.expand_as(emb)]),
                    ).sample
                finally:
                    unet.enable_adapters()
                x0_c, eps_c = _x0_and_eps(both[:b], z_s, a_s, s_s, kind)
                x0_u, eps_u = _x0_and_eps(both[b:], z_s, a_s, s_s, kind)
                x0 = x0_c + w * (x0_c - x0_u)
                eps_hat = eps_c + w * (eps_c - eps_u)
                a_prev = bcast(alpha_prev[n])
                z_e = a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps_hat
                a_e, s_e = bcast(alphas_cumprod[t_e].sqrt()), bcast((1 - alphas_cumprod[t_e]).sqrt())
                with _weights_swapped(params, ema):
                    target_out = unet(z_e, t_e, encoder_hidden_states=emb).sample
                x0_target, _ = _x0_and_eps(target_out, z_e, a_e, s_e, kind)
                target = c_skip_e * z_e + c_out_e * x0_target

            # The student runs after the target: swapping θ⁻ in place would break the student's saved graph.
            x0_student, _ = _x0_and_eps(unet(z_s, t_s, encoder_hidden_states=emb).sample, z_s, a_s, s_s, kind)
            student = c_skip_s * z_s + c_out_s * x0_student
            diff = (student.float() - target.float()) ** 2
            loss = ((diff + config.huber_c**2).sqrt() - config.huber_c).mean()
            if config.variant == "rg-lcd":
                decoded = vae.decode(student / sf).sample.add(1).div(2).clamp(0, 1)
                r = reward(decoded, attributes).mean()
                loss = loss - config.reward_scale * r
                rewards.append(float(r.detach()))
            optimizer.zero_grad(set_to_none=True)
            accelerator.backward(loss)
            if accelerator.num_processes > 1:  # the LoRA lives in an unprepared module: sync by hand
                for p in params:
                    p.grad = accelerator.reduce(p.grad, reduction="mean")
            accelerator.clip_grad_norm_(params, config.max_grad_norm)
            optimizer.step()
            lr_schedule.step()
            if ema is not None:
                with torch.no_grad():
                    for target, online in zip(ema, params, strict=True):
                        target.lerp_(online, 1 - config.ema_decay)
            losses.append(float(loss.detach()))
            bar.set_postfix(loss=f"{losses[-1]:.4f}", **({"reward": f"{rewards[-1]:.3f}"} if rewards else {}))
            if on_step is not None:
                on_step(step, {"loss": losses[-1], **({"reward": rewards[-1]} if rewards else {})})
    except BaseException:
        remove_lora(unet)  # a failed run leaves the teacher as it was
        raise
    for p in params:
        p.requires_grad_(False)
    unet.eval()
    return DistillResult(unet, config, time.perf_counter() - started, losses, rewards)
