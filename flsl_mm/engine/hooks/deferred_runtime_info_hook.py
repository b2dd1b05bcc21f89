"""mmengine's RuntimeInfoHook without a host sync per iteration."""
from __future__ import annotations

import torch
from mmengine.hooks import RuntimeInfoHook

from flsl_mm.registry import HOOKS
from .iter_schedule import host_read_due


@HOOKS.register_module()
class DeferredRuntimeInfoHook(RuntimeInfoHook):
    """:class:`~mmengine.hooks.RuntimeInfoHook` that keeps each iteration's
    outputs (loss terms, monitors: device tensors) on the device and hands them to
    the message hub at the host-read points (logged iterations, checkpoints,
    epoch ends; :func:`host_read_due`), all in one transfer.

    mmengine's hook calls ``.item()`` on every output of every iteration, a GPU
    stall per value. Here the message hub receives the same values in the same
    order before the ``LoggerHook`` and ``CheckpointHook`` read it (this hook's
    priority is above theirs), so logged numbers (window means included) and saved
    message hubs are unchanged. Set in ``default_hooks.runtime_info`` by the
    pretraining runtime (docs/pretraining.md).
    """

    def __init__(self) -> None:
        self._pending: list[dict] = []

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs=None) -> None:
        if outputs is not None:
            self._pending.append({k: v.detach() if isinstance(v, torch.Tensor)
                                  else v for k, v in outputs.items()})
        if host_read_due(runner, batch_idx):
            self.flush(runner)

    def after_train_epoch(self, runner) -> None:
        self.flush(runner)

    def after_train(self, runner) -> None:
        self.flush(runner)

    def flush(self, runner) -> None:
        """Give the message hub every buffered value, in iteration order."""
        if not self._pending:
            return
        tensors = [v for row in self._pending for v in row.values()
                   if isinstance(v, torch.Tensor)]
        values = iter(torch.stack([
            t.reshape(()).to(tensors[0].device, torch.float64) for t in tensors
        ]).tolist() if tensors else [])  # the one host read
        for row in self._pending:
            for key, value in row.items():
                value = next(values) if isinstance(value, torch.Tensor) else value
                runner.message_hub.update_scalar(f'train/{key}', value)
        self._pending = []
