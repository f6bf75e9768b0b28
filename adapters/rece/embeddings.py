"""The rows RECE's closed forms take, from a pipeline's own text encoder, and the whole erasure of a concept.

A concept prompt and its surrogate prompt of the same token length are aligned position by position ("a red
circle" onto "a gray circle": every position of the sequence the cross-attention reads). Prompts of other
lengths ("red" onto "") are aligned as UCE does: from each prompt's last word to the end of the padded
sequence (the positions that summarise the prompt), cut to the same count.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from hubkit.conditioning import TextConditioning, encode

from .edit import (
    RECEError,
    closed_form_edit,
    cross_attention_projections,
    pooled_text_projection,
    regenerating_embedding,
)


def prompt_conditioning(pipe: Any, prompts: Sequence[str]) -> TextConditioning:
    """The prompts' conditioning as the pipeline encodes it (no guidance): hidden states, and SDXL's pooled
    embedding, on the pipeline's execution device."""
    if not hasattr(pipe, "encode_prompt"):
        raise RECEError(f"{type(pipe).__name__} has no encode_prompt: RECE needs a text-to-image pipeline")
    with torch.no_grad():
        return encode(pipe, prompts).detach()


def prompt_rows(pipe: Any, prompts: Sequence[str]) -> torch.Tensor:
    """``(len(prompts), tokens, d)`` text-encoder outputs the UNet's cross-attention reads, no guidance (on
    SDXL both encoders' penultimate states side by side, as its UNet reads them)."""
    return prompt_conditioning(pipe, prompts).embeds


def _token_ids(pipe: Any, prompts: Sequence[str]) -> list[list[int]]:
    return pipe.tokenizer(list(prompts), truncation=True, max_length=pipe.tokenizer.model_max_length)[
        "input_ids"
    ]


def _aligned_positions(concept: int, surrogate: int, width: int) -> tuple[slice, slice]:
    """Which token positions of a concept prompt (``concept`` tokens with its specials) meet which of its
    surrogate's, in sequences padded to ``width``."""
    if concept == surrogate:
        return slice(0, width), slice(0, width)
    last_c, last_s = max(concept - 2, 0), max(surrogate - 2, 0)  # the last word ([CLS] for an empty prompt)
    n = width - max(last_c, last_s)
    return slice(last_c, last_c + n), slice(last_s, last_s + n)


def check_vocabulary(pipe: Any, concepts: Sequence[str]) -> None:
    """RECEError for a concept word the text encoder's tokenizer does not have as a word: it reads as the
    unknown token, or only as sub-word pieces (a typo erases nothing anyone types)."""
    tokenizer = pipe.tokenizer
    vocabulary = tokenizer.get_vocab()
    for concept in concepts:
        for word in concept.split():
            pieces = tokenizer.tokenize(word)
            if len(pieces) == 1 and pieces[0] in vocabulary and pieces[0] != tokenizer.unk_token:
                continue
            raise RECEError(
                f"concept {concept!r}: {word!r} is not in the text encoder's vocabulary (it reads as "
                f"{' + '.join(pieces) or 'nothing'}); check the spelling, or allow unknown words "
                "(--allow-unknown-words) to erase it as spelled"
            )


def aligned_rows(
    pipe: Any, concept_prompts: Sequence[str], surrogate_prompts: Sequence[str]
) -> tuple[torch.Tensor, torch.Tensor]:
    """(erase rows, surrogate rows), position by position (see the module's docstring); RECEError for a
    surrogate prompt that is the concept prompt, or a concept that reads as the unknown token."""
    if len(concept_prompts) != len(surrogate_prompts) or not concept_prompts:
        raise RECEError("every concept prompt needs one surrogate prompt")
    unknown = getattr(pipe.tokenizer, "unk_token_id", None)
    ids = _token_ids(pipe, concept_prompts), _token_ids(pipe, surrogate_prompts)
    for concept, surrogate in zip(concept_prompts, surrogate_prompts, strict=True):
        if concept.strip() == surrogate.strip():
            raise RECEError(f"the surrogate of {concept!r} is the concept itself: nothing would be erased")
        # The words' own tokens only: CLIP's unknown token is its end-of-text token, in every tokenization.
        words = pipe.tokenizer(concept, add_special_tokens=False)["input_ids"]
        if unknown is not None and unknown in words:
            raise RECEError(
                f"{concept!r} has a word the text encoder's vocabulary does not know (it reads as "
                f"{pipe.tokenizer.unk_token}): RECE cannot find the concept's embedding"
            )
    concept_rows, surrogate_rows = prompt_rows(pipe, concept_prompts), prompt_rows(pipe, surrogate_prompts)
    width = concept_rows.shape[1]
    erase_rows, target_rows = [], []
    for n, (c_ids, s_ids) in enumerate(zip(*ids, strict=True)):
        at_c, at_s = _aligned_positions(len(c_ids), len(s_ids), width)
        erase_rows.append(concept_rows[n, at_c])
        target_rows.append(surrogate_rows[n, at_s])
    return torch.cat(erase_rows), torch.cat(target_rows)


def context_templates(
    pipe: Any, templates: Sequence[str], count: int, seed: int, exclude: Sequence[str]
) -> list[str]:
    """``templates`` plus, for each, ``count`` copies with 1–3 random vocabulary words in front (words of
    ``exclude`` left out): the concept in contexts no template names, data-free and seeded."""
    from hubkit.vocabulary import random_phrase, vocabulary_words

    if count == 0:
        return list(templates)
    words = vocabulary_words(pipe.tokenizer, exclude)
    generator = torch.Generator().manual_seed(seed)
    return [*templates, *(f"{random_phrase(words, generator)} {t}" for t in templates for _ in range(count))]


def _edit_rounds(
    original: dict[str, torch.Tensor],
    pairs: list[tuple[str, str]],
    erase_rows: torch.Tensor,
    target_rows: torch.Tensor,
    preserve: torch.Tensor,
    rounds: int,
    **solve: float,
) -> dict[str, torch.Tensor]:
    """The UCE edit of every matrix of ``original`` (path → weight, all reading the same rows), then
    ``rounds`` RECE rounds: for each group of ``pairs`` (paths edited together), the rows that regenerate the
    concept on the model edited so far are erased onto the surrogate too. Path → edited weight."""

    def edit(erase: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        return {p: closed_form_edit(w, erase, target, preserve, **solve) for p, w in original.items()}

    concept, surrogate = erase_rows, target_rows
    for _ in range(rounds):
        edited = edit(erase_rows, target_rows)
        for group in pairs:
            found = regenerating_embedding([edited[p] for p in group], [original[p] for p in group], concept)
            erase_rows, target_rows = torch.cat([erase_rows, found]), torch.cat([target_rows, surrogate])
    return edit(erase_rows, target_rows)


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
    concept on the model edited so far. On SDXL, where the prompt also reaches the UNet through its pooled
    embedding (``add_embedding.linear_1``), that layer's pooled-text columns get the same edit, one pooled
    row per prompt. The UNet is not changed."""
    projections = cross_attention_projections(pipe.unet)
    erase_rows, target_rows = aligned_rows(pipe, concept_prompts, surrogate_prompts)
    width = erase_rows.shape[-1]
    kept = prompt_conditioning(pipe, preserve_prompts) if preserve_prompts else None
    preserve = kept.embeds.reshape(-1, width) if kept is not None else erase_rows.new_zeros(0, width)
    original = {p: m.weight.detach() for p, m in projections.items()}
    keys = [p for p in projections if p.endswith("to_k")]
    pairs = [(k, k.removesuffix("to_k") + "to_v") for k in keys]
    solve = {"preserve_scale": preserve_scale, "ridge": ridge}
    edited = _edit_rounds(original, pairs, erase_rows, target_rows, preserve, rounds, **solve)
    deltas = {p: (edited[p] - original[p]).to(original[p].dtype) for p in projections}
    pooled_layer = pooled_text_projection(pipe.unet)
    if pooled_layer is not None:
        path, layer, columns = pooled_layer
        concept = prompt_conditioning(pipe, concept_prompts).pooled
        surrogate = prompt_conditioning(pipe, surrogate_prompts).pooled
        if concept is None or surrogate is None:
            raise RECEError(
                "the UNet reads a pooled text embedding the pipeline's encode_prompt does not give"
            )
        keep = kept.pooled if kept is not None and kept.pooled is not None else concept.new_zeros(0, columns)
        weight = layer.weight.detach()
        text = {path: weight[:, :columns]}
        new = _edit_rounds(text, [(path,)], concept, surrogate, keep, rounds, **solve)[path]
        delta = torch.zeros_like(weight)
        delta[:, :columns] = new - text[path]  # the time-id columns stay as they were
        deltas[path] = delta
    return deltas
