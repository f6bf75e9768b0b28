"""The SPM training recipe (data-free: text embeddings and the model's own samples only), on ``accelerate``.

One step, for a batch of x_t:

1. x_t is sampled from noise by k DDIM steps (k ~ U{1..sampling_steps-1}) **with the SPM on** and
   classifier-free guidance on the target concept, as the official code (and ESD/LECO) does.
2. Frozen targets with every membrane off: ε(x_t, c_tar) and ε(x_t, c_sur).
3. Erasure loss: ‖ε_SPM(x_t, c_tar) − [ε(x_t, c_sur) − η·(ε(x_t, c_tar) − ε(x_t, c_sur))]‖².
4. Latent anchoring: ‖ε_SPM(x_t, a) − ε(x_t, a)‖² on the empty prompt, the concepts to preserve (if any)
   and K random text-embedding anchors
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

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

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
) -> torch.Tensor:
    """``count`` prompts of 1–3 random vocabulary words, encoded: anchors on the text encoder's own manifold,
    accepted with probability 1 − cos(anchor, target) like the Gaussian ones."""
    anchors: list[torch.Tensor] = []
    flat_target = target.flatten().float().cpu()
    while len(anchors) < count:
        emb = _encode(pipe, [random_phrase(words, generator)], device)[0]
        accept = 1.0 - F.cosine_similarity(flat_target, emb.flatten().float().cpu(), dim=0).clamp(min=0.0)
        if torch.rand((), generator=generator) < accept:
            anchors.append(emb)
    return torch.stack(anchors)


def _encode(pipe: Any, texts: list[str], device: torch.device) -> torch.Tensor:
    with torch.no_grad():
        return pipe.encode_prompt(texts, device, 1, False)[0].detach()


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
        if pipe.text_encoder is not None:
            pipe.text_encoder.to(device)
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
        self.targets = _encode(pipe, [p for p, _ in self.pairs], device)  # [C·T, L, D]
        self.surrogates = _encode(pipe, [s for _, s in self.pairs], device)
        self.empty = _encode(pipe, [""], device)[0]
        preserved = [t.format(c) for c in config.preserve for t in config.templates]
        no_rows = self.empty.new_zeros((0, *self.empty.shape))
        self.preserved = _encode(pipe, preserved, device) if preserved else no_rows
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

    def _eps(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return self.unet(x, t, encoder_hidden_states=cond).sample

    def _x_t(self, cond: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
        """x_t after ``k`` DDIM steps from noise, with the SPM on, guided towards the target."""
        config, sampler = self.config, self.sampler
        shape = (config.batch_size, self.unet.config.in_channels, self.size, self.size)
        x = (
            torch.randn(shape, generator=generator).to(self.device, self.unet.dtype)
            * sampler.init_noise_sigma
        )
        uncond = self.empty.expand_as(cond)
        for t in sampler.timesteps[:k]:
            e_unc, e_cond = self._eps(torch.cat([x, x]), t, torch.cat([uncond, cond])).chunk(2)
            x = sampler.step(e_unc + config.sampling_guidance * (e_cond - e_unc), t, x).prev_sample
        return x

    def _anchors(self, target: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """The empty prompt, the preserved concepts and ``anchors_per_step`` random anchors (norm of
        ``target``)."""
        config = self.config
        if config.anchor_source == "vocabulary":
            randoms = vocabulary_anchors(
                self.pipe, self.words, target, config.anchors_per_step, generator, self.device
            )
        else:
            randoms = random_anchors(target.cpu(), config.anchors_per_step, generator).to(self.device)
        return torch.cat([self.empty[None], self.preserved, randoms])

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
                frozen = self._eps(torch.cat([x, x]), t, torch.cat([cond, self.surrogates[rows]]))
            e_tar, e_sur = frozen.chunk(2)
            goal = e_sur - config.erasing_scale * (e_tar - e_sur)
        loss_erase = F.mse_loss(self._eps(x, t, cond).float(), goal.float())
        loss_anchor = torch.zeros((), device=self.device)
        if config.anchoring_strength > 0:
            # The anchors are shared by the batch's rows; their norm follows the first row's target.
            anchors = self._anchors(self.targets[rows[0]], generator)
            x_rep = x.repeat_interleave(anchors.shape[0], dim=0)
            a_rep = anchors.repeat(config.batch_size, 1, 1)
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
