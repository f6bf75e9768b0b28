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
    width = erase_rows.shape[-1]
    preserve = prompt_rows(pipe, preserve_prompts) if preserve_prompts else erase_rows.new_zeros(0, width)
    preserve = preserve.reshape(-1, width)
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
