"""Words of a text encoder's own vocabulary: data-free material for anchors, contexts and typed attacks."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = ["random_phrase", "typeable_words", "vocabulary_words"]


def vocabulary_words(tokenizer: Any, exclude: Iterable[str] = ()) -> list[str]:
    """Whole alphabetic ASCII words (3 letters or more) of the tokenizer's vocabulary, minus the words of
    ``exclude`` (e.g. the concepts being erased)."""
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


def typeable_words(tokenizer: Any, exclude: Iterable[str] = ()) -> dict[str, int]:
    """Word → token id for the :func:`vocabulary_words` that a user can type: each comes back as exactly
    that one token when its text is tokenized."""
    words = vocabulary_words(tokenizer, exclude)
    ids = tokenizer(words, add_special_tokens=False)["input_ids"]
    return {w: i[0] for w, i in zip(words, ids, strict=True) if len(i) == 1}


def random_phrase(words: list[str], generator: Any, most: int = 3) -> str:
    """1 to ``most`` words drawn from ``words`` with a ``torch.Generator``, joined by spaces."""
    import torch

    n = int(torch.randint(1, most + 1, (), generator=generator))
    return " ".join(words[i] for i in torch.randint(len(words), (n,), generator=generator).tolist())
