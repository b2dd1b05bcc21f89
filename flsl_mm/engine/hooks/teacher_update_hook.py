"""Hook that moves the EMA teacher after every optimiser step (§7)."""
from __future__ import annotations

from mmengine.hooks import Hook

from flsl_mm.registry import HOOKS
from .iter_schedule import logs_after_iter
from .runner_model import runner_model


@HOOKS.register_module()
class FLSLTeacherUpdateHook(Hook):
    """Call ``model.update_teacher()`` after each training iteration.

    A hook rather than code in ``train_step`` so that it also runs when the model is
    wrapped in ``MMDistributedDataParallel`` (whose ``train_step`` is its own).
    mmengine steps the optimiser inside ``train_step``; gradient accumulation
    (``accumulative_counts > 1``) would need the update only on stepping
    iterations, so it is refused.
    """

    priority = 'ABOVE_NORMAL'

    def before_train(self, runner) -> None:
        counts = getattr(runner.optim_wrapper, '_accumulative_counts', 1)
        if counts != 1:
            raise ValueError('FLSLTeacherUpdateHook: accumulative_counts > 1 is not '
                             'supported (the teacher must follow each optimiser step)')

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs=None) -> None:
        model = runner_model(runner)
        model.update_teacher()
        # the momentum of the step just taken (steps was incremented by it)
        ema = model.teacher
        runner.message_hub.update_scalar(
            'train/teacher_momentum',
            1 - float(ema.student_weight(ema.host_steps - 1, runner.max_iters)))
        if getattr(model, 'monitors', False) and logs_after_iter(runner, batch_idx):
            runner.message_hub.update_scalar(
                'train/mon_teacher_student_dist',
                float(model.teacher_student_distance()))
            runner.message_hub.update_scalar(
                'train/mon_teacher_init_weight',
                ema.initial_weight(ema.host_steps, runner.max_iters))
