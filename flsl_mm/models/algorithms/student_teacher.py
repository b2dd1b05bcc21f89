"""Student / EMA-teacher self-distillation: what FLSL and DINO share.

Both train a student ViT + projection head by gradient and move a teacher copy
of it by EMA (``docs/pretraining.md``, ``docs/dino.md``); only the views and the
loss differ (:class:`FLSL`, :class:`DINO`).
"""
from __future__ import annotations

import copy
import logging

import torch
import torch.nn as nn
from mmengine.logging import print_log
from mmpretrain.models.selfsup import BaseSelfSupervisor
from mmpretrain.models.utils import SelfSupDataPreprocessor

from flsl_mm.registry import MODELS
from ..utils import monitors as mon
from ..utils.compile_step import build_compiled_step
from .teacher_ema import TeacherEMA


class StudentTeacher(BaseSelfSupervisor):
    """Student ``backbone`` + ``head`` and their EMA ``teacher`` (drop path 0).

    The teacher starts as a copy of the student and is moved by
    :meth:`update_teacher`, called by :class:`FLSLTeacherUpdateHook` after every
    optimiser step; the loss's schedules are set by the hook named in
    ``schedule_hook`` before every iteration. Both hooks are needed for
    correctness, so the model checks that they ran: a second training step
    (:meth:`_check_hooks_served`) without a teacher update (or without a schedule
    step) in between raises ``RuntimeError`` naming the missing hook.

    Args:
        backbone, head: configs of the student's backbone and head.
        loss: config of the loss (``type`` defaults to ``default_loss``, its
            ``out_dim`` to the head's), built as ``loss_module``.
        teacher_momentum: student weight of the EMA at the start (0.004, i.e.
            teacher momentum 0.996); ``teacher_end_momentum`` at the end (0 -> 1).
        monitors: also return the health monitors (``mon_*``, logged, not part
            of the loss; ``docs/monitors.md``). In training they are computed on
            the iterations the logger logs (the schedule hook sets
            ``monitors_due``), not on the others.
        monitor_every_iter: compute them on every training iteration instead.
        compile: compile the step from the views to the losses
            (:meth:`_step`) with ``torch.compile(fullgraph=True)``, static
            shapes (``True``, or a dict of
            :class:`~flsl_mm.models.utils.compile_step.CompiledStep`'s
            ``backend`` / ``mode`` / ``options`` / ``dynamic``); the scheduled
            values then enter it as tensors, so a new value is no recompilation
            (docs/pretraining.md, "Compiled step").

    The training step is :meth:`loss`: the checks, the host-side inputs and the
    monitors around :meth:`_step`, a function of tensors only (the views, the
    query indices, the scheduled values) with no host synchronisation and no
    graph break.
    """

    #: the hook that must call :meth:`schedule_applied` before every step
    schedule_hook = 'FLSLScheduleHook'
    #: what that hook schedules (for the error message)
    scheduled = 'the loss schedules'
    #: the loss type when the config's ``loss`` names none
    default_loss = ''
    #: the data preprocessor when the config names none
    default_preprocessor = 'MultiViewDataPreprocessor'

    def __init__(self,
                 backbone: dict,
                 head: dict,
                 loss: dict | None = None,
                 teacher_momentum: float = 0.004,
                 teacher_end_momentum: float = 0.0,
                 monitors: bool = True,
                 monitor_every_iter: bool = False,
                 compile: bool | dict = False,
                 data_preprocessor: dict | None = None,
                 init_cfg: dict | None = None) -> None:
        if data_preprocessor is None or isinstance(data_preprocessor, dict):
            data_preprocessor = dict(data_preprocessor or {})
            data_preprocessor.setdefault('type', self.default_preprocessor)
        super().__init__(backbone=backbone, head=head,
                         data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        if type(self.data_preprocessor) is SelfSupDataPreprocessor:
            print_log(
                f'{type(self).__name__}: mmpretrain\'s SelfSupDataPreprocessor makes a '
                'blocking host-to-device copy per view every iteration (its BGR->RGB '
                'list index) and drops the batch\'s query_index (flsl_collate): use '
                "type='MultiViewDataPreprocessor', the same arguments "
                '(docs/pretraining.md, "Host synchronisations")', logger='current',
                level=logging.WARNING)
        loss = dict(loss or {})
        loss.setdefault('type', self.default_loss)
        loss.setdefault('out_dim', self.head.out_channels)
        self.loss_module = MODELS.build(loss)
        self.monitors = monitors
        self.monitor_every_iter = monitor_every_iter
        self.monitors_due = True  # set per iteration by the schedule hook

        teacher_backbone_cfg = copy.deepcopy(backbone)
        teacher_backbone_cfg['drop_path_rate'] = 0.0
        teacher_backbone_cfg.pop('init_cfg', None)
        teacher = nn.ModuleDict(dict(backbone=MODELS.build(teacher_backbone_cfg),
                                     head=MODELS.build(copy.deepcopy(head))))
        self.teacher = TeacherEMA(teacher, momentum=teacher_momentum,
                                  end_momentum=teacher_end_momentum)
        self.sync_teacher()
        # training steps since the hook last served the model
        self._calls_since = {'FLSLTeacherUpdateHook': 0, self.schedule_hook: 0}
        self.compiled_step = build_compiled_step(self._step, compile)

    # --------------------------------------------------------------- teacher
    def _student(self) -> nn.ModuleDict:
        """The student seen with the teacher's parameter names (not registered)."""
        student = nn.ModuleDict()
        # ModuleDict.__setitem__ would register; bypass to keep it a view.
        student._modules['backbone'] = self.backbone
        student._modules['head'] = self.head
        return student

    @torch.no_grad()
    def sync_teacher(self) -> None:
        """Teacher := student (at construction and after loading student weights)."""
        self.teacher.module.load_state_dict(self._student().state_dict())

    def init_weights(self) -> None:
        super().init_weights()
        self.sync_teacher()

    @torch.no_grad()
    def update_teacher(self) -> None:
        """One EMA step of the teacher towards the current student."""
        self.teacher.update_parameters(self._student())
        self._calls_since['FLSLTeacherUpdateHook'] = 0

    def teacher_student_distance(self) -> torch.Tensor:
        """``|teacher - student|``: L2 distance over all parameters (a monitor)."""
        student = dict(self._student().named_parameters())
        teacher = list(self.teacher.module.named_parameters())
        return mon.parameter_distance([p for _, p in teacher],
                                      [student[n].detach() for n, _ in teacher])

    def schedule_applied(self) -> None:
        """Called by the schedule hook once it set this iteration's values."""
        self._calls_since[self.schedule_hook] = 0

    def _check_hooks_served(self) -> None:
        """Refuse a training step when a correctness hook stopped running."""
        name = type(self).__name__
        for hook, calls in self._calls_since.items():
            if calls >= 1:
                what = ('the EMA teacher has not been updated'
                        if hook == 'FLSLTeacherUpdateHook'
                        else f'{self.scheduled} have not been scheduled')
                raise RuntimeError(
                    f'{name}: {what} since the last training step: {hook} is not '
                    f'running. It belongs in default_hooks (the {name} configs name '
                    'it there; do not set it to None), see docs/pretraining.md.')
        for hook in self._calls_since:
            self._calls_since[hook] += 1

    def _monitors_now(self) -> bool:
        """Whether this step computes the health monitors."""
        return self.monitors and (self.monitors_due or not self.training)

    # ------------------------------------------------------------------ step
    def forward(self, inputs, data_samples=None, mode: str = 'tensor',
                query_index=None):
        """mmpretrain's ``forward``; ``query_index`` (the batch's, from the data
        preprocessor) goes to :meth:`loss`."""
        if mode == 'loss':
            return self.loss(inputs, data_samples, query_index=query_index)
        return super().forward(inputs, data_samples, mode=mode)

    def loss(self, inputs: list[torch.Tensor], data_samples=None,
             query_index: list[torch.Tensor] | None = None) -> dict:
        """One training step's losses (and, when due, the monitors): the
        checks and host-side inputs, :meth:`_step` (compiled with ``compile``),
        the monitors from what it returns."""
        self._check_inputs(inputs)
        tensors = self._step_inputs(inputs, data_samples, query_index)
        if self.training:
            self._check_hooks_served()
        monitor = self._monitors_now()
        schedule = self.scheduled_values()
        step = self._step
        if self.compiled_step is not None:
            # tensors, so that a new value of a schedule is no recompilation
            device = inputs[0].device
            schedule = {k: torch.full((), v, device=device)
                        for k, v in schedule.items()}
            step = self.compiled_step
        losses, aux = step(*tensors, schedule)
        if monitor:
            with torch.no_grad():
                losses.update(self._monitors(aux))
        return losses

    def _check_inputs(self, inputs) -> None:
        """Refuse inputs the algorithm cannot take (subclasses)."""

    def _step_inputs(self, inputs, data_samples, query_index) -> tuple:
        """The tensors :meth:`_step` takes, before the schedule."""
        return (list(inputs),)

    def scheduled_values(self) -> dict[str, float]:
        """The values the schedule hook sets, as :meth:`_step` takes them."""
        return dict(teacher_temp=self.loss_module.current_teacher_temp)

    def _step(self, *args):
        """Views (and what else :meth:`_step_inputs` gives) and the scheduled
        values -> ``(losses, aux)``, ``aux`` the detached tensors the monitors
        read. Tensors only: no host reads, no graph breaks."""
        raise NotImplementedError

    def _monitors(self, aux: dict) -> dict[str, torch.Tensor]:
        """The health monitors from :meth:`_step`'s ``aux``."""
        return {}

    # ------------------------------------------------------------ forwarding
    @staticmethod
    def _resolution_groups(views: list[torch.Tensor]) -> list[list[torch.Tensor]]:
        """Consecutive views of equal size, forwarded together (DINO's
        multi-crop wrapper)."""
        groups: list[list[torch.Tensor]] = []
        for v in views:
            if groups and groups[-1][0].shape[-2:] == v.shape[-2:]:
                groups[-1].append(v)
            else:
                groups.append([v])
        return groups

    def extract_feat(self, inputs: torch.Tensor, use_teacher: bool = True):
        """Backbone output of the teacher (default: the model trained for
        downstream use) or of the student."""
        backbone = self.teacher.module.backbone if use_teacher else self.backbone
        return backbone(inputs)
