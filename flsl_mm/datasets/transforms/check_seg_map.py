"""A segmentation map that does not fit its image, named before it reaches a
head (docs/pretraining.md, "Bad samples")."""
from __future__ import annotations

import logging

from mmcv.transforms import BaseTransform
from mmengine.logging import print_log

from flsl_mm.datasets.bad_samples import BadSampleError
from flsl_mm.registry import TRANSFORMS


@TRANSFORMS.register_module()
class CheckSegMapSize(BaseTransform):
    """Compare ``gt_seg_map`` (as loaded) with the image's ``ori_shape``; put it
    right after ``LoadAnnotations``, before any resize or crop.

    A map of another size (a label PNG of another image, a resized export)
    would be cropped against the wrong pixels or crash the loss. With
    ``on_invalid='skip'`` (training) the sample is named in a warning and left
    out (``None``: mmengine's dataset then loads another one); with ``'raise'``
    (validation / test, where every image counts) a :class:`BadSampleError`
    names both files.
    """

    def __init__(self, on_invalid: str = 'skip') -> None:
        if on_invalid not in ('skip', 'raise'):
            raise ValueError(f"CheckSegMapSize: on_invalid must be 'skip' or 'raise', "
                             f'got {on_invalid!r}')
        self.on_invalid = on_invalid

    def transform(self, results: dict) -> dict | None:
        seg = results.get('gt_seg_map')
        image = tuple(results['ori_shape'][:2])
        if seg is None or tuple(seg.shape[:2]) == image:
            return results
        reason = (f'segmentation map {results.get("seg_map_path")} is '
                  f'{seg.shape[1]}x{seg.shape[0]} px, its image '
                  f'{image[1]}x{image[0]} px')
        if self.on_invalid == 'raise':
            raise BadSampleError(results.get('img_path'), reason)
        print_log(f'invalid sample left out: {results.get("img_path")}: {reason}',
                  logger='current', level=logging.WARNING)
        return None

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(on_invalid={self.on_invalid!r})'
