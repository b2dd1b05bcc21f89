"""Bad-sample replacement at the dataset (flsl_mm/datasets/bad_samples.py,
SampleSeededDataset): the replacement is a function of the index, the seed and
the attempt, never the sample itself; chains of bad ones; 'raise'; the collate
wrapper; the records file; the skip list digest."""
import json

import numpy as np
import pytest

from flsl_mm.datasets.bad_samples import (ITEM_KEY, BadSampleCollate, BadSampleError,
                                          default_cap, read_records,
                                          replacement_index, skip_list_digest,
                                          write_records)
from flsl_mm.datasets.sample_seeding import SampleSeededDataset


class Toy:
    """Samples 0..n-1; those in ``bad`` raise; each item draws one number."""

    def __init__(self, n, bad):
        self.n, self.bad = n, set(bad)

    def __len__(self):
        return self.n

    def get_data_info(self, index):
        return dict(img_path=f'img_{index}.jpg')

    def __getitem__(self, index):
        if index in self.bad:
            raise BadSampleError(f'img_{index}.jpg', 'broken')
        return dict(inputs=index, draw=float(np.random.rand()))


def test_replacement_index_is_deterministic_and_never_the_sample():
    picks = [replacement_index(5, 123, a, 10) for a in range(200)]
    assert picks == [replacement_index(5, 123, a, 10) for a in range(200)]
    assert 5 not in picks and set(picks) == set(range(10)) - {5}
    # another seed draws another sequence of replacements
    assert [replacement_index(5, 124, a, 10) for a in range(200)] != picks
    with pytest.raises(BadSampleError, match='only sample'):
        replacement_index(0, 1, 0, 1)
    assert [default_cap(n) for n in (1, 999, 1000, 1001, 1281167)] == [1, 1, 1, 2, 1282]


def test_a_bad_sample_is_replaced_the_same_way_each_time():
    data = SampleSeededDataset(Toy(10, bad={3}))
    a, b = data[(3, 77)], data[(3, 77)]
    assert a == b and a['inputs'] != 3
    (record, ) = a[ITEM_KEY]
    assert record == dict(path='img_3.jpg', reason='broken', index=3,
                          replacement=f'img_{a["inputs"]}.jpg')
    assert a['inputs'] == replacement_index(3, 77, 0, 10)
    # the replacement is made under the bad sample's seed: its draws are those
    # the bad one would have had, not the replacement's own item
    good = data[(a['inputs'], 77)]
    assert good['draw'] == a['draw'] and ITEM_KEY not in good


def test_chains_of_bad_samples_and_the_raise_policy():
    bad = set(range(9))  # only sample 9 is good
    item = SampleSeededDataset(Toy(10, bad))[(0, 5)]
    assert item['inputs'] == 9
    assert [r['index'] for r in item[ITEM_KEY]][0] == 0
    assert all(r['replacement'] == 'img_9.jpg' for r in item[ITEM_KEY])
    with pytest.raises(BadSampleError, match='img_0.jpg: broken; and the 16 samples'):
        SampleSeededDataset(Toy(100, set(range(100))))[(0, 5)]
    with pytest.raises(BadSampleError, match='img_3.jpg: broken'):
        SampleSeededDataset(Toy(10, {3}), on_bad_sample='raise')[(3, 77)]
    with pytest.raises(ValueError, match='on_bad_sample must be one of'):
        SampleSeededDataset(Toy(10, {3}), on_bad_sample='skip')


def test_keep_leaves_samples_out():
    data = SampleSeededDataset(Toy(10, bad={3}), keep=[0, 1, 2, 4])
    assert len(data) == 4 and data[(3, 1)]['inputs'] == 4


def test_collate_carries_the_records():
    collate = BadSampleCollate(lambda items: dict(n=len(items)))
    out = collate([dict(a=1), dict(a=2, **{ITEM_KEY: [dict(path='x')]}),
                   dict(a=3, **{ITEM_KEY: [dict(path='y')]})])
    assert out == {'n': 3, ITEM_KEY: [dict(path='x'), dict(path='y')]}
    assert BadSampleCollate(lambda items: dict(n=0))([]) == {'n': 0, ITEM_KEY: []}


def test_records_file_round_trip_and_errors(tmp_path):
    path = tmp_path / 'sub' / 'bad_samples.jsonl'
    rows = [dict(path='a.jpg', reason='r'), dict(path='b.jpg', reason='s')]
    write_records(path, rows)
    assert read_records(path) == rows
    assert [p.name for p in path.parent.iterdir()] == ['bad_samples.jsonl']
    path.write_text(json.dumps(rows[0]) + '\n{not json\n')
    with pytest.raises(ValueError, match='bad_samples.jsonl, line 2: not JSON'):
        read_records(path)
    path.write_text('{"reason": "r"}\n')
    with pytest.raises(ValueError, match='line 1: a record needs a "path"'):
        read_records(path)
    assert skip_list_digest(['a', 'b', 'a']) == skip_list_digest(['b', 'a'])
    assert skip_list_digest(['a']) != skip_list_digest(['a', 'b'])
