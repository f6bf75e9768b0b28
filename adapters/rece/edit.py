"""RECE's closed forms (Gong et al., ECCV 2024, on UCE by Gandikota et al., WACV 2024): the edit of the
cross-attention key / value projections that maps a concept's text embeddings onto a surrogate's while other
embeddings keep their outputs, and the embedding that regenerates the concept on an edited model.

Every function here is linear algebra on one projection matrix ``W`` (``d_out x d_text``, as ``nn.Linear``
stores it) and rows of text embeddings (``n x d_text``): no pipeline, no training loop, seconds of compute.
"""

from __future__ import annotations

import torch
from torch import nn


class RECEError(ValueError):
    """A concept cannot be erased here (no cross-attention, bad embeddings, bad settings...)."""


def cross_attention_projections(unet: nn.Module) -> dict[str, nn.Linear]:
    """Path → Linear of every cross-attention key and value projection (``attn2.to_k`` / ``attn2.to_v``):
    the only layers that read the text, so the only ones a closed-form erasure edits."""
    found = {
        path: module
        for path, module in unet.named_modules()
        if isinstance(module, nn.Linear) and path.endswith(("attn2.to_k", "attn2.to_v"))
    }
    if not found:
        raise RECEError(f"{type(unet).__name__} has no cross-attention (attn2.to_k / to_v) to edit")
    return found


def pooled_text_projection(unet: nn.Module) -> tuple[str, nn.Linear, int] | None:
    """(path, Linear, pooled width) of the layer that reads SDXL's pooled text embedding
    (``add_embedding.linear_1``, whose input is the pooled embedding then the embedded time ids), or None
    for a UNet without one (SD 1.x / 2.x)."""
    config = getattr(unet, "config", None)
    if getattr(config, "addition_embed_type", None) != "text_time":
        return None
    path = "add_embedding.linear_1"
    layer = unet.get_submodule(path)
    if not isinstance(layer, nn.Linear):
        raise RECEError(f"{path} is a {type(layer).__name__}, not the Linear a closed-form edit needs")
    columns = layer.in_features - 6 * int(config.addition_time_embed_dim)
    return path, layer, columns


def _rows(x: torch.Tensor, width: int, what: str, device: torch.device) -> torch.Tensor:
    """``x`` as float64 rows of ``width`` features on the weights' ``device``."""
    x = x.detach().double().reshape(-1, x.shape[-1]) if x.numel() else x.double().reshape(0, width)
    x = x.to(device)
    if x.shape[1] != width:
        raise RECEError(f"{what} have {x.shape[1]} features; the projection reads {width}")
    return x


def closed_form_edit(
    weight: torch.Tensor,
    erase: torch.Tensor,
    surrogate: torch.Tensor,
    preserve: torch.Tensor,
    *,
    preserve_scale: float = 1.0,
    ridge: float = 0.1,
) -> torch.Tensor:
    """The edited projection ``W'`` minimising
    ``Σ‖W' e_i − W s_i‖² + preserve_scale·Σ‖W' p_j − W p_j‖² + ridge·‖W' − W‖²_F``:
    ``W' = (W Sᵀ E + λ W Pᵀ P + γ W)(Eᵀ E + λ Pᵀ P + γ I)⁻¹`` with the rows of ``erase`` (E), ``surrogate``
    (S, one per erased row) and ``preserve`` (P). The ridge term keeps every direction no row constrains as it
    was (UCE's regulariser), and makes the system solvable."""
    if ridge <= 0 and preserve.numel() == 0:
        raise RECEError("with no preserved embeddings the edit needs ridge > 0 to be determined")
    w = weight.detach().double()
    d = w.shape[1]
    e, s, p = (
        _rows(erase, d, "erase embeddings", w.device),
        _rows(surrogate, d, "surrogate embeddings", w.device),
        _rows(preserve, d, "preserved embeddings", w.device),
    )
    if e.shape[0] == 0:
        raise RECEError("nothing to erase: no concept embeddings")
    if s.shape != e.shape:
        raise RECEError(f"{e.shape[0]} erase rows need as many surrogate rows, got {s.shape[0]}")
    eye = torch.eye(d, dtype=torch.float64, device=w.device)
    lhs = e.T @ e + preserve_scale * (p.T @ p) + ridge * eye
    rhs = w @ (s.T @ e) + preserve_scale * w @ (p.T @ p) + ridge * w
    edited = torch.linalg.solve(lhs, rhs.T).T  # lhs is symmetric: (rhs lhs⁻¹)ᵀ = lhs⁻¹ rhsᵀ
    return edited.to(weight.dtype)


def regenerating_embedding(
    edited: list[torch.Tensor], original: list[torch.Tensor], concept: torch.Tensor, *, ridge: float = 0.1
) -> torch.Tensor:
    """RECE's adversarial embedding: the ``e`` whose outputs through the edited projections best match what
    the concept gave the original ones, ``argmin Σ_k ‖W'_k e − W_k c‖² + ridge·‖e‖²`` over the key and value
    projections together, in closed form, one row per concept row."""
    device = edited[0].device
    c = _rows(concept, edited[0].shape[1], "concept embeddings", device)
    d = c.shape[1]
    lhs = ridge * torch.eye(d, dtype=torch.float64, device=device)
    rhs = torch.zeros(d, c.shape[0], dtype=torch.float64, device=device)
    for w_new, w_old in zip(edited, original, strict=True):
        a, b = w_new.detach().double(), w_old.detach().double()
        lhs = lhs + a.T @ a
        rhs = rhs + a.T @ (b @ c.T)
    return torch.linalg.solve(lhs, rhs).T.to(concept.dtype).to(concept.device)


def delta_to_lora(delta: torch.Tensor, *, tolerance: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor]:
    """``delta`` (``d_out x d_in``) as LoRA factors ``(down, up)`` with ``up @ down == delta`` to within
    ``tolerance`` of its largest singular value: the SVD cut at the rank that reaches it (stated by the
    shapes). An edit with E erased and P preserved rows has rank ≤ E (the ridge keeps the rest)."""
    u, sigma, vh = torch.linalg.svd(delta.detach().double(), full_matrices=False)
    if sigma.numel() == 0 or float(sigma[0]) == 0.0:
        raise RECEError("the edit changes nothing: no LoRA to export")
    rank = max(1, int((sigma > tolerance * sigma[0]).sum()))
    root = sigma[:rank].sqrt()
    up = (u[:, :rank] * root).to(delta.dtype)
    down = (root[:, None] * vh[:rank]).to(delta.dtype)
    return down.contiguous(), up.contiguous()
