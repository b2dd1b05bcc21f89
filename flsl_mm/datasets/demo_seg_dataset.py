"""Semantic segmentation over the embedded demo data (MMSegmentation)."""
from __future__ import annotations

from mmseg.datasets import BaseSegDataset

from flsl_mm.registry import DATASETS
from .demo_data import SEMANTIC_CLASSES, ensure_demo_data


@DATASETS.register_module()
class DemoSegDataset(BaseSegDataset):
    """The demo data's semantic maps (sky, grass, road, circle, square, triangle;
    255 = unlabelled) as an mmseg dataset; ``split`` is ``'train'`` or ``'val'``.

    Generates the demo data at ``data_root`` first when it is missing.
    """

    METAINFO = dict(classes=SEMANTIC_CLASSES,
                    palette=[(135, 206, 235), (60, 160, 60), (120, 120, 120),
                             (220, 60, 60), (230, 200, 40), (160, 60, 200)])

    def __init__(self, data_root: str, split: str = 'train',
                 demo_kwargs: dict | None = None, **kwargs) -> None:
        ensure_demo_data(data_root, **(demo_kwargs or {}))
        kwargs.setdefault('img_suffix', '.png')
        kwargs.setdefault('seg_map_suffix', '.png')
        kwargs.setdefault('reduce_zero_label', False)
        super().__init__(data_root=data_root,
                         data_prefix=dict(img_path=f'{split}/images',
                                          seg_map_path=f'{split}/semantic'),
                         **kwargs)
