"""DINO's objective: cross-entropy between crops, centred teacher (docs/dino.md)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from flsl_mm.registry import MODELS
from .centering import TeacherTargets


@MODELS.register_module()
class DINOLoss(TeacherTargets):
    """``mean over pairs (t, s), s != t, of CE(p_t, p_s)`` (Caron et al. 2021, Eq. 3).

    ``p_t = softmax((g_t - c) / tau_t)`` over the teacher's outputs of the global
    crops, ``p_s = softmax(g_s / tau_s)`` over the student's outputs of every crop
    (global crops first, in the teacher's order); each teacher crop is paired
    with every student crop but itself, each pair's CE averaged over the batch,
    and the pairs averaged. After the loss, the centre moves:
    ``c <- m c + (1 - m) mean(g_t)`` over all teacher rows of all processes.

    tau_t warms up linearly ``warmup_teacher_temp -> teacher_temp`` over the first
    ``warmup_teacher_temp_epochs`` epochs, then stays (DINO's schedule); the
    schedule hook (:class:`DINOScheduleHook`) calls :meth:`set_epoch`.

    Args:
        out_dim: K, the head's output width (65536 published).
        num_global_crops: crops the teacher sees (2).
        student_temp: tau_s (0.1).
        teacher_temp: tau_t after the warm-up (0.04).
        warmup_teacher_temp: tau_t at epoch 0 (0.04).
        warmup_teacher_temp_epochs: length of the warm-up (0).
        center_momentum: m of the centre's EMA (0.9).
    """

    def __init__(self,
                 out_dim: int,
                 num_global_crops: int = 2,
                 student_temp: float = 0.1,
                 teacher_temp: float = 0.04,
                 warmup_teacher_temp: float = 0.04,
                 warmup_teacher_temp_epochs: int = 0,
                 center_momentum: float = 0.9) -> None:
        super().__init__(out_dim, student_temp, teacher_temp, warmup_teacher_temp,
                         warmup_teacher_temp_epochs, center_momentum,
                         use_centering=True)
        self.num_global_crops = num_global_crops

    def forward(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                teacher_temp=None) -> dict[str, torch.Tensor]:
        """``student_logits``: ``(num_crops * B, K)``, crop-major;
        ``teacher_logits``: ``(num_global_crops * B, K)``, crop-major;
        ``teacher_temp``: this step's tau_t (default: the current one)."""
        if len(teacher_logits) % self.num_global_crops:
            raise ValueError(f'DINOLoss: {len(teacher_logits)} teacher rows are not '
                             f'{self.num_global_crops} crops of one batch')
        batch = len(teacher_logits) // self.num_global_crops
        if len(student_logits) % batch or len(student_logits) // batch <= 1:
            raise ValueError(f'DINOLoss: {len(student_logits)} student rows are not '
                             f'crops of the batch of {batch} (at least 2 crops)')
        k = student_logits.shape[-1]
        p_t = self.teacher_probs(teacher_logits, teacher_temp).reshape(
            self.num_global_crops, batch, k)
        log_ps = F.log_softmax(student_logits.float() / self.student_temp, dim=-1)
        log_ps = log_ps.reshape(-1, batch, k)  # each crop's log-softmax once
        # ce[t, s]: batch-mean CE of teacher crop t against student crop s
        ce = -torch.einsum('tbk,sbk->ts', p_t, log_ps) / batch
        same_view = torch.eye(*ce.shape, dtype=torch.bool, device=ce.device)
        pairs = ce.numel() - min(ce.shape)
        self.update_center(teacher_logits)
        return dict(loss_dino=ce.masked_fill(same_view, 0).sum() / pairs)


__all__ = ['DINOLoss']
