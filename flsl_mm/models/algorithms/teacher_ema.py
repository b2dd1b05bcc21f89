"""EMA teacher of FLSL: mmpretrain's ``CosineEMA`` with the DINO first step."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
from mmengine.logging import MessageHub
from mmpretrain.models.utils import CosineEMA


class TeacherEMA(CosineEMA):
    """``teacher = (1 - m) * teacher + m * student`` with cosine ``m`` (§7).

    ``momentum`` is the weight of the *student* (mmpretrain's convention): the
    sheet's teacher momentum 0.996 -> 1 is ``momentum=0.004, end_momentum=0``.
    The only change to :class:`CosineEMA`: mmengine's ``AveragedModel`` *copies*
    the source on its first update; FLSL's teacher already starts as a copy of the
    student, so every update, the first included, is an EMA step at iteration
    ``steps`` (0-based), as in the reference.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # the update count on the host: ``steps`` (a buffer, saved in checkpoints)
        # lives on the device, and reading it each iteration would stall a GPU
        self.host_steps = 0

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        if prefix + 'steps' in state_dict:  # resume: one host read, at load time
            self.host_steps = int(state_dict[prefix + 'steps'])

    def student_weight(self, steps, max_iters: int):
        """``m`` at 0-based iteration ``steps`` (an int, or an array of them):
        cosine from ``momentum`` to ``end_momentum`` over ``max_iters``
        (mmpretrain's formula)."""
        cos = (np.cos(np.pi * np.asarray(steps, dtype=np.float64) / max_iters) + 1) / 2
        return self.end_momentum - (self.end_momentum - self.momentum) * cos

    def initial_weight(self, steps: int, max_iters: int) -> float:
        """Weight the teacher's *initial* parameters still have after ``steps``
        updates: ``prod_i (1 - m_i)`` (a monitor, docs/monitors.md). The published
        schedule forgets them within the first epoch; a run of a few hundred
        iterations at 0.996 does not (0.85 after 80 iterations): its teacher is then
        mostly the random initialisation."""
        m = self.student_weight(np.arange(int(steps)), max_iters)
        return float(np.exp(np.log1p(-m).sum()))

    def avg_func(self, averaged_param: torch.Tensor, source_param: torch.Tensor,
                 steps: int) -> None:
        m = float(self.student_weight(int(steps), self._max_iters()))
        averaged_param.mul_(1 - m).add_(source_param, alpha=m)

    @staticmethod
    def _max_iters() -> int:
        return MessageHub.get_current_instance().get_info('max_iters')

    def update_parameters(self, model: nn.Module) -> None:
        """One EMA step of every floating-point tensor, as :meth:`avg_func` per
        tensor but with ``m`` computed once (from the host's step count) and
        ``torch._foreach_*`` kernels (no per-tensor Python work, no host syncs)."""
        src = (model.state_dict() if self.update_buffers
               else dict(model.named_parameters()))
        avgs, srcs = [], []
        for key, avg in self.avg_parameters.items():
            if avg.dtype.is_floating_point:
                avgs.append(avg.data)
                srcs.append(src[key].data.to(avg.device))
        m = float(self.student_weight(self.host_steps, self._max_iters()))
        if avgs:
            torch._foreach_mul_(avgs, 1 - m)
            torch._foreach_add_(avgs, srcs, alpha=m)
        if not self.update_buffers:
            for b_avg, b_src in zip(self.module.buffers(), model.buffers()):
                b_avg.data.copy_(b_src.data.to(b_avg.device))
        self.steps += 1
        self.host_steps += 1
