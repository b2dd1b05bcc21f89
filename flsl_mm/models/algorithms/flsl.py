"""The FLSL self-supervised algorithm (student/teacher, mean-shift, loss)."""
from __future__ import annotations

from typing import Sequence

import torch
from mmpretrain.structures import DataSample

from flsl_mm.registry import MODELS
from ..utils import monitors as mon
from ..utils.mean_shift import mean_shift
from .student_teacher import StudentTeacher


@MODELS.register_module()
class FLSL(StudentTeacher):
    """FLSL: Feature-Level Self-supervised Learning (Su et al., NeurIPS 2023).

    Inputs (from :class:`FLSLMultiView` + ``SelfSupDataPreprocessor``): a list of
    view batches ``[teacher_crop, student_view_1, ..., student_view_V]`` and data
    samples carrying ``query_masks`` (one boolean token mask per student view).

    * The teacher (EMA of the student, drop path 0) encodes the teacher crop.
    * The student encodes its views, one forward per resolution group.
    * Queries = student tokens at the mask positions; intra-view mode
      ``m_sa = mean_shift(q, z_s, beta_sa)``; inter-view mode
      ``m_ca = mean_shift(q, z_t, beta_ca)`` against the teacher tokens of the
      same image (broadcast, never copied per view).
    * Loss = :class:`FLSLLoss` on ``(q, m_sa, g_s(m_sa), g_t(m_ca))``.

    The EMA teacher and the hooks it needs are those of :class:`StudentTeacher`;
    the schedules (tau_t, upsilon, beta) are set by :class:`FLSLScheduleHook`.

    Args:
        backbone, head, loss: configs of the student's backbone and head, and of
            :class:`FLSLLoss` (its ``out_dim`` defaults to the head's).
        beta_sa, beta_ca: mean-shift logit scales (0.1/sqrt(384), 0.2/sqrt(384)).
        teacher_momentum: student weight of the EMA at the start (0.004, i.e.
            teacher momentum 0.996); ``teacher_end_momentum`` at the end (0 -> 1).
        monitors: also return the health monitors (``mon_*``, logged, not part
            of the loss; ``docs/monitors.md``). They change no loss or gradient.
            In training they are computed on the iterations the logger logs
            (:class:`FLSLScheduleHook` sets ``monitors_due``), not on the others.
        monitor_every_iter: compute them on every training iteration instead.
    """

    scheduled = 'tau_t / upsilon / beta'
    default_loss = 'FLSLLoss'

    def __init__(self,
                 backbone: dict,
                 head: dict,
                 loss: dict | None = None,
                 beta_sa: float = 0.1 / 384**0.5,
                 beta_ca: float = 0.2 / 384**0.5,
                 teacher_momentum: float = 0.004,
                 teacher_end_momentum: float = 0.0,
                 monitors: bool = True,
                 monitor_every_iter: bool = False,
                 data_preprocessor: dict | None = None,
                 init_cfg: dict | None = None) -> None:
        super().__init__(backbone=backbone, head=head, loss=loss,
                         teacher_momentum=teacher_momentum,
                         teacher_end_momentum=teacher_end_momentum,
                         monitors=monitors, monitor_every_iter=monitor_every_iter,
                         data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.beta_sa = beta_sa
        self.beta_ca = beta_ca

    # ------------------------------------------------------------------ loss
    @staticmethod
    def _query_index(data_samples: Sequence[DataSample], view: int, num_tokens: int,
                     device: torch.device) -> torch.Tensor:
        """``(B, M)`` token indices of the queries of student view ``view``."""
        masks = [torch.as_tensor(s.query_masks[view], dtype=torch.bool).flatten()
                 for s in data_samples]
        sizes = {m.numel() for m in masks}
        if sizes != {num_tokens}:
            raise ValueError(f'query mask of student view {view} has '
                             f'{sorted(sizes)} entries but the view has '
                             f'{num_tokens} tokens; check the crop size / patch '
                             'size of FLSLMultiView against the backbone')
        masks = torch.stack(masks)
        counts = masks.sum(1).unique()
        if len(counts) != 1:
            raise ValueError(f'student view {view}: query counts differ across the '
                             f'batch ({counts.tolist()})')
        # nonzero() is row-major, so each row's indices come out in order
        index = masks.nonzero()[:, 1].reshape(len(data_samples), -1)
        if device.type == 'cuda':  # host -> GPU without waiting for the GPU
            return index.pin_memory().to(device, non_blocking=True)
        return index.to(device)

    def loss(self, inputs: list[torch.Tensor],
             data_samples: list[DataSample]) -> dict[str, torch.Tensor]:
        if not isinstance(inputs, (list, tuple)) or len(inputs) < 2:
            raise ValueError('FLSL expects a list of views [teacher, student...] '
                             '(use FLSLMultiView in the pipeline)')
        if self.training:
            self._check_hooks_served()
        monitor = self._monitors_now()
        teacher_img, student_imgs = inputs[0], list(inputs[1:])
        with torch.no_grad():
            z_t = self.teacher.module.backbone(teacher_img)  # B x Nt x C

        queries, sa_modes, ca_modes = [], [], []
        attn_entropy = dict(sa=[], ca=[])
        spread = None  # token spread of the first student views
        view = 0
        for group in self._resolution_groups(student_imgs):
            num_views = len(group)
            batch = group[0].shape[0]
            z_s = self.backbone(torch.cat(group))  # (V*B) x N x C
            n, c = z_s.shape[1:]
            z_s = z_s.reshape(num_views, batch, n, c)
            index = torch.stack([
                self._query_index(data_samples, view + v, n, z_s.device)
                for v in range(num_views)])  # V x B x M
            q = torch.gather(z_s, 2, index.unsqueeze(-1).expand(-1, -1, -1, c))
            sa = mean_shift(q, z_s, self.beta_sa)
            with torch.no_grad():
                ca = mean_shift(q.detach().to(z_t.dtype), z_t.unsqueeze(0), self.beta_ca)
            queries.append(q.reshape(-1, c))
            sa_modes.append(sa.reshape(-1, c))
            ca_modes.append(ca.reshape(-1, c))
            view += num_views
            if monitor:  # weighted by the group's number of queries
                weight = q.shape[0] * q.shape[1] * q.shape[2]
                attn_entropy['sa'].append((weight, mon.attention_entropy(
                    q.detach(), z_s.detach(), self.beta_sa)))
                attn_entropy['ca'].append((weight, mon.attention_entropy(
                    q.detach().to(z_t.dtype), z_t.unsqueeze(0), self.beta_ca)))
                if spread is None:
                    spread = mon.token_spread(z_s.detach())

        q, sa, ca = torch.cat(queries), torch.cat(sa_modes), torch.cat(ca_modes)
        student_logits = self.head(sa)
        with torch.no_grad():
            teacher_logits = self.teacher.module.head(ca)
        monitors = {}
        if monitor:
            with torch.no_grad():
                p_s = torch.softmax(student_logits.detach().float() /
                                    self.loss_module.student_temp, dim=-1)
                monitors = mon.prototype_monitors(
                    p_s, self.loss_module.teacher_probs(teacher_logits))
                for key, parts in attn_entropy.items():
                    total = sum(w for w, _ in parts)
                    monitors[f'mon_{key}_attention_entropy'] = sum(
                        w * e for w, e in parts) / total
                monitors['mon_displacement'] = mon.displacement(q.detach(),
                                                                sa.detach())
                monitors['mon_token_spread'] = spread
        losses = self.loss_module(q, sa, student_logits, teacher_logits)
        losses.update(monitors)
        return losses
