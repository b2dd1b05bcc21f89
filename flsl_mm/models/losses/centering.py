"""Teacher centring and sharpening (DINO, Caron et al. 2021, Eq. 4; docs/dino.md).

Shared by :class:`DINOLoss` and FLSL's centring ablation (``FLSLLoss``
``use_centering``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from flsl_mm.utils.dist import all_reduce_mean


@torch.no_grad()
def teacher_probs(teacher_logits: torch.Tensor, temp: float,
                  center: torch.Tensor | None = None) -> torch.Tensor:
    """``softmax((g_t - c) / tau_t)`` in float32 (no centring when ``center`` is
    None)."""
    logits = teacher_logits.float()
    if center is not None:
        logits = logits - center
    return F.softmax(logits / temp, dim=-1)


@torch.no_grad()
def update_center_(center: torch.Tensor, teacher_logits: torch.Tensor,
                   momentum: float) -> torch.Tensor:
    """``c <- m c + (1 - m) mean(g_t)`` in place; the mean is over the rows of
    every process (all-reduced: DINO sums and divides by rows x world size,
    which is the same for equal per-process batches)."""
    batch_center = all_reduce_mean(teacher_logits.float().mean(dim=0, keepdim=True))
    return center.mul_(momentum).add_(batch_center * (1 - momentum))


__all__ = ['teacher_probs', 'update_center_']
