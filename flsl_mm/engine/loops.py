"""An epoch-based training loop whose resume is exact, also from the middle of an
epoch and with loader workers (docs/pretraining.md, "Preemption and resume")."""
from __future__ import annotations

import copy

import torch
from mmengine.dataset import DefaultSampler
from mmengine.logging import print_log
from mmengine.registry import DATASETS
from mmengine.runner import EpochBasedTrainLoop

from flsl_mm.datasets.sample_seeding import SampleSeededDataset, SeededSampler
from flsl_mm.registry import LOOPS

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
    """

    def __init__(self, runner, dataloader, max_epochs: int, **kwargs) -> None:
        if isinstance(dataloader, dict):
            dataloader = self._seeded_loader_cfg(dataloader)
        super().__init__(runner, dataloader, max_epochs, **kwargs)
        if not isinstance(self.dataloader.dataset, SampleSeededDataset) or \
                not isinstance(self.dataloader.sampler, SeededSampler):
            raise TypeError('ResumableEpochBasedTrainLoop builds its own loader: give '
                            'train_dataloader as a config dict, not a DataLoader')
        self.dataloader.generator = torch.Generator()

    @staticmethod
    def _seeded_loader_cfg(cfg: dict) -> dict:
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
        cfg['dataset'] = SampleSeededDataset(dataset)
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
        return super().run()

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
