"""Per-sample random streams: what a training sample draws depends only on the run's
seed, the epoch and the sample's position in the epoch (docs/pretraining.md,
"Preemption and resume").

mmengine seeds each loader worker from the seed, rank and worker id, so a sample's
augmentation depends on which worker drew it and on everything that worker drew
before: a run resumed mid-epoch (fresh workers, skipped batches) or with another
number of workers draws other crops. Here the sampler hands every dataset index
together with its own seed (:class:`SeededSampler`), and
:class:`SampleSeededDataset` seeds Python's ``random``, numpy's global generator
and torch's CPU generator from it for the duration of that one sample (the
caller's generator states are put back afterwards). The transforms themselves are
unchanged: they draw from the same global generators, in the same order, as
before.
"""
from __future__ import annotations

import random
from contextlib import contextmanager
from typing import Iterator, Sequence

import numpy as np
import torch
from mmengine.dataset import DefaultSampler
from torch.utils.data import Dataset, get_worker_info

from flsl_mm.datasets.bad_samples import (ITEM_KEY, MAX_ATTEMPTS, ON_BAD_SAMPLE,
                                          BadSampleError, replacement_index,
                                          sample_path)
from flsl_mm.registry import DATA_SAMPLERS

_U64 = (1 << 64) - 1


def sample_seed(seed: int, epoch: int, position: int) -> int:
    """The 64-bit seed of the sample at ``position`` of the epoch's global order
    (positions ``rank, rank + world_size, ...`` belong to rank ``rank``).

    A hash (numpy's ``SeedSequence``), so neighbouring positions and epochs get
    unrelated streams."""
    words = np.random.SeedSequence([seed & _U64, epoch, position]).generate_state(
        2, np.uint32)
    return (int(words[0]) << 32) | int(words[1])


@contextmanager
def seeded_rng(seed: int, restore: bool = True):
    """Seed ``random``, ``numpy.random`` and torch's CPU generator from ``seed``
    for the block; with ``restore``, put the previous states back after it (in
    a loader worker nothing else draws between two samples, each of which seeds
    anew: :class:`SampleSeededDataset` skips the 70 us of saving and restoring
    there)."""
    cpu = torch.default_generator  # torch.manual_seed would also seed CUDA's (80 us)
    saved = (random.getstate(), np.random.get_state(), cpu.get_state()) if restore \
        else None
    words = np.random.SeedSequence(seed & _U64).generate_state(4, np.uint32)
    random.seed((int(words[0]) << 32) | int(words[1]))
    np.random.seed(int(words[2]))
    cpu.manual_seed((int(words[3]) << 32) | int(words[0]))
    try:
        yield
    finally:
        if saved is not None:
            random.setstate(saved[0])
            np.random.set_state(saved[1])
            cpu.set_state(saved[2])


class SampleSeededDataset(Dataset):
    """Wraps a dataset so that item ``(index, seed)`` is ``dataset[index]`` made
    under :func:`seeded_rng` ``(seed)``. ``metainfo`` is the wrapped dataset's;
    ``.dataset`` is the wrapped dataset.

    A sample that raises :class:`~flsl_mm.datasets.bad_samples.BadSampleError`
    (a file that cannot be used) is, with ``on_bad_sample='replace'``, replaced
    by sample :func:`~flsl_mm.datasets.bad_samples.replacement_index` ``(index,
    seed, attempt)``, made under the same seed: the same replacement on every
    rank and every resume. The item then carries the records of the bad ones
    under ``ITEM_KEY`` (path, reason, index, replacement) for the training loop
    to log. ``'raise'`` lets the error through (the job stops, naming the file).

    ``keep`` (indices of the wrapped dataset) leaves the others out from the
    start: the skip list of a ``tools/misc/check_dataset.py`` scan; ``len`` is
    then ``len(keep)`` and item ``i`` is sample ``keep[i]``.
    """

    def __init__(self, dataset, on_bad_sample: str = 'replace',
                 keep: Sequence[int] | None = None) -> None:
        if on_bad_sample not in ON_BAD_SAMPLE:
            raise ValueError(f'on_bad_sample must be one of {ON_BAD_SAMPLE}, got '
                             f'{on_bad_sample!r}')
        self.dataset = dataset
        self.on_bad_sample = on_bad_sample
        self.keep = None if keep is None else list(keep)

    @property
    def metainfo(self) -> dict:
        return getattr(self.dataset, 'metainfo', {})

    def __len__(self) -> int:
        return len(self.dataset) if self.keep is None else len(self.keep)

    def source_index(self, index: int) -> int:
        """The wrapped dataset's index of item ``index``."""
        return index if self.keep is None else self.keep[index]

    def __getitem__(self, key):
        if not (isinstance(key, tuple) and len(key) == 2):
            raise TypeError(
                'SampleSeededDataset takes (index, seed) items from SeededSampler, '
                f'got {key!r}: build the loader with ResumableEpochBasedTrainLoop')
        index, seed = key
        restore = get_worker_info() is None
        bad = []
        for attempt in range(MAX_ATTEMPTS + 1):
            source = self.source_index(index)
            try:
                with seeded_rng(seed, restore=restore):
                    item = self.dataset[source]
            except BadSampleError as error:
                if self.on_bad_sample == 'raise':
                    raise
                index = replacement_index(index, seed, attempt, len(self))
                bad.append(dict(path=error.path, reason=error.reason, index=source))
                continue
            if bad and isinstance(item, dict):
                trained_on = sample_path(self.dataset, source)
                item[ITEM_KEY] = [dict(r, replacement=trained_on) for r in bad]
            return item
        raise BadSampleError(bad[0]['path'], f'{bad[0]["reason"]}; and the '
                             f'{MAX_ATTEMPTS} samples tried in its place were bad '
                             f'too: {[r["path"] for r in bad[1:]]}')


@DATA_SAMPLERS.register_module()
class SeededSampler(DefaultSampler):
    """mmengine's ``DefaultSampler`` (the same order: a permutation seeded by
    ``seed + epoch``, padded, split by rank) whose items are
    ``(index, sample_seed(seed, epoch, position))``, for
    :class:`SampleSeededDataset`.

    :meth:`start_at` makes the next epoch's iteration begin at this rank's
    ``n``-th sample: the batches before it are skipped here, at the sampler,
    without loading anything (an exact mid-epoch resume).
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._start = 0

    def start_at(self, num_samples: int) -> None:
        """Skip this rank's first ``num_samples`` samples in the next iteration
        over the sampler (only that one)."""
        if not 0 <= num_samples <= self.num_samples:
            raise ValueError(f'SeededSampler.start_at: {num_samples} is outside '
                             f'this rank\'s epoch of {self.num_samples} samples')
        self._start = num_samples

    def __iter__(self) -> Iterator[tuple[int, int]]:
        start, self._start = self._start, 0
        indices = list(super().__iter__())  # this rank's share, in order
        return ((indices[k], sample_seed(self.seed, self.epoch,
                                         self.rank + k * self.world_size))
                for k in range(start, len(indices)))


__all__ = ['sample_seed', 'seeded_rng', 'SampleSeededDataset', 'SeededSampler']
