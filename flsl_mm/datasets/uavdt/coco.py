"""UAVDT frames -> a COCO instances dict (ignore regions as ``iscrowd=1``)."""
from __future__ import annotations

import os

from .format import CLASSES


def to_coco(data_list: list[dict], relative_to: str | None = None,
            progress=None) -> dict:
    """COCO json of ``UAVDTDataset`` entries.

    Ignore regions become ``iscrowd=1`` annotations, one per category (pycocotools
    evaluates each category on its own), so detections inside them are neither
    true nor false positives. ``progress`` wraps the iteration (e.g. a progress bar).
    """
    images, annotations = [], []
    items = progress(data_list) if progress is not None else data_list
    for info in items:
        path = info['img_path']
        if relative_to is not None:
            path = os.path.relpath(path, relative_to)
        images.append(dict(id=info['img_id'], file_name=path, height=info['height'],
                           width=info['width'], sequence=info['sequence'],
                           frame=info['frame']))
        for inst in info['instances']:
            x1, y1, x2, y2 = inst['bbox']
            w, h = x2 - x1, y2 - y1
            annotations.append(dict(
                id=len(annotations) + 1, image_id=info['img_id'],
                category_id=inst['bbox_label'] + 1, bbox=[x1, y1, w, h],
                area=w * h, iscrowd=int(inst['ignore_flag']),
                ignore=int(inst['ignore_flag'])))
    categories = [dict(id=i + 1, name=n, supercategory='vehicle')
                  for i, n in enumerate(CLASSES)]
    return dict(images=images, annotations=annotations, categories=categories)
