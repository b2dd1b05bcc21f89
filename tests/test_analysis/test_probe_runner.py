"""Probe runner: a probe set split over ranks (shard_range, ProbeSet.load with a
shard), embedded part by part and merged, gives the tokens, labels, boxes and
probe values of the whole set embedded in one process."""
import numpy as np
import pytest

from flsl_mm.analysis.probe_runner import collect, merge, run_probes, score
from flsl_mm.analysis.probe_sets import build_probe_set, shard_range

CONFIG = 'configs/pretrain/flsl_vit-tiny-p16_demo.py'


def test_shard_range_parts_are_the_whole_list_in_order():
    assert [shard_range(10, r, 3) for r in range(3)] == [(0, 3), (3, 6), (6, 10)]
    assert [shard_range(2, r, 4) for r in range(4)] == [(0, 0), (0, 1), (1, 1),
                                                         (1, 2)]
    for num in (0, 1, 7, 16):
        for world in (1, 2, 3, 8):
            parts = [shard_range(num, r, world) for r in range(world)]
            assert parts[0][0] == 0 and parts[-1][1] == num
            assert all(a[1] == b[0] for a, b in zip(parts, parts[1:]))
            sizes = [e - s for s, e in parts]
            assert max(sizes) - min(sizes) <= 1
    with pytest.raises(ValueError, match='rank 2 of world size 2'):
        shard_range(4, 2, 2)


@pytest.fixture(scope='module')
def backbone(repo_root):
    from flsl_mm.analysis import load_backbone
    return load_backbone(str(repo_root / CONFIG), random_init=True)


def test_shards_merged_equal_the_whole_set(backbone, demo_root):
    """3 ranks for 16 train / 8 val demo images (parts of 5, 5, 6 and 2, 3, 3),
    and 10 ranks for 8 val images (empty parts): the merged tokens, labels and
    bbox features are bitwise those of one process, and so are the probes."""
    probe_set = build_probe_set(dict(type='demo', data_root=str(demo_root)))
    whole = [collect(backbone, split) for split in probe_set.load(16)]
    for world in (3, 10):
        shards = [probe_set.load(16, (rank, world)) for rank in range(world)]
        assert [len(s[1].images) for s in shards] == \
            [e - s for s, e in (shard_range(8, r, world) for r in range(world))]
        for i, full in enumerate(whole):
            merged = merge([collect(backbone, s[i]) for s in shards])
            assert merged['images'] == full['images'] == (16, 8)[i]
            for key in ('tokens', 'labels', 'box_feats', 'box_labels'):
                assert merged[key].dtype == full[key].dtype, key
                assert np.array_equal(merged[key], full[key]), (world, i, key)
    train, val = probe_set.load(16)
    one_process = run_probes(backbone, train, val, probe_set.num_classes,
                             probes=('knn', 'cluster', 'bbox'), progress=False)
    shards = [probe_set.load(16, (rank, 3)) for rank in range(3)]
    sharded = score(merge([collect(backbone, s[0]) for s in shards]),
                    merge([collect(backbone, s[1]) for s in shards]),
                    probe_set.num_classes, probes=('knn', 'cluster', 'bbox'))
    assert sharded == one_process
    assert {'knn_miou', 'cluster_miou', 'bbox_knn_top1@20'} <= set(sharded)


def test_an_empty_part_has_no_tokens_of_the_right_width(backbone, demo_root):
    probe_set = build_probe_set(dict(type='demo', data_root=str(demo_root)))
    _, val = probe_set.load(16, (0, 10))  # 8 val images over 10 ranks: none here
    part = collect(backbone, val)
    assert part['tokens'].shape == (0, backbone.embed_dims)
    assert part['labels'].shape == (0,) and part['images'] == 0
    assert part['box_feats'] is None and part['box_labels'].shape == (0,)
