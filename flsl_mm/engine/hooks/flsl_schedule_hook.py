"""Per-epoch / per-iteration schedules of FLSL's loss and mean-shift (§5-6)."""
from __future__ import annotations

import math

from mmengine.hooks import Hook

from flsl_mm.registry import HOOKS
from .iter_schedule import logs_after_iter
from .runner_model import runner_model


def cosine_value(start: float, end: float, it: int, total: int) -> float:
    """The reference's cosine schedule: ``end + (start-end)(1 + cos(pi it/T))/2``."""
    if total <= 0:
        return end
    return end + 0.5 * (start - end) * (1 + math.cos(math.pi * min(it, total) / total))


@HOOKS.register_module()
class FLSLScheduleHook(Hook):
    """Set tau_t (per epoch), upsilon and beta_sa / beta_ca (per iteration).

    * ``tau_t``: the loss's own warm-up schedule (``FLSLLoss.teacher_temp``,
      ``warmup_teacher_temp``, ``warmup_teacher_temp_epochs``: the only place it
      is configured), moved to ``runner.epoch``.
    * ``upsilon``: cosine from ``start_intraview`` to the loss's configured upsilon
      over all iterations (None: constant).
    * ``beta_sa`` / ``beta_ca``: cosine from ``start_beta_sa`` / ``start_beta_ca``
      to the model's configured values (None: constant).

    Values are computed from ``runner.iter`` / ``runner.epoch`` alone, so a resumed
    run continues the schedules exactly.
    """

    priority = 'HIGH'

    def __init__(self,
                 start_intraview: float | None = None,
                 start_beta_sa: float | None = None,
                 start_beta_ca: float | None = None) -> None:
        self.start_intraview = start_intraview
        self.start_beta_sa = start_beta_sa
        self.start_beta_ca = start_beta_ca
        self._final: dict[str, float] = {}

    def before_train(self, runner) -> None:
        model = runner_model(runner)
        self._final = {}
        for name, start in (('upsilon', self.start_intraview),
                            ('beta_sa', self.start_beta_sa),
                            ('beta_ca', self.start_beta_ca)):
            owner = model.loss_module if name == 'upsilon' else model
            if start is not None and not hasattr(owner, name):
                raise ValueError(f'{type(self).__name__}: {type(model).__name__} has '
                                 f'no {name} to schedule (remove the start value)')
            if hasattr(owner, name):
                self._final[name] = getattr(owner, name)

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        model = runner_model(runner)
        it, total = runner.iter, runner.max_iters
        model.loss_module.set_epoch(runner.epoch)
        if self.start_intraview is not None:
            model.loss_module.upsilon = cosine_value(
                self.start_intraview, self._final['upsilon'], it, total)
        if self.start_beta_sa is not None:
            model.beta_sa = cosine_value(self.start_beta_sa, self._final['beta_sa'],
                                         it, total)
        if self.start_beta_ca is not None:
            model.beta_ca = cosine_value(self.start_beta_ca, self._final['beta_ca'],
                                         it, total)
        model.schedule_applied()
        # health monitors only where they are logged (no work, no host reads
        # on the other iterations), unless the model asks for every iteration
        model.monitors_due = model.monitor_every_iter or logs_after_iter(
            runner, batch_idx)
        runner.message_hub.update_scalar('train/teacher_temp',
                                         model.loss_module.current_teacher_temp)
        if 'upsilon' in self._final:
            runner.message_hub.update_scalar('train/upsilon',
                                             model.loss_module.upsilon)


@HOOKS.register_module()
class DINOScheduleHook(FLSLScheduleHook):
    """DINO's per-epoch schedule: tau_t (``DINOLoss``'s warm-up), moved to
    ``runner.epoch`` before every iteration. lr, weight decay and the EMA
    momentum are per-iteration schedules of the optimiser / teacher, as in FLSL.
    """

    def __init__(self) -> None:
        super().__init__()
