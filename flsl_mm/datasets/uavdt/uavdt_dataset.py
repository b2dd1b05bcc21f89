"""UAVDT detection dataset read straight from the downloaded folders."""
from __future__ import annotations

import logging

from mmdet.datasets.base_det_dataset import BaseDetDataset
from mmengine.logging import print_log

from flsl_mm.registry import DATASETS
from .format import CLASSES, load_index, select_sequences


def frame_instances(frame: dict, num_classes: int = len(CLASSES)) -> list[dict]:
    """mmdet instances of one frame: objects, then ignore regions.

    An ignore region applies to every class, so it is repeated once per class
    (``ignore_flag=1``): the assigners' ``ignore_iof_thr`` and pycocotools' crowd
    handling (per category) then both skip whatever falls inside it.
    """
    # tolist() once per frame: per-element float() on numpy rows is ~10x slower
    instances = [dict(bbox=box, bbox_label=label, ignore_flag=0) for box, label in
                 zip(frame['bboxes'].tolist(), frame['labels'].tolist())]
    for box in frame['ignore'].tolist():
        instances.extend(dict(bbox=list(box), bbox_label=label, ignore_flag=1)
                         for label in range(num_classes))
    return instances


@DATASETS.register_module()
class UAVDTDataset(BaseDetDataset):
    """UAVDT (car / truck / bus) in any of its on-disk layouts.

    Args:
        data_root: folder holding ``UAV-benchmark-M/`` (and, for layout 2,
            ``UAV-benchmark-MOTD_v1.0/GT/``).
        split: ``'train'`` (the 30 official training sequences), ``'test'`` (the 20
            official test sequences) or ``'all'``.
        sequences: explicit sequence names; overrides ``split``.
        frame_stride: keep every k-th frame (frames 1, 1+k, ...); 1 keeps all.
        use_index_cache: cache the parsed annotations (re-parsed when files change).
    """

    METAINFO = dict(classes=CLASSES,
                    palette=[(220, 20, 60), (0, 120, 255), (255, 180, 0)])

    def __init__(self, *args, split: str = 'train',
                 sequences: list[str] | None = None, frame_stride: int = 1,
                 use_index_cache: bool = True, **kwargs) -> None:
        if frame_stride < 1:
            raise ValueError(f'frame_stride must be >= 1, got {frame_stride}')
        self.split = split
        self.sequences = list(sequences) if sequences is not None else None
        self.frame_stride = frame_stride
        self.use_index_cache = use_index_cache
        super().__init__(*args, **kwargs)

    def load_data_list(self) -> list[dict]:
        index, no_gt = load_index(self.data_root, use_cache=self.use_index_cache)
        if no_gt:
            print_log(f'UAVDT: {len(no_gt)} sequence(s) have images but no ground '
                      f'truth and are skipped: {", ".join(no_gt)}',
                      logger='current', level=logging.WARNING)
        names = select_sequences(sorted(index), self.split, self.sequences)
        data_list = []
        self.invalid_annotations = [r for name in names
                                    for r in index[name].get('invalid', [])]
        for r in self.invalid_annotations:
            print_log(f'UAVDT: invalid annotation left out: {r["path"]}:{r["line"]}: '
                      f'{r["reason"]}', logger='current', level=logging.WARNING)
        for name in names:
            seq = index[name]
            for frame in sorted(seq['frames']):
                if (frame - 1) % self.frame_stride:
                    continue
                data_list.append(dict(
                    img_path=f"{seq['image_dir']}/{seq['files'][frame]}",
                    img_id=int(name[1:]) * 1_000_000 + frame,
                    sequence=name, frame=frame,
                    height=seq['height'], width=seq['width'],
                    instances=frame_instances(seq['frames'][frame])))
        return data_list

    def filter_data(self) -> list[dict]:
        """Drop frames without (non-ignored) objects when ``filter_empty_gt``."""
        if self.test_mode or not self.filter_cfg:
            return self.data_list
        empty = self.filter_cfg.get('filter_empty_gt', False)
        min_size = self.filter_cfg.get('min_size', 0)
        kept = []
        for info in self.data_list:
            if min(info['width'], info['height']) < min_size:
                continue
            if empty and not any(i['ignore_flag'] == 0 for i in info['instances']):
                continue
            kept.append(info)
        return kept


@DATASETS.register_module()
class UAVDTDemoDataset(UAVDTDataset):
    """:class:`UAVDTDataset` over a generated demo tree, written on first use
    (``demo_kwargs`` go to :func:`make_uavdt_demo`)."""

    def __init__(self, *args, demo_kwargs: dict | None = None, **kwargs) -> None:
        from .demo import ensure_uavdt_demo
        data_root = kwargs.get('data_root', args[0] if args else None)
        if data_root is None:
            raise ValueError('UAVDTDemoDataset needs data_root')
        ensure_uavdt_demo(data_root, **(demo_kwargs or {}))
        super().__init__(*args, **kwargs)
