"""Per-sample random streams: a sample's draws depend on (seed, epoch, position)
only; the sampler keeps DefaultSampler's order and can start mid-epoch."""
import random

import numpy as np
import pytest
import torch
from mmengine.dataset import DefaultSampler

from flsl_mm.datasets.sample_seeding import (SampleSeededDataset, SeededSampler,
                                             sample_seed, seeded_rng)


def draws():
    return (random.random(), float(np.random.rand()), float(torch.rand(())))


class Drawing(torch.utils.data.Dataset):
    metainfo = dict(classes=('x', ))

    def __len__(self):
        return 10

    def __getitem__(self, index):
        return (index, ) + draws()


def test_sample_seed_is_a_hash_of_seed_epoch_position():
    assert sample_seed(0, 1, 2) == sample_seed(0, 1, 2)
    seeds = {sample_seed(s, e, p) for s in (0, 1) for e in (0, 1) for p in range(50)}
    assert len(seeds) == 200  # all distinct
    assert 0 <= sample_seed(-1, 0, 0) < 2**64  # any int seed


def test_seeded_rng_gives_the_same_draws_and_restores_the_callers_state():
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    with seeded_rng(123):
        first = draws()
    after = draws()
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    assert draws() == after  # the block left the outer streams untouched
    draws()  # move the outer streams: the block does not care
    with seeded_rng(123):
        assert draws() == first
    with seeded_rng(124):
        assert draws() != first


def test_seeded_sampler_keeps_default_sampler_order_and_seeds_positions():
    data = Drawing()
    plain = list(DefaultSampler(data, shuffle=True, seed=3))
    seeded = SeededSampler(data, shuffle=True, seed=3)
    seeded.set_epoch(2)
    plain_2 = DefaultSampler(data, shuffle=True, seed=3)
    plain_2.set_epoch(2)
    items = list(seeded)
    assert [i for i, _ in items] == list(plain_2) != plain
    assert [s for _, s in items] == [sample_seed(3, 2, p) for p in range(10)]


def test_seeded_sampler_positions_across_ranks():
    """Rank r of W takes positions r, r + W, ...: the ranks' seeds together are
    those of the global order, whatever W is."""
    data = Drawing()
    for world in (1, 2, 3):
        got = {}
        for rank in range(world):
            sampler = SeededSampler(data, shuffle=True, seed=0)
            sampler.rank, sampler.world_size = rank, world
            sampler.num_samples = -(-len(data) // world)
            sampler.total_size = sampler.num_samples * world
            for k, (index, seed) in enumerate(sampler):
                got[rank + k * world] = (index, seed)
        order = list(DefaultSampler(data, shuffle=True, seed=0))
        for p in range(len(data)):  # the unpadded part is world-size independent
            assert got[p] == (order[p], sample_seed(0, 0, p))


def test_start_at_skips_once_without_touching_the_dataset():
    data = Drawing()
    sampler = SeededSampler(data, shuffle=True, seed=0)
    full = list(sampler)
    sampler.start_at(7)
    assert list(sampler) == full[7:]
    assert list(sampler) == full  # only the next iteration starts late
    sampler.start_at(10)
    assert list(sampler) == []
    with pytest.raises(ValueError, match='outside'):
        sampler.start_at(11)


def test_seeded_dataset_item_depends_only_on_its_seed():
    data = SampleSeededDataset(Drawing())
    a = data[(4, 99)]
    draws(), draws()
    assert data[(4, 99)] == a and data[(4, 98)] != a
    assert len(data) == 10 and data.metainfo == dict(classes=('x', ))
    with pytest.raises(TypeError, match='ResumableEpochBasedTrainLoop'):
        data[4]
