"""Adversarial prompts against concept erasure, with gradients through the pipeline as it is loaded.

Both attacks minimise the erased pipeline's denoising loss on real images of the concept (UnlearnDiffAtk,
Zhang et al., ECCV 2024): a conditioning under which the UNet predicts the noise of concept images well is
one under which it draws the concept again. They start from the attacked prompt itself and spend a fixed,
seeded budget of optimisation steps:

- ``soft-prompt``: the text encoder's output (the embedding rows the cross-attention reads) optimised
  directly with Adam: the strongest attack, what a user with the weights can do;
- ``token``: ``tokens`` vocabulary words put in front of the prompt, searched by greedy coordinate gradient
  (Zou et al. 2023): the gradient on one-hot token inputs picks candidates, the loss picks the swap. The
  result is a prompt anyone could type.

The attacks are method-independent: the pipeline arrives with its method applied, and its ``encode_prompt``
is called for every conditioning, so per-prompt mechanisms (an SPM's facilitated transport) see the attack.
On SDXL the conditioning is the hidden states and the pooled embedding (:mod:`hubkit.conditioning`): the soft
prompt optimises both, and the token attack's gradient flows through both text encoders.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from hubkit.conditioning import TextConditioning, encode, text_encoders, unet_kwargs

__all__ = ["ATTACK_KINDS", "AttackResult", "AttackSpec", "attack_prompt"]

ATTACK_KINDS = ("soft-prompt", "token")


@dataclass(frozen=True)
class AttackSpec:
    """One attack of a suite group (``"attack": {...}`` in the suite file)."""

    kind: str
    steps: int
    lr: float = 0.01  # soft-prompt: Adam's learning rate on the embedding rows
    tokens: int = 3  # token: adversarial words in front of the prompt
    top_k: int = 32  # token: candidate words per position, by gradient
    candidates: int = 16  # token: swaps whose loss is measured per step
    draws: int = 4  # (concept image, timestep, noise) triples per step
    seed: int = 0

    @classmethod
    def from_json(cls, data: Any, where: str) -> AttackSpec:
        if not isinstance(data, dict):
            raise ValueError(f"{where}: 'attack' must be an object such as {{'kind': 'token', 'steps': 20}}")
        unknown = sorted(set(data) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"{where}: unknown attack settings {unknown}")
        spec = cls(**data)
        if spec.kind not in ATTACK_KINDS:
            raise ValueError(
                f"{where}: attack kind must be one of {', '.join(ATTACK_KINDS)}, not {spec.kind!r}"
            )
        if min(spec.steps, spec.tokens, spec.top_k, spec.candidates, spec.draws) < 1 or spec.lr <= 0:
            raise ValueError(f"{where}: attack steps, tokens, top_k, candidates, draws and lr must be > 0")
        return spec


@dataclass
class AttackResult:
    """The conditioning the attack found: ``prompt`` (token attack) or ``prompt_embeds`` (soft prompt; with
    ``pooled_prompt_embeds`` on SDXL)."""

    prompt: str
    prompt_embeds: torch.Tensor | None
    loss_before: float
    loss_after: float
    pooled_prompt_embeds: torch.Tensor | None = None

    def call_kwargs(self, n: int) -> dict[str, Any]:
        """Pipeline-call arguments drawing ``n`` images with the adversarial conditioning."""
        if self.prompt_embeds is not None:
            kwargs = {"prompt_embeds": self.prompt_embeds.expand(n, -1, -1)}
            if self.pooled_prompt_embeds is not None:
                kwargs["pooled_prompt_embeds"] = self.pooled_prompt_embeds.expand(n, -1)
            return kwargs
        return {"prompt": [self.prompt] * n}


@contextmanager
def _frozen(*modules: torch.nn.Module) -> Iterator[None]:
    """No parameter gradients while the attack differentiates through the models (flags restored)."""
    params = [p for m in modules for p in m.parameters()]
    flags = [p.requires_grad for p in params]
    try:
        for p in params:
            p.requires_grad_(False)
        yield
    finally:
        for p, flag in zip(params, flags, strict=True):
            p.requires_grad_(flag)


class _DenoisingLoss:
    """The pipeline's denoising loss on real images of the concept, one (image, t, noise) draw per row."""

    def __init__(self, pipe: Any, images: np.ndarray, draws: int, seed: int):
        from diffusers import DDPMScheduler

        self.pipe, self.draws = pipe, draws
        self.noise_scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
        self.generator = torch.Generator("cpu").manual_seed(seed)
        pixels = torch.from_numpy(images).float().permute(0, 3, 1, 2) / 127.5 - 1.0
        device, dtype = pipe.unet.device, pipe.vae.dtype
        with torch.no_grad():
            latents = pipe.vae.encode(pixels.to(device, dtype)).latent_dist.mean
        self.latents = latents * pipe.vae.config.scaling_factor
        self.resample()

    def resample(self) -> None:
        """New draws: which concept image, timestep and noise each row of the next evaluations uses."""
        n, g = self.draws, self.generator
        clean = self.latents[torch.randint(len(self.latents), (n,), generator=g)]
        noise = torch.randn(clean.shape, generator=g).to(clean)
        steps = self.noise_scheduler.config.num_train_timesteps
        t = torch.randint(0, steps, (n,), generator=g).to(clean.device)
        noisy = self.noise_scheduler.add_noise(clean, noise, t)
        if self.noise_scheduler.config.prediction_type == "v_prediction":
            noise = self.noise_scheduler.get_velocity(clean, noise, t)
        self.draw = (noisy, t, noise)

    def embeds(
        self, prompt: list[str] | None = None, given: TextConditioning | None = None
    ) -> TextConditioning:
        """The conditioning through the pipeline's own ``encode_prompt`` (per-prompt mechanisms run)."""
        if given is None:
            return encode(self.pipe, prompt, self.pipe.unet.device)
        return encode(
            self.pipe,
            prompt,
            self.pipe.unet.device,
            prompt_embeds=given.embeds,
            pooled_prompt_embeds=given.pooled,
        )

    def __call__(self, cond: TextConditioning) -> torch.Tensor:
        """Per-conditioning loss, ``cond`` of C rows → ``[C]`` (each against every draw)."""
        (noisy, t, target), c, n = self.draw, len(cond), self.draws
        unet = self.pipe.unet
        rows = cond.repeat_interleave(n).to(unet.dtype)
        x = noisy.repeat(c, 1, 1, 1).to(unet.dtype)
        out = unet(x, t.repeat(c), **unet_kwargs(self.pipe, rows, x)).sample
        err = F.mse_loss(out.float(), target.repeat(c, 1, 1, 1).float(), reduction="none")
        return err.flatten(1).mean(1).view(c, n).mean(1)


def attack_prompt(pipe: Any, prompt: str, images: np.ndarray, spec: AttackSpec) -> AttackResult:
    """Attack ``pipe`` (its method applied) to draw what ``images`` (uint8 HWC, real images of the erased
    concept) show, starting from ``prompt``."""
    loss = _DenoisingLoss(pipe, images, spec.draws, spec.seed)
    with _frozen(pipe.unet, *text_encoders(pipe), pipe.vae):
        if spec.kind == "soft-prompt":
            return _soft_prompt(loss, prompt, spec)
        return _token(loss, pipe, prompt, spec)


def _soft_prompt(loss: _DenoisingLoss, prompt: str, spec: AttackSpec) -> AttackResult:
    first = loss.draw  # before and after are measured on the same draws
    with torch.no_grad():
        start = loss.embeds([prompt]).detach()
        before = float(loss(loss.embeds(given=start)))
    adv = TextConditioning(
        start.embeds.clone().requires_grad_(True),
        None if start.pooled is None else start.pooled.clone().requires_grad_(True),
    )
    optimizer = torch.optim.Adam([t for t in (adv.embeds, adv.pooled) if t is not None], lr=spec.lr)
    for _ in range(spec.steps):
        loss.resample()
        optimizer.zero_grad()
        loss(loss.embeds(given=adv)).sum().backward()
        optimizer.step()
    adv, loss.draw = adv.detach(), first
    with torch.no_grad():
        after = float(loss(loss.embeds(given=adv)))
    return AttackResult(prompt, adv.embeds, before, after, adv.pooled)


def _token(loss: _DenoisingLoss, pipe: Any, prompt: str, spec: AttackSpec) -> AttackResult:
    from hubkit.vocabulary import typeable_words

    # Every text encoder reads the same token ids (SDXL's two tokenizers share CLIP's vocabulary).
    embeddings = [encoder.get_input_embeddings() for encoder in text_encoders(pipe)]
    embedding = embeddings[0]
    embeddings = [e for e in embeddings if e.num_embeddings == embedding.num_embeddings]
    spelled = {i: w for w, i in typeable_words(pipe.tokenizer).items()}
    allowed = torch.tensor(sorted(spelled))
    g = torch.Generator("cpu").manual_seed(spec.seed)
    words = allowed[torch.randint(len(allowed), (spec.tokens,), generator=g)]

    def text_of(ids: torch.Tensor) -> str:
        return " ".join([*(spelled[int(i)] for i in ids), prompt])

    text, first = text_of(words), loss.draw
    with torch.no_grad():
        before = float(loss(loss.embeds([prompt])))  # the prompt as asked, before any words are added
    forbidden = torch.ones(embedding.num_embeddings, dtype=torch.bool)
    forbidden[allowed] = False
    for _ in range(spec.steps):
        loss.resample()
        with torch.no_grad():
            best = float(loss(loss.embeds([text])))  # the current words on this step's draws
        grad = _one_hot_gradient(loss, embeddings, words, text)
        grad[:, forbidden] = float("inf")
        top = (-grad).topk(spec.top_k, dim=1).indices  # the swaps the gradient says lower the loss most
        slot = torch.randint(spec.tokens, (spec.candidates,), generator=g)
        tries = words.repeat(spec.candidates, 1)
        tries[torch.arange(spec.candidates), slot] = top[
            slot, torch.randint(spec.top_k, (spec.candidates,), generator=g)
        ]
        texts = [text_of(t) for t in tries]
        with torch.no_grad():
            losses = loss(loss.embeds(texts))
        n = int(losses.argmin())
        if float(losses[n]) < best:
            words, text = tries[n], texts[n]
    loss.draw = first
    with torch.no_grad():
        after = float(loss(loss.embeds([text])))
    return AttackResult(text, None, before, after)


def _one_hot_gradient(
    loss: _DenoisingLoss, embeddings: list[torch.nn.Embedding], words: torch.Tensor, text: str
) -> torch.Tensor:
    """d loss / d one-hot of each adversarial word (``[tokens, vocabulary]``): the words' input embeddings
    (positions 1…tokens, after the start token) are replaced by one-hot rows times the embedding matrix, in
    every text encoder (``embeddings``: theirs, one vocabulary)."""
    first = embeddings[0]
    one_hot = F.one_hot(words, first.num_embeddings).to(first.weight.dtype).requires_grad_(True)

    def swap(module: torch.nn.Module, inputs: Any, output: torch.Tensor) -> torch.Tensor:
        output = output.clone()
        output[:, 1 : 1 + len(words)] = one_hot @ module.weight
        return output

    handles = [embedding.register_forward_hook(swap) for embedding in embeddings]
    try:
        loss(loss.embeds([text])).sum().backward()
    finally:
        for handle in handles:
            handle.remove()
    return one_hot.grad.detach()
