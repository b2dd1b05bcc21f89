import random

import numpy as np
import pytest

from flsl_mm.datasets import query_mask


def grid(mask, f):
    return np.argwhere(mask.reshape(f, f))


def test_global_default_16_queries_top_left_in_a_corner():
    seen = set()
    for seed in range(40):
        m = query_mask(14, 3, rng=random.Random(seed))
        assert m.shape == (196,) and m.dtype == bool and m.sum() == 16
        pts = grid(m, 14)
        top, left = pts.min(0)
        assert (top, left) in {(0, 0), (0, 2), (2, 0), (2, 2)}
        seen.add((int(top), int(left)))
        # top-left of each 3 x 3 window of the 12 x 12 block
        expected = {(top + 3 * i, left + 3 * j) for i in range(4) for j in range(4)}
        assert {tuple(p) for p in pts} == expected
    assert len(seen) == 4  # all four corners occur


def test_local_default_9_queries_exact_fit():
    m = query_mask(6, 2)
    assert m.sum() == 9
    assert {tuple(p) for p in grid(m, 6)} == {(2 * i, 2 * j) for i in range(3)
                                              for j in range(3)}


def test_random_sampling_one_per_window():
    rng = random.Random(3)
    offsets = set()
    for _ in range(30):
        m = query_mask(14, 3, random_sampling=True, rng=rng)
        pts = grid(m, 14)
        assert len(pts) == 16

        def windows(corner):
            rel = pts - np.array(corner)
            if (rel < 0).any() or (rel >= 12).any():
                return None
            return {(int(y // 3), int(x // 3)) for y, x in rel}

        corners = [c for c in ((0, 0), (0, 2), (2, 0), (2, 2))
                   if windows(c) == {(i, j) for i in range(4) for j in range(4)}]
        assert corners, 'each 3 x 3 window of a corner block holds one query'
        offsets.update({(int(y - corners[0][0]) % 3, int(x - corners[0][1]) % 3)
                        for y, x in pts})
    assert len(offsets) > 3  # not always the top-left token


def test_bad_window():
    with pytest.raises(ValueError, match='window'):
        query_mask(2, 3)
