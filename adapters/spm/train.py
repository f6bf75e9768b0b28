"""The SPM training recipe (data-free: text embeddings and the model's own samples only), on ``accelerate``.

One step, for a batch of x_t:

1. x_t is sampled from noise by k DDIM steps (k ~ U{1..sampling_steps-1}) **with the SPM on** and
   classifier-free guidance on the target concept, as the official code (and ESD/LECO) does.
2. Frozen targets with every membrane off: ε(x_t, c_tar) and ε(x_t, c_sur).
3. Erasure loss: ‖ε_SPM(x_t, c_tar) − [ε(x_t, c_sur) − η·(ε(x_t, c_tar) − ε(x_t, c_sur))]‖².
4. Latent anchoring: ‖ε_SPM(x_t, a) − ε(x_t, a)‖² on the unconditional branch (the empty prompt; zeros on
   SDXL, as its pipeline guides), the concepts to preserve (if any) and K random text-embedding anchors
   (Gaussian directions, accepted with probability 1 − cos(a, c_tar), rescaled to the target's norm ±20 %).

Every UNet call is conditioned through :mod:`hubkit.conditioning` (SDXL: pooled embedding and time ids).

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

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from hubkit.conditioning import TextConditioning, encode, move_text_encoders, unconditional, unet_kwargs
from hubkit.training import StepContext, TrainingStep, run_training, settings_from_config
from hubkit.vocabulary import random_phrase, vocabulary_words

from .config import SPMConfig
from .model import SPMNetwork, check_pipeline

__all__ = ["SPMStep", "TrainResult", "random_anchors", "train_spm"]

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


def vocabulary_anchors(
    pipe: Any,
    words: list[str],
    target: torch.Tensor,
    count: int,
    generator: torch.Generator,
    device: torch.device,
) -> TextConditioning:
    """``count`` prompts of 1–3 random vocabulary words, encoded: anchors on the text encoder's own manifold,
    accepted with probability 1 − cos(anchor, target) (``target``: hidden states) as Gaussian ones are."""
    anchors: list[TextConditioning] = []
    flat_target = target.flatten().float().cpu()
    while len(anchors) < count:
        cond = _encode(pipe, [random_phrase(words, generator)], device)
        flat = cond.embeds[0].flatten().float().cpu()
        accept = 1.0 - F.cosine_similarity(flat_target, flat, dim=0).clamp(min=0.0)
        if torch.rand((), generator=generator) < accept:
            anchors.append(cond)
    return TextConditioning.cat(anchors)


def _encode(pipe: Any, texts: list[str], device: torch.device) -> TextConditioning:
    with torch.no_grad():
        return encode(pipe, texts, device).detach()


class SPMStep(TrainingStep):
    """One SPM training step (the recipe above) for :func:`hubkit.training.run_training`; every random number
    comes from the loop's per-micro-batch generator."""

    def __init__(self, pipe: Any, config: SPMConfig):
        self.pipe, self.config = pipe, config
        self.description = f"SPM {', '.join(config.concepts)}"
        self.network: SPMNetwork | None = None

    def setup(self, device: torch.device) -> None:
        from diffusers import DDIMScheduler

        pipe, config = self.pipe, self.config
        self.device = device
        self.unet = unet = pipe.unet.to(device)
        unet.requires_grad_(False)
        unet.eval()
        move_text_encoders(pipe, device)
        torch.manual_seed(config.seed)  # the membranes' Kaiming init
        self.network = SPMNetwork(unet, config.target_blocks)
        self.network.add_adapter(ADAPTER_NAME, config)
        # Each concept in each template, paired with the surrogate in the same template: the erasure direction
        # is then the concept's alone, not the template's words too.
        self.pairs = [
            (t.format(c), " ".join(t.format(config.surrogate).split()))
            for c in config.concepts
            for t in config.templates
        ]
        self.targets = _encode(pipe, [p for p, _ in self.pairs], device)  # C·T rows
        self.surrogates = _encode(pipe, [s for _, s in self.pairs], device)
        # The unconditional branch as the pipeline's guidance makes it (SDXL: zeros): sampling subtracts it,
        # and anchoring it keeps guidance working.
        with torch.no_grad():
            self.empty = unconditional(pipe, device).detach()
        # Gaussian anchors are points in hidden-state space only: their pooled embedding (SDXL) is the empty
        # prompt's, a neutral text.
        self.blank_pooled = None if self.empty.pooled is None else _encode(pipe, [""], device).pooled
        preserved = [t.format(c) for c in config.preserve for t in config.templates]
        self.preserved = _encode(pipe, preserved, device) if preserved else self.empty[:0]
        self.sampler = DDIMScheduler.from_config(pipe.scheduler.config)
        self.sampler.set_timesteps(config.sampling_steps, device=device)
        self.words = (
            vocabulary_words(pipe.tokenizer, config.concepts) if config.anchor_source == "vocabulary" else []
        )
        self.size = (
            config.resolution or unet.config.sample_size * pipe.vae_scale_factor
        ) // pipe.vae_scale_factor

    def parameters(self) -> list[torch.nn.Parameter]:
        assert self.network is not None
        return self.network.trainable_parameters(ADAPTER_NAME)

    def abort(self) -> None:
        if self.network is not None:
            self.network.detach_hooks()  # the base UNet as it was

    def _eps(self, x: torch.Tensor, t: torch.Tensor, cond: TextConditioning) -> torch.Tensor:
        return self.unet(x, t, **unet_kwargs(self.pipe, cond, x)).sample

    def _x_t(self, cond: TextConditioning, k: int, generator: torch.Generator) -> torch.Tensor:
        """x_t after ``k`` DDIM steps from noise, with the SPM on, guided towards the target."""
        config, sampler = self.config, self.sampler
        shape = (config.batch_size, self.unet.config.in_channels, self.size, self.size)
        x = (
            torch.randn(shape, generator=generator).to(self.device, self.unet.dtype)
            * sampler.init_noise_sigma
        )
        both = TextConditioning.cat([self.empty.expand(len(cond)), cond])
        for t in sampler.timesteps[:k]:
            e_unc, e_cond = self._eps(torch.cat([x, x]), t, both).chunk(2)
            x = sampler.step(e_unc + config.sampling_guidance * (e_cond - e_unc), t, x).prev_sample
        return x

    def _anchors(self, target: TextConditioning, generator: torch.Generator) -> TextConditioning:
        """The unconditional branch, the preserved concepts and ``anchors_per_step`` random anchors (norm of
        ``target``, one row)."""
        config = self.config
        if config.anchor_source == "vocabulary":
            randoms = vocabulary_anchors(
                self.pipe, self.words, target.embeds[0], config.anchors_per_step, generator, self.device
            )
        else:
            embeds = random_anchors(target.embeds[0].cpu(), config.anchors_per_step, generator)
            pooled = None if self.blank_pooled is None else self.blank_pooled.expand(len(embeds), -1)
            randoms = TextConditioning(embeds.to(self.device), pooled)
        return TextConditioning.cat([self.empty, self.preserved, randoms])

    def __call__(self, ctx: StepContext) -> dict[str, torch.Tensor]:
        config, network, generator = self.config, self.network, ctx.generator
        assert network is not None
        rows = torch.randint(len(self.pairs), (config.batch_size,), generator=generator).to(self.device)
        cond = self.targets[rows]
        k = int(torch.randint(0, config.sampling_steps, (), generator=generator))
        with torch.no_grad():
            x = self._x_t(cond, k, generator)
            t = self.sampler.timesteps[k]
            with network.disabled():
                frozen = self._eps(torch.cat([x, x]), t, TextConditioning.cat([cond, self.surrogates[rows]]))
            e_tar, e_sur = frozen.chunk(2)
            goal = e_sur - config.erasing_scale * (e_tar - e_sur)
        loss_erase = F.mse_loss(self._eps(x, t, cond).float(), goal.float())
        loss_anchor = torch.zeros((), device=self.device)
        if config.anchoring_strength > 0:
            # The anchors are shared by the batch's rows; their norm follows the first row's target.
            anchors = self._anchors(self.targets[rows[:1]], generator)
            x_rep = x.repeat_interleave(len(anchors), dim=0)
            a_rep = anchors.repeat(config.batch_size)
            with torch.no_grad(), network.disabled():
                frozen_anchor = self._eps(x_rep, t, a_rep)
            loss_anchor = F.mse_loss(self._eps(x_rep, t, a_rep).float(), frozen_anchor.float())
        loss = loss_erase + config.anchoring_strength * loss_anchor
        return {"loss": loss, "erasure": loss_erase, "anchor": loss_anchor}


def train_spm(pipe: Any, config: SPMConfig, **loop: Any) -> TrainResult:
    """Train one SPM erasing ``config.concepts`` from ``pipe``'s UNet on the shared loop; returns the network
    (attached; a failed run takes it off again). ``loop``: :func:`hubkit.training.run_training`'s options
    (``progress``, ``on_step``, and with ``out``, the artifact folder the caller writes, ``checkpoint_every``
    and ``resume``: a resumed run gives bit for bit the uninterrupted run's SPM, same seed, on a CPU)."""
    check_pipeline(pipe)
    step = SPMStep(pipe, config)
    run = run_training(step, **settings_from_config(config, schedule="cosine"), **loop)
    assert step.network is not None
    h = run.history
    return TrainResult(step.network, config, run.seconds, h["loss"], h["erasure"], h["anchor"])
