"""The views are drawn as the reference transforms draw them: FLSLMultiView and
DINOMultiCrop (parameters drawn first, then applied with PIL) give bitwise the
images of the reference's torchvision compositions under the same seeds, and
``on_device=True`` draws the same parameters and query masks."""
import random

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter, ImageOps
from torchvision import transforms as T

from flsl_mm.datasets import DINOMultiCrop, FLSLMultiView

BICUBIC = T.InterpolationMode.BICUBIC


def _color():
    return T.Compose([T.RandomApply([T.ColorJitter(0.4, 0.4, 0.2, 0.1)], p=0.8),
                      T.RandomGrayscale(p=0.2)])


def _blur(img, p):
    if random.random() > p:
        return img
    return img.filter(ImageFilter.GaussianBlur(radius=random.uniform(0.1, 2.0)))


def _solarize(img, p):
    return ImageOps.solarize(img) if random.random() < p else img


def reference_flsl(pil, g=64, loc=32):
    """The authors' FLSL views (teacher crop, student and local crops of it)."""
    color = _color()

    def photometric(img):
        img = color(img)
        if random.random() < 0.5:
            return _blur(img, 0.5)
        return _solarize(_blur(img, 0.1), 0.2)
    crop1 = T.RandomResizedCrop(g, scale=(0.8, 1.0), interpolation=BICUBIC)(pil)
    crops = [crop1, T.RandomResizedCrop(g, scale=(0.5, 1.0), interpolation=BICUBIC)(crop1)]
    local = T.RandomResizedCrop(loc, scale=(0.05, 0.4), interpolation=BICUBIC)
    crops += [local(crop1) for _ in range(2)]
    return [np.asarray(photometric(c)) for c in crops]


def reference_dino(pil, g=64, loc=32, n_local=3):
    """DINO's DataAugmentationDINO."""
    flip_color = T.Compose([T.RandomHorizontalFlip(p=0.5), _color()])
    glob = T.RandomResizedCrop(g, scale=(0.4, 1.0), interpolation=BICUBIC)
    local = T.RandomResizedCrop(loc, scale=(0.05, 0.4), interpolation=BICUBIC)
    views = [_blur(flip_color(glob(pil)), 1.0),
             _solarize(_blur(flip_color(glob(pil)), 0.1), 0.2)]
    views += [_blur(flip_color(local(pil)), 0.5) for _ in range(n_local)]
    return [np.asarray(v) for v in views]


def _img(seed=0, h=90, w=120):
    rng = np.random.RandomState(seed)
    base = rng.rand(h // 6, w // 6, 3)  # smooth structure + noise
    img = np.kron(base, np.ones((6, 6, 1))) * 200 + rng.rand(h, w, 3) * 55
    return img.astype(np.uint8)


def _seed(s):
    random.seed(s)
    torch.manual_seed(s)


@pytest.mark.parametrize('seed', range(6))
def test_flsl_views_equal_the_reference_composition(seed):
    img = _img(seed)
    _seed(seed)
    ref = reference_flsl(Image.fromarray(img[..., ::-1].copy()))
    ref_next = (random.random(), float(torch.rand(1)))
    _seed(seed)
    out = FLSLMultiView(patch_size=16, global_size=64, local_size=32, global_window=2,
                        local_window=2)(dict(img=img))
    masks_next = (random.random(), float(torch.rand(1)))
    assert len(out['img']) == 4
    for mine, theirs in zip(out['img'], ref):
        assert np.array_equal(mine[..., ::-1], theirs)
    # the same number of draws: only the query masks' Python draws come on top
    assert masks_next[1] == ref_next[1]


@pytest.mark.parametrize('seed', range(6))
def test_dino_views_equal_the_reference_composition(seed):
    img = _img(seed)
    _seed(seed)
    ref = reference_dino(Image.fromarray(img[..., ::-1].copy()))
    ref_next = (random.random(), float(torch.rand(1)))
    _seed(seed)
    out = DINOMultiCrop(global_size=64, local_size=32, num_local_crops=3)(dict(img=img))
    assert (random.random(), float(torch.rand(1))) == ref_next
    for mine, theirs in zip(out['img'], ref):
        assert np.array_equal(mine[..., ::-1], theirs)


@pytest.mark.parametrize('make', [
    lambda d: FLSLMultiView(patch_size=16, global_size=64, local_size=32,
                            global_window=2, on_device=d),
    lambda d: DINOMultiCrop(global_size=64, local_size=32, num_local_crops=3,
                            on_device=d)])
def test_on_device_draws_the_same_parameters_and_masks(make):
    from flsl_mm.datasets.transforms.view_params import pack_view_params
    img = _img(3)
    _seed(11)
    expected = pack_view_params(make(False).draw(*img.shape[:2]))
    out, after = {}, {}
    for on_device in (False, True):
        _seed(11)
        out[on_device] = make(on_device)(dict(img=img.copy()))
        after[on_device] = (random.random(), float(torch.rand(1)))
    cpu, dev = out[False], out[True]
    assert after[False] == after[True]  # the same draws from both generators
    # the decoded image goes to the device, as an RGB 3xHxW tensor
    assert np.array_equal(dev['img'].permute(1, 2, 0).numpy(), img[..., ::-1])
    assert set(dev['view_params']) == set(expected)
    for key, value in expected.items():
        assert np.array_equal(dev['view_params'][key], value), key
    assert dev['view_params']['size'].tolist() == [v.shape[0] for v in cpu['img']]
    assert all(np.array_equal(a, b) for a, b in
               zip(cpu.get('query_masks', []), dev.get('query_masks', [])))


@pytest.mark.parametrize('hw,scale', [((375, 500), (0.8, 1.0)), ((224, 224), (0.05, 0.4)),
                                      ((90, 120), (0.5, 1.0)), ((8, 400), (0.9, 1.0)),
                                      ((400, 9), (0.08, 1.0))])
def test_crop_box_and_jitter_draw_as_torchvision(hw, scale):
    """The fast samplers: same values and the same generator state after, over
    many draws (the thin images take torchvision's central-crop fallback)."""
    from flsl_mm.datasets.transforms.view_params import JITTER, crop_box, jitter_params
    shape_only = torch.empty(1, 1, 1).expand(3, *hw)
    for seed in range(40):
        torch.manual_seed(seed)
        ref = T.RandomResizedCrop.get_params(shape_only, list(scale), [3 / 4, 4 / 3])
        ref_jitter = T.ColorJitter.get_params(JITTER.brightness, JITTER.contrast,
                                              JITTER.saturation, JITTER.hue)
        ref_next = float(torch.rand(1))
        torch.manual_seed(seed)
        assert crop_box(*hw, scale) == tuple(ref)
        order, factors = jitter_params()
        assert order == ref_jitter[0].tolist() and factors == tuple(ref_jitter[1:])
        assert float(torch.rand(1)) == ref_next
