"""Stop training on a non-finite loss, naming the terms (FLSL_SPEC §6)."""
from __future__ import annotations

import torch
from mmengine.dist import all_reduce, get_world_size
from mmengine.hooks import Hook

from flsl_mm.registry import HOOKS


@HOOKS.register_module()
class NonFiniteLossHook(Hook):
    """Raise ``FloatingPointError`` when the total loss is NaN or infinite.

    The message lists every ``loss*`` entry of the iteration (for FLSL:
    ``loss_meanshift``, ``loss_kmeans``, ``loss_vmr``) so the culprit is visible.
    Under distributed training every rank enters one small all-reduce per
    iteration (how many ranks saw a non-finite loss), so all ranks stop together
    with the message instead of the healthy ones waiting for a collective until
    they time out.
    """

    priority = 'VERY_HIGH'

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs=None) -> None:
        if not outputs or 'loss' not in outputs:
            return
        loss = torch.as_tensor(outputs['loss']).detach().float()
        bad_here = torch.logical_not(torch.isfinite(loss)).any().to(torch.int32)
        bad = bad_here.reshape(1).clone()
        if get_world_size() > 1:
            all_reduce(bad)  # sum: number of ranks with a non-finite loss
        num_bad = int(bad)
        if num_bad == 0:
            return
        where = f' (on {num_bad} of {get_world_size()} processes)' \
            if get_world_size() > 1 else ''
        if bool(bad_here):
            parts = ', '.join(f'{k}={float(v):.6g}' for k, v in outputs.items()
                              if k.startswith('loss') and k != 'loss')
            what = f'non-finite loss {float(loss):.6g}{where}: {parts}'
        else:
            what = f'non-finite loss on another process{where}'
        raise FloatingPointError(
            f'{what} at iteration {runner.iter + 1} (epoch {runner.epoch + 1}). '
            'Training stopped; lower the lr, check the teacher temperature '
            'warm-up, or resume from the last checkpoint.')
