"""mmdet's ``CocoDataset`` that names the annotations it cannot train on
(docs/pretraining.md, "Bad samples"; docs/datasets.md).

mmdet drops some bad boxes silently (zero area, outside the image, an unknown
category) and lets others through: an infinite width passes its checks and
becomes a NaN loss deep in a head; a polygon of fewer than 3 points fails in
pycocotools during training. Here every annotation is checked when the
annotation file is parsed; an invalid one is left out with a warning naming the
annotation file, the annotation id and the image, and kept in
``dataset.invalid_annotations`` (``tools/misc/check_dataset.py`` lists them).
"""
from __future__ import annotations

import logging
import math

from mmdet.datasets import CocoDataset
from mmengine.logging import print_log

from flsl_mm.registry import DATASETS


def _finite(values) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool)
               and math.isfinite(v) for v in values)


def coco_annotation_problem(ann: dict, img_info: dict, cat_ids) -> str | None:
    """Why a COCO instance annotation cannot be trained on, or None."""
    if ann.get('ignore', False):
        return None  # mmdet leaves it out anyway
    bbox = ann.get('bbox')
    if not isinstance(bbox, (list, tuple)) or len(bbox) != 4 or not _finite(bbox):
        return f'bbox {bbox!r} is not 4 finite numbers'
    if bbox[2] < 0 or bbox[3] < 0:
        return f'bbox {list(bbox)} has a negative width or height'
    if not _finite([ann.get('area', 0)]):
        return f'area {ann.get("area")!r} is not a finite number'
    if ann.get('category_id') not in cat_ids:
        return f'category_id {ann.get("category_id")!r} is not a category of the dataset'
    seg = ann.get('segmentation')
    if isinstance(seg, list):
        for k, poly in enumerate(seg):
            if not isinstance(poly, (list, tuple)) or len(poly) % 2 or len(poly) < 6:
                n = len(poly) if isinstance(poly, (list, tuple)) else poly
                return (f'polygon {k} has {n} coordinates: a polygon needs at least 3 '
                        'points (6 numbers, x y pairs)')
            if not _finite(poly):
                return f'polygon {k} has a coordinate that is not a finite number'
    elif isinstance(seg, dict):
        size = seg.get('size')
        if size is not None and list(size) != [img_info['height'], img_info['width']]:
            return (f'RLE mask of size {list(size)} on an image of '
                    f'{img_info["height"]}x{img_info["width"]}')
    elif seg is not None:
        return f'segmentation of type {type(seg).__name__} (a polygon list or an RLE)'
    return None


@DATASETS.register_module()
class CheckedCocoDataset(CocoDataset):
    """mmdet's ``CocoDataset`` (same arguments) that leaves out invalid
    annotations with a warning naming the file, the annotation id and the
    image: see :func:`coco_annotation_problem`."""

    def load_data_list(self) -> list[dict]:
        self.invalid_annotations: list[dict] = []
        return super().load_data_list()

    def parse_data_info(self, raw_data_info: dict):
        img_info = raw_data_info['raw_img_info']
        kept = []
        for ann in raw_data_info['raw_ann_info']:
            reason = coco_annotation_problem(ann, img_info, self.cat_ids)
            if reason is None:
                kept.append(ann)
                continue
            record = dict(path=str(self.ann_file), annotation_id=ann.get('id'),
                          image=img_info.get('file_name'),
                          reason=f'annotation {ann.get("id")}: {reason}')
            self.invalid_annotations.append(record)
            print_log(f'COCO: invalid annotation left out: {self.ann_file}: '
                      f'annotation {ann.get("id")} (image {img_info.get("file_name")}'
                      f'): {reason}', logger='current', level=logging.WARNING)
        return super().parse_data_info(dict(raw_data_info, raw_ann_info=kept))


__all__ = ['coco_annotation_problem', 'CheckedCocoDataset']
