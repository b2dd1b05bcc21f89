"""Views made on the training device from the parameters the loader drew
(docs/pretraining.md, "Views")."""
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
    ``view_params`` in its data sample. Here: each view's crop + bicubic resize
    (+ flip) as PIL's resampling in matrix products
    (:func:`~.view_ops.resized_crops`), batched over groups of images of
    similar shapes for the crops of the image (:func:`image_groups`: a very
    large image does not make the whole batch that large), over the batch for
    the crops of the first view (FLSL's student and local crops); then per group
    of views of one size:
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
    sizes = [int(s) for s in params[0]['size']]
    sources = [int(s) for s in params[0]['source']]
    if any(list(p['source']) != sources or list(p['size']) != sizes for p in params):
        raise ValueError('DeviceViewPreprocessor: the views of a batch\'s samples '
                         'differ in size or source')
    # views cropped from the images: per group of images of similar shapes, padded
    # to the group's largest (never more than 1.5x the group's pixels), each view
    # batched over the group
    per_view: dict[int, torch.Tensor] = {}
    from_image = [v for v in range(num_views) if sources[v] != _FROM_FIRST_VIEW]
    for group in image_groups([tuple(img.shape[1:]) for img in images]):
        height = max(int(images[b].shape[1]) for b in group)
        width = max(int(images[b].shape[2]) for b in group)
        padded = images[group[0]].new_zeros((len(group), 3, height, width))
        for i, b in enumerate(group):
            padded[i, :, :images[b].shape[1], :images[b].shape[2]] = images[b]
        index = torch.as_tensor(group, device=padded.device)
        for v in from_image:
            crops = ops.resized_crops(padded, np.stack([params[b]['box'][v] for b in group]),
                                      sizes[v])
            if v not in per_view:
                per_view[v] = crops.new_empty((len(images), *crops.shape[1:]))
            per_view[v][index] = crops
    views: list[torch.Tensor] = []
    for v in range(num_views):
        if v in per_view:
            view = per_view[v]
        else:  # FLSL's student and local crops: of the first view, batched
            boxes = np.stack([p['box'][v] for p in params])
            view = ops.resized_crops(views[0], boxes, sizes[v])
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


def image_groups(shapes: Sequence[tuple[int, int]], max_padding: float = 1.5
                 ) -> list[list[int]]:
    """Indices of the images grouped for padding into one tensor: sorted by
    shape, a group grows while its padded size stays within ``max_padding``
    times its images' pixels (one very large image gets a group of its own
    instead of making the whole batch that large)."""
    order = sorted(range(len(shapes)), key=lambda i: tuple(shapes[i]))
    groups: list[list[int]] = []
    for i in order:
        if groups:
            cand = groups[-1] + [i]
            height = max(shapes[j][0] for j in cand)
            width = max(shapes[j][1] for j in cand)
            if height * width * len(cand) <= max_padding * sum(
                    shapes[j][0] * shapes[j][1] for j in cand):
                groups[-1] = cand
                continue
        groups.append([i])
    return groups


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


__all__ = ['DeviceViewPreprocessor', 'make_views', 'image_groups', 'photometric']
