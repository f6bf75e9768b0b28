"""RECE (reliable and efficient concept erasure): closed-form edits of a UNet's cross-attention key and value
projections. Issue 14, in progress: the closed forms (:mod:`.edit`) and the erasure of a concept from a
pipeline's own text embeddings (:mod:`.embeddings`); the method plugin, its card, the LoRA export on disk and
the attack suite are not there yet."""

from .edit import (
    RECEError,
    closed_form_edit,
    cross_attention_projections,
    delta_to_lora,
    regenerating_embedding,
)
from .embeddings import aligned_rows, erase, prompt_rows

__all__ = [
    "RECEError",
    "aligned_rows",
    "closed_form_edit",
    "cross_attention_projections",
    "delta_to_lora",
    "erase",
    "prompt_rows",
    "regenerating_embedding",
]
