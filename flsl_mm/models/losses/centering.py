"""The teacher's targets: sharpening with a warmed-up tau_t, and centring (DINO,
Caron et al. 2021, Eq. 4; docs/dino.md; FLSL_SPEC §6).

Shared by :class:`FLSLLoss` (tau_t; centring is its ablation ``use_centering``) and
:class:`DINOLoss` (both, always).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from flsl_mm.utils.dist import all_reduce_mean


def teacher_temp_at(epoch: int, warmup_temp: float, temp: float,
                    warmup_epochs: int) -> float:
    """``linspace(warmup_temp, temp, warmup_epochs)[epoch]``, then ``temp`` (§6)."""
    if epoch >= warmup_epochs or warmup_epochs <= 0:
        return temp
    if warmup_epochs == 1:
        return warmup_temp
    return warmup_temp + (temp - warmup_temp) * epoch / (warmup_epochs - 1)


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


class TeacherTargets(nn.Module):
    """State of the teacher's targets: tau_s, the tau_t schedule and the centre.

    tau_t warms up linearly ``warmup_teacher_temp -> teacher_temp`` over the first
    ``warmup_teacher_temp_epochs`` epochs, then stays; the schedule hook calls
    :meth:`set_epoch` and ``current_teacher_temp`` is the value in use. The centre
    (a ``1 x out_dim`` buffer, saved in checkpoints) moves by :meth:`update_center`
    and is subtracted from the teacher's logits when ``use_centering``.
    """

    def __init__(self, out_dim: int, student_temp: float, teacher_temp: float,
                 warmup_teacher_temp: float, warmup_teacher_temp_epochs: int,
                 center_momentum: float, use_centering: bool) -> None:
        super().__init__()
        self.use_centering = use_centering
        self.out_dim = out_dim
        self.student_temp = student_temp
        self.teacher_temp = teacher_temp
        self.warmup_teacher_temp = warmup_teacher_temp
        self.warmup_teacher_temp_epochs = warmup_teacher_temp_epochs
        self.center_momentum = center_momentum
        self.set_epoch(0)
        self.register_buffer('center', torch.zeros(1, out_dim))

    def set_epoch(self, epoch: int) -> float:
        """Move tau_t to its value at ``epoch`` (0-based); returns it."""
        self.current_teacher_temp = teacher_temp_at(
            epoch, self.warmup_teacher_temp, self.teacher_temp,
            self.warmup_teacher_temp_epochs)
        return self.current_teacher_temp

    def teacher_probs(self, teacher_logits: torch.Tensor, temp=None) -> torch.Tensor:
        """``softmax((g_t [- c]) / tau_t)`` at ``temp`` (a float or a 0-dim
        tensor; default: the current tau_t), with the centre when centring."""
        return teacher_probs(teacher_logits,
                             self.current_teacher_temp if temp is None else temp,
                             self.center if self.use_centering else None)

    def update_center(self, teacher_logits: torch.Tensor) -> None:
        update_center_(self.center, teacher_logits, self.center_momentum)


__all__ = ['teacher_temp_at', 'teacher_probs', 'update_center_', 'TeacherTargets']
