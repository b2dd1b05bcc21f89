"""Per-epoch / per-iteration schedules of FLSL's loss and mean-shift (§5-6)."""
from __future__ import annotations

import math

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from flsl_mm.registry import HOOKS


def cosine_value(start: float, end: float, it: int, total: int) -> float:
    """The reference's cosine schedule: ``end + (start-end)(1 + cos(pi it/T))/2``."""
    if total <= 0:
        return end
    return end + 0.5 * (start - end) * (1 + math.cos(math.pi * min(it, total) / total))


def teacher_temp_at(epoch: int, warmup_temp: float, temp: float,
                    warmup_epochs: int) -> float:
    """``linspace(warmup_temp, temp, warmup_epochs)[epoch]``, then ``temp``."""
    if epoch >= warmup_epochs or warmup_epochs <= 0:
        return temp
    if warmup_epochs == 1:
        return warmup_temp
    return warmup_temp + (temp - warmup_temp) * epoch / (warmup_epochs - 1)


@HOOKS.register_module()
class FLSLScheduleHook(Hook):
    """Set tau_t (per epoch), upsilon and beta_sa / beta_ca (per iteration).

    * ``tau_t``: linear warm-up ``warmup_teacher_temp -> teacher_temp`` over the
      first ``warmup_teacher_temp_epochs`` epochs (0.04 -> 0.07 over 30).
    * ``upsilon``: cosine from ``start_intraview`` to the loss's configured upsilon
      over all iterations (None: constant).
    * ``beta_sa`` / ``beta_ca``: cosine from ``start_beta_sa`` / ``start_beta_ca``
      to the model's configured values (None: constant).

    Values are computed from ``runner.iter`` / ``runner.epoch`` alone, so a resumed
    run continues the schedules exactly.
    """

    priority = 'HIGH'

    def __init__(self,
                 warmup_teacher_temp: float = 0.04,
                 teacher_temp: float = 0.07,
                 warmup_teacher_temp_epochs: int = 30,
                 start_intraview: float | None = None,
                 start_beta_sa: float | None = None,
                 start_beta_ca: float | None = None) -> None:
        self.warmup_teacher_temp = warmup_teacher_temp
        self.teacher_temp = teacher_temp
        self.warmup_teacher_temp_epochs = warmup_teacher_temp_epochs
        self.start_intraview = start_intraview
        self.start_beta_sa = start_beta_sa
        self.start_beta_ca = start_beta_ca
        self._final: dict[str, float] = {}

    @staticmethod
    def _model(runner):
        model = runner.model
        return model.module if is_model_wrapper(model) else model

    def before_train(self, runner) -> None:
        model = self._model(runner)
        self._final = dict(upsilon=model.loss_module.upsilon,
                           beta_sa=model.beta_sa, beta_ca=model.beta_ca)

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        model = self._model(runner)
        it, total = runner.iter, runner.max_iters
        model.loss_module.teacher_temp = teacher_temp_at(
            runner.epoch, self.warmup_teacher_temp, self.teacher_temp,
            self.warmup_teacher_temp_epochs)
        if self.start_intraview is not None:
            model.loss_module.upsilon = cosine_value(
                self.start_intraview, self._final['upsilon'], it, total)
        if self.start_beta_sa is not None:
            model.beta_sa = cosine_value(self.start_beta_sa, self._final['beta_sa'],
                                         it, total)
        if self.start_beta_ca is not None:
            model.beta_ca = cosine_value(self.start_beta_ca, self._final['beta_ca'],
                                         it, total)
        runner.message_hub.update_scalar('train/teacher_temp',
                                         model.loss_module.teacher_temp)
        runner.message_hub.update_scalar('train/upsilon', model.loss_module.upsilon)
