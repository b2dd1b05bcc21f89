"""DAVIS-2017 J&F against hand-computed cases (docs/davis.md)."""
import math

import numpy as np
import pytest

from flsl_mm.evaluation.davis_metric import (boundary_accuracy, boundary_map,
                                             boundary_tolerance, evaluate_sequence,
                                             global_results, region_similarity,
                                             series_statistics)


def square(shift=0, size=40, top=10, n=10):
    m = np.zeros((size, size), bool)
    m[top:top + n, top + shift:top + shift + n] = True
    return m


def test_region_similarity_hand_cases():
    gt = square()
    assert region_similarity(gt, gt) == 1.0
    assert region_similarity(gt, square(1)) == pytest.approx(90 / 110)
    assert region_similarity(gt, square(3)) == pytest.approx(70 / 130)
    assert region_similarity(gt, np.zeros_like(gt)) == 0.0  # empty prediction
    assert region_similarity(np.zeros_like(gt), np.zeros_like(gt)) == 1.0  # both
    full = np.ones_like(gt)
    assert region_similarity(full, full) == 1.0
    assert region_similarity(full, gt) == pytest.approx(100 / 1600)


def test_boundary_map_definition():
    m = square()
    b = boundary_map(m)
    ref = np.zeros_like(m)
    h, w = m.shape
    for i in range(h):
        for j in range(w):
            right = j + 1 < w and m[i, j] != m[i, j + 1]
            lower = i + 1 < h and m[i, j] != m[i + 1, j]
            diag = i + 1 < h and j + 1 < w and m[i, j] != m[i + 1, j + 1]
            ref[i, j] = right or lower or diag
    np.testing.assert_array_equal(b, ref)
    # a 10 x 10 square: two columns and two rows of 10, one shared, plus the
    # upper-left outside corner -> 4 n pixels
    assert b.sum() == 40
    assert not boundary_map(np.ones((5, 7), bool)).any()  # full frame: no boundary


def test_boundary_accuracy_hand_cases():
    assert boundary_tolerance(480, 854) == 8
    assert boundary_tolerance(40, 40) == 1  # ceil(0.008 * 56.6)
    gt = square()
    assert boundary_accuracy(gt, gt) == 1.0
    # shifted by 1 px: every boundary pixel is within the 1-px tolerance
    assert boundary_accuracy(gt, square(1)) == 1.0
    # shifted by 3 px: of the 40 predicted boundary pixels 20 lie within 1 px of
    # the ground truth's (3 on the left column, 8 + 8 on the rows, the corner);
    # by symmetry recall is 20 / 40 too
    assert boundary_accuracy(gt, square(3)) == pytest.approx(0.5)
    empty = np.zeros_like(gt)
    assert boundary_accuracy(empty, empty) == 1.0  # both empty
    assert boundary_accuracy(gt, empty) == 0.0 and boundary_accuracy(empty, gt) == 0.0
    full = np.ones_like(gt)
    assert boundary_accuracy(full, full) == 1.0  # full-frame GT has no boundary
    assert boundary_accuracy(full, gt) == 0.0


def test_mean_recall_decay_on_a_series():
    v = [1.0, 1.0, 0.4, 0.2, 0.0, 0.0, 0.6, 0.8]
    mean, recall, decay = series_statistics(v)
    assert mean == pytest.approx(0.5)
    assert recall == pytest.approx(0.5)
    # bins round(linspace(1, 8, 5) + 1e-10) - 1 = [0, 2, 4, 5, 7]:
    # first v[0:3] = (1, 1, .4), last v[5:8] = (0, .6, .8)
    assert decay == pytest.approx(0.8 - 1.4 / 3)
    mean, recall, decay = series_statistics([0.9] * 4)
    assert (mean, recall, decay) == (pytest.approx(0.9), 1.0, pytest.approx(0.0))
    assert all(math.isnan(x) for x in series_statistics([]))


def test_sequence_uses_objects_of_frame_zero_and_inner_frames():
    gt = [np.zeros((40, 40), np.uint8) for _ in range(5)]
    for t, g in enumerate(gt):
        g[square(t)] = 1
        g[0:5, 0:5] = 2
    gt[2][30:35, 30:35] = 3  # an id not in frame 0: not an object
    gt[0][39, 39] = 255  # void counts as background
    pred = [g.copy() for g in gt]
    pred[0][:] = 0  # first and last frames are not scored
    pred[4][:] = 0
    pred[2][square(2)] = 0  # object 1 missed in frame 2
    scores = evaluate_sequence('seq', gt, pred)
    assert len(scores.j) == 2 and len(scores.j[0]) == 3  # objects 1, 2; frames 1-3
    np.testing.assert_allclose(scores.j[0], [1, 0, 1])
    np.testing.assert_allclose(scores.j[1], [1, 1, 1])
    table = global_results([scores])
    assert table['J-Mean'] == pytest.approx((2 / 3 + 1) / 2)
    assert table['J&F-Mean'] == pytest.approx((table['J-Mean'] + table['F-Mean']) / 2)
