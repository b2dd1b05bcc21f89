"""UAVDT's official-style detection metric: AP at IoU 0.7 with ignore regions."""
from __future__ import annotations

from typing import Sequence

import numpy as np
from mmdet.evaluation.functional import bbox_overlaps
from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log

from flsl_mm.registry import METRICS


def average_precision(recall: np.ndarray, precision: np.ndarray) -> float:
    """Area under the precision envelope (all-point interpolation, VOC 2010+)."""
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = max(mpre[i], mpre[i + 1])
    steps = np.nonzero(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))


def _outside_ignore(boxes: np.ndarray, ignore: np.ndarray, thr: float) -> np.ndarray:
    """Boolean mask of boxes *not* inside an ignore region (IoF < thr)."""
    if len(boxes) == 0 or len(ignore) == 0:
        return np.ones(len(boxes), bool)
    iof = bbox_overlaps(boxes.astype(np.float32), ignore.astype(np.float32),
                        mode='iof')
    return iof.max(axis=1) < thr


def evaluate_detections(dets: dict, gts: dict, ignores: dict, iou_thr: float = 0.7,
                        ignore_iof_thr: float = 0.5) -> tuple[float, int]:
    """AP of one class (or of all classes pooled) over a set of images.

    Args:
        dets: image id -> ``(n, 5)`` array ``x1, y1, x2, y2, score``.
        gts: image id -> ``(m, 4)`` ground-truth boxes.
        ignores: image id -> ``(k, 4)`` ignore regions. Detections and ground truth
            with IoF >= ``ignore_iof_thr`` to a region are dropped: neither true
            nor false positives, nor misses.
        iou_thr: a detection matches an unmatched ground truth at IoU >= this;
            greedy by descending score.

    Returns:
        ``(AP, number of ground-truth boxes counted)``; AP is NaN without any.
    """
    records = []  # (score, is_tp)
    num_gt = 0
    for img in set(dets) | set(gts):
        ign = ignores.get(img, np.zeros((0, 4)))
        gt = gts.get(img, np.zeros((0, 4)))
        gt = gt[_outside_ignore(gt, ign, ignore_iof_thr)]
        num_gt += len(gt)
        det = dets.get(img, np.zeros((0, 5)))
        det = det[_outside_ignore(det[:, :4], ign, ignore_iof_thr)]
        det = det[np.argsort(-det[:, 4], kind='stable')]
        matched = np.zeros(len(gt), bool)
        ious = (bbox_overlaps(det[:, :4].astype(np.float32), gt.astype(np.float32))
                if len(det) and len(gt) else np.zeros((len(det), len(gt))))
        for i in range(len(det)):
            tp = False
            if len(gt):
                cand = np.where(matched, -1.0, ious[i])
                j = int(np.argmax(cand))
                if cand[j] >= iou_thr:
                    matched[j] = True
                    tp = True
            records.append((float(det[i, 4]), tp))
    if num_gt == 0:
        return float('nan'), 0
    if not records:
        return 0.0, num_gt
    records.sort(key=lambda r: -r[0])
    tp = np.cumsum([r[1] for r in records])
    fp = np.cumsum([not r[1] for r in records])
    recall = tp / num_gt
    precision = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    return average_precision(recall, precision), num_gt


@METRICS.register_module()
class UAVDTMetric(BaseMetric):
    """UAVDT official-style AP: IoU 0.7, ignore regions discarded.

    Reports ``AP70_<class>`` per class, ``mAP70`` (their mean over classes with
    ground truth) and ``AP70_overall`` (all classes pooled, class-agnostic, as a
    single "vehicle" class). Reads ground truth from the data samples'
    ``instances`` (add ``'instances'`` to ``PackDetInputs``' ``meta_keys``), where
    ignore regions are instances with ``ignore_flag=1``.
    """

    default_prefix = 'uavdt'

    def __init__(self, iou_thr: float = 0.7, ignore_iof_thr: float = 0.5,
                 collect_device: str = 'cpu', prefix: str | None = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.iou_thr = iou_thr
        self.ignore_iof_thr = ignore_iof_thr
        self._tag = f'AP{round(iou_thr * 100)}'

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for sample in data_samples:
            if 'instances' not in sample:
                raise KeyError("UAVDTMetric needs the ground truth: add 'instances' "
                               "to PackDetInputs' meta_keys in the test pipeline")
            pred = sample['pred_instances']
            insts = sample['instances']
            gt = np.array([i['bbox'] for i in insts if not i['ignore_flag']],
                          np.float32).reshape(-1, 4)
            gt_labels = np.array([i['bbox_label'] for i in insts
                                  if not i['ignore_flag']], np.int64)
            ign = np.array([i['bbox'] for i in insts if i['ignore_flag']],
                           np.float32).reshape(-1, 4)
            ign = np.unique(ign, axis=0) if len(ign) else ign
            self.results.append(dict(
                img_id=sample['img_id'],
                bboxes=pred['bboxes'].cpu().numpy(),
                scores=pred['scores'].cpu().numpy(),
                labels=pred['labels'].cpu().numpy(),
                gt=gt, gt_labels=gt_labels, ignore=ign))

    def compute_metrics(self, results: list) -> dict:
        classes = self.dataset_meta['classes']
        metrics = {}
        aps = []
        for c, name in enumerate(list(classes) + ['overall']):
            pooled = name == 'overall'
            dets, gts, ignores = {}, {}, {}
            for r in results:
                keep = slice(None) if pooled else r['labels'] == c
                dets[r['img_id']] = np.concatenate(
                    [r['bboxes'][keep], r['scores'][keep, None]], axis=1)
                gts[r['img_id']] = r['gt'] if pooled else r['gt'][r['gt_labels'] == c]
                ignores[r['img_id']] = r['ignore']
            ap, num_gt = evaluate_detections(dets, gts, ignores, self.iou_thr,
                                             self.ignore_iof_thr)
            metrics[f'{self._tag}_{name}'] = round(ap, 4) if num_gt else float('nan')
            if not pooled and num_gt:
                aps.append(ap)
        metrics[f'm{self._tag}'] = round(float(np.mean(aps)), 4) if aps else float('nan')
        print_log(f'UAVDT AP@IoU{self.iou_thr} (ignore regions discarded): ' + ', '.join(
            f'{k}={v:.4f}' for k, v in metrics.items()), logger='current')
        return metrics
