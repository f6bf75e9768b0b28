"""RECE (reliable and efficient concept erasure): closed-form edits of a UNet's cross-attention key and value
projections. Issue 14, in progress: the closed forms (:mod:`.edit`); the method plugin, its card, the LoRA
export on disk and the attack suite are not there yet."""

from .edit import (
    RECEError,
    closed_form_edit,
    cross_attention_projections,
    delta_to_lora,
    regenerating_embedding,
)

__all__ = [
    "RECEError",
    "closed_form_edit",
    "cross_attention_projections",
    "delta_to_lora",
    "regenerating_embedding",
]
