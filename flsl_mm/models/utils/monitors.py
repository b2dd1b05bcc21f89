"""Health monitors of FLSL pretraining (``docs/monitors.md``).

Computed without gradient from tensors the training step already has; logged next
to the losses (keys ``mon_*``, which mmengine logs but does not add to the loss).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def normalised_entropy(probs: torch.Tensor) -> torch.Tensor:
    """Mean over rows of ``H(p) / ln K`` (1: uniform, 0: one-hot)."""
    k = probs.shape[-1]
    h = -torch.special.xlogy(probs, probs).sum(-1)
    return (h / math.log(k)).mean() if k > 1 else torch.zeros((), device=probs.device)


@torch.no_grad()
def prototype_monitors(student_probs: torch.Tensor, teacher_probs: torch.Tensor
                       ) -> dict[str, torch.Tensor]:
    """Target entropy, coverage and agreement from ``(Q, K)`` probabilities.

    * ``mon_target_entropy``: mean ``H(p_t) / ln K`` (1 = uniform targets);
    * ``mon_coverage``: ``H(pbar) / ln K`` of the mean student probabilities;
    * ``mon_prototypes_used``: prototypes with ``pbar_k > 1 / (10 K)``;
    * ``mon_agreement``: fraction of queries with ``argmax p_s == argmax p_t``.
    """
    k = student_probs.shape[-1]
    pbar = student_probs.float().mean(0)
    return dict(
        mon_target_entropy=normalised_entropy(teacher_probs.float()),
        mon_coverage=normalised_entropy(pbar[None]),
        mon_prototypes_used=(pbar > 1.0 / (10 * k)).sum().float(),
        mon_agreement=(student_probs.argmax(-1) == teacher_probs.argmax(-1))
        .float().mean())


@torch.no_grad()
def attention_entropy(queries: torch.Tensor, tokens: torch.Tensor,
                      beta: float) -> torch.Tensor:
    """Mean ``H(softmax(beta q z^T)) / ln N`` of the mean-shift attention of
    ``queries`` (..., M, C) over ``tokens`` (..., N, C) (1: every query averages
    all tokens alike)."""
    attn = torch.softmax(beta * queries.float() @ tokens.float().transpose(-2, -1),
                         dim=-1)
    return normalised_entropy(attn.reshape(-1, attn.shape[-1]))


@torch.no_grad()
def displacement(queries: torch.Tensor, modes: torch.Tensor) -> torch.Tensor:
    """Mean ``|m - q| / |q|`` of the mean-shift step."""
    q, m = queries.float(), modes.float()
    return ((m - q).norm(dim=-1) / q.norm(dim=-1).clamp_min(1e-12)).mean()


@torch.no_grad()
def token_spread(tokens: torch.Tensor) -> torch.Tensor:
    """Std over the batch of L2-normalised tokens ``(..., C)``, averaged over
    channels, times sqrt(C): about 1 for tokens spread over the sphere, 0 when
    every token is the same (collapse)."""
    z = F.normalize(tokens.float().reshape(-1, tokens.shape[-1]), dim=-1)
    if z.shape[0] < 2:
        return torch.zeros((), device=z.device)
    return z.std(dim=0).mean() * math.sqrt(z.shape[-1])


@torch.no_grad()
def parameter_distance(a: list[torch.Tensor], b: list[torch.Tensor]) -> torch.Tensor:
    """``sqrt(sum ||a_i - b_i||^2)`` over matching tensors (foreach, no host sync)."""
    diffs = torch._foreach_sub([x.float() for x in a], [y.float() for y in b])
    return torch.stack(torch._foreach_norm(diffs, 2)).norm()
