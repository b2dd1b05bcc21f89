"""Dense probes of the teacher while it trains (docs/probes.md)."""
from __future__ import annotations

import datetime
import time
from typing import Sequence

import torch
import torch.distributed as dist
from mmengine.config import Config
from mmengine.dist import get_rank, get_world_size
from mmengine.hooks import Hook

from flsl_mm.registry import HOOKS
from .rng_state_hook import preserved_rng_state
from .runner_model import runner_model

#: the value each probe's best is tracked by (the first probe run, in this order)
BEST_KEYS = dict(knn='knn_miou', linear='linear_miou', cluster='cluster_miou',
                 bbox='bbox_knn_top1@20')


@HOOKS.register_module()
class DenseProbeHook(Hook):
    """Every ``interval`` epochs (or iterations), at the start and at the end of
    training, probe the **teacher**'s patch tokens (and the student's, with
    ``student=True``) on a small labelled set, with the probes and numbers of
    ``tools/analysis/dense_probe.py``: patch k-NN segmentation mIoU (k 20, T
    0.07), optionally the linear probe, k-means + Hungarian mIoU.

    Logged as ``probe/<key>`` (``probe/student_<key>``) through the visualizer at
    the step of the probe (``vis_data/scalars.json``, TensorBoard when
    configured: once per probe), put in the message hub, and written as one log
    line with the best value so far (``probe/best_<key>``, kept in checkpoints)
    and the cost (seconds per probe, share of the training time).

    The probe set (:func:`flsl_mm.analysis.probe_sets.build_probe_set`) is read
    and checked before the model is initialised: a missing folder, an undecodable
    image, a label PNG of another size or a class id out of range stops the run
    there, naming the file. ``dict(type='demo')`` without ``data_root`` probes
    the training set's demo data.

    The probe runs on the training device, in the run's autocast (its
    ``AmpOptimWrapper``'s dtype), on a separate copy of the backbone the weights
    are loaded into, under saved-and-restored RNG states: the training (weights,
    RNG streams, train/eval state) is bitwise what it is without the hook.
    Distributed: the probe set is split over the ranks (contiguous parts,
    :func:`~flsl_mm.analysis.probe_sets.shard_range`); each rank reads and
    checks its part once, and at every probe embeds it on its own device; the
    tokens are gathered on rank 0, which runs the k-NN / linear / k-means probes
    (:func:`~flsl_mm.analysis.probe_runner.score`) and sends every rank the
    numbers. The collectives are on a gloo group that waits up to
    ``wait_hours``, so rank 0's scoring never trips the NCCL time-out. A probe
    that fails during training on any rank (out of memory, one bad image) is
    logged as a warning on every rank, naming the rank, and training goes on
    (``on_error='raise'`` stops the run instead); the probe set itself is
    checked before training and stops the run there. Between probes the probe
    copy of the backbone lives on the CPU (the GPU memory is given back). A
    stop signal pending at a probe's time skips it (the checkpoint comes first).

    Args:
        probe_set: the probe set config (``type``: demo, folder, ade20k, voc,
            cityscapes; docs/probes.md).
        interval: probe every ``interval`` epochs (``by_epoch``) or iterations.
        by_epoch: count ``interval`` in epochs (at epoch ends) or iterations.
        at_start: probe before the first iteration (the initialisation; not on
            a resumed run).
        at_end: probe after the last iteration (unless the interval just did).
        probes: some of ``knn``, ``linear``, ``cluster``, ``bbox``.
        student: probe the student too (``probe/student_*``).
        block: tokens after this block (-1: the last, with the final norm).
        seed: seed of the linear probe, k-means and the probe set's subset.
        amp: autocast the token extraction: ``None`` follows the run.
        wait_hours: how long a rank waits in the probe's collectives (for rank
            0's scoring, for the slowest rank's part of the tokens).
        on_error: ``'warn'`` (a failed probe is a warning) or ``'raise'``.
    """

    priority = 'NORMAL'  # after the teacher update, before logger and checkpoint

    def __init__(self, probe_set: dict, interval: int = 1, by_epoch: bool = True,
                 at_start: bool = True, at_end: bool = True,
                 probes: Sequence[str] = ('knn', 'cluster'), student: bool = False,
                 block: int = -1, seed: int = 0, amp: bool | None = None,
                 wait_hours: float = 6.0, on_error: str = 'warn') -> None:
        if not isinstance(probe_set, dict) or 'type' not in probe_set:
            raise ValueError('DenseProbeHook: probe_set must be a dict with a type '
                             "(e.g. dict(type='ade20k', data_root=...); "
                             'docs/probes.md)')
        if not isinstance(interval, int) or interval < 1:
            raise ValueError(f'DenseProbeHook: interval must be an int >= 1, got '
                             f'{interval!r}')
        probes = tuple(probes)
        unknown = set(probes) - set(BEST_KEYS)
        if unknown or not probes:
            raise ValueError(f'DenseProbeHook: probes {list(probes)}: expected some '
                             f'of {list(BEST_KEYS)} (bbox: sets with boxes, the demo '
                             'data)')
        if not isinstance(wait_hours, (int, float)) or wait_hours <= 0:
            raise ValueError(f'DenseProbeHook: wait_hours must be > 0, got '
                             f'{wait_hours!r}')
        if on_error not in ('warn', 'raise'):
            raise ValueError(f"DenseProbeHook: on_error must be 'warn' or 'raise', got "
                             f'{on_error!r}')
        self.wait_hours = float(wait_hours)
        self.on_error = on_error
        self.failures = 0
        self.probe_set_cfg = dict(probe_set)
        self.interval = interval
        self.by_epoch = by_epoch
        self.at_start = at_start
        self.at_end = at_end
        self.probes = probes
        self.student = student
        self.block = block
        self.seed = seed
        self.amp = amp
        self.best_key = next(v for k, v in BEST_KEYS.items() if k in probes)
        self.best: tuple[float, int] | None = None  # (value, step)
        self.last_step: int | None = None
        self.probe_seconds = 0.0
        self._pending: dict | None = None
        self._group = None
        self._backbone = None
        self._splits = None  # this rank's part of (train, val)
        self._num_classes = 0
        self._train_start = 0.0
        self._session_seconds = 0.0  # probe time since this process started

    # ----------------------------------------------------------- set-up
    def _probe_set_cfg(self, cfg: Config) -> dict:
        spec = dict(self.probe_set_cfg)
        if spec['type'] == 'demo' and 'data_root' not in spec:
            dataset = cfg.get('train_dataloader', {}).get('dataset', {})
            if 'data_root' not in dataset:
                raise ValueError("DenseProbeHook: probe_set=dict(type='demo') without "
                                 'data_root needs train_dataloader.dataset.data_root')
            spec['data_root'] = dataset['data_root']
            spec.setdefault('demo_kwargs', dict(dataset.get('demo_kwargs', {})))
        return spec

    def _broadcast(self, payload):
        """Rank 0's ``payload`` on every rank (waits up to ``wait_hours``)."""
        if self._group is None:
            return payload
        box = [payload]
        dist.broadcast_object_list(box, src=0, group=self._group)
        return box[0]

    def _gather(self, payload) -> list | None:
        """Every rank's ``payload`` in rank order on rank 0 (None elsewhere)."""
        if self._group is None:
            return [payload]
        out = [None] * get_world_size() if get_rank() == 0 else None
        dist.gather_object(payload, out, dst=0, group=self._group)
        return out

    def _all_gather(self, payload) -> list:
        if self._group is None:
            return [payload]
        out = [None] * get_world_size()
        dist.all_gather_object(out, payload, group=self._group)
        return out

    def before_run(self, runner) -> None:
        if get_world_size() > 1:
            self._group = dist.new_group(
                backend='gloo', timeout=datetime.timedelta(hours=self.wait_hours))
        from flsl_mm.analysis.probe_sets import build_probe_set
        from flsl_mm.analysis.tokens import build_dense_backbone
        rank, world = get_rank(), get_world_size()
        start = time.perf_counter()
        message, error, sizes = None, None, None
        try:  # every rank: the backbone copy and its part of the probe set
            if 'model' not in runner.cfg:
                raise ValueError('DenseProbeHook needs the run\'s config (a runner '
                                 'built by Runner.from_cfg, as tools/train.py does)')
            with preserved_rng_state():  # building draws an initialisation
                self._backbone = build_dense_backbone(runner.cfg, 'the run config')
            probe_set = build_probe_set(self._probe_set_cfg(runner.cfg), self.seed)
            if 'bbox' in self.probes and not (probe_set.train.ann_file and
                                              probe_set.val.ann_file):
                raise ValueError(f'DenseProbeHook: probes bbox needs COCO boxes; '
                                 f'{probe_set.name} has none (the demo data has)')
            self._splits = probe_set.load(self._backbone.patch_size, (rank, world))
            self._num_classes = probe_set.num_classes
            sizes = (len(probe_set.train.images), len(probe_set.val.images),
                     len(self._splits[0].images), len(self._splits[1].images))
            when = (f'every {self.interval} ' +
                    ('epoch(s)' if self.by_epoch else 'iteration(s)') +
                    (', at the start' if self.at_start else '') +
                    (', at the end' if self.at_end else ''))
            message = (f'DenseProbeHook: {probe_set.describe()}; read and checked '
                       f'in {time.perf_counter() - start:.1f} s; probes '
                       f'{", ".join(self.probes)} of the teacher'
                       f'{" and the student" if self.student else ""} {when}')
        except Exception as exc:  # every rank must hear of it
            error = exc
            message = f'{type(exc).__name__}: {exc}'
        status = self._all_gather((error is None, message, sizes))
        if error is not None:
            raise error
        failed = [(r, m) for r, (ok, m, _) in enumerate(status) if not ok]
        if failed:
            raise RuntimeError(f'DenseProbeHook: the probe set was refused on rank '
                               f'{failed[0][0]}: {failed[0][1]}')
        if len({sz[:2] for _, _, sz in status}) > 1:
            raise RuntimeError('DenseProbeHook: the ranks see different probe sets '
                               '(train, val images per rank: '
                               f'{[sz[:2] for _, _, sz in status]}); every rank '
                               'must read the same files')
        if world > 1:
            shards = '+'.join(f'{sz[2]}/{sz[3]}' for _, _, sz in status)
            message += (f'; tokens embedded on {world} ranks (train/val images '
                        f'per rank: {shards})')
        runner.logger.info(message)

    def before_train(self, runner) -> None:
        if self._pending is not None and runner.iter > 0:  # resumed: keep history
            state = self._pending
            self.best = tuple(state['best']) if state.get('best') else None
            self.last_step = state.get('last_step')
            self.probe_seconds = state.get('seconds', 0.0)
        self._pending = None
        self._train_start = time.perf_counter()
        if self.at_start and runner.iter == 0:
            self._probe(runner, 0)

    # ------------------------------------------------------------ when
    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs=None) -> None:
        if not self.by_epoch and self.every_n_train_iters(runner, self.interval):
            self._probe(runner, runner.iter + 1)

    def after_train_epoch(self, runner) -> None:
        if self.by_epoch and self.every_n_epochs(runner, self.interval):
            self._probe(runner, runner.iter)

    def after_train(self, runner) -> None:
        if self.at_end and runner.iter >= runner.max_iters and \
                self.last_step != runner.iter:
            self._probe(runner, runner.iter)

    # ----------------------------------------------------------- probe
    def _autocast_dtype(self, runner, device: torch.device) -> torch.dtype | None:
        from mmengine.optim import AmpOptimWrapper
        wrapper = getattr(runner, 'optim_wrapper', None)
        use = isinstance(wrapper, AmpOptimWrapper) if self.amp is None else self.amp
        if not use:
            return None
        dtype = getattr(wrapper, 'cast_dtype', None)
        if dtype is None:
            dtype = torch.float16 if device.type == 'cuda' else torch.bfloat16
        return dtype

    def _extract(self, runner) -> tuple[dict, float]:
        """This rank's part of the tokens (``{prefix: (train, val)}``: the
        teacher's, and the student's with ``student``) and its seconds."""
        from flsl_mm.analysis.probe_runner import collect
        from flsl_mm.analysis.tokens import load_backbone_state
        start = time.perf_counter()
        model = runner_model(runner)
        device = next(model.parameters()).device
        dtype = self._autocast_dtype(runner, device)
        state = {'state_dict': model.state_dict()}
        parts = {}
        try:
            self._backbone.to(device)
            for prefix, student in [('', False)] + ([('student_', True)]
                                                     if self.student else []):
                load_backbone_state(self._backbone, state, 'the running model',
                                    student)
                parts[prefix] = tuple(collect(self._backbone, split, self.block,
                                              autocast_dtype=dtype)
                                      for split in self._splits)
            if device.type == 'cuda':
                torch.cuda.synchronize(device)
        finally:  # the probe copy leaves the training device between probes
            self._backbone.to('cpu')
            if device.type == 'cuda':
                torch.cuda.empty_cache()
        return parts, time.perf_counter() - start

    def _score(self, runner, shards: list[dict]) -> tuple[dict, dict]:
        """Rank 0: the probes' values on every rank's tokens, in rank order, and
        the seconds of each probe (summed over the teacher and the student)."""
        from flsl_mm.analysis.probe_runner import merge, score
        device = next(runner_model(runner).parameters()).device
        results, stages = {}, {}
        for prefix in shards[0]:
            train = merge([parts[prefix][0] for parts in shards])
            val = merge([parts[prefix][1] for parts in shards])
            timings: dict = {}
            values = score(train, val, self._num_classes, self.seed, device,
                           self.probes, timings)
            for stage, secs in timings.items():
                stages[stage] = stages.get(stage, 0.0) + secs
            results.update({prefix + k: v for k, v in values.items()})
        return results, stages

    @staticmethod
    def _stop_pending(runner) -> bool:
        """A stop signal pending (agreed by every rank): the run's
        ``ResumableCheckpointHook`` stops it right after, so no probe now."""
        from .resumable_checkpoint_hook import ResumableCheckpointHook
        hook = next((h for h in runner.hooks
                     if isinstance(h, ResumableCheckpointHook)), None)
        return hook is not None and hook.stop_requested()

    def _probe(self, runner, step: int) -> None:
        if self._stop_pending(runner):
            runner.logger.info(f'DenseProbeHook: a stop signal is pending: no probe '
                               f'at iteration {step} (the checkpoint comes first)')
            return
        start = time.perf_counter()
        try:  # every rank embeds its part of the probe set
            with preserved_rng_state():
                extracted = (True, self._extract(runner))
        except Exception as exc:  # noqa: BLE001 - reported to every rank
            if self.on_error == 'raise' and self._group is None:
                raise
            extracted = (False, f'{type(exc).__name__}: {exc}')
        gathered = self._gather(extracted)
        payload = None
        if get_rank() == 0:
            failed = [(r, m) for r, (ok, m) in enumerate(gathered) if not ok]
            if failed:
                payload = (False, '; '.join(f'rank {r}: {m}' for r, m in failed))
            else:
                # the slowest rank's extraction; then the wait for it and the
                # transfer of every rank's tokens
                slowest = max(secs for _, (_, secs) in gathered)
                stages = dict(tokens=slowest)
                if self._group is not None:
                    stages['gather'] = max(time.perf_counter() - start - slowest, 0.0)
                try:
                    with preserved_rng_state():
                        results, timings = self._score(
                            runner, [parts for _, (parts, _) in gathered])
                    payload = (True, (results, dict(stages, **timings)))
                except Exception as exc:  # noqa: BLE001 - reported to every rank
                    if self.on_error == 'raise' and self._group is None:
                        raise
                    payload = (False, f'rank 0: {type(exc).__name__}: {exc}')
            del gathered  # every rank's tokens: gone before training goes on
        ok, results = self._broadcast(payload)
        if not ok:
            message = f'DenseProbeHook: the probe at iteration {step} failed on {results}'
            if self.on_error == 'raise':
                raise RuntimeError(message)
            self.failures += 1
            runner.logger.warning(f'{message}; training goes on (on_error=\'raise\' '
                                  'stops the run instead)')
            return
        results, stages = results
        seconds = time.perf_counter() - start
        self.probe_seconds += seconds
        self._session_seconds += seconds
        self.last_step = step
        value = results.get(self.best_key)
        if value is not None and (self.best is None or value > self.best[0]):
            self.best = (value, step)
        self._report(runner, step, results, seconds, stages)

    def _report(self, runner, step: int, results: dict, seconds: float,
                stages: dict) -> None:
        scalars = {f'probe/{k}': v for k, v in results.items()}
        if self.best is not None:
            scalars[f'probe/best_{self.best_key}'] = self.best[0]
        scalars['probe/seconds'] = seconds
        for key, value in scalars.items():
            runner.message_hub.update_scalar(key, value)
        json_log = next((getattr(h, 'json_log_path', None) for h in runner.hooks
                         if type(h).__name__ == 'LoggerHook'), None)
        row = dict(scalars, iter=step)
        runner.visualizer.add_scalars(row, step=step, file_path=json_log)
        elapsed = time.perf_counter() - self._train_start
        shown = [k for k in results if k.endswith('miou') or k.startswith('bbox')]
        values = ', '.join(f'{k} {results[k]:.4f}' for k in shown)
        best = (f' (best {self.best_key} {self.best[0]:.4f} at iteration '
                f'{self.best[1]})' if self.best is not None else '')
        share = (f'; {100 * self._session_seconds / elapsed:.1f} % of the '
                 f'{elapsed:.0f} s since training (re)started' if elapsed > 0 and step
                 else '')
        parts = ', '.join(f'{k} {v:.1f}' for k, v in stages.items())
        if self._group is not None:
            parts += f'; tokens on {get_world_size()} ranks'
        runner.logger.info(f'dense probe at iteration {step}: {values}{best}; '
                           f'{seconds:.1f} s ({parts}), all probes '
                           f'{self.probe_seconds:.1f} s{share}')

    # ------------------------------------------------------- checkpoints
    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint['dense_probe'] = dict(best=self.best, last_step=self.last_step,
                                         seconds=self.probe_seconds)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        self._pending = checkpoint.get('dense_probe')
