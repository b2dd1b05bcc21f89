"""The device view path against PIL (the CPU path), op by op on the same image
and parameters, then whole views: every operation, the bicubic resize included,
is equal to PIL's to the value, so the device path's views are the CPU path's.
And what it costs a GPU: no float64, no matrix products, no host
synchronisation, one copy per buffer."""
import random

import numpy as np
import pytest
import torch
from mmengine.dataset import default_collate
from mmpretrain.datasets.transforms import PackInputs
from PIL import Image, ImageFilter, ImageOps
from torch.utils._python_dispatch import TorchDispatchMode
from torchvision.transforms import functional as TF

from flsl_mm.datasets import DINOMultiCrop, FLSLMultiView, pack_images_collate
from flsl_mm.datasets import pil_tables
from flsl_mm.datasets.view_plan import image_groups
from flsl_mm.models import DeviceViewPreprocessor
from flsl_mm.models.data_preprocessors import view_ops as ops
from flsl_mm.utils.host_syncs import HostSyncCounter


def _image(seed=0, h=96, w=120):
    rng = np.random.RandomState(seed)
    img = np.kron(rng.rand(h // 6 + 1, w // 6 + 1, 3), np.ones((6, 6, 1)))[:h, :w] * 200
    img = (img + rng.rand(h, w, 3) * 55).astype(np.uint8)
    img[:8, :8] = 128  # a grey patch (saturation 0)
    return img


@pytest.fixture(scope='module')
def image():
    rgb = np.concatenate([_image(0), np.random.RandomState(9).randint(
        0, 256, (32, 120, 3)).astype(np.uint8)])  # smooth + every kind of colour
    return Image.fromarray(rgb), torch.from_numpy(rgb)[None].float()  # 1 x H x W x 3


def _diff(pil, tensor):
    return np.abs(np.asarray(pil).astype(float) - tensor[0].numpy())


@pytest.mark.parametrize('name,pil_op,factors', [
    ('brightness', TF.adjust_brightness, (0.6, 0.93, 1.37)),
    ('contrast', TF.adjust_contrast, (0.6, 1.01, 1.4)),
    ('saturation', TF.adjust_saturation, (0.8, 1.2)),
    ('hue', TF.adjust_hue, (-0.1, -0.037, 0.004, 0.1))])
def test_jitter_ops_equal_pil(image, name, pil_op, factors):
    pil, x = image
    fn = getattr(ops, f'adjust_{name}')
    for f in factors:
        param = torch.from_numpy(pil_tables.hue_shift([f])) if name == 'hue' else \
            torch.tensor([f], dtype=torch.float32)  # PIL's C float
        assert _diff(pil_op(pil, f), fn(x.clone(), param)).max() == 0, f


def test_grayscale_solarize_and_blur_equal_pil(image):
    pil, x = image
    assert _diff(TF.rgb_to_grayscale(pil, 3), ops.grayscale(x)).max() == 0
    assert _diff(ImageOps.solarize(pil), ops.solarize(x)).max() == 0
    radii = (0.1, 0.47, 1.0, 1.61, 2.0)
    blurred = ops.gaussian_blur(x.expand(len(radii), -1, -1, -1),
                                torch.from_numpy(pil_tables.box_blur_weights(radii)))
    for radius, out in zip(radii, blurred):
        pil_blur = pil.filter(ImageFilter.GaussianBlur(radius=radius))
        assert _diff(pil_blur, out[None]).max() == 0, radius
    identity = torch.from_numpy(pil_tables.box_blur_weights([0.0, 1.0]))[:1]
    assert torch.equal(ops.gaussian_blur(x, identity), x)  # radius 0: unchanged


def test_pil_blur_is_a_box_approximation_of_a_gaussian(image):
    """How far PIL's blur (what both paths compute) is from a true Gaussian of
    sigma = radius (torchvision's tensor gaussian_blur, kernel 2*ceil(3 sigma)+1):
    measured, docs/pretraining.md."""
    pil, x = image
    worst = 0.0
    for radius in (0.5, 1.0, 2.0):
        k = 2 * int(np.ceil(3 * radius)) + 1
        true = TF.gaussian_blur(x.permute(0, 3, 1, 2), [k, k], [radius, radius])
        worst = max(worst, _diff(pil.filter(ImageFilter.GaussianBlur(radius)),
                                 true.permute(0, 2, 3, 1)).mean())
    assert 0.3 < worst < 3.0  # mean levels of 255: a real, small difference


def test_bicubic_resized_crops_equal_pil_batched_and_padded():
    """Random crops (down- and upscaling, both of PIL's pass orders) of images of
    different sizes in one zero-padded batch: PIL's values exactly; the host's
    numpy reference too."""
    rng = np.random.RandomState(4)
    images = [rng.randint(0, 256, (rng.randint(20, 160), rng.randint(20, 160), 3))
              .astype(np.uint8) for _ in range(12)]
    padded = torch.zeros(12, 160, 160, 3, dtype=torch.uint8)
    boxes = []
    for b, img in enumerate(images):
        padded[b, :img.shape[0], :img.shape[1]] = torch.from_numpy(img)
        h, w = rng.randint(3, img.shape[0] + 1), rng.randint(3, img.shape[1] + 1)
        boxes.append((rng.randint(0, img.shape[0] - h + 1),
                      rng.randint(0, img.shape[1] - w + 1), h, w))
    boxes = np.array(boxes)
    v_first = pil_tables.vertical_first(boxes[:, 2], boxes[:, 3], 32)
    assert v_first.any() and not v_first.all()
    top, left, h, w = boxes.T
    rows = top[:, None] + np.minimum(np.arange(h.max()), h[:, None] - 1)
    cols = left[:, None] + np.minimum(np.arange(w.max()), w[:, None] - 1)
    for order in (False, True):
        pick = np.flatnonzero(v_first == order)
        out = ops.resized_crops(
            padded, torch.from_numpy(pick), torch.from_numpy(rows[pick]),
            torch.from_numpy(cols[pick]),
            tuple(map(torch.from_numpy, pil_tables.resample_tables(w[pick], 32))),
            tuple(map(torch.from_numpy, pil_tables.resample_tables(h[pick], 32))),
            order)
        for i, view in zip(pick, out):
            ref = TF.resized_crop(Image.fromarray(images[i]), *boxes[i], [32, 32],
                                  interpolation=TF.InterpolationMode.BICUBIC)
            assert np.array_equal(np.asarray(ref), view.numpy()), boxes[i]
            assert np.array_equal(np.asarray(ref), pil_tables.reference_resized_crop(
                images[i], boxes[i], 32, order))


def _batch(transform, images, seed=5, collate=pack_images_collate):
    pack = PackInputs(algorithm_keys=['query_masks', 'view_params'],
                      meta_keys=['img_path'])  # not via a registry: any default scope
    out = []
    for i, img in enumerate(images):
        random.seed(seed + i)
        torch.manual_seed(seed + i)
        out.append(pack(transform(dict(img=img.copy(), img_path=f'{i}.png'))))
    return collate(out)


FLSL_VIEWS = lambda d: FLSLMultiView(patch_size=16, global_size=64,  # noqa: E731
                                     local_size=32, global_window=2, on_device=d)
DINO_VIEWS = lambda d: DINOMultiCrop(global_size=64, local_size=32,  # noqa: E731
                                     num_local_crops=2, on_device=d)
# one tall, one wide, one very large image: three groups
IMAGES = [_image(s, h, w)[..., ::-1] for s, (h, w) in enumerate(
    [(90, 120), (96, 114), (102, 108), (150, 60), (300, 420)])]  # BGR


@pytest.mark.parametrize('make', [FLSL_VIEWS, DINO_VIEWS])
def test_device_views_match_the_cpu_path(make):
    """The same seeds through both paths: bitwise the same normalised views
    (DINO's flips included), and the same query indices."""
    from flsl_mm.datasets import flsl_collate
    from flsl_mm.models import MultiViewDataPreprocessor
    cpu = MultiViewDataPreprocessor(mean=[123.675, 116.28, 103.53],
                                    std=[58.395, 57.12, 57.375], to_rgb=True)(
        _batch(make(False), IMAGES, collate=flsl_collate), training=True)
    batch = _batch(make(True), IMAGES)
    assert len(batch['inputs']['plan'].groups) == 3
    dev = DeviceViewPreprocessor()(batch, training=True)
    assert [tuple(v.shape) for v in dev['inputs']] == \
        [tuple(v.shape) for v in cpu['inputs']]
    for a, b in zip(cpu['inputs'], dev['inputs']):
        assert torch.equal(a, b)
    for a, b in zip(cpu.get('query_index', []), dev.get('query_index', [])):
        assert torch.equal(a, b)
    assert ('query_index' in dev) == (make is FLSL_VIEWS)


def test_mmpretrain_preprocessor_gives_the_same_views():
    """MultiViewDataPreprocessor = mmpretrain's SelfSupDataPreprocessor, value
    for value (its channel flip without a list index)."""
    from mmpretrain.models import SelfSupDataPreprocessor

    from flsl_mm.models import MultiViewDataPreprocessor
    args = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375],
                to_rgb=True)
    batch = _batch(FLSL_VIEWS(False), IMAGES, collate=default_collate)
    ref = SelfSupDataPreprocessor(**args)(batch, training=True)
    ours = MultiViewDataPreprocessor(**args)(batch, training=True)
    assert all(torch.equal(a, b) for a, b in zip(ref['inputs'], ours['inputs']))


class _DeviceWork(TorchDispatchMode):
    """Every kernel's output dtype, and the matrix products."""

    def __init__(self):
        super().__init__()
        self.dtypes, self.matmuls = set(), []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in (out if isinstance(out, (tuple, list)) else [out]):
            if isinstance(t, torch.Tensor):
                self.dtypes.add(t.dtype)
        if 'mm' in func.__name__ or 'matmul' in func.__name__:
            self.matmuls.append(func.__name__)
        return out


@pytest.mark.parametrize('make', [FLSL_VIEWS, DINO_VIEWS])
def test_device_work_has_no_float64_no_matmul_and_no_host_sync(make):
    """What the device computes: no float64 tensor, no matrix product (work
    proportional to the crops, not to image area x output size); and nothing a GPU would wait for: the
    three batch buffers (and the query indices) are the only host data, each
    copied once, asynchronously from pinned memory."""
    batch = _batch(make(True), IMAGES)
    pre = DeviceViewPreprocessor()
    work = _DeviceWork()
    with work:
        pre(batch, training=True)
    assert torch.float64 not in work.dtypes, work.dtypes
    assert work.matmuls == []
    counter = HostSyncCounter()
    counter.mark_host(batch, pinned=True)
    counter.counting = True
    with counter:
        pre(batch, training=True)
    assert counter.events == [], '\n'.join(map(str, counter.events))
    copies = 3 + (3 if make is FLSL_VIEWS else 0)
    assert len(counter.transfers) == copies


def test_missing_parameters_are_explained():
    with pytest.raises(TypeError, match='pack_images_collate'):
        DeviceViewPreprocessor()(dict(inputs=torch.zeros(2, 3, 8, 8),
                                      data_samples=[]))
    pack = PackInputs(algorithm_keys=['query_masks'], meta_keys=['img_path'])
    sample = pack(FLSL_VIEWS(True)(dict(img=_image(1)[..., ::-1].copy(),
                                        img_path='0.png')))
    with pytest.raises(KeyError, match='0.png has no view_params'):
        pack_images_collate([sample])
    with pytest.raises(TypeError, match='RGB uint8 3xHxW tensors'):
        pack_images_collate([dict(inputs=torch.zeros(3, 4, 4))])


def test_packed_batch_gives_the_same_views_in_and_out_of_a_worker():
    """pack_images_collate in the main process and in a loader worker (shared
    memory): the same buffers, the same views."""
    from torch.utils.data import DataLoader
    here = _batch(FLSL_VIEWS(True), IMAGES)
    loader = DataLoader([_batch(FLSL_VIEWS(True), IMAGES, collate=lambda x: x)],
                        batch_size=None, num_workers=1, collate_fn=pack_images_collate)
    in_worker = next(iter(loader))
    for key in ('images', 'ints', 'floats'):
        assert torch.equal(here['inputs'][key], in_worker['inputs'][key])
    a = DeviceViewPreprocessor()(here, training=True)['inputs']
    b = DeviceViewPreprocessor()(in_worker, training=True)['inputs']
    assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_pass_order_follows_the_installed_pil(monkeypatch):
    """Pillow's recent Resample.c runs the vertical pass first for tall shrinks,
    older ones never: the order is probed from the installed PIL."""
    assert pil_tables.pil_pass_order() in ('by_shape', 'horizontal_first')
    monkeypatch.setattr(pil_tables, 'pil_pass_order', lambda: 'horizontal_first')
    assert not pil_tables.vertical_first(np.array([300, 40]), np.array([50, 30]),
                                         32).any()
    monkeypatch.setattr(pil_tables, 'pil_pass_order', lambda: 'by_shape')
    assert pil_tables.vertical_first(np.array([300, 40]), np.array([50, 60]),
                                     32).tolist() == [True, False]


def test_image_groups_bound_the_padding():
    shapes = [(375, 500)] * 5 + [(500, 375)] * 3 + [(3000, 4000)] + [(333, 500)] * 2
    groups = image_groups(shapes)
    assert sorted(i for g in groups for i in g) == list(range(len(shapes)))
    assert [8] in groups  # the large image alone
    for g in groups:
        padded = max(shapes[i][0] for i in g) * max(shapes[i][1] for i in g) * len(g)
        assert padded <= 1.5 * sum(shapes[i][0] * shapes[i][1] for i in g)
    assert len(groups) <= 4
