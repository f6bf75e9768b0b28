"""Text conditioning of a Stable Diffusion UNet, for SD 1.x / 2.x and SDXL alike: the one place where methods
that call the UNet themselves (training steps, calibration replay, attacks) condition it as the pipeline does.

Why one module: the families differ exactly where hand-written calls go wrong.

- ``encode_prompt``'s signature: SD's is ``(prompt, device, num_images_per_prompt, cfg, …)``, SDXL's
  ``(prompt, prompt_2, device, …)``, so :func:`encode` calls it by keyword; SDXL also returns the pooled
  embedding of ``text_encoder_2``, which :class:`TextConditioning` carries beside the hidden states.
- The unconditional branch: SDXL's pipeline uses zeros (``force_zeros_for_empty_prompt``), SD the encoded
  empty prompt; :func:`unconditional` asks the pipeline's own ``encode_prompt`` for it.
- The UNet call: SDXL's UNet (``addition_embed_type="text_time"``) also needs ``added_cond_kwargs``, the
  pooled embedding and the micro-conditioning time ids; :func:`unet_kwargs` builds them as
  ``StableDiffusionXLPipeline.__call__`` does.
- Devices: SDXL has two text encoders; :func:`text_encoders` lists every ``text_encoder*`` component.

On SD 1.x / 2.x every function gives what the former hand-written calls gave, bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

__all__ = [
    "TextConditioning",
    "encode",
    "move_text_encoders",
    "text_encoders",
    "time_ids",
    "unconditional",
    "unet_kwargs",
]


@dataclass(frozen=True)
class TextConditioning:
    """A batch of text conditionings: ``embeds`` ``[B, L, D]`` (what cross-attention reads; on SDXL both
    encoders' penultimate states side by side) and ``pooled`` ``[B, P]`` (SDXL's pooled ``text_encoder_2``
    projection; None on SD 1.x / 2.x). Indexing and the batch operations act on both together."""

    embeds: torch.Tensor
    pooled: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.embeds.shape[0]

    def __getitem__(self, rows: Any) -> TextConditioning:
        """Rows (a slice, an index tensor or list); an int keeps its batch dimension."""
        if isinstance(rows, int):
            rows = slice(rows, rows + 1 if rows != -1 else None)
        return TextConditioning(self.embeds[rows], None if self.pooled is None else self.pooled[rows])

    def _map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> TextConditioning:
        return TextConditioning(fn(self.embeds), None if self.pooled is None else fn(self.pooled))

    def to(self, *args: Any, **kwargs: Any) -> TextConditioning:
        return self._map(lambda t: t.to(*args, **kwargs))

    def detach(self) -> TextConditioning:
        return self._map(torch.Tensor.detach)

    def expand(self, n: int) -> TextConditioning:
        """A one-row conditioning as ``n`` rows (a view, as ``Tensor.expand``)."""
        return self._map(lambda t: t.expand(n, *t.shape[1:]))

    def repeat(self, n: int) -> TextConditioning:
        """The whole batch ``n`` times over (``a b a b``)."""
        return self._map(lambda t: t.repeat(n, *([1] * (t.dim() - 1))))

    def repeat_interleave(self, n: int) -> TextConditioning:
        """Each row ``n`` times in turn (``a a b b``)."""
        return self._map(lambda t: t.repeat_interleave(n, dim=0))

    @staticmethod
    def cat(parts: Sequence[TextConditioning]) -> TextConditioning:
        """The batches one after the other; all or none of them carry ``pooled``."""
        pooled = [p.pooled for p in parts]
        if any(p is None for p in pooled) and not all(p is None for p in pooled):
            raise ValueError("cannot join conditionings with and without a pooled embedding")
        return TextConditioning(
            torch.cat([p.embeds for p in parts]),
            None if pooled[0] is None else torch.cat(pooled),  # type: ignore[arg-type]
        )


def text_encoders(pipe: Any) -> list[torch.nn.Module]:
    """Every text encoder of ``pipe`` (``text_encoder``, ``text_encoder_2``, …, those that are set), in that
    order: what a method moves to its device or freezes."""
    components = getattr(pipe, "components", None) or {
        name: getattr(pipe, name, None) for name in ("text_encoder", "text_encoder_2", "text_encoder_3")
    }
    return [
        module
        for name, module in sorted(components.items())
        if name.startswith("text_encoder") and isinstance(module, torch.nn.Module)
    ]


def move_text_encoders(pipe: Any, device: torch.device | str) -> None:
    """Every text encoder of ``pipe`` onto ``device`` (``encode_prompt`` runs each where it is)."""
    for encoder in text_encoders(pipe):
        encoder.to(device)


def _device(pipe: Any, device: torch.device | str | None) -> torch.device | str:
    if device is not None:
        return device
    found = getattr(pipe, "_execution_device", None)  # where the pipeline itself runs encode_prompt
    return found if found is not None else pipe.unet.device


def _outputs(out: Any) -> tuple[Any, ...]:
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)


def encode(
    pipe: Any,
    prompts: Sequence[str] | str | None,
    device: torch.device | str | None = None,
    *,
    prompt_embeds: torch.Tensor | None = None,
    pooled_prompt_embeds: torch.Tensor | None = None,
    encode_prompt: Callable[..., Any] | None = None,
) -> TextConditioning:
    """``prompts`` (or given embeddings, passed through) through the pipeline's own ``encode_prompt``, by
    keyword, with no guidance: one row per prompt, SDXL's pooled embedding kept. Gradients flow (wrap it in
    ``torch.no_grad()`` where none are wanted). ``encode_prompt`` replaces ``pipe.encode_prompt`` (a wrapper
    calling the function it wraps); ``device`` defaults to the pipeline's execution device."""
    fn = encode_prompt or pipe.encode_prompt
    kwargs: dict[str, Any] = {
        "prompt": [prompts] if isinstance(prompts, str) else (None if prompts is None else list(prompts)),
        "device": _device(pipe, device),
        "num_images_per_prompt": 1,
        "do_classifier_free_guidance": False,
    }
    if prompt_embeds is not None:
        kwargs["prompt_embeds"] = prompt_embeds
    if pooled_prompt_embeds is not None:
        kwargs["pooled_prompt_embeds"] = pooled_prompt_embeds
    out = _outputs(fn(**kwargs))
    return TextConditioning(out[0], out[2] if len(out) >= 4 else None)  # SDXL: (embeds, neg, pooled, neg)


def unconditional(
    pipe: Any,
    device: torch.device | str | None = None,
    *,
    encode_prompt: Callable[..., Any] | None = None,
) -> TextConditioning:
    """One row: the unconditional branch of classifier-free guidance as the pipeline makes it with no
    negative prompt (``encode_prompt``'s negative output): the encoded empty prompt on SD 1.x / 2.x, zeros
    (embeddings and pooled) on SDXL, whose ``force_zeros_for_empty_prompt`` is set."""
    fn = encode_prompt or pipe.encode_prompt
    out = _outputs(
        fn(
            prompt=[""],
            device=_device(pipe, device),
            num_images_per_prompt=1,
            do_classifier_free_guidance=True,
        )
    )
    return TextConditioning(out[1], out[3] if len(out) >= 4 else None)


def time_ids(
    pipe: Any,
    sample: torch.Tensor,
    dtype: torch.dtype,
    *,
    original_size: tuple[int, int] | None = None,
    crops_coords_top_left: tuple[int, int] = (0, 0),
) -> torch.Tensor:
    """SDXL's micro-conditioning ``[B, 6]`` for the latents ``sample`` ``[B, C, h, w]``: (original size,
    crop corner, target size) in pixels, as ``StableDiffusionXLPipeline`` builds them; the target size is
    the sample's image size (latent size × the VAE's scale), the original size the target's unless given."""
    scale = int(getattr(pipe, "vae_scale_factor", 8))
    target = (int(sample.shape[-2]) * scale, int(sample.shape[-1]) * scale)
    ids = list((original_size or target) + tuple(crops_coords_top_left) + target)
    return torch.tensor([ids], dtype=dtype).to(sample.device).repeat(sample.shape[0], 1)


def unet_kwargs(
    pipe: Any,
    cond: TextConditioning,
    sample: torch.Tensor,
    **micro: Any,
) -> dict[str, Any]:
    """The keyword arguments of ``pipe.unet(sample, t, **…)`` conditioned on ``cond`` (one row per sample):
    ``encoder_hidden_states``, and on an SDXL UNet ``added_cond_kwargs`` = {``text_embeds``: the pooled
    embedding, ``time_ids``: :func:`time_ids` (``micro``: its ``original_size`` / ``crops_coords_top_left``)}.
    ValueError for a UNet of another added-conditioning kind, or SDXL conditioning without a pooled
    embedding."""
    kwargs: dict[str, Any] = {"encoder_hidden_states": cond.embeds}
    kind = getattr(pipe.unet.config, "addition_embed_type", None)
    if kind is None:
        return kwargs
    if kind != "text_time":
        raise ValueError(
            f"the UNet's addition_embed_type {kind!r} is not supported (SD 1.x / 2.x: none, SDXL: text_time)"
        )
    if cond.pooled is None:
        raise ValueError(
            "an SDXL UNet needs the pooled text embedding: encode prompts with hubkit.conditioning.encode"
        )
    ids = time_ids(pipe, sample, cond.embeds.dtype, **micro)
    kwargs["added_cond_kwargs"] = {"text_embeds": cond.pooled, "time_ids": ids}
    return kwargs
