"""Stop training on a non-finite loss, naming the terms (FLSL_SPEC §6)."""
from __future__ import annotations

import math

from mmengine.hooks import Hook

from flsl_mm.registry import HOOKS


@HOOKS.register_module()
class NonFiniteLossHook(Hook):
    """Raise ``FloatingPointError`` when the total loss is NaN or infinite.

    The message lists every ``loss*`` entry of the iteration (for FLSL:
    ``loss_meanshift``, ``loss_kmeans``, ``loss_vmr``) so the culprit is visible.
    """

    priority = 'VERY_HIGH'

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs=None) -> None:
        if not outputs or 'loss' not in outputs:
            return
        total = float(outputs['loss'])
        if math.isfinite(total):
            return
        parts = ', '.join(f'{k}={float(v):.6g}' for k, v in outputs.items()
                          if k.startswith('loss') and k != 'loss')
        raise FloatingPointError(
            f'non-finite loss {total} at iteration {runner.iter + 1} '
            f'(epoch {runner.epoch + 1}): {parts}. Training stopped; lower the lr, '
            'check the teacher temperature warm-up, or resume from the last '
            'checkpoint.')
