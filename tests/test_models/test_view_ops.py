"""The device view path against PIL (the CPU path), op by op on the same image
and parameters, then whole views: every operation, the bicubic resize included,
is equal to PIL's to the value, so the device path's views are the CPU path's."""
import random

import numpy as np
import pytest
import torch
from mmpretrain.datasets.transforms import PackInputs
from mmengine.dataset import default_collate, pseudo_collate
from PIL import Image, ImageFilter, ImageOps
from torchvision.transforms import functional as TF

from flsl_mm.datasets import DINOMultiCrop, FLSLMultiView
from flsl_mm.models import DeviceViewPreprocessor
from flsl_mm.models.data_preprocessors import view_ops as ops


def _image(seed=0, h=96, w=120):
    rng = np.random.RandomState(seed)
    img = np.kron(rng.rand(h // 6, w // 6, 3), np.ones((6, 6, 1))) * 200
    img = (img + rng.rand(h, w, 3) * 55).astype(np.uint8)
    img[:8, :8] = 128  # a grey patch (saturation 0)
    return img


@pytest.fixture(scope='module')
def image():
    rgb = np.concatenate([_image(0), np.random.RandomState(9).randint(
        0, 256, (32, 120, 3)).astype(np.uint8)])  # smooth + every kind of colour
    return Image.fromarray(rgb), torch.from_numpy(rgb).permute(2, 0, 1)[None].float()


def _diff(pil, tensor):
    return np.abs(np.asarray(pil).astype(float) - tensor[0].permute(1, 2, 0).numpy())


@pytest.mark.parametrize('name,pil_op,factors', [
    ('brightness', TF.adjust_brightness, (0.6, 0.93, 1.37)),
    ('contrast', TF.adjust_contrast, (0.6, 1.01, 1.4)),
    ('saturation', TF.adjust_saturation, (0.8, 1.2)),
    ('hue', TF.adjust_hue, (-0.1, -0.037, 0.004, 0.1))])
def test_jitter_ops_equal_pil(image, name, pil_op, factors):
    pil, x = image
    fn = getattr(ops, f'adjust_{name}')
    for f in factors:
        assert _diff(pil_op(pil, f), fn(x.clone(), torch.tensor([f]))).max() == 0, f


def test_grayscale_solarize_and_blur_equal_pil(image):
    pil, x = image
    assert _diff(TF.rgb_to_grayscale(pil, 3), ops.grayscale(x)).max() == 0
    assert _diff(ImageOps.solarize(pil), ops.solarize(x)).max() == 0
    for radius in (0.1, 0.47, 1.0, 1.61, 2.0):
        pil_blur = pil.filter(ImageFilter.GaussianBlur(radius=radius))
        assert _diff(pil_blur, ops.gaussian_blur(x, np.array([radius]))).max() == 0


def test_pil_blur_is_a_box_approximation_of_a_gaussian(image):
    """How far PIL's blur (what both paths compute) is from a true Gaussian of
    sigma = radius (torchvision's tensor gaussian_blur, kernel 2*ceil(3 sigma)+1):
    measured, docs/pretraining.md."""
    pil, x = image
    worst = 0.0
    for radius in (0.5, 1.0, 2.0):
        k = 2 * int(np.ceil(3 * radius)) + 1
        true = TF.gaussian_blur(x, [k, k], [radius, radius])
        worst = max(worst, _diff(pil.filter(ImageFilter.GaussianBlur(radius)),
                                 true).mean())
    assert 0.3 < worst < 3.0  # mean levels of 255: a real, small difference


def test_bicubic_resized_crops_equal_pil_batched_and_padded():
    """Random crops (down- and upscaling, both of PIL's pass orders) of images of
    different sizes in one zero-padded batch: PIL's values exactly."""
    rng = np.random.RandomState(4)
    images = [rng.randint(0, 256, (rng.randint(20, 160), rng.randint(20, 160), 3))
              .astype(np.uint8) for _ in range(12)]
    padded = torch.zeros(12, 3, 160, 160)
    boxes = []
    for b, img in enumerate(images):
        padded[b, :, :img.shape[0], :img.shape[1]] = torch.from_numpy(img).permute(2, 0, 1)
        h, w = rng.randint(3, img.shape[0] + 1), rng.randint(3, img.shape[1] + 1)
        boxes.append((rng.randint(0, img.shape[0] - h + 1),
                      rng.randint(0, img.shape[1] - w + 1), h, w))
    assert ops.vertical_first(*np.array(boxes)[:, 2:].T, 32).any()
    assert not ops.vertical_first(*np.array(boxes)[:, 2:].T, 32).all()
    out = ops.resized_crops(padded, np.array(boxes), 32)
    for img, box, view in zip(images, boxes, out):
        ref = TF.resized_crop(Image.fromarray(img), *box, [32, 32],
                              interpolation=TF.InterpolationMode.BICUBIC)
        assert _diff(ref, view[None].float()).max() == 0, box


def _batch(transform, images, seed=5, collate=pseudo_collate):
    pack = PackInputs(algorithm_keys=['query_masks', 'view_params'],
                      meta_keys=['img_path'])  # not via a registry: any default scope
    out = []
    for i, img in enumerate(images):
        random.seed(seed + i)
        torch.manual_seed(seed + i)
        out.append(pack(transform(dict(img=img.copy(), img_path=f'{i}.png'))))
    return collate(out)


@pytest.mark.parametrize('make', [
    lambda d: FLSLMultiView(patch_size=16, global_size=64, local_size=32,
                            global_window=2, on_device=d),
    lambda d: DINOMultiCrop(global_size=64, local_size=32, num_local_crops=2,
                            on_device=d)])
def test_device_views_match_the_cpu_path(make):
    """The same seeds through both paths: bitwise the same normalised views."""
    from mmpretrain.models import SelfSupDataPreprocessor
    images = [_image(s, 90 + 6 * s, 120 - 6 * s)[..., ::-1] for s in range(3)]  # BGR
    cpu = SelfSupDataPreprocessor(mean=[123.675, 116.28, 103.53],
                                  std=[58.395, 57.12, 57.375], to_rgb=True)(
        _batch(make(False), images, collate=default_collate), training=True)
    dev = DeviceViewPreprocessor()(_batch(make(True), images), training=True)
    assert [tuple(v.shape) for v in dev['inputs']] == \
        [tuple(v.shape) for v in cpu['inputs']]
    for a, b in zip(cpu['inputs'], dev['inputs']):
        assert torch.equal(a, b)
    for a, b in zip(cpu['data_samples'], dev['data_samples']):
        assert all(np.array_equal(m, n) for m, n in
                   zip(a.get('query_masks', []), b.get('query_masks', [])))


def test_missing_parameters_are_explained():
    with pytest.raises(TypeError, match='pseudo_collate'):
        DeviceViewPreprocessor()(dict(inputs=torch.zeros(2, 3, 8, 8),
                                      data_samples=[]))
    batch = _batch(FLSLMultiView(patch_size=16, global_size=64, local_size=32,
                                 global_window=2, on_device=True), [_image(1)])
    del batch['data_samples'][0].view_params
    with pytest.raises(KeyError, match='0.png has no view_params'):
        DeviceViewPreprocessor()(batch)


def test_packed_batch_gives_the_same_views_in_and_out_of_a_worker():
    """pack_images_collate (one flat buffer, shared memory in a worker) and a
    list of images give the same views."""
    from torch.utils.data import DataLoader

    from flsl_mm.datasets import pack_images_collate
    images = [_image(s, 90 + 6 * s, 120 - 6 * s)[..., ::-1] for s in range(3)]
    make = FLSLMultiView(patch_size=16, global_size=64, local_size=32,
                         global_window=2, on_device=True)
    listed = DeviceViewPreprocessor()(_batch(make, images), training=True)
    packed_batch = _batch(make, images, collate=pack_images_collate)
    assert packed_batch['inputs']['shapes'] == [(90, 120), (96, 114), (102, 108)]
    assert packed_batch['inputs']['packed'].numel() == sum(
        img.size for img in images)
    packed = DeviceViewPreprocessor()(packed_batch, training=True)
    loader = DataLoader([_batch(make, images, collate=lambda x: x)], batch_size=None,
                        num_workers=1, collate_fn=pack_images_collate)
    in_worker = DeviceViewPreprocessor()(next(iter(loader)), training=True)
    for a, b, c in zip(listed['inputs'], packed['inputs'], in_worker['inputs']):
        assert torch.equal(a, b) and torch.equal(a, c)
    with pytest.raises(TypeError, match='RGB uint8 3xHxW tensors'):
        pack_images_collate([dict(inputs=torch.zeros(3, 4, 4))])


def test_pass_order_follows_the_installed_pil(monkeypatch):
    """Pillow's recent Resample.c runs the vertical pass first for tall shrinks,
    older ones never: the order is probed from the installed PIL."""
    assert ops.pil_pass_order() in ('by_shape', 'horizontal_first')
    monkeypatch.setattr(ops, 'pil_pass_order', lambda: 'horizontal_first')
    assert not ops.vertical_first(np.array([300, 40]), np.array([50, 30]), 32).any()
    monkeypatch.setattr(ops, 'pil_pass_order', lambda: 'by_shape')
    assert ops.vertical_first(np.array([300, 40]), np.array([50, 60]), 32).tolist() == \
        [True, False]


def test_image_groups_bound_the_padding():
    from flsl_mm.models.data_preprocessors.device_views import image_groups
    shapes = [(375, 500)] * 5 + [(500, 375)] * 3 + [(3000, 4000)] + [(333, 500)] * 2
    groups = image_groups(shapes)
    assert sorted(i for g in groups for i in g) == list(range(len(shapes)))
    assert [8] in groups  # the large image alone
    for g in groups:
        padded = max(shapes[i][0] for i in g) * max(shapes[i][1] for i in g) * len(g)
        assert padded <= 1.5 * sum(shapes[i][0] * shapes[i][1] for i in g)
    assert len(groups) <= 4
