"""Label propagation (DAVIS protocol): exactness with ideal features, the
neighbourhood mask, tie handling at the k-th affinity, the frame size rule."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from flsl_mm.analysis.label_propagation import (PropagationConfig, frame_size,
                                                neighbourhood_mask, propagate_frame,
                                                propagate_video)
from flsl_mm.evaluation.davis_metric import evaluate_sequence, global_results

P = 16


def band_video(num_frames=6, h=64, w=192, band=2):
    """A red vertical band ``band`` patches wide on black, one patch a frame to the
    right; ids: 1 = band."""
    frames, ids = [], []
    for t in range(num_frames):
        img = np.zeros((h, w, 3), np.uint8)
        m = np.zeros((h, w), np.uint8)
        m[:, t * P:(t + band) * P] = 1
        img[m > 0] = (220, 30, 30)
        frames.append(img)
        ids.append(m)
    return frames, ids


def oracle_features(x):
    """Tokens of the same object identical: one-hot of 'is red' per patch."""
    red = F.avg_pool2d(x[:, :1], P)[0, 0].flatten() > 0
    return F.one_hot(red.long(), 2).float()


def exact_cfg(**kw):
    return PropagationConfig(short_side=64, multiple=64, **kw)


def test_frame_size_rule_is_one_for_every_orientation():
    assert frame_size(480, 854, 480, 64) == (480, 832)
    assert frame_size(854, 480, 480, 64) == (832, 480)  # portrait, same rule
    assert frame_size(480, 480, 480, 64) == (480, 448)  # square: long side floored
    assert frame_size(480, 1152, 480, 64) == (480, 1152)


def test_moving_bands_propagate_exactly():
    frames, ids = band_video()
    out = propagate_video(frames, ids[0], oracle_features, P, exact_cfg())
    assert len(out) == len(frames)
    for t in range(len(frames)):
        np.testing.assert_array_equal(out[t], ids[t])
    table = global_results([evaluate_sequence('bands', ids, out)])
    assert table['J-Mean'] == 1.0 and table['F-Mean'] == 1.0


def test_tracking_beats_copying_the_first_frame():
    frames, ids = band_video()
    out = propagate_video(frames, ids[0], oracle_features, P, exact_cfg())
    tracked = global_results([evaluate_sequence('b', ids, out)])
    copied = global_results([evaluate_sequence('b', ids, [ids[0]] * len(ids))])
    assert tracked['J&F-Mean'] > copied['J&F-Mean'] + 0.5


def test_neighbourhood_mask_equals_brute_force():
    h, w, r = 5, 7, 2
    mask = neighbourhood_mask(h, w, r)
    ref = torch.zeros(h * w, h * w, dtype=torch.bool)
    for q in range(h * w):
        for s in range(h * w):
            ref[q, s] = abs(q // w - s // w) <= r and abs(q % w - s % w) <= r
    assert torch.equal(mask, ref)


def test_ties_at_the_kth_affinity_are_kept():
    # 7 context tokens identical to the query (3 labelled A, 4 labelled B) and one
    # different: with top-5 and ties kept all 7 vote, with weight 1/7 each
    q = F.normalize(torch.tensor([[1.0, 0.0]]), dim=-1)
    ctx = torch.tensor([[1.0, 0.0]] * 7 + [[0.0, 1.0]])[None]
    labels = torch.tensor([[1.0, 0.0]] * 3 + [[0.0, 1.0]] * 4 + [[1.0, 0.0]])[None]
    mask = torch.ones(1, 8, dtype=torch.bool)
    out = propagate_frame(q, ctx, labels, mask, PropagationConfig(topk=5))
    torch.testing.assert_close(out, torch.tensor([[3 / 7, 4 / 7]]))
    # outside the neighbourhood nothing votes, whatever the similarity
    mask[0, :7] = False
    out = propagate_frame(q, ctx, labels, mask, PropagationConfig(topk=1))
    torch.testing.assert_close(out, torch.tensor([[1.0, 0.0]]))


@pytest.mark.parametrize('chunk', [1, 5, 1024])
def test_query_chunks_do_not_change_the_result(chunk):
    g = torch.Generator().manual_seed(0)
    q = F.normalize(torch.randn(12, 8, generator=g), dim=-1)
    ctx = F.normalize(torch.randn(3, 12, 8, generator=g), dim=-1)
    labels = torch.rand(3, 12, 4, generator=g)
    mask = neighbourhood_mask(3, 4, 1)
    ref = propagate_frame(q, ctx, labels, mask, PropagationConfig(query_chunk=12))
    out = propagate_frame(q, ctx, labels, mask, PropagationConfig(query_chunk=chunk))
    torch.testing.assert_close(out, ref)
