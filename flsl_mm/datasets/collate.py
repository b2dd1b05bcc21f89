"""Collation of FLSL's batches: every host array a training iteration needs
goes into a few batch tensors that the loader pins and the data preprocessor
copies to the device once each, asynchronously (docs/pretraining.md, "Host
synchronisations")."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from mmengine.dataset import default_collate, pseudo_collate
from torch.utils.data import get_worker_info

from flsl_mm.registry import FUNCTIONS
from .view_plan import make_view_plan, pack_groups


def _sample(item):
    return item['data_samples'] if isinstance(item, dict) else item


def query_index(data_samples: Sequence) -> list[torch.Tensor] | None:
    """Per student view, the ``(B, M)`` int64 token indices of the samples'
    queries (``query_masks`` of :class:`FLSLMultiView`), each row in order;
    None when the samples have no query masks. Every sample of a batch must
    have the same number of queries per view and masks of the same length."""
    if not data_samples or 'query_masks' not in data_samples[0]:
        return None
    masks = [s.query_masks for s in data_samples]
    views = len(masks[0])
    if any(len(m) != views for m in masks):
        raise ValueError('query masks: the samples of a batch have different numbers '
                         'of student views')
    out = []
    for v in range(views):
        view = [np.asarray(m[v], dtype=bool).reshape(-1) for m in masks]
        if len({m.size for m in view}) != 1:
            raise ValueError(f'student view {v}: query masks of different lengths in '
                             f'one batch ({sorted({m.size for m in view})} tokens)')
        stacked = np.stack(view)
        counts = stacked.sum(1)
        if (counts != counts[0]).any():
            raise ValueError(f'student view {v}: query counts differ across the '
                             f'batch ({sorted(set(counts.tolist()))})')
        # nonzero is row-major: each row's indices come out in order
        out.append(torch.from_numpy(np.nonzero(stacked)[1].reshape(len(view), -1)
                                    .astype(np.int64)))
    return out


@FUNCTIONS.register_module()
def flsl_collate(data_batch: Sequence[dict]) -> dict:
    """mmengine's ``default_collate`` (views stacked per view), plus the
    batch's ``query_index`` (:func:`query_index`) when the samples carry query
    masks: one ``(B, M)`` tensor per student view, so that the model gathers its
    queries with no host work of its own."""
    out = default_collate(data_batch)
    index = query_index([_sample(item) for item in data_batch])
    if index is not None:
        out['query_index'] = index
    return out


def _buffer(numel: int, dtype: torch.dtype) -> torch.Tensor:
    """An empty tensor, in shared memory inside a loader worker (the batch then
    reaches the main process as one segment, as torch's ``default_collate``
    does)."""
    if get_worker_info() is not None:
        storage = torch.UntypedStorage._new_shared(
            numel * torch.empty((), dtype=dtype).element_size())
        return torch.empty(0, dtype=dtype).set_(storage).view(-1)[:numel]
    return torch.empty(numel, dtype=dtype)


@FUNCTIONS.register_module()
def pack_images_collate(data_batch: Sequence[dict]) -> dict:
    """The device view path's batch: mmengine's ``pseudo_collate`` for the data
    samples, and ``inputs`` the dict of

    * ``images``: the decoded images (RGB uint8 ``3xHxW`` tensors of any size),
      grouped by similar shapes and zero-padded per group, channels last, one
      flat uint8 tensor;
    * ``ints`` / ``floats``: the view plan's int32 / float32 buffers
      (:func:`~.view_plan.make_view_plan`: PIL's resampling taps, the rows of
      every photometric operation, ...);
    * ``plan``: its host half (shapes, counts, where each array is).

    Plus ``query_index`` (:func:`query_index`) for FLSL's samples. Pinned
    (``pin_memory=True``), each tensor reaches the GPU in one asynchronous copy;
    :class:`DeviceViewPreprocessor` makes the views from them.
    """
    images = [item['inputs'] for item in data_batch]
    for img in images:
        if not (isinstance(img, torch.Tensor) and img.dtype == torch.uint8
                and img.ndim == 3 and img.shape[0] == 3):
            raise TypeError('pack_images_collate takes RGB uint8 3xHxW tensors '
                            '(LoadImageLikeImageFolder(to_tensor=True) and a view '
                            f'transform with on_device=True), got {type(img).__name__} '
                            f'{tuple(getattr(img, "shape", ()))}')
    samples = [_sample(item) for item in data_batch]
    params = []
    for sample in samples:
        if 'view_params' not in sample:
            raise KeyError(
                f'pack_images_collate: data sample of '
                f'{sample.metainfo.get("img_path", "an image")} has no view_params: '
                'use FLSLMultiView / DINOMultiCrop with on_device=True and pack '
                "with algorithm_keys=[..., 'view_params']")
        params.append(sample.view_params)
    plan, ints, floats = make_view_plan([tuple(img.shape[1:]) for img in images], params)
    packed = _buffer(plan.image_bytes, torch.uint8)
    pack_groups(images, plan, packed.numpy())
    out = pseudo_collate([{k: v for k, v in item.items() if k != 'inputs'}
                          for item in data_batch])
    out['inputs'] = dict(images=packed, ints=torch.from_numpy(ints),
                         floats=torch.from_numpy(floats), plan=plan)
    index = query_index(samples)
    if index is not None:
        out['query_index'] = index
    return out


__all__ = ['query_index', 'flsl_collate', 'pack_images_collate']
