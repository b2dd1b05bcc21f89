"""The FLSL self-supervised algorithm (student/teacher, mean-shift, loss)."""
from __future__ import annotations

import logging

import torch
from mmengine.logging import print_log

from flsl_mm.datasets.collate import query_index as collate_query_index
from flsl_mm.registry import MODELS
from ..utils import monitors as mon
from ..utils.mean_shift import mean_shift
from .student_teacher import StudentTeacher


@MODELS.register_module()
class FLSL(StudentTeacher):
    """FLSL: Feature-Level Self-supervised Learning (Su et al., NeurIPS 2023).

    Inputs (from :class:`FLSLMultiView` + ``MultiViewDataPreprocessor``): a list of
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
        compile: compile :meth:`_step` (``torch.compile(fullgraph=True)``,
            :class:`StudentTeacher`).
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
                 compile: bool | dict = False,
                 data_preprocessor: dict | None = None,
                 init_cfg: dict | None = None) -> None:
        super().__init__(backbone=backbone, head=head, loss=loss,
                         teacher_momentum=teacher_momentum,
                         teacher_end_momentum=teacher_end_momentum,
                         monitors=monitors, monitor_every_iter=monitor_every_iter,
                         compile=compile, data_preprocessor=data_preprocessor,
                         init_cfg=init_cfg)
        self.beta_sa = beta_sa
        self.beta_ca = beta_ca

    # ------------------------------------------------------------------ step
    def _check_inputs(self, inputs) -> None:
        if not isinstance(inputs, (list, tuple)) or len(inputs) < 2:
            raise ValueError('FLSL expects a list of views [teacher, student...] '
                             '(use FLSLMultiView in the pipeline)')

    def scheduled_values(self) -> dict[str, float]:
        return dict(teacher_temp=self.loss_module.current_teacher_temp,
                    upsilon=self.loss_module.upsilon, beta_sa=self.beta_sa,
                    beta_ca=self.beta_ca)

    def _step_inputs(self, inputs, data_samples, query_index) -> tuple:
        """Teacher view, student views and per student view the ``(B, M)``
        query indices: the batch's (``flsl_collate`` / ``pack_images_collate``
        made them in the loader), else made here from the data samples' masks
        (host work and a blocking copy per view on a GPU: warned once)."""
        teacher, students = inputs[0], list(inputs[1:])
        if query_index is None:
            if self.training and not getattr(self, '_warned_query_index', False):
                self._warned_query_index = True
                print_log(
                    'FLSL: the batch has no query_index, so the query indices are '
                    'made from the data samples\' masks on the host every '
                    'iteration (on a GPU a blocking copy per student view): collate '
                    "with flsl_collate and use MultiViewDataPreprocessor "
                    '(docs/pretraining.md, "Host synchronisations")',
                    logger='current', level=logging.WARNING)
            query_index = collate_query_index(data_samples or [])
            if query_index is None:
                raise ValueError('FLSL needs the query masks of its student views: '
                                 "pack FLSLMultiView's output with "
                                 "algorithm_keys=['query_masks']")
            query_index = [i.to(teacher.device) for i in query_index]
        if len(query_index) != len(students):
            raise ValueError(f'FLSL: {len(query_index)} query indices for '
                             f'{len(students)} student views')
        patch = self.backbone.patch_size
        masks = data_samples[0].get('query_masks') if data_samples else None
        for v, (view, index) in enumerate(zip(students, query_index)):
            tokens = (view.shape[-2] // patch) * (view.shape[-1] // patch)
            length = len(masks[v]) if masks is not None else None
            if (length is not None and length != tokens) or index.shape[-1] > tokens \
                    or index.shape[0] != view.shape[0]:
                raise ValueError(f'query mask of student view {v} has '
                                 f'{length or index.shape[-1]} entries but the view '
                                 f'has {tokens} tokens; check the crop size / patch '
                                 'size of FLSLMultiView against the backbone')
        return teacher, students, list(query_index)

    def _step(self, teacher_img: torch.Tensor, student_imgs: list[torch.Tensor],
              query_index: list[torch.Tensor], schedule: dict):
        with torch.no_grad():
            z_t = self.teacher.module.backbone(teacher_img)  # B x Nt x C
        queries, sa_modes, ca_modes, groups = [], [], [], []
        view = 0
        for group in self._resolution_groups(student_imgs):
            num_views = len(group)
            batch = group[0].shape[0]
            z_s = self.backbone(torch.cat(group))  # (V*B) x N x C
            n, c = z_s.shape[1:]
            z_s = z_s.reshape(num_views, batch, n, c)
            index = torch.stack(query_index[view:view + num_views])  # V x B x M
            q = torch.gather(z_s, 2, index.unsqueeze(-1).expand(-1, -1, -1, c))
            sa = mean_shift(q, z_s, schedule['beta_sa'])
            with torch.no_grad():
                ca = mean_shift(q.detach().to(z_t.dtype), z_t.unsqueeze(0),
                                schedule['beta_ca'])
            queries.append(q.reshape(-1, c))
            sa_modes.append(sa.reshape(-1, c))
            ca_modes.append(ca.reshape(-1, c))
            groups.append((q.detach(), z_s.detach()))
            view += num_views
        q, sa, ca = torch.cat(queries), torch.cat(sa_modes), torch.cat(ca_modes)
        student_logits = self.head(sa)
        with torch.no_grad():
            teacher_logits = self.teacher.module.head(ca)
        losses = self.loss_module(q, sa, student_logits, teacher_logits,
                                  upsilon=schedule['upsilon'],
                                  teacher_temp=schedule['teacher_temp'])
        aux = dict(groups=groups, z_t=z_t, q=q.detach(), sa=sa.detach(),
                   student_logits=student_logits.detach(),
                   teacher_logits=teacher_logits, schedule=schedule)
        return losses, aux

    def _monitors(self, aux: dict) -> dict[str, torch.Tensor]:
        """docs/monitors.md: prototypes, attention entropies (weighted by each
        resolution group's number of queries), displacement, token spread."""
        schedule = aux['schedule']
        p_s = torch.softmax(aux['student_logits'].float() /
                            self.loss_module.student_temp, dim=-1)
        monitors = mon.prototype_monitors(p_s, self.loss_module.teacher_probs(
            aux['teacher_logits'], schedule['teacher_temp']))
        z_t = aux['z_t']
        for key, tokens_of, beta in (('sa', lambda z: z, schedule['beta_sa']),
                                     ('ca', lambda z: z_t.unsqueeze(0),
                                      schedule['beta_ca'])):
            total = weighted = 0
            for q, z_s in aux['groups']:
                weight = q.shape[0] * q.shape[1] * q.shape[2]
                entropy = mon.attention_entropy(
                    q if key == 'sa' else q.to(z_t.dtype), tokens_of(z_s), beta)
                total, weighted = total + weight, weighted + weight * entropy
            monitors[f'mon_{key}_attention_entropy'] = weighted / total
        monitors['mon_displacement'] = mon.displacement(aux['q'], aux['sa'])
        monitors['mon_token_spread'] = mon.token_spread(aux['groups'][0][1])
        return monitors
