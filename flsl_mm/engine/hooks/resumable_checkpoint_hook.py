"""Checkpoints for runs that get preempted: atomic files, mid-epoch checkpoints at
an iteration or wall-clock interval, a checkpoint on SIGTERM / SIGUSR1, Slurm
requeue (docs/pretraining.md, "Preemption and resume")."""
from __future__ import annotations

import os
import os.path as osp
import time
from typing import Sequence

from mmengine.dist import get_rank, is_main_process
from mmengine.fileio import LocalBackend
from mmengine.hooks import CheckpointHook

from flsl_mm.registry import HOOKS
from ..checkpoint_io import (LAST_CHECKPOINT, TMP_SUFFIX, commit_file,
                             remove_stale_tmp, write_text_atomic)
from ..preemption import (FlagAgreement, IgnoreStopSignals, StopSignals,
                          TrainingPreempted, requeue_slurm_job, take_early)

_SIGNAL, _TIME = 0, 1  # positions in the flags the ranks agree on


@HOOKS.register_module()
class ResumableCheckpointHook(CheckpointHook):
    """mmengine's ``CheckpointHook`` (same arguments, same file names
    ``epoch_N.pth`` / ``iter_N.pth``, same ``last_checkpoint``) made safe against
    kills, plus mid-epoch and signal-triggered checkpoints.

    * **Atomic files.** Each checkpoint is written to ``NAME.tmp``, fsynced and
      renamed; ``last_checkpoint`` is replaced atomically after that; only then
      are old checkpoints pruned (``max_keep_ckpts``), never the one
      ``last_checkpoint`` names. (mmengine deletes the oldest *before* writing
      the new one.) Best checkpoints (``save_best``) are written by mmengine.
    * **Mid-epoch checkpoints** ``iter_N.pth`` (N: iterations done) every
      ``interval_iters`` iterations and/or ``interval_minutes`` minutes of wall
      clock (rank 0's clock), besides the regular ones; the newest
      ``max_keep_mid_ckpts`` of them are kept. With
      :class:`~flsl_mm.engine.loops.ResumableEpochBasedTrainLoop` a resume from
      one continues at the next batch exactly.
    * **Stop signals** (``signals``, default SIGTERM and SIGUSR1): the iteration
      in progress finishes, all ranks agree at its end (one rank receiving the
      signal is enough), one checkpoint is written (rank 0) and training stops
      with :class:`~flsl_mm.engine.preemption.TrainingPreempted`, which
      ``tools/train.py`` turns into exit status
      :data:`~flsl_mm.engine.preemption.EXIT_PREEMPTED` (75). A stop pending at
      the end of an epoch is acted on before the epoch-end work: the epoch's
      checkpoint, then no validation, no probe (:class:`DenseProbeHook` asks
      :meth:`stop_requested`, and a validation in progress stops at its next
      iteration). With ``requeue`` (default: the environment variable
      ``FLSL_MM_REQUEUE=1``, set by ``tools/slurm_train.sh``) rank 0 then
      requeues the Slurm job. The workers of the training and validation
      loaders ignore these signals (the main process shuts them down).

    Under distributed training the ranks agree on the signal and the wall-clock
    due time with one all-reduce of two integers per iteration on the CPU (gloo),
    only when ``signals`` or ``interval_minutes`` are set. It is asynchronous:
    started at an iteration's end and read at the next one's
    (:meth:`FlagAgreement.exchange`), so no iteration waits for it and a signal
    is acted on one iteration later on every rank; at an epoch's end and in a
    validation the ranks agree at once (:meth:`stop_requested`).

    Args:
        interval_iters: mid-epoch checkpoint every this many iterations (0: off).
        interval_minutes: mid-epoch checkpoint when this many minutes passed since
            the last checkpoint of any kind (0: off).
        max_keep_mid_ckpts: mid-epoch checkpoints kept (>= 1).
        signals: signal names that stop training with a checkpoint (``()``: none).
        requeue: after a signal, ``scontrol requeue`` the Slurm job (None: when
            ``FLSL_MM_REQUEUE=1``).
        Others: mmengine's ``CheckpointHook``.
    """

    def __init__(self, *args, interval_iters: int = 0, interval_minutes: float = 0.0,
                 max_keep_mid_ckpts: int = 1,
                 signals: Sequence[str] = ('SIGTERM', 'SIGUSR1'),
                 requeue: bool | None = None, **kwargs) -> None:
        keep = kwargs.pop('max_keep_ckpts', -1)
        super().__init__(*args, max_keep_ckpts=-1, **kwargs)  # pruning is ours
        if interval_iters < 0 or interval_minutes < 0:
            raise ValueError('ResumableCheckpointHook: interval_iters and '
                             'interval_minutes must be >= 0 (0: off)')
        if max_keep_mid_ckpts < 1:
            raise ValueError('ResumableCheckpointHook: max_keep_mid_ckpts must be '
                             '>= 1 (the newest mid-epoch checkpoint is the one a '
                             'resume needs)')
        if isinstance(signals, str):
            signals = (signals, )
        self.max_keep_ckpts = keep
        self.interval_iters = int(interval_iters)
        self.interval_minutes = float(interval_minutes)
        self.max_keep_mid_ckpts = int(max_keep_mid_ckpts)
        self.stop_signals = StopSignals(signals)  # validates the names
        self.requeue = requeue
        self._decided: tuple[int, str | None, bool] = (-1, None, False)
        self._batch_idx = 0
        self._last_save = time.monotonic()
        self._agreement: FlagAgreement | None = None
        self._training = False

    # ----------------------------------------------------------------- set-up
    def before_train(self, runner) -> None:
        super().before_train(runner)
        if not isinstance(self.file_backend, LocalBackend):
            raise ValueError(
                f'ResumableCheckpointHook: out_dir {self.out_dir} is not a local '
                'folder: atomic checkpoints need a local (or network-mounted) file '
                'system; use mmengine\'s CheckpointHook for other back-ends')
        if is_main_process():
            os.makedirs(self.out_dir, exist_ok=True)
            stale = remove_stale_tmp(self.out_dir)
            if stale:
                runner.logger.warning(
                    'removed %d unfinished checkpoint file(s) of an interrupted save '
                    'in %s: %s', len(stale), self.out_dir, ', '.join(stale))
        if self._agreement is None:  # (made at a resume's checkpoint check)
            self._agreement = FlagAgreement()
        early = take_early()  # tools/train.py's, since before the loaders were built
        self.stop_signals.install()
        if early is not None and early.received in self.stop_signals.names:
            self.stop_signals.received = early.received
        val_loop = getattr(runner, '_val_loop', None)
        for loader in (runner.train_dataloader, getattr(val_loop, 'dataloader', None)):
            if self.stop_signals.numbers and getattr(loader, 'num_workers', 0) > 0 \
                    and not isinstance(loader.worker_init_fn, IgnoreStopSignals):
                loader.worker_init_fn = IgnoreStopSignals(self.stop_signals.numbers,
                                                          loader.worker_init_fn)
        self._training = True
        self._last_save = time.monotonic()
        extra = [f'every {self.interval_iters} iterations'] * bool(self.interval_iters)
        extra += [f'every {self.interval_minutes:g} min'] * bool(self.interval_minutes)
        runner.logger.info(
            'ResumableCheckpointHook: mid-epoch checkpoints %s; stop signals: %s%s',
            ' and '.join(extra) or 'off', ', '.join(self.stop_signals.names) or 'none',
            ' (then the Slurm job is requeued)' if self._requeue_enabled() else '')

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        """Every rank loaded the same training state: the same ``meta.iter``
        (checked over all ranks; a mismatch stops the run on every rank)."""
        if self._agreement is None:
            self._agreement = FlagAgreement()
        if not self._agreement.distributed:
            return
        meta = checkpoint.get('meta') if isinstance(checkpoint, dict) else None
        step = int(meta.get('iter', -1)) if isinstance(meta, dict) else -1
        high, neg_low = self._agreement.max([step, -step])
        if high != -neg_low:
            raise RuntimeError(
                f'the ranks loaded checkpoints of different iterations (between '
                f'{-neg_low} and {high}; this rank: {step}): every rank must resume '
                'from the same file (a network file system showing ranks different '
                'files?); resume with --resume PATH')

    def after_train(self, runner) -> None:
        super().after_train(runner)
        self._training = False

    def after_run(self, runner) -> None:
        self._training = False
        self.stop_signals.uninstall()
        # persistent loader workers ignore SIGTERM now: end them the peaceful
        # way here (at interpreter exit they are killed, see IgnoreStopSignals)
        iterator = getattr(runner.train_dataloader, '_iterator', None)
        if iterator is not None and hasattr(iterator, '_shutdown_workers'):
            iterator._shutdown_workers()

    def _requeue_enabled(self) -> bool:
        if self.requeue is not None:
            return bool(self.requeue)
        return os.environ.get('FLSL_MM_REQUEUE', '0') == '1'

    # -------------------------------------------------------------- decisions
    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        self._batch_idx = batch_idx

    def save_due(self, runner) -> str | None:
        """Why a checkpoint is written after the current training iteration
        (None: none is). Decided once per iteration, at the first call, the same
        on every rank: every rank must call it at the same points (the hooks
        using :mod:`flsl_mm.engine.hooks.iter_schedule` do; this hook's
        ``after_train_iter`` always does)."""
        if self._decided[0] == runner.iter:
            return self._decided[1]
        reason = None
        if not self.by_epoch and (
                self.every_n_train_iters(runner, self.interval, self.save_begin)
                or (self.save_last and self.is_last_train_iter(runner))):
            reason = 'interval'
        elif self.interval_iters and self.every_n_train_iters(runner,
                                                              self.interval_iters):
            reason = 'iteration interval'
        flags = [0, 0]
        flags[_SIGNAL] = int(self.stop_signals.received is not None)
        flags[_TIME] = int(bool(self.interval_minutes) and get_rank() == 0 and (
            time.monotonic() - self._last_save >= 60 * self.interval_minutes))
        if self._agreement is not None and (self.stop_signals.numbers
                                            or self.interval_minutes):
            flags = self._agreement.exchange(flags)  # the previous iteration's
        stop = bool(flags[_SIGNAL])
        if reason is None and flags[_TIME]:
            reason = 'wall-clock interval'
        if reason not in (None, 'interval') and not stop and self.by_epoch and \
                self.end_of_epoch(runner.train_dataloader, self._batch_idx) and (
                    self.every_n_epochs(runner, self.interval, self.save_begin)
                    or (self.save_last and self.is_last_train_epoch(runner))):
            reason = None  # the epoch's checkpoint follows right after
        if stop and reason is None:
            reason = 'signal'
        self._decided = (runner.iter, reason, stop)
        return reason

    def stop_requested(self) -> bool:
        """Whether a stop signal is pending on any rank (an all-reduce: every
        rank must call it at the same points)."""
        flags = [int(self.stop_signals.received is not None)]
        if self._agreement is not None and self.stop_signals.numbers:
            flags = self._agreement.max(flags)
        return bool(flags[0])

    # ----------------------------------------------------------------- saving
    def after_train_epoch(self, runner) -> None:
        """The epoch's checkpoint (when due); then, with a stop pending, the stop:
        nothing of the epoch-end work after this hook (validation, the next
        epoch) runs; the hooks before it (a probe) asked :meth:`stop_requested`."""
        super().after_train_epoch(runner)
        if self.stop_requested():
            epochs = runner.epoch + 1
            self._stop(runner, self._stop_checkpoint(runner, epochs=epochs),
                       f'at the end of epoch {epochs} (iteration {runner.iter})')

    def after_val_iter(self, runner, batch_idx: int, data_batch=None,
                       outputs=None) -> None:
        """A validation during training stops at the iteration a stop arrives in
        (the checkpoint is that of the epoch / iteration it validates)."""
        if self._training and self.stop_requested():
            what = f'epoch {runner.epoch}' if self.by_epoch else \
                f'iteration {runner.iter}'
            self._stop(runner, self._stop_checkpoint(runner, epochs=runner.epoch),
                       f'during the validation of {what} (at its batch '
                       f'{batch_idx + 1})')

    def _stop_checkpoint(self, runner, epochs: int) -> str:
        """The checkpoint of the training state at an epoch end or a validation:
        the one just written for it, else written now (``epochs`` done)."""
        step = epochs if self.by_epoch else runner.iter
        name = self.filename_tmpl.format(step)
        path = self._path(name)
        if self.last_ckpt == path and osp.isfile(path):
            return path
        runner.logger.info(f'Saving checkpoint {name} (stop signal)')
        return self._write(runner, name, dict(epoch=epochs, iter=runner.iter),
                           mid_epoch=False)

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs=None) -> None:
        reason = self.save_due(runner)
        if reason is None:
            return
        step = runner.iter + 1
        regular = reason == 'interval'
        name = self.filename_tmpl.format(step) if regular else f'iter_{step}.pth'
        runner.logger.info(
            f'Saving checkpoint {name} after iteration {step} ({reason}; epoch '
            f'{runner.epoch + 1}, batch {batch_idx + 1} of '
            f'{len(runner.train_dataloader)})')
        path = self._write(runner, name, dict(epoch=runner.epoch, iter=step),
                           mid_epoch=not regular)
        if self._decided[2]:
            self._stop(runner, path)

    def _stop(self, runner, path: str, when: str | None = None) -> None:
        here = self.stop_signals.received
        who = f'{here}' if here else 'a stop signal on another process'
        when = when or (f'after iteration {runner.iter + 1} (epoch '
                        f'{runner.epoch + 1})')
        message = (f'training stopped by {who} {when}; checkpoint {path}; continue '
                   'with --resume')
        if self._requeue_enabled() and is_main_process():
            _, what = requeue_slurm_job()
            message += f'; {what}'
        runner.logger.warning(message)
        raise TrainingPreempted(message, path)

    def _save_checkpoint_with_step(self, runner, step, meta) -> None:
        """mmengine's regular (interval / last) checkpoints, written atomically."""
        self._write(runner, self.filename_tmpl.format(step), meta, mid_epoch=False)

    def _path(self, name: str) -> str:
        return self.file_backend.join_path(self.out_dir, name)

    def _write(self, runner, name: str, meta: dict, mid_epoch: bool) -> str:
        """Write checkpoint ``name`` atomically (rank 0), point ``last_checkpoint``
        to it, then prune; returns its path. Every rank calls it (the
        ``before_save_checkpoint`` hooks run on rank 0 only: mmengine)."""
        path = self._path(name)
        kind = 'mid' if mid_epoch else 'regular'
        kept = list(runner.message_hub.get_info(f'ckpt_kept_{kind}', []))
        kept = [n for n in kept if n != name] + [name]
        runner.message_hub.update_info(f'ckpt_kept_{kind}', kept)
        self.last_ckpt = path
        runner.message_hub.update_info('last_ckpt', path)
        self._last_save = time.monotonic()
        if not is_main_process():
            return path
        start = time.perf_counter()
        runner.save_checkpoint(  # master_only: writes NAME.tmp
            self.out_dir, name + TMP_SUFFIX, self.file_client_args,
            save_optimizer=self.save_optimizer,
            save_param_scheduler=self.save_param_scheduler, meta=meta,
            by_epoch=self.by_epoch, backend_args=self.backend_args, **self.args)
        commit_file(path + TMP_SUFFIX, path)
        write_text_atomic(osp.join(runner.work_dir, LAST_CHECKPOINT), path)
        runner.logger.info('checkpoint %s written (%.1f MB, %.2f s)', path,
                           osp.getsize(path) / 2**20, time.perf_counter() - start)
        self._prune(runner, kind, path)
        return path

    def _prune(self, runner, kind: str, newest: str) -> None:
        """Delete the oldest checkpoints of ``kind`` beyond the number to keep, and
        mid-epoch ones that a newer regular checkpoint supersedes; never the newest
        one (the one ``last_checkpoint`` names)."""
        keep = self.max_keep_mid_ckpts if kind == 'mid' else self.max_keep_ckpts
        kept = list(runner.message_hub.get_info(f'ckpt_kept_{kind}', []))
        drop = []
        if keep > 0 and len(kept) > keep:
            drop, kept = kept[:-keep], kept[-keep:]
        other = 'regular' if kind == 'mid' else 'mid'
        others = list(runner.message_hub.get_info(f'ckpt_kept_{other}', []))
        if kind == 'regular' and others:  # superseded mid-epoch checkpoints
            drop += others
            others = []
            runner.message_hub.update_info(f'ckpt_kept_{other}', others)
        runner.message_hub.update_info(f'ckpt_kept_{kind}', kept)
        protected = set(kept) | set(others) | {osp.basename(newest)}
        for name in drop:
            if name in protected:
                continue
            try:
                os.remove(self._path(name))
            except FileNotFoundError:
                pass
