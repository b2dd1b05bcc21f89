import random

import numpy as np
import pytest
import torch
from mmengine.registry import TRANSFORMS
from mmpretrain.registry import TRANSFORMS as PRETRAIN_TRANSFORMS

from flsl_mm.datasets import FLSLMultiView


def test_views_sizes_masks_and_packing():
    random.seed(0)
    torch.manual_seed(0)
    t = FLSLMultiView(patch_size=16, global_size=224, local_size=96)
    img = (np.random.RandomState(0).rand(300, 400, 3) * 255).astype(np.uint8)
    out = t(dict(img=img, img_path='x.png'))
    assert [v.shape for v in out['img']] == [(224, 224, 3)] * 2 + [(96, 96, 3)] * 2
    assert [m.shape for m in out['query_masks']] == [(196,), (36,), (36,)]
    assert [int(m.sum()) for m in out['query_masks']] == [16, 9, 9]
    pack = PRETRAIN_TRANSFORMS.build(dict(type='PackInputs',
                                          algorithm_keys=['query_masks']))
    packed = pack(out)
    assert [tuple(x.shape) for x in packed['inputs']] == [(3, 224, 224)] * 2 + \
        [(3, 96, 96)] * 2
    assert len(packed['data_samples'].query_masks) == 3


def test_registered_in_both_scopes_and_checks_sizes():
    assert TRANSFORMS.get('FLSLMultiView') is FLSLMultiView
    with pytest.raises(ValueError, match='global_size=100 is not a multiple of '
                       'patch_size=16'):
        FLSLMultiView(patch_size=16, global_size=100)
