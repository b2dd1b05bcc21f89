"""An epoch-based training loop whose resume is exact, also from the middle of an
epoch and with loader workers (docs/pretraining.md, "Preemption and resume")."""
from __future__ import annotations

import copy
import os.path as osp

import torch
from mmengine.dataset import DefaultSampler
from mmengine.logging import print_log
from mmengine.registry import DATASETS
from mmengine.runner import EpochBasedTrainLoop

from flsl_mm.datasets.bad_samples import (ITEM_KEY, ON_BAD_SAMPLE, BadSampleCollate,
                                          default_cap, read_records, sample_path,
                                          skip_list_digest)
from flsl_mm.datasets.sample_seeding import SampleSeededDataset, SeededSampler
from flsl_mm.registry import LOOPS
from .bad_sample_ledger import HUB_SKIP_LIST, BadSampleLedger
from .hooks.iter_schedule import host_read_due

# message-hub key: (epoch, first iteration, batches, global batch, sampler seed)
EPOCH_START = 'train_epoch_start'


@LOOPS.register_module()
class ResumableEpochBasedTrainLoop(EpochBasedTrainLoop):
    """mmengine's ``EpochBasedTrainLoop`` (same arguments) where

    * every sample draws its augmentation from its own seed, made of the run's
      seed, the epoch and its position in the epoch's order
      (:mod:`flsl_mm.datasets.sample_seeding`): the config's
      ``sampler=dict(type='DefaultSampler', ...)`` becomes a
      :class:`~flsl_mm.datasets.sample_seeding.SeededSampler` with the same
      arguments (the same order) and the dataset is wrapped in
      :class:`~flsl_mm.datasets.sample_seeding.SampleSeededDataset`. Which worker
      loads a sample, and how many workers there are, no longer matters;
    * the loader's own generator (the workers' base seed) is separate from the
      global torch generator, so creating a loader iterator draws nothing from
      the stream that drop path uses;
    * a run resumed from a checkpoint written in the middle of an epoch (by
      :class:`~flsl_mm.engine.hooks.ResumableCheckpointHook`) continues at the
      next batch: the sampler starts there, the batches already done are neither
      loaded nor decoded. mmengine's loop restarts the epoch's data while its
      iteration counter runs on.

    The epoch's first iteration, its number of batches, the global batch (batch
    size x processes) and the sampler's seed are kept in the message hub (saved in
    checkpoints), so the position -- in samples -- and the order are known on
    resume, also with ``diff_rank_seed`` (whose sampler seed is drawn anew at each
    launch); a mid-epoch resume with another global batch or number of batches per
    epoch is refused with a message (it would continue at another sample).

    Bad samples (docs/pretraining.md, "Bad samples"): a file that cannot be used
    is replaced by another sample chosen from its index and seed
    (``on_bad_sample='replace'``, the default; ``'raise'`` stops the run naming
    it), logged, counted in the log line (``bad_samples``) and listed in
    ``work_dir/bad_samples.jsonl``; more than ``max_bad_samples`` distinct bad
    files (default 0.1 % of the dataset, at least 1) stop the run with the list.
    ``skip_list`` (a ``tools/misc/check_dataset.py`` list) leaves its files out
    of the dataset from the start; a resume with another list is refused.

    Args:
        on_bad_sample: ``'replace'`` or ``'raise'``.
        max_bad_samples: the most distinct bad files a run goes on with.
        skip_list: path of a ``bad_samples.jsonl`` whose files are left out.
    """

    def __init__(self, runner, dataloader, max_epochs: int,
                 on_bad_sample: str = 'replace', max_bad_samples: int | None = None,
                 skip_list: str | None = None, **kwargs) -> None:
        if on_bad_sample not in ON_BAD_SAMPLE:
            raise ValueError(f'train_cfg.on_bad_sample must be one of {ON_BAD_SAMPLE}, '
                             f'got {on_bad_sample!r}')
        if max_bad_samples is not None and (
                isinstance(max_bad_samples, bool) or not isinstance(max_bad_samples, int)
                or max_bad_samples < 0):
            raise ValueError('train_cfg.max_bad_samples must be an integer >= 0 (the '
                             'most distinct bad files a run goes on with), got '
                             f'{max_bad_samples!r}')
        self._skip_digest = None
        if isinstance(dataloader, dict):
            dataloader = self._seeded_loader_cfg(dataloader, on_bad_sample, skip_list)
            self._skip_digest = dataloader.pop('_skip_digest')
        elif skip_list is not None:
            raise ValueError('train_cfg.skip_list needs train_dataloader as a config')
        super().__init__(runner, dataloader, max_epochs, **kwargs)
        if not isinstance(self.dataloader.dataset, SampleSeededDataset) or \
                not isinstance(self.dataloader.sampler, SeededSampler):
            raise TypeError('ResumableEpochBasedTrainLoop builds its own loader: give '
                            'train_dataloader as a config dict, not a DataLoader')
        self.dataloader.generator = torch.Generator()
        self.dataloader.collate_fn = BadSampleCollate(self.dataloader.collate_fn)
        size = len(self.dataloader.dataset)
        self.bad_samples = BadSampleLedger(
            default_cap(size) if max_bad_samples is None else max_bad_samples)

    @staticmethod
    def _seeded_loader_cfg(cfg: dict, on_bad_sample: str = 'replace',
                           skip_list: str | None = None) -> dict:
        cfg = copy.deepcopy(dict(cfg))
        sampler = dict(cfg.get('sampler') or {})
        kind = sampler.get('type')
        if kind not in ('DefaultSampler', DefaultSampler, 'SeededSampler',
                        SeededSampler):
            raise ValueError(
                'ResumableEpochBasedTrainLoop: train_dataloader.sampler must be '
                f"dict(type='DefaultSampler', ...), got {kind!r}: an exact resume "
                'needs the sampler to start mid-epoch and to seed every sample')
        if cfg.get('batch_sampler') is not None:
            raise ValueError('ResumableEpochBasedTrainLoop: a batch_sampler is not '
                             'supported (batches are consecutive samples)')
        sampler['type'] = SeededSampler
        cfg['sampler'] = sampler
        dataset = cfg['dataset']
        if isinstance(dataset, dict):
            dataset = DATASETS.build(dataset)
            if hasattr(dataset, 'full_init'):
                dataset.full_init()
        keep, digest = None, None
        if skip_list is not None:
            keep, digest = _apply_skip_list(dataset, skip_list)
        cfg['dataset'] = SampleSeededDataset(dataset, on_bad_sample, keep)
        cfg['_skip_digest'] = digest
        return cfg

    def global_batch(self) -> int:
        """Samples per iteration over all ranks."""
        return self.dataloader.batch_size * self.dataloader.sampler.world_size

    def run(self) -> torch.nn.Module:
        sampler = self.dataloader.sampler
        saved = self.runner.message_hub.get_info(EPOCH_START, None)
        if saved is not None and len(saved) >= 5:
            # a resumed run: the sampler's seed of the run it continues (drawn
            # anew at each launch with diff_rank_seed, so it must be kept)
            sampler.seed = int(saved[4])
        elif not self.runner._randomness_cfg.get('diff_rank_seed', False):
            sampler.seed = self.runner.seed  # a resumed run takes the checkpoint's
        self.dataloader.generator.manual_seed(sampler.seed)
        hub = self.runner.message_hub
        if saved is not None:
            resumed = hub.get_info(HUB_SKIP_LIST, None)
            if resumed != self._skip_digest:
                def what(digest):
                    return 'no skip list' if digest is None else f'skip list {digest}'
                raise RuntimeError(
                    f'cannot resume: the checkpoint\'s run left out {what(resumed)}, '
                    f'this run {what(self._skip_digest)} (train_cfg.skip_list; the '
                    'digest of its set of paths): the dataset\'s length and order '
                    'would change; resume with the same skip list')
        hub.update_info(HUB_SKIP_LIST, self._skip_digest)
        self.bad_samples.restore(self.runner)
        return super().run()

    def run_iter(self, idx, data_batch) -> None:
        """mmengine's iteration; the batch's replaced bad samples are taken out
        of it and noted, and gathered at the host-read points (before the hooks
        that log and save: a checkpoint holds every record before it)."""
        bad = data_batch.pop(ITEM_KEY, []) if isinstance(data_batch, dict) else []
        if bad:
            self.bad_samples.note(bad, self._epoch + 1, self._iter + 1)
        self.runner.call_hook('before_train_iter', batch_idx=idx, data_batch=data_batch)
        outputs = self.runner.model.train_step(
            data_batch, optim_wrapper=self.runner.optim_wrapper)
        if host_read_due(self.runner, idx):
            self.bad_samples.gather(self.runner)
        self.runner.call_hook('after_train_iter', batch_idx=idx, data_batch=data_batch,
                              outputs=outputs)
        self._iter += 1

    def run_epoch(self) -> None:
        """Iterate one epoch, from the batch a mid-epoch checkpoint stopped at."""
        hub = self.runner.message_hub
        batches = len(self.dataloader)
        saved = tuple(hub.get_info(EPOCH_START, (None, 0, 0)))
        epoch, first_iter, saved_batches = saved[:3]
        saved_global = saved[3] if len(saved) >= 5 else None
        start = self._iter - first_iter if epoch == self._epoch else 0
        if start:
            if saved_global is not None and saved_global != self.global_batch():
                raise RuntimeError(
                    f'cannot resume in the middle of epoch {self._epoch + 1} exactly: '
                    f'the checkpoint was written after {start} batches of '
                    f'{saved_global} samples (batch size x processes), this run '
                    f'takes {self.global_batch()} per iteration, so it would '
                    'continue at another sample; resume with the same batch size '
                    'and number of processes, or from an epoch checkpoint '
                    '(--resume work_dir/epoch_N.pth)')
            if saved_batches != batches:
                raise RuntimeError(
                    f'cannot resume in the middle of epoch {self._epoch + 1}: the '
                    f'checkpoint was written at batch {start} of {saved_batches} '
                    f'batches per epoch, this run has {batches} (another batch size '
                    'or number of processes); resume with the same settings, or '
                    'from an epoch checkpoint (--resume work_dir/epoch_N.pth)')
            if not 0 < start <= batches:
                raise RuntimeError(
                    f'inconsistent checkpoint: iteration {self._iter} is not inside '
                    f'epoch {self._epoch + 1} (which began at iteration {first_iter} '
                    f'with {batches} batches)')
            print_log(f'resuming epoch {self._epoch + 1} at batch {start + 1} of '
                      f'{batches}: {start} batches skipped at the sampler, none '
                      'loaded', logger='current')
        else:
            hub.update_info(EPOCH_START, (self._epoch, self._iter, batches,
                                          self.global_batch(),
                                          int(self.dataloader.sampler.seed)))
        self.runner.call_hook('before_train_epoch')
        self.runner.model.train()
        sampler = self.dataloader.sampler
        sampler.start_at(min(start * self.dataloader.batch_size, sampler.num_samples))
        for idx, data_batch in enumerate(self.dataloader, start):
            self.run_iter(idx, data_batch)
        self.runner.call_hook('after_train_epoch')
        self._epoch += 1


def _apply_skip_list(dataset, skip_list: str) -> tuple[list[int], str]:
    """The indices of ``dataset`` not in the skip list, and the list's digest."""
    def norm(path: str) -> str:
        return osp.normpath(osp.abspath(path))

    if not osp.isfile(skip_list):
        raise FileNotFoundError(f'train_cfg.skip_list: {skip_list} does not exist '
                                '(make one with tools/misc/check_dataset.py)')
    skipped = {norm(r['path']) for r in read_records(skip_list)}
    keep = [i for i in range(len(dataset))
            if norm(sample_path(dataset, i)) not in skipped]
    left_out = len(dataset) - len(keep)
    print_log(f'skip list {skip_list}: {left_out} of the dataset\'s {len(dataset)} '
              f'samples left out ({len(skipped) - left_out} of its '
              f'{len(skipped)} paths are not in the dataset)', logger='current')
    if not keep:
        raise ValueError(f'train_cfg.skip_list {skip_list} leaves no sample')
    return keep, skip_list_digest(skipped)
