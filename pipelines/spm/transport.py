"""Facilitated transport: SPMs on a stock diffusers pipeline, each let through per prompt.

For prompt p and SPM i erasing concepts {c_ij}, the permeability is (as in the paper)

    m_i(p) = max_j max( cos(flat(E(p)), flat(E(c_ij))), |T(p) ∩ T(c_ij)| / |T(c_ij)| )

with E the pipeline's text-encoder hidden states (every position, padding included, as the UNet sees them)
and T the prompt's token ids minus special tokens. The UNet then runs with ΔW = Σ_i s_i·ΔW_i, s_i = m_i^power.

m vs m²: the official inference code scales both of an SPM's matrices by m, so its delta is m²·ΔW
(``power=2`` reproduces it; the paper's text describes m). hubkit defaults to ``power=2``: the padding
positions make the cosine of unrelated prompts fairly high (0.5–0.8), and squaring lets less of an SPM leak
onto them. Several SPMs add their own deltas (no A/B cross terms as in the official sum of matrices).

Permeability is per prompt and per sample: a batch may mix prompts, and the unconditional branch of
classifier-free guidance gets its prompt's value. When every sample of a call shares one value the deltas
are merged into the weights for that call (no per-step cost); otherwise the membranes run per sample.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from hubkit.adapters.spm.model import SPMError, SPMNetwork, check_pipeline
from hubkit.adapters.spm.serialization import HUBKIT_JSON, WEIGHT_NAME, read_spm, resolve_kohya_paths

from hubkit.conditioning import encode
from hubkit.hub import local_or_snapshot

__all__ = ["FacilitatedTransport", "load_spm", "permeability", "unload_spm"]


def _token_sets(tokenizer: Any, texts: Sequence[str]) -> list[set[int]]:
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    ids = tokenizer(list(texts), truncation=True, max_length=tokenizer.model_max_length)["input_ids"]
    return [set(row) - special for row in ids]


def permeability(
    prompt_embeds: torch.Tensor,
    concept_embeds: torch.Tensor,
    prompt_tokens: list[set[int]] | None = None,
    concept_tokens: list[set[int]] | None = None,
) -> torch.Tensor:
    """Per prompt, the max over concepts of max(cosine of flattened hidden states, token overlap): ``[P]``.

    ``prompt_embeds`` is ``[P, L, D]``, ``concept_embeds`` ``[C, L, D]``; without tokens (prompts given as
    embeddings) only the cosine counts."""
    cos = F.cosine_similarity(
        prompt_embeds.flatten(1).float()[:, None, :], concept_embeds.flatten(1).float()[None, :, :], dim=-1
    )  # [P, C]
    score = cos
    if prompt_tokens is not None and concept_tokens is not None:
        overlap = torch.tensor(
            [[len(p & c) / len(c) if c else 0.0 for c in concept_tokens] for p in prompt_tokens],
            dtype=cos.dtype,
            device=cos.device,
        )
        score = torch.maximum(cos, overlap)
    return score.max(dim=1).values.clamp(0.0, 1.0)


class FacilitatedTransport:
    """The SPMs loaded on one pipeline (``pipe.spm``): load, unload, switch transport on and off.

    With transport off every SPM is applied at ``scale`` (1 by default), as stock ``load_lora_weights`` does.
    """

    def __init__(self, pipe: Any, power: float = 2.0):
        check_pipeline(pipe)
        self.pipe = pipe
        self.network = SPMNetwork(pipe.unet)
        self.enabled = True
        self.power = power
        self.scale = 1.0
        self.concepts: dict[str, list[str]] = {}
        self._concept_embeds: dict[str, torch.Tensor] = {}
        self._concept_tokens: dict[str, list[set[int]]] = {}
        self.last_permeability: dict[str, list[float]] = {}  # m per SPM per prompt, of the last call
        self.last_scales: dict[str, list[float]] = {}  # the scale each SPM got per prompt (m**power·scale)
        self._encode_prompt = pipe.encode_prompt
        self._signature = inspect.signature(self._encode_prompt)  # SD's and SDXL's differ
        pipe.encode_prompt = self._encode_with_transport  # instance attribute: the class stays stock

    @property
    def names(self) -> list[str]:
        return list(self.network.active)

    # -- loading ----------------------------------------------------------------------------------------
    def load(
        self,
        source: str | os.PathLike[str],
        adapter_name: str | None = None,
        *,
        concepts: list[str] | None = None,
        weight_name: str | None = None,
        revision: str | None = None,
        token: str | None = None,
    ) -> str:
        """Load an SPM from a folder, a file, or a Hub repo id; returns its adapter name."""
        patterns = [weight_name or WEIGHT_NAME, HUBKIT_JSON]
        path = local_or_snapshot(source, patterns, revision=revision, token=token, error=SPMError)
        spm = read_spm(path / weight_name if weight_name and path.is_dir() else path, concepts)
        name = adapter_name or _default_name(source, self.names)
        weights = resolve_kohya_paths(spm.weights, self.network.paths)
        self.network.load_adapter(name, weights, spm.config)
        self.concepts[name] = spm.concepts
        with torch.no_grad():
            cond = encode(self.pipe, spm.concepts, self.pipe.unet.device, encode_prompt=self._encode_prompt)
        self._concept_embeds[name] = cond.embeds
        self._concept_tokens[name] = _token_sets(self.pipe.tokenizer, spm.concepts)
        return name

    def unload(self, name: str | None = None) -> None:
        """Remove one SPM (or all of them; then the pipeline is exactly the stock one again)."""
        for n in [name] if name else list(self.names):
            if n not in self.concepts:
                raise SPMError(f"no SPM named {n!r} is loaded (loaded: {', '.join(self.names) or 'none'})")
            self.network.remove_adapter(n)
            for d in (self.concepts, self._concept_embeds, self._concept_tokens):
                d.pop(n, None)
        if not self.names:
            self.network.detach_hooks()
            self.pipe.encode_prompt = self._encode_prompt
            if getattr(self.pipe, "spm", None) is self:
                del self.pipe.spm

    # -- permeability -----------------------------------------------------------------------------------
    def permeability(
        self, prompts: Sequence[str] | None = None, prompt_embeds: torch.Tensor | None = None
    ) -> dict[str, list[float]]:
        """Each SPM's permeability m for each prompt (before ``power``)."""
        if isinstance(prompts, str):
            prompts = [prompts]
        if prompt_embeds is None:
            if prompts is None:
                raise ValueError("give prompts or prompt_embeds")
            with torch.no_grad():
                device = self.pipe.unet.device
                prompt_embeds = encode(self.pipe, prompts, device, encode_prompt=self._encode_prompt).embeds
        tokens = _token_sets(self.pipe.tokenizer, prompts) if prompts is not None else None
        return {
            name: permeability(
                prompt_embeds,
                self._concept_embeds[name].to(prompt_embeds.device),
                tokens,
                self._concept_tokens[name] if tokens is not None else None,
            ).tolist()
            for name in self.names
        }

    def _encode_with_transport(self, *args: Any, **kwargs: Any) -> Any:
        """The pipeline's ``encode_prompt``, called as the caller called it (SD's positional signature or
        SDXL's keywords) and returned untouched (2 or 4 items); the SPMs' scales follow its prompt."""
        call = self._signature.bind(*args, **kwargs)
        call.apply_defaults()
        arguments = call.arguments
        out = self._encode_prompt(*args, **kwargs)
        self._set_scales(
            arguments.get("prompt"),
            out[0],
            arguments.get("num_images_per_prompt") or 1,
            bool(arguments.get("do_classifier_free_guidance")),
        )
        return out

    def _set_scales(self, prompt, prompt_embeds: torch.Tensor, per_prompt: int, cfg: bool) -> None:
        if not self.names:
            return
        if not self.enabled:
            self.last_permeability = {}
            self.last_scales = {n: [float(self.scale)] for n in self.names}
            self._apply(torch.full((len(self.names),), float(self.scale)), rows=None)
            return
        prompts = [prompt] if isinstance(prompt, str) else (list(prompt) if prompt is not None else None)
        per_prompt_embeds = prompt_embeds[::per_prompt]
        m = self.permeability(prompts, per_prompt_embeds)
        self.last_permeability = m
        scales = torch.tensor([m[n] for n in self.names]).T ** self.power * self.scale  # [P, n]
        self.last_scales = {n: scales[:, i].tolist() for i, n in enumerate(self.names)}
        scales = scales.repeat_interleave(per_prompt, dim=0)
        rows = torch.cat([scales, scales]) if cfg else scales  # the unconditional half first, as diffusers
        self._apply(rows[0], rows=None) if bool((rows == rows[0]).all()) else self._apply(None, rows=rows)

    def _apply(self, uniform: torch.Tensor | None, rows: torch.Tensor | None) -> None:
        network = self.network
        if uniform is not None:
            network.scales = None
            if network.merged_scales != uniform.tolist():
                network.merge(uniform.tolist())
        else:
            network.unmerge()
            network.scales = rows.to(self.pipe.unet.device)


def _default_name(source: str | os.PathLike[str], taken: list[str]) -> str:
    # Parameter names cannot hold "." (torch): "ns/spm.v1" becomes "spm_v1".
    base = Path(str(source)).name.removesuffix(".safetensors").replace(".", "_") or "spm"
    name, i = base, 1
    while name in taken:
        i += 1
        name = f"{base}_{i}"
    return name


def load_spm(
    pipe: Any,
    source: str | os.PathLike[str],
    adapter_name: str | None = None,
    *,
    transport: bool | None = None,
    power: float | None = None,
    **kwargs: Any,
) -> FacilitatedTransport:
    """Load an SPM onto a stock pipeline (``pipe.spm`` keeps them); call again to add more SPMs.

    ``transport=False`` applies every SPM at full strength on every prompt (what ``load_lora_weights`` does);
    the setting holds for every SPM on the pipeline (``pipe.spm.enabled``); ``None`` keeps it (on at first).
    """
    ft = getattr(pipe, "spm", None)
    if ft is None:
        ft = FacilitatedTransport(pipe, power=2.0 if power is None else power)
        pipe.spm = ft
    elif power is not None:
        ft.power = power
    try:
        ft.load(source, adapter_name, **kwargs)
    except Exception:
        if not ft.names:
            ft.unload()
        raise
    if transport is not None:
        ft.enabled = transport
    return ft


def unload_spm(pipe: Any, adapter_name: str | None = None) -> None:
    ft = getattr(pipe, "spm", None)
    if ft is None:
        raise SPMError("no SPM is loaded on this pipeline")
    ft.unload(adapter_name)
