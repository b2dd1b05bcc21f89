"""Views made on the training device from the parameters the loader drew
(docs/pretraining.md, "Views on the device")."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from mmengine.model import BaseDataPreprocessor

from flsl_mm.datasets.collate import unpack_images
from flsl_mm.registry import MODELS
from . import view_ops as ops

_FROM_FIRST_VIEW = 0
_PHOTOMETRIC_KEYS = ('jitter_on', 'jitter_order', 'jitter', 'gray', 'blur_radius',
                     'solarize')


@MODELS.register_module()
class DeviceViewPreprocessor(BaseDataPreprocessor):
    """Turn a batch of decoded images and their drawn view parameters into the
    normalised view batches that FLSL / DINO take, on the training device.

    The loader's ``FLSLMultiView`` / ``DINOMultiCrop`` with ``on_device=True``
    send each image as decoded (RGB uint8, any size; ``pack_images_collate``
    puts a batch's images in one buffer, ``pin_memory=True`` makes its copy
    asynchronous; ``pseudo_collate``'s list of ``3xHxW`` tensors works too) with
    ``view_params`` in its data sample. Here, batched over the images: each
    view's crop + bicubic resize (+ flip), from the image or from the first view
    (FLSL's student and local crops), as PIL's resampling in matrix products
    (:func:`~.view_ops.resized_crops`); then per group of views of one size:
    colour jitter in each view's order, grayscale, blur, solarisation, all PIL's
    operations value for value (:mod:`.view_ops`), and ``(x - mean) / std``:
    the views are those of the CPU path, bitwise. Nothing
    random happens here: a view depends only on the loader's draws, hence only on
    the seed, the epoch and the sample's position.

    Output: ``inputs`` is the list ``[view_0, view_1, ...]`` of ``(B, 3, S, S)``
    float tensors, as ``SelfSupDataPreprocessor`` returns for the CPU path.

    Args:
        mean / std: RGB normalisation (ImageNet's, as the CPU path's configs).
        non_blocking: copy the pinned batches to the device asynchronously.
    """

    def __init__(self,
                 mean: Sequence[float] = (123.675, 116.28, 103.53),
                 std: Sequence[float] = (58.395, 57.12, 57.375),
                 non_blocking: bool = True) -> None:
        super().__init__(non_blocking=non_blocking)
        if len(mean) != 3 or len(std) != 3:
            raise ValueError('DeviceViewPreprocessor: mean and std need 3 values (RGB)')
        self.register_buffer('mean', torch.tensor(mean).view(1, 3, 1, 1), False)
        self.register_buffer('std', torch.tensor(std).view(1, 3, 1, 1), False)

    def forward(self, data: dict, training: bool = False) -> dict:
        samples = data.get('data_samples')
        images = data['inputs']
        packed = isinstance(images, dict) and 'packed' in images
        if not (packed or isinstance(images, (list, tuple))) or not samples:
            raise TypeError(
                'DeviceViewPreprocessor takes decoded images with their data samples: '
                'collate with pack_images_collate (or pseudo_collate), and pack the '
                "loader's FLSLMultiView / DINOMultiCrop(on_device=True) output with "
                "algorithm_keys=[..., 'view_params']")
        params = []
        for sample in samples:
            if 'view_params' not in sample:
                raise KeyError(
                    f'DeviceViewPreprocessor: data sample of '
                    f'{sample.metainfo.get("img_path", "an image")} has no view_params: '
                    'use FLSLMultiView / DINOMultiCrop with on_device=True and pack '
                    "with algorithm_keys=[..., 'view_params']")
            params.append(sample.view_params)
        if packed:  # one (pinned, asynchronous) copy for the whole batch
            images = unpack_images(self.cast_data(images['packed']), images['shapes'])
        else:
            images = self.cast_data(list(images))
        views = make_views(images, params)
        views = [(v - self.mean) / self.std for v in views]
        return dict(inputs=views, data_samples=samples)


def make_views(images: Sequence[torch.Tensor], params: Sequence[dict]) -> list[torch.Tensor]:
    """``images``: per sample a ``(3, H, W)`` RGB uint8 tensor; ``params``: per
    sample the arrays of :func:`~flsl_mm.datasets.transforms.view_params.
    pack_view_params`. Returns per view a ``(B, 3, S, S)`` float tensor of
    0..255 RGB values (not normalised)."""
    num_views = len(params[0]['size'])
    if any(len(p['size']) != num_views for p in params):
        raise ValueError('DeviceViewPreprocessor: the samples of a batch have '
                         'different numbers of views')
    # the batch's images in one zero-padded tensor (the crops never reach the padding)
    height = max(int(img.shape[1]) for img in images)
    width = max(int(img.shape[2]) for img in images)
    padded = images[0].new_zeros((len(images), 3, height, width))
    for b, img in enumerate(images):
        padded[b, :, :img.shape[1], :img.shape[2]] = img
    sizes = [int(s) for s in params[0]['size']]
    views: list[torch.Tensor] = []
    for v in range(num_views):
        source = params[0]['source'][v]
        if any(p['source'][v] != source for p in params):
            raise ValueError('DeviceViewPreprocessor: view sources differ in a batch')
        src = views[0] if source == _FROM_FIRST_VIEW else padded
        boxes = np.stack([p['box'][v] for p in params])
        view = ops.resized_crops(src, boxes, sizes[v])
        flips = np.flatnonzero([p['flip'][v] for p in params])
        if flips.size:
            index = torch.as_tensor(flips, device=view.device)
            view[index] = view[index].flip(-1)
        views.append(view)
    views = [v.float() for v in views]
    # photometric augmentation, batched over all views of one size
    for size in sorted(set(sizes)):
        members = [v for v in range(num_views) if sizes[v] == size]
        x = torch.cat([views[v] for v in members])
        rows = {k: np.stack([p[k][v] for v in members for p in params])
                for k in _PHOTOMETRIC_KEYS}  # in the order of x's rows
        x = photometric(x, rows)
        for v, chunk in zip(members, x.split(len(images))):
            views[v] = chunk
    return views


def _select(x: torch.Tensor, rows: np.ndarray, fn, *args) -> torch.Tensor:
    """``fn`` applied to the rows ``rows`` (host indices) of ``x``."""
    if rows.size == 0:
        return x
    index = torch.as_tensor(rows, device=x.device)
    x[index] = fn(x[index], *args)
    return x


def photometric(x: torch.Tensor, p: dict[str, np.ndarray]) -> torch.Tensor:
    """Colour jitter (each row in its drawn order), grayscale, blur,
    solarisation of ``x`` ``(N, 3, S, S)``; ``p``: per-row parameters."""
    factors = torch.as_tensor(p['jitter'], dtype=torch.float32)
    for position in range(4):
        for op, fn in enumerate(ops.JITTER_OPS):
            rows = np.flatnonzero(p['jitter_on'] & (p['jitter_order'][:, position] == op))
            if rows.size:
                x = _select(x, rows, fn, factors[torch.as_tensor(rows), op].to(x.device))
    x = _select(x, np.flatnonzero(p['gray']), ops.grayscale)
    blur = np.flatnonzero(p['blur_radius'] > 0)
    x = _select(x, blur, ops.gaussian_blur, p['blur_radius'][blur])
    return _select(x, np.flatnonzero(p['solarize']), ops.solarize)


__all__ = ['DeviceViewPreprocessor', 'make_views', 'photometric']
