"""RECE (reliable and efficient concept erasure, Gong et al., ECCV 2024, on UCE): closed-form edits of a
UNet's cross-attention key and value projections, published as a plain diffusers LoRA. The closed forms are
in :mod:`.edit`, the erasure of a concept from a pipeline's own text embeddings in :mod:`.embeddings`."""

from .config import RECEConfig
from .edit import (
    RECEError,
    closed_form_edit,
    cross_attention_projections,
    delta_to_lora,
    regenerating_embedding,
)
from .embeddings import aligned_rows, check_vocabulary, context_templates, erase, prompt_rows
from .serialization import METHOD_NAME, WEIGHT_NAME, lora_tensors, save_rece

__all__ = [
    "METHOD_NAME",
    "WEIGHT_NAME",
    "RECEConfig",
    "RECEError",
    "aligned_rows",
    "check_vocabulary",
    "closed_form_edit",
    "context_templates",
    "cross_attention_projections",
    "delta_to_lora",
    "erase",
    "lora_tensors",
    "prompt_rows",
    "regenerating_embedding",
    "save_rece",
]
