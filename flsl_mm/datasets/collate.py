"""Collation of the device view path's samples: decoded images of any size in
one flat buffer (docs/pretraining.md, "Views")."""
from __future__ import annotations

from typing import Sequence

import torch
from mmengine.dataset import pseudo_collate
from torch.utils.data import get_worker_info

from flsl_mm.registry import FUNCTIONS


@FUNCTIONS.register_module()
def pack_images_collate(data_batch: Sequence[dict]) -> dict:
    """mmengine's ``pseudo_collate`` (data samples in a list), with the samples'
    images (RGB uint8 ``3xHxW`` tensors of any size, ``inputs``) packed into one
    flat uint8 tensor, each image height-width-channel: ``inputs`` becomes
    ``dict(packed=<flat uint8>, shapes=[(H, W), ...])``.

    In a loader worker the buffer is allocated in shared memory, as torch's
    ``default_collate`` does, so the batch reaches the main process as one
    segment instead of one per image; pinned (``pin_memory=True``) it reaches
    the GPU in one asynchronous copy. :class:`DeviceViewPreprocessor` unpacks it.
    """
    images = [sample['inputs'] for sample in data_batch]
    for img in images:
        if not (isinstance(img, torch.Tensor) and img.dtype == torch.uint8
                and img.ndim == 3 and img.shape[0] == 3):
            raise TypeError('pack_images_collate takes RGB uint8 3xHxW tensors '
                            '(LoadImageLikeImageFolder(to_tensor=True) and a view '
                            f'transform with on_device=True), got {type(img).__name__} '
                            f'{tuple(getattr(img, "shape", ()))}')
    numel = sum(img.numel() for img in images)
    if get_worker_info() is not None:
        storage = images[0]._typed_storage()._new_shared(numel, device='cpu')
        packed = images[0].new(storage)[:numel]
    else:
        packed = torch.empty(numel, dtype=torch.uint8)
    offset = 0
    for img in images:
        n = img.numel()
        packed[offset:offset + n].view(img.shape[1], img.shape[2], 3).copy_(
            img.permute(1, 2, 0))  # a memcpy for decode_jpeg's channels-last output
        offset += n
    out = pseudo_collate([{k: v for k, v in s.items() if k != 'inputs'}
                          for s in data_batch])
    out['inputs'] = dict(packed=packed,
                         shapes=[(int(img.shape[1]), int(img.shape[2])) for img in images])
    return out


def unpack_images(packed: torch.Tensor, shapes: Sequence[tuple[int, int]]
                  ) -> list[torch.Tensor]:
    """The ``3xHxW`` views of :func:`pack_images_collate`'s images (no copy)."""
    images, offset = [], 0
    for h, w in shapes:
        images.append(packed[offset:offset + h * w * 3].view(h, w, 3).permute(2, 0, 1))
        offset += h * w * 3
    if offset != packed.numel():
        raise ValueError(f'packed images: {packed.numel()} bytes for shapes that '
                         f'need {offset}')
    return images


__all__ = ['pack_images_collate', 'unpack_images']
