"""The SPM training recipe (data-free: text embeddings and the model's own samples only), on ``accelerate``.

One step, for a batch of x_t:

1. x_t is sampled from noise by k DDIM steps (k ~ U{1..sampling_steps-1}) **with the SPM on** and
   classifier-free guidance on the target concept, as the official code (and ESD/LECO) does.
2. Frozen targets with every membrane off: ε(x_t, c_tar) and ε(x_t, c_sur).
3. Erasure loss: ‖ε_SPM(x_t, c_tar) − [ε(x_t, c_sur) − η·(ε(x_t, c_tar) − ε(x_t, c_sur))]‖².
4. Latent anchoring: ‖ε_SPM(x_t, a) − ε(x_t, a)‖² on the empty prompt plus K random text-embedding anchors
   (Gaussian directions, accepted with probability 1 − cos(a, c_tar), rescaled to the target's norm ±20 %).

Official quirks, decided:

- kept: x_t sampled with the adapter on (it is what makes erasure hold along the SPM's own trajectories);
  ESD-style target; anchor norms and the rejection rule.
- changed: the loss timestep is the exact timestep the k DDIM steps reached (the official code maps k to
  ``timesteps_1000[int(k·1000/30)]``, only roughly the same noise level).
- changed: the anchor batch is the empty prompt plus K random anchors, each regressed once (the official batch
  layout regresses "" twice and only 2 of its 4 random anchors, by an indexing accident). Anchoring "" on
  purpose matters: classifier-free guidance subtracts the unconditional prediction on every prompt.
- changed: a batch of x_t per step and AdamW (not AdamW8bit), so the recipe needs no bitsandbytes and uses the
  CPU's vector units; dynamic resolution is off (the native latent size is used unless ``resolution`` is set).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .config import SPMConfig
from .model import SPMNetwork, check_pipeline

__all__ = ["TrainResult", "random_anchors", "train_spm"]

ADAPTER_NAME = "spm"


@dataclass
class TrainResult:
    network: SPMNetwork
    config: SPMConfig
    seconds: float
    losses: list[float]  # per step: total loss
    erasure_losses: list[float]
    anchor_losses: list[float]


def random_anchors(target: torch.Tensor, count: int, generator: torch.Generator) -> torch.Tensor:
    """``count`` random points in text-embedding space, unlike ``target`` ([L, D]), of its norm ±20 %."""
    anchors = []
    flat_target = target.flatten().float()
    norm = flat_target.norm()
    while len(anchors) < count:
        z = torch.randn(target.shape, generator=generator, device=target.device).flatten()
        z = z / z.norm()
        accept = 1.0 - F.cosine_similarity(flat_target, z, dim=0).clamp(min=0.0)
        if torch.rand((), generator=generator, device=target.device) < accept:
            scale = 0.8 + 0.4 * torch.rand((), generator=generator, device=target.device)
            anchors.append((z * norm * scale).reshape(target.shape))
    return torch.stack(anchors).to(target.dtype)


def vocabulary_words(tokenizer: Any, exclude: list[str]) -> list[str]:
    """Whole alphabetic words of the tokenizer's vocabulary, minus the words of the concepts to erase."""
    banned = {w.lower() for text in exclude for w in text.split()}
    vocab = tokenizer.get_vocab() if hasattr(tokenizer, "get_vocab") else {}
    words = sorted(
        w.removesuffix("</w>")
        for w in vocab
        if w.removesuffix("</w>").isalpha()
        and w.removesuffix("</w>").isascii()
        and len(w.removesuffix("</w>")) >= 3
    )
    return [w for w in dict.fromkeys(words) if w.lower() not in banned]


def vocabulary_anchors(
    pipe: Any,
    words: list[str],
    target: torch.Tensor,
    count: int,
    generator: torch.Generator,
    device: torch.device,
) -> torch.Tensor:
    """``count`` prompts of 1–3 random vocabulary words, encoded: anchors on the text encoder's own manifold,
    accepted with probability 1 − cos(anchor, target) like the Gaussian ones."""
    anchors: list[torch.Tensor] = []
    flat_target = target.flatten().float().cpu()
    while len(anchors) < count:
        n = int(torch.randint(1, 4, (), generator=generator))
        picks = torch.randint(len(words), (n,), generator=generator).tolist()
        emb = _encode(pipe, [" ".join(words[i] for i in picks)], device)[0]
        accept = 1.0 - F.cosine_similarity(flat_target, emb.flatten().float().cpu(), dim=0).clamp(min=0.0)
        if torch.rand((), generator=generator) < accept:
            anchors.append(emb)
    return torch.stack(anchors)


def _encode(pipe: Any, texts: list[str], device: torch.device) -> torch.Tensor:
    with torch.no_grad():
        return pipe.encode_prompt(texts, device, 1, False)[0].detach()


def train_spm(
    pipe: Any,
    config: SPMConfig,
    *,
    accelerator: Any = None,
    progress: bool = True,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
) -> TrainResult:
    """Train one SPM erasing ``config.concepts`` from ``pipe``'s UNet; returns the network (attached)."""
    from accelerate import Accelerator
    from diffusers import DDIMScheduler
    from diffusers.optimization import get_cosine_schedule_with_warmup

    check_pipeline(pipe)
    accelerator = accelerator or Accelerator()
    device = accelerator.device
    unet = pipe.unet.to(device)
    unet.requires_grad_(False)
    unet.eval()
    if pipe.text_encoder is not None:
        pipe.text_encoder.to(device)
    torch.manual_seed(config.seed)  # the membranes' Kaiming init
    network = SPMNetwork(unet, config.target_blocks)
    network.add_adapter(ADAPTER_NAME, config)
    params = network.trainable_parameters(ADAPTER_NAME)
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=0.0)
    lr_schedule = get_cosine_schedule_with_warmup(optimizer, config.warmup_steps, config.steps)
    optimizer, lr_schedule = accelerator.prepare(optimizer, lr_schedule)

    # Each concept in each template, paired with the surrogate in the same template: the erasure direction is
    # then the concept's alone, not the template's words too.
    pairs = [
        (t.format(c), " ".join(t.format(config.surrogate).split()))
        for c in config.concepts
        for t in config.templates
    ]
    targets = _encode(pipe, [p for p, _ in pairs], device)  # [C·T, L, D]
    surrogates = _encode(pipe, [s for _, s in pairs], device)
    empty = _encode(pipe, [""], device)[0]
    sampler = DDIMScheduler.from_config(pipe.scheduler.config)
    sampler.set_timesteps(config.sampling_steps, device=device)
    timesteps = sampler.timesteps
    words = vocabulary_words(pipe.tokenizer, config.concepts) if config.anchor_source == "vocabulary" else []
    size = (config.resolution or unet.config.sample_size * pipe.vae_scale_factor) // pipe.vae_scale_factor
    generator = torch.Generator(device="cpu").manual_seed(config.seed + 1)

    def eps(x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return unet(x, t, encoder_hidden_states=cond).sample

    losses, erasure_losses, anchor_losses = [], [], []
    started = time.perf_counter()
    bar = tqdm(
        range(config.steps),
        desc=f"SPM {', '.join(config.concepts)}",
        disable=not progress or not accelerator.is_local_main_process,
    )
    for step in bar:
        rows = torch.randint(len(pairs), (config.batch_size,), generator=generator)
        cond = targets[rows.to(device)]
        k = int(torch.randint(0, config.sampling_steps, (), generator=generator))
        x = torch.randn((config.batch_size, unet.config.in_channels, size, size), generator=generator)
        x = x.to(device, unet.dtype) * sampler.init_noise_sigma
        with torch.no_grad():  # x_t from the model being trained (SPM on), guided towards the target
            uncond = empty.expand_as(cond)
            for t in timesteps[:k]:
                both = eps(torch.cat([x, x]), t, torch.cat([uncond, cond]))
                e_unc, e_cond = both.chunk(2)
                x = sampler.step(e_unc + config.sampling_guidance * (e_cond - e_unc), t, x).prev_sample
            t = timesteps[k]
            with network.disabled():
                frozen = eps(torch.cat([x, x]), t, torch.cat([cond, surrogates[rows.to(device)]]))
            e_tar, e_sur = frozen.chunk(2)
            goal = e_sur - config.erasing_scale * (e_tar - e_sur)
        loss_erase = F.mse_loss(eps(x, t, cond).float(), goal.float())
        loss = loss_erase
        loss_anchor = torch.zeros((), device=device)
        if config.anchoring_strength > 0:
            # The anchors are shared by the batch's rows; their norm follows the first row's target.
            if config.anchor_source == "vocabulary":
                randoms = vocabulary_anchors(
                    pipe, words, targets[rows[0]], config.anchors_per_step, generator, device
                )
            else:
                randoms = random_anchors(targets[rows[0]].cpu(), config.anchors_per_step, generator).to(
                    device
                )
            anchors = torch.cat([empty[None], randoms])
            n = anchors.shape[0]
            x_rep = x.repeat_interleave(n, dim=0)
            a_rep = anchors.repeat(config.batch_size, 1, 1)
            with torch.no_grad(), network.disabled():
                frozen_anchor = eps(x_rep, t, a_rep)
            loss_anchor = F.mse_loss(eps(x_rep, t, a_rep).float(), frozen_anchor.float())
            loss = loss + config.anchoring_strength * loss_anchor
        optimizer.zero_grad(set_to_none=True)
        accelerator.backward(loss)
        if accelerator.num_processes > 1:  # the membranes live outside any prepared module: sync by hand
            for p in params:
                p.grad = accelerator.reduce(p.grad, reduction="mean")
        optimizer.step()
        lr_schedule.step()
        losses.append(float(loss.detach()))
        erasure_losses.append(float(loss_erase.detach()))
        anchor_losses.append(float(loss_anchor.detach()))
        bar.set_postfix(erase=f"{erasure_losses[-1]:.4f}", anchor=f"{anchor_losses[-1]:.2e}")
        if on_step is not None:
            on_step(step, {"loss": losses[-1], "erasure": erasure_losses[-1], "anchor": anchor_losses[-1]})
    for p in params:
        p.requires_grad_(False)
    return TrainResult(network, config, time.perf_counter() - started, losses, erasure_losses, anchor_losses)
