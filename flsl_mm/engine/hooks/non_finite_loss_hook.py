"""Stop training on a non-finite loss, naming the terms (FLSL_SPEC §6)."""
from __future__ import annotations

import torch
from mmengine.dist import all_reduce, get_world_size
from mmengine.hooks import Hook

from flsl_mm.registry import HOOKS
from .iter_schedule import host_read_due


@HOOKS.register_module()
class NonFiniteLossHook(Hook):
    """Raise ``FloatingPointError`` when the total loss was NaN or infinite.

    The losses of each iteration stay on the device; they are checked on the host
    at the host-read points (logged iterations, checkpoints, epoch and run ends:
    :func:`~flsl_mm.engine.hooks.iter_schedule.host_read_due`), so a GPU is not
    stalled every iteration, and never after a checkpoint of a broken model was
    written (this hook runs before ``CheckpointHook``). ``every_iter=True`` checks
    after every iteration instead (one host read each).

    The message names the first bad iteration and lists its ``loss*`` entries
    (for FLSL: ``loss_meanshift``, ``loss_kmeans``, ``loss_vmr``). Under
    distributed training every rank enters one small all-reduce per check (how
    many ranks saw a non-finite loss), so all ranks stop together with the message
    instead of the healthy ones waiting for a collective until they time out.
    """

    priority = 'VERY_HIGH'

    def __init__(self, every_iter: bool = False) -> None:
        self.every_iter = every_iter
        self._pending: list[tuple[int, int, dict]] = []  # (iter, epoch, losses)

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs=None) -> None:
        if outputs and 'loss' in outputs:
            self._pending.append((runner.iter, runner.epoch, {
                k: torch.as_tensor(v).detach() for k, v in outputs.items()
                if k.startswith('loss')}))
        if self.every_iter or host_read_due(runner, batch_idx):
            self.check()

    def after_train_epoch(self, runner) -> None:
        self.check()

    def check(self) -> None:
        """Read the buffered iterations' finiteness (one host read, and one
        all-reduce when distributed); raise for the first bad one."""
        pending, self._pending = self._pending, []
        if not pending:  # every rank buffers the same iterations: all return
            return
        flags = torch.stack([torch.logical_not(torch.isfinite(
            losses['loss'].float())).any() for _, _, losses in pending])
        bad_here = flags.any().to(torch.int32).reshape(1)  # on the loss's device
        bad = bad_here.clone()
        if get_world_size() > 1:
            all_reduce(bad)  # sum: number of ranks with a non-finite loss
        num_bad = int(bad)
        if num_bad == 0:
            return
        where = f' (on {num_bad} of {get_world_size()} processes)' \
            if get_world_size() > 1 else ''
        if bool(bad_here):
            first = int(flags.nonzero()[0])
            it, epoch, losses = pending[first]
            parts = ', '.join(f'{k}={float(v.float().mean()):.6g}'
                              for k, v in losses.items() if k != 'loss')
            what = (f'non-finite loss {float(losses["loss"].float().mean()):.6g}'
                    f'{where}: {parts} at iteration {it + 1} (epoch {epoch + 1})')
        else:
            what = (f'non-finite loss on another process{where} by iteration '
                    f'{pending[-1][0] + 1}')
        raise FloatingPointError(
            f'{what}. Training stopped; lower the lr, check the teacher '
            'temperature warm-up, or resume from the last checkpoint.')
