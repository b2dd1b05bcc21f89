"""DINOMultiCrop: DINO's 2 global + L local crops, each of the whole image, with
the per-crop blur / solarisation probabilities (docs/dino.md)."""
import random

import numpy as np
import pytest
import torch
from mmpretrain.registry import TRANSFORMS as PRETRAIN_TRANSFORMS

import flsl_mm.datasets.transforms.dino_multicrop as dmc
from flsl_mm.datasets import DINOMultiCrop
from flsl_mm.datasets.transforms.view_params import FROM_IMAGE


def _img():
    return (np.random.RandomState(0).rand(300, 400, 3) * 255).astype(np.uint8)


def test_crop_sizes_order_and_packing():
    random.seed(0)
    torch.manual_seed(0)
    t = DINOMultiCrop(num_local_crops=10)
    out = t(dict(img=_img(), img_path='x.png'))
    assert [v.shape for v in out['img']] == [(224, 224, 3)] * 2 + [(96, 96, 3)] * 10
    assert all(v.dtype == np.uint8 for v in out['img'])
    packed = PRETRAIN_TRANSFORMS.build(dict(type='PackInputs'))(out)
    assert [tuple(x.shape) for x in packed['inputs']] == [(3, 224, 224)] * 2 + \
        [(3, 96, 96)] * 10


def test_every_crop_is_of_the_whole_image_with_its_own_augmentation(monkeypatch):
    t = DINOMultiCrop(global_size=64, local_size=32, num_local_crops=3)
    blurs, solar, flips = [], [], []
    monkeypatch.setattr(dmc, 'draw_blur', lambda view, p: blurs.append(p))
    monkeypatch.setattr(dmc, 'draw_solarize', lambda view, p: solar.append(p))
    monkeypatch.setattr(dmc, 'draw_flip', lambda view, p=0.5: flips.append(p))
    views = t.draw(300, 400)
    assert [v.source for v in views] == [FROM_IMAGE] * 5  # crops of the image
    assert [v.size for v in views] == [64, 64, 32, 32, 32]
    assert all(b[0] + b[2] <= 300 and b[1] + b[3] <= 400 for b in (v.box for v in views))
    assert blurs == [1.0, 0.1, 0.5, 0.5, 0.5]
    assert solar == [0.2]  # the second global crop only
    assert flips == [0.5] * 5


def test_deterministic_under_seeds_and_flip_happens():
    def run(seed):
        random.seed(seed)
        torch.manual_seed(seed)
        return DINOMultiCrop(global_size=64, local_size=32, num_local_crops=2)(
            dict(img=_img()))['img']
    a, b = run(3), run(3)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, run(4)))


def test_bad_image_and_settings_are_named():
    with pytest.raises(ValueError, match='HxWx3 array.*broken.png'):
        DINOMultiCrop()(dict(img=np.zeros((5, 5)), img_path='broken.png'))
    with pytest.raises(ValueError, match='num_local_crops'):
        DINOMultiCrop(num_local_crops=-1)
