"""The rows RECE's closed forms take, from a pipeline's own text encoder, and the whole erasure of a concept.

A concept prompt and its surrogate prompt must tokenize to the same length: the edit maps the concept's
output embedding at each token position onto the surrogate's at the same position (so "a red circle" goes to
"a gray circle", every position of the sequence the cross-attention reads).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from .edit import RECEError, closed_form_edit, cross_attention_projections, regenerating_embedding


def prompt_rows(pipe: Any, prompts: Sequence[str]) -> torch.Tensor:
    """``(len(prompts), tokens, d)`` text-encoder outputs the UNet's cross-attention reads, no guidance."""
    if not hasattr(pipe, "encode_prompt"):
        raise RECEError(f"{type(pipe).__name__} has no encode_prompt: RECE needs a text-to-image pipeline")
    with torch.no_grad():
        return pipe.encode_prompt(list(prompts), "cpu", 1, False)[0].detach()


def _token_ids(pipe: Any, prompts: Sequence[str]) -> list[list[int]]:
    return pipe.tokenizer(list(prompts), truncation=True, max_length=pipe.tokenizer.model_max_length)[
        "input_ids"
    ]


def aligned_rows(
    pipe: Any, concept_prompts: Sequence[str], surrogate_prompts: Sequence[str]
) -> tuple[torch.Tensor, torch.Tensor]:
    """(erase rows, surrogate rows), position by position; RECEError for a surrogate prompt that is the
    concept prompt, tokenizes to another length, or a concept word the tokenizer does not know."""
    if len(concept_prompts) != len(surrogate_prompts) or not concept_prompts:
        raise RECEError("every concept prompt needs one surrogate prompt")
    unknown = getattr(pipe.tokenizer, "unk_token_id", None)
    ids = _token_ids(pipe, concept_prompts), _token_ids(pipe, surrogate_prompts)
    for concept, surrogate, c_ids, s_ids in zip(concept_prompts, surrogate_prompts, *ids, strict=True):
        if concept.strip() == surrogate.strip():
            raise RECEError(f"the surrogate of {concept!r} is the concept itself: nothing would be erased")
        if unknown is not None and unknown in c_ids:
            raise RECEError(f"{concept!r} has a word the text encoder's vocabulary does not know")
        if len(c_ids) != len(s_ids):
            raise RECEError(
                f"{concept!r} is {len(c_ids)} tokens and its surrogate {surrogate!r} {len(s_ids)}: pick a "
                "surrogate of the same token length"
            )
    concept_rows, surrogate_rows = prompt_rows(pipe, concept_prompts), prompt_rows(pipe, surrogate_prompts)
    d = concept_rows.shape[-1]
    return concept_rows.reshape(-1, d), surrogate_rows.reshape(-1, d)


def erase(
    pipe: Any,
    concept_prompts: Sequence[str],
    surrogate_prompts: Sequence[str],
    preserve_prompts: Sequence[str],
    *,
    rounds: int = 2,
    preserve_scale: float = 1.0,
    ridge: float = 0.1,
) -> dict[str, torch.Tensor]:
    """Path → weight delta of every cross-attention key / value projection that erases the concept: the UCE
    edit, then ``rounds`` RECE rounds, each erasing (onto the surrogate) the embeddings that regenerate the
    concept on the model edited so far. The UNet is not changed."""
    projections = cross_attention_projections(pipe.unet)
    erase_rows, target_rows = aligned_rows(pipe, concept_prompts, surrogate_prompts)
    preserve = prompt_rows(pipe, preserve_prompts)
    preserve = preserve.reshape(-1, preserve.shape[-1])
    original = {p: m.weight.detach() for p, m in projections.items()}
    concept, surrogate = erase_rows, target_rows
    for round_ in range(rounds + 1):
        edited = {
            p: closed_form_edit(
                w, erase_rows, target_rows, preserve, preserve_scale=preserve_scale, ridge=ridge
            )
            for p, w in original.items()
        }
        if round_ == rounds:
            break
        for key in (p for p in projections if p.endswith("to_k")):
            value = key.removesuffix("to_k") + "to_v"
            found = regenerating_embedding(
                [edited[key], edited[value]], [original[key], original[value]], concept
            )
            erase_rows, target_rows = torch.cat([erase_rows, found]), torch.cat([target_rows, surrogate])
    return {p: (edited[p] - original[p]).to(original[p].dtype) for p in projections}
