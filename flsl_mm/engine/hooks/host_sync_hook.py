"""Host synchronisations per training iteration, counted while ``runner.train()``
runs (docs/pretraining.md, "Host synchronisations")."""
from __future__ import annotations

import json
import os.path as osp
import time
import traceback
import warnings

import torch
from mmengine.dist import is_main_process
from mmengine.hooks import Hook, LoggerHook

from flsl_mm.registry import HOOKS
from flsl_mm.utils.host_syncs import HostSyncCounter, SyncEvent
from .iter_schedule import logs_after_iter
from .runner_model import runner_model

_CUDA_SYNC_WARNING = 'called a synchronizing CUDA operation'


class HostSyncError(RuntimeError):
    """A host synchronisation in a training iteration that must have none."""


@HOOKS.register_module()
class HostSyncHook(Hook):
    """Count the host synchronisations of every training iteration: the whole
    iteration (preprocessing and views, forward, loss, backward, clipping, the
    optimiser step, the EMA update, schedules, monitors, every hook), not the
    loading of the next batch.

    On a GPU it counts what ``torch.cuda.set_sync_debug_mode`` reports; on the
    CPU, what :class:`~flsl_mm.utils.host_syncs.HostSyncCounter` finds would
    synchronise a GPU (reads of device tensors, data-dependent shapes, blocking
    host-to-device copies), and the non-blocking copies of pinned loader
    buffers (``transfers``).

    Iterations are *read points* where FLSL's hooks read device values on purpose
    (a logged iteration, a checkpoint, the epoch's or the run's last iteration);
    every other iteration must have none. At the end the summary is logged and
    written to ``work_dir/host_syncs.json`` (per iteration: read point or not,
    syncs with their first stack, transfers, the iteration's wall time and the
    wait for its batch before it; the median of both after the first two
    iterations; on a GPU the peak memory). With no sync the host runs ahead of
    the GPU until its queue is full, so in a steady state an iteration's wall
    time is the GPU's.

    Args:
        raise_on_sync: raise :class:`HostSyncError` after an iteration that is
            not a read point but synchronised, with the first one's call stack.
        device: ``'auto'`` (the model's), ``'cuda'`` (sync debug mode) or
            ``'cpu'`` (the counter).
    """

    priority = 'VERY_LOW'

    def __init__(self, raise_on_sync: bool = False, device: str = 'auto') -> None:
        if device not in ('auto', 'cuda', 'cpu'):
            raise ValueError(f"HostSyncHook: device must be 'auto', 'cuda' or 'cpu', "
                             f'got {device!r}')
        self.raise_on_sync = raise_on_sync
        self.device = device
        self.iterations: list[dict] = []
        #: per counted iteration, its :class:`SyncEvent` s (CPU counter only)
        self.events: dict[int, list[SyncEvent]] = {}
        self._counter: HostSyncCounter | None = None
        self._saving = False
        self._loop = None
        self._last_end: float | None = None

    # ----------------------------------------------------------------- set-up
    def before_train(self, runner) -> None:
        model = runner_model(runner)
        device = self.device
        if device == 'auto':
            param = next(model.parameters(), None)
            device = 'cuda' if param is not None and param.is_cuda else 'cpu'
        self._cuda = device == 'cuda'
        self._pinned = bool(runner.train_dataloader.pin_memory)
        self.iterations, self.events = [], {}
        self._last_end = None
        if self._cuda:
            torch.cuda.reset_peak_memory_stats()
        else:
            self._counter = HostSyncCounter()
            for wrapper in self._wrappers(runner):
                self._counter.mark_optimizer_state(wrapper.optimizer)
        loop = runner.train_loop
        original = loop.run_iter

        def run_iter(idx, data_batch, *args, **kwargs):
            return self._counted(runner, original, idx, data_batch, *args, **kwargs)

        loop.run_iter = run_iter  # an instance attribute, removed after train
        self._loop = loop

    @staticmethod
    def _wrappers(runner):
        wrapper = runner.optim_wrapper
        return list(wrapper.optim_wrappers.values()) if hasattr(
            wrapper, 'optim_wrappers') else [wrapper]

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        self._saving = True

    def after_train(self, runner) -> None:
        if self._loop is not None and 'run_iter' in vars(self._loop):
            del self._loop.run_iter
        self._loop = None
        summary = self.summary()
        if self._cuda:
            summary['peak_gpu_mib'] = round(torch.cuda.max_memory_allocated() / 2**20)
        runner.logger.info(
            f'host syncs: {summary["syncs_outside_read_points"]} in '
            f'{summary["iterations"] - summary["read_points"]} iterations that are '
            f'not read points, {summary["syncs_at_read_points"]} at '
            f'{summary["read_points"]} read points ({summary["counted_by"]}); '
            f'{summary["transfers_per_iteration"]} non-blocking pinned copies per '
            'iteration')
        if is_main_process():
            with open(osp.join(runner.work_dir, 'host_syncs.json'), 'w') as f:
                json.dump(dict(summary, per_iteration=self.iterations), f, indent=1)

    # --------------------------------------------------------------- counting
    def _read_point(self, runner, idx: int) -> bool:
        logger = next((h for h in runner.hooks if isinstance(h, LoggerHook)), None)
        return (logger is not None and logs_after_iter(runner, idx)) or \
            self.end_of_epoch(runner.train_dataloader, idx) or \
            self.is_last_train_iter(runner)

    def _counted(self, runner, original, idx, data_batch, *args, **kwargs):
        start = time.perf_counter()
        record = dict(iter=runner.iter, read_point=self._read_point(runner, idx),
                      syncs=0, transfers=0, first=None,
                      data_s=None if self._last_end is None else round(
                          start - self._last_end, 6))
        self._saving = False
        try:
            if self._cuda:
                out = self._counted_cuda(record, original, idx, data_batch,
                                         *args, **kwargs)
            else:
                out = self._counted_cpu(record, original, idx, data_batch,
                                        *args, **kwargs)
        finally:
            self._last_end = time.perf_counter()
            record['iter_s'] = round(self._last_end - start, 6)
            # a checkpoint saved in the iteration makes it a read point too
            record['read_point'] = record['read_point'] or self._saving
            self.iterations.append(record)
        if self.raise_on_sync and record['syncs'] and not record['read_point']:
            raise HostSyncError(
                f'{record["syncs"]} host synchronisation(s) in training iteration '
                f'{record["iter"] + 1} (not a logging, checkpoint or epoch-end '
                f'iteration); the first: {record["first"]}')
        return out

    def _counted_cpu(self, record, original, idx, data_batch, *args, **kwargs):
        counter = self._counter
        counter.mark_host(data_batch, pinned=self._pinned)
        counter.events, counter.transfers = [], []
        counter.counting = True
        try:
            with counter:
                return original(idx, data_batch, *args, **kwargs)
        finally:
            counter.counting = False
            record['syncs'] = len(counter.events)
            record['transfers'] = len(counter.transfers)
            record['transfer_shapes'] = [list(t.shape) for t in counter.transfers]
            if counter.events:
                record['first'] = str(counter.events[0])
            self.events[record['iter']] = list(counter.events)

    def _counted_cuda(self, record, original, idx, data_batch, *args, **kwargs):
        stacks: list[str] = []

        def show(message, category, filename, lineno, file=None, line=None):
            if _CUDA_SYNC_WARNING in str(message):
                stacks.append(f'{message}\n' + ''.join(traceback.format_stack()[:-2]))
            else:
                previous(message, category, filename, lineno, file, line)

        previous = warnings.showwarning
        with warnings.catch_warnings():
            warnings.simplefilter('always')
            warnings.showwarning = show
            torch.cuda.set_sync_debug_mode('warn')
            try:
                return original(idx, data_batch, *args, **kwargs)
            finally:
                torch.cuda.set_sync_debug_mode('default')
                record['syncs'] = len(stacks)
                record['first'] = stacks[0] if stacks else None

    def summary(self) -> dict:
        """Totals over the counted iterations."""
        outside = [r for r in self.iterations if not r['read_point']]
        at = [r for r in self.iterations if r['read_point']]
        transfers = sorted({r['transfers'] for r in self.iterations})
        return dict(
            counted_by='torch.cuda.set_sync_debug_mode' if getattr(self, '_cuda', False)
            else 'flsl_mm HostSyncCounter (what would sync a GPU)',
            iterations=len(self.iterations), read_points=len(at),
            syncs_outside_read_points=sum(r['syncs'] for r in outside),
            syncs_at_read_points=sum(r['syncs'] for r in at),
            syncs_per_iteration_outside_read_points=(
                sum(r['syncs'] for r in outside) / len(outside) if outside else None),
            transfers_per_iteration=transfers[0] if len(transfers) == 1 else transfers,
            # the iterations after the first two (start-up, compilation)
            median_iter_s=_median([r['iter_s'] for r in self.iterations[2:]]),
            median_data_s=_median([r['data_s'] for r in self.iterations[2:]]),
            first_sync_outside_read_points=next(
                (r['first'] for r in outside if r['first']), None))


def _median(values: list) -> float | None:
    values = sorted(v for v in values if v is not None)
    return values[len(values) // 2] if values else None


__all__ = ['HostSyncHook', 'HostSyncError']
