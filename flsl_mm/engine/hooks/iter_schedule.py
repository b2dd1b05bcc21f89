"""Which training iterations log, save or end an epoch: the points where FLSL's
hooks read device values on the host (everything else stays on the device, so a
GPU is not stalled every iteration; docs/pretraining.md)."""
from __future__ import annotations

from mmengine.hooks import CheckpointHook, Hook, LoggerHook

_HOOK = Hook()  # for mmengine's iteration predicates


def checkpoint_due(runner, by_epoch: bool) -> bool:
    """Whether a ``CheckpointHook`` of ``runner`` saves at the end of this epoch
    (``by_epoch``) or iteration: the hook's own condition, evaluated on every rank.
    A :class:`ResumableCheckpointHook` also saves mid-epoch (intervals, stop
    signals): its per-iteration decision, agreed by all ranks, is asked for."""
    from .resumable_checkpoint_hook import ResumableCheckpointHook
    for hook in runner.hooks:
        if not by_epoch and isinstance(hook, ResumableCheckpointHook):
            if hook.save_due(runner) is not None:
                return True
            continue
        if not isinstance(hook, CheckpointHook) or hook.by_epoch != by_epoch:
            continue
        if by_epoch:
            due = hook.every_n_epochs(runner, hook.interval, hook.save_begin) or (
                hook.save_last and hook.is_last_train_epoch(runner))
        else:
            due = hook.every_n_train_iters(runner, hook.interval, hook.save_begin) or (
                hook.save_last and hook.is_last_train_iter(runner))
        if due:
            return True
    return False


def logs_after_iter(runner, batch_idx: int) -> bool:
    """Whether mmengine's ``LoggerHook`` writes a log line after this iteration
    (its own rule: every ``interval`` iterations of the epoch, and the epoch's
    last one unless ``ignore_last``)."""
    hook = next((h for h in runner.hooks if isinstance(h, LoggerHook)), None)
    if hook is None:
        return False
    if hook.every_n_inner_iters(batch_idx, hook.interval):
        return True
    return hook.end_of_epoch(runner.train_dataloader, batch_idx) and (
        not hook.ignore_last or len(runner.train_dataloader) <= hook.interval)


def host_read_due(runner, batch_idx: int) -> bool:
    """A logged iteration, an iteration-based checkpoint, the epoch's or the run's
    last iteration: where buffered device values are read. The same on every
    rank (collectives may be entered there)."""
    return (logs_after_iter(runner, batch_idx)
            or checkpoint_due(runner, by_epoch=False)
            or _HOOK.end_of_epoch(runner.train_dataloader, batch_idx)
            or _HOOK.is_last_train_iter(runner))
