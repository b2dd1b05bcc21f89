"""Datasets over the embedded demo data that create it on first use."""
from __future__ import annotations

import os.path as osp

from mmpretrain.datasets import CustomDataset

from flsl_mm.registry import DATASETS
from .checked_coco import CheckedCocoDataset
from .demo_data import THING_CLASSES, ensure_demo_data


@DATASETS.register_module()
class DemoImageDataset(CustomDataset):
    """Unlabelled images of one split of the demo data (for pretraining).

    Generates the demo data at ``data_root`` first when it is missing
    (``demo_kwargs`` go to :func:`make_demo_data`).
    """

    def __init__(self, data_root: str, split: str = 'train',
                 demo_kwargs: dict | None = None, **kwargs) -> None:
        ensure_demo_data(data_root, **(demo_kwargs or {}))
        kwargs.setdefault('with_label', False)
        super().__init__(data_root=data_root, data_prefix=osp.join(split, 'images'),
                         **kwargs)


@DATASETS.register_module()
class DemoCocoDataset(CheckedCocoDataset):
    """COCO instances of the demo things (circle, square, triangle); invalid
    annotations are named and left out (:class:`CheckedCocoDataset`).

    Generates the demo data at ``data_root`` first when it is missing.
    """

    METAINFO = dict(classes=THING_CLASSES,
                    palette=[(220, 60, 60), (230, 200, 40), (160, 60, 200)])

    def __init__(self, data_root: str, demo_kwargs: dict | None = None, **kwargs
                 ) -> None:
        ensure_demo_data(data_root, **(demo_kwargs or {}))
        super().__init__(data_root=data_root, **kwargs)
