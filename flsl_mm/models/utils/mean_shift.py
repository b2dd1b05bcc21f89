"""The non-parametric mean-shift step of FLSL (FLSL_SPEC §5)."""
from __future__ import annotations

import torch


def mean_shift(queries: torch.Tensor, tokens: torch.Tensor, beta: float
               ) -> torch.Tensor:
    """One mean-shift step: ``softmax(beta * q z^T) z``.

    Args:
        queries: ``(..., M, C)`` query tokens.
        tokens: ``(..., N, C)`` tokens the queries shift towards (same view for the
            intra-view step, the teacher's view for the inter-view step). Leading
            dimensions broadcast, so one teacher tensor ``(1, B, N, C)`` serves
            ``(V, B, M, C)`` queries of V student views without being copied.
        beta: multiplies the logits (an inverse temperature).

    Returns:
        ``(..., M, C)``: the mode each query moves to.
    """
    attn = torch.softmax(beta * queries @ tokens.transpose(-2, -1), dim=-1)
    return attn @ tokens
