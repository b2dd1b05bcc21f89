"""FLSL objective: mean-shift, k-means and volume-maximisation terms (§6)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from flsl_mm.registry import MODELS
from flsl_mm.utils.dist import all_reduce_mean_identity_grad
from .centering import TeacherTargets, teacher_temp_at  # noqa: F401


def meanshift_loss(queries: torch.Tensor, modes: torch.Tensor) -> torch.Tensor:
    """``L_ms = 2 - 2 * mean(cos(q, m_sa))`` over all queries (rows)."""
    return 2 - 2 * F.cosine_similarity(queries.float(), modes.float(), dim=-1).mean()


def kmeans_loss(student_logits: torch.Tensor, teacher_probs: torch.Tensor,
                student_temp: float) -> torch.Tensor:
    """``L_km = mean(-sum_k p_t log p_s)``, ``p_s = softmax(logits / tau_s)``."""
    log_ps = F.log_softmax(student_logits.float() / student_temp, dim=-1)
    return torch.sum(-teacher_probs * log_ps, dim=-1).mean()


def vmr_loss(student_logits: torch.Tensor, student_temp: float) -> torch.Tensor:
    """Volume-maximisation regulariser ``KL(pbar || uniform)``.

    ``pbar`` is the mean of ``p_s`` over the queries of this process, averaged over
    all processes (all-reduce; the gradient passes through unchanged).
    """
    probs = F.softmax(student_logits.float() / student_temp, dim=-1)
    pbar = all_reduce_mean_identity_grad(probs.mean(dim=0))
    return torch.special.xlogy(pbar, pbar).sum() + math.log(pbar.numel())


@MODELS.register_module()
class FLSLLoss(TeacherTargets):
    """``upsilon * L_ms + eta * L_km + gamma * L_vmr`` (FLSL_SPEC §6).

    The teacher temperature schedule lives here, and only here: tau_t warms up
    linearly ``warmup_teacher_temp -> teacher_temp`` over the first
    ``warmup_teacher_temp_epochs`` epochs (0.04 -> 0.07 over 30), then stays;
    :class:`FLSLScheduleHook` tells the loss the epoch (:meth:`set_epoch`), and
    ``current_teacher_temp`` is the value in use. ``upsilon`` is a plain attribute
    that the hook may schedule. The three terms come back
    separately (``loss_meanshift``, ``loss_kmeans``, ``loss_vmr``), each already
    weighted, so mmengine sums them and logs each.

    Args:
        out_dim: K, the number of prototypes.
        upsilon, eta, gamma: weights of the three terms (0.03, 1.0, 5.0).
        student_temp: tau_s (0.1).
        teacher_temp: tau_t after the warm-up (0.07).
        warmup_teacher_temp: tau_t at epoch 0 (0.04).
        warmup_teacher_temp_epochs: length of the linear warm-up (30).
        use_centering: DINO centering of the teacher logits *instead of* VMR
            (then ``loss_vmr`` is not computed).
        center_momentum: EMA momentum of the centre (0.9).
    """

    def __init__(self,
                 out_dim: int,
                 upsilon: float = 0.03,
                 eta: float = 1.0,
                 gamma: float = 5.0,
                 student_temp: float = 0.1,
                 teacher_temp: float = 0.07,
                 warmup_teacher_temp: float = 0.04,
                 warmup_teacher_temp_epochs: int = 30,
                 use_centering: bool = False,
                 center_momentum: float = 0.9) -> None:
        super().__init__(out_dim, student_temp, teacher_temp, warmup_teacher_temp,
                         warmup_teacher_temp_epochs, center_momentum, use_centering)
        self.upsilon = upsilon
        self.eta = eta
        self.gamma = gamma

    def forward(self, queries: torch.Tensor, sa_modes: torch.Tensor,
                student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                upsilon=None, teacher_temp=None) -> dict[str, torch.Tensor]:
        """All inputs are flattened over queries: ``(Q, C)`` / ``(Q, K)``.
        ``upsilon`` / ``teacher_temp``: this step's values (floats or 0-dim
        tensors; default: the attributes the schedule hook sets)."""
        upsilon = self.upsilon if upsilon is None else upsilon
        p_t = self.teacher_probs(teacher_logits, teacher_temp)
        losses = dict(
            loss_meanshift=upsilon * meanshift_loss(queries, sa_modes),
            loss_kmeans=self.eta * kmeans_loss(student_logits, p_t, self.student_temp))
        if self.use_centering:
            self.update_center(teacher_logits)
        else:
            losses['loss_vmr'] = self.gamma * vmr_loss(student_logits, self.student_temp)
        return losses
