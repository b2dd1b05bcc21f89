"""DINO: self-distillation with no labels (Caron et al., ICCV 2021; docs/dino.md).

The baseline every FLSL result is compared with, built from FLSL's pieces: the
same student / EMA teacher (:class:`StudentTeacher`), ViT (:class:`FLSLViT` with
a class token), head (:class:`FLSLHead` is DINO's head), hooks and schedules.
"""
from __future__ import annotations

import torch

from flsl_mm.registry import MODELS
from ..losses.centering import teacher_probs
from ..utils import monitors as mon
from .student_teacher import StudentTeacher


@MODELS.register_module()
class DINO(StudentTeacher):
    """Student on every crop, teacher on the global crops, CE between them.

    Inputs (from :class:`DINOMultiCrop` + ``MultiViewDataPreprocessor``): a list of
    crop batches ``[global_1, ..., global_G, local_1, ..., local_L]``.

    * The teacher (EMA of the student, drop path 0) encodes the ``G`` global
      crops (one forward), its head gives ``g_t``: ``(G * B, K)``.
    * The student encodes every crop, one forward per resolution group (DINO's
      multi-crop wrapper), and its head gives ``g_s`` of all of them at once.
    * Loss = :class:`DINOLoss` (centred, sharpened teacher; every teacher crop
      against every other student crop).

    The backbone must return the class token (``FLSLViT`` with
    ``with_cls_token=True, out_type='cls_token'``). The EMA teacher and the hooks
    it needs are those of :class:`StudentTeacher`; tau_t is set per epoch by
    :class:`DINOScheduleHook`; the last layer is frozen in the first epoch by
    :class:`FreezeLastLayerHook` and gradients are clipped per parameter by
    :class:`PerParamGradClipHook` (all named in the DINO configs).

    Args:
        backbone, head, loss: configs of the student's backbone and head, and of
            :class:`DINOLoss` (its ``out_dim`` defaults to the head's).
        teacher_momentum, teacher_end_momentum, monitors, monitor_every_iter,
            data_preprocessor, init_cfg: as :class:`StudentTeacher` (EMA
            0.996 -> 1 by default).
    """

    schedule_hook = 'DINOScheduleHook'
    scheduled = 'tau_t'
    default_loss = 'DINOLoss'

    def __init__(self, backbone: dict, **kwargs) -> None:
        if backbone.get('out_type') != 'cls_token':
            raise ValueError("DINO trains on the class token: set the backbone's "
                             "with_cls_token=True and out_type='cls_token' (got "
                             f"out_type={backbone.get('out_type')!r})")
        super().__init__(backbone=backbone, **kwargs)

    def _check_inputs(self, inputs) -> None:
        num_global = self.loss_module.num_global_crops
        if not isinstance(inputs, (list, tuple)) or len(inputs) <= num_global:
            raise ValueError(f'DINO expects a list of {num_global} global crops and '
                             'at least one more crop (use DINOMultiCrop in the '
                             'pipeline)')

    def _step(self, inputs: list[torch.Tensor], schedule: dict):
        num_global = self.loss_module.num_global_crops
        with torch.no_grad():
            teacher = self.teacher.module
            teacher_logits = teacher.head(teacher.backbone(
                torch.cat(list(inputs[:num_global]))))
        feats = [self.backbone(torch.cat(group))
                 for group in self._resolution_groups(list(inputs))]
        student_logits = self.head(torch.cat(feats))
        aux = dict(student_logits=student_logits.detach(),
                   teacher_logits=teacher_logits, schedule=schedule,
                   # the centre before the loss moves it
                   center=self.loss_module.center.clone())
        losses = self.loss_module(student_logits, teacher_logits,
                                  teacher_temp=schedule['teacher_temp'])
        return losses, aux

    def _monitors(self, aux: dict) -> dict[str, torch.Tensor]:
        """``docs/monitors.md``'s target entropy, coverage, prototypes used and
        agreement, on the pairs the loss uses between global crops: the student
        on global crop ``i`` against the teacher on the next global crop (with
        the centre before the loss moved it)."""
        num_global = self.loss_module.num_global_crops
        teacher_logits = aux['teacher_logits']
        p_t = teacher_probs(teacher_logits, aux['schedule']['teacher_temp'],
                            aux['center']).chunk(num_global)
        batch = len(teacher_logits) // num_global
        p_s = torch.softmax(aux['student_logits'][:num_global * batch].float() /
                            self.loss_module.student_temp, dim=-1)
        shifted = torch.cat(p_t[1:] + p_t[:1])  # crop i's partner: crop i + 1
        return mon.prototype_monitors(p_s, shifted)
