"""Run the dense probes of :mod:`flsl_mm.analysis.dense_probe` on a probe set
(:mod:`flsl_mm.analysis.probe_sets`: images + per-pixel labels, and COCO boxes
for the bbox probe). Used by ``tools/analysis/dense_probe.py`` and
:class:`DenseProbeHook`, so both compute the same numbers.

Two stages: :func:`collect` embeds a (part of a) split, :func:`score` runs the
probes on the tokens. :func:`run_probes` does both in one process; the hook
collects one shard per rank and scores on rank 0 (:func:`merge` puts the shards
back together in their order: the tokens are those of one process)."""
from __future__ import annotations

import contextlib
import json
import os
import time

import numpy as np
import torch
from mmengine.utils import ProgressBar

from .dense_probe import (IGNORE, bbox_grid_positions, bbox_knn_top1,
                          confusion_matrix, hungarian_cluster_miou, knn_segmentation,
                          linear_probe, miou_and_acc)
from .probe_sets import LoadedSplit
from .tokens import extract_token_batch


def _largest_boxes(ann_file: str) -> dict:
    """file name -> (bbox_xywh, category index 0..) of its largest box."""
    with open(ann_file) as f:
        coco = json.load(f)
    names = {im['id']: im['file_name'] for im in coco['images']}
    cats = {c['id']: i for i, c in enumerate(sorted(coco['categories'],
                                                   key=lambda c: c['id']))}
    best = {}
    for a in coco['annotations']:
        if a.get('iscrowd', 0):
            continue
        area = a['bbox'][2] * a['bbox'][3]
        name = names[a['image_id']]
        if name not in best or area > best[name][2]:
            best[name] = (a['bbox'], cats[a['category_id']], area)
    return {k: v[:2] for k, v in best.items()}


def _same_size_batches(images: list[np.ndarray], batch_size: int):
    """Index ranges of consecutive images of one size, at most ``batch_size``."""
    start = 0
    while start < len(images):
        end = start + 1
        while end < len(images) and end - start < batch_size and \
                images[end].shape == images[start].shape:
            end += 1
        yield start, end
        start = end


def collect(backbone, split: LoadedSplit, block: int = -1, desc: str = '',
            autocast_dtype: torch.dtype | None = None, batch_size: int = 16) -> dict:
    """Tokens and patch labels of every image of a loaded split (consecutive
    images of one size share a forward, up to ``batch_size``; ``desc``: print it
    and a progress bar); ``autocast_dtype``: the forwards in that autocast (the
    run's mixed precision), tokens in float32."""
    boxes = _largest_boxes(split.ann_file) if split.ann_file and \
        os.path.isfile(split.ann_file) else None
    patch = backbone.patch_size
    tokens, box_feats, box_labels = [], [], []
    bar = None
    if desc:
        print(desc)
        bar = ProgressBar(len(split.images))
    cast = torch.autocast(next(backbone.parameters()).device.type,
                          dtype=autocast_dtype) if autocast_dtype \
        else contextlib.nullcontext()
    for start, end in _same_size_batches(split.images, batch_size):
        with cast:
            grids = extract_token_batch(backbone, split.images[start:end], block)
        for name, grid in zip(split.names[start:end], grids):
            tokens.append(grid.reshape(-1, grid.shape[-1]))
            if boxes is not None and name in boxes:
                bbox, cat = boxes[name]
                pos = bbox_grid_positions(bbox, grid.shape[:2], patch)
                box_feats.append(np.stack([grid[r, c] for r, c in pos]))
                box_labels.append(cat)
            if bar is not None:
                bar.update()
    if bar is not None:
        print()
    dims = backbone.embed_dims
    return dict(tokens=np.concatenate(tokens) if tokens else np.zeros((0, dims),
                                                                      np.float32),
                labels=np.concatenate(split.patch_labels) if split.patch_labels
                else np.zeros(0, np.int64),
                box_feats=np.stack(box_feats) if box_feats else None,
                box_labels=np.array(box_labels, np.int64),
                images=len(split.images))


def merge(parts: list[dict]) -> dict:
    """The :func:`collect` of a whole split from those of its consecutive parts
    (:func:`flsl_mm.analysis.probe_sets.shard_range` in rank order)."""
    boxes = [p['box_feats'] for p in parts if p['box_feats'] is not None]
    return dict(tokens=np.concatenate([p['tokens'] for p in parts]),
                labels=np.concatenate([p['labels'] for p in parts]),
                box_feats=np.concatenate(boxes) if boxes else None,
                box_labels=np.concatenate([p['box_labels'] for p in parts]),
                images=sum(p['images'] for p in parts))


PROBES = ('knn', 'linear', 'cluster', 'bbox')


def _check_probes(probes) -> None:
    unknown = set(probes) - set(PROBES)
    if unknown:
        raise ValueError(f'unknown probe(s) {sorted(unknown)}; expected some of '
                         f'{list(PROBES)}')


def run_probes(backbone, train: LoadedSplit, val: LoadedSplit, num_classes: int,
               block: int = -1, seed: int = 0, device: str | torch.device = 'cpu',
               probes: tuple[str, ...] = PROBES,
               autocast_dtype: torch.dtype | None = None,
               progress: bool = True, timings: dict | None = None) -> dict:
    """The ``probes`` on the splits (:meth:`ProbeSet.load`): token extraction,
    k-NN and linear probes on ``device`` (the backbone is moved there); k-means +
    Hungarian on the CPU (numpy); ``bbox`` only where the splits have boxes.

    Keys: ``knn_miou``/``knn_acc``, ``linear_miou``/``linear_acc``,
    ``cluster_miou``, ``bbox_knn_top1@k``. ``timings``: filled with the seconds
    of each stage (``tokens``, then each probe run)."""
    _check_probes(probes)
    clock = _Clock(timings, device)
    backbone.to(device)
    tr = collect(backbone, train, block, 'extracting train tokens' if progress else '',
                 autocast_dtype)
    va = collect(backbone, val, block, 'extracting val tokens' if progress else '',
                 autocast_dtype)
    clock('tokens')
    return score(tr, va, num_classes, seed, device, probes, timings)


def score(tr: dict, va: dict, num_classes: int, seed: int = 0,
          device: str | torch.device = 'cpu', probes: tuple[str, ...] = PROBES,
          timings: dict | None = None) -> dict:
    """The ``probes`` of :func:`run_probes` on collected train and val tokens
    (:func:`collect`, or :func:`merge` of its shards)."""
    _check_probes(probes)
    clock = _Clock(timings, device)
    keep_tr, keep_va = tr['labels'] != IGNORE, va['labels'] != IGNORE
    xt, yt = tr['tokens'][keep_tr], tr['labels'][keep_tr]
    xv, yv = va['tokens'][keep_va], va['labels'][keep_va]
    res = {}
    if 'knn' in probes:
        pred = knn_segmentation(xt, yt, xv, num_classes, k=20, temperature=0.07,
                                device=device)
        res['knn_miou'], res['knn_acc'] = miou_and_acc(
            confusion_matrix(pred, yv, num_classes))
        clock('knn')
    if 'linear' in probes:
        pred = linear_probe(xt, yt, xv, num_classes, seed=seed, device=device)
        res['linear_miou'], res['linear_acc'] = miou_and_acc(
            confusion_matrix(pred, yv, num_classes))
        clock('linear')
    if 'cluster' in probes:
        res['cluster_miou'], _ = hungarian_cluster_miou(xv, yv, num_classes, seed=seed)
        clock('cluster')
    if 'bbox' in probes and tr['box_feats'] is not None and \
            va['box_feats'] is not None:
        for k, v in bbox_knn_top1(tr['box_feats'], tr['box_labels'], va['box_feats'],
                                  va['box_labels'], num_classes,
                                  device=device).items():
            res[f'bbox_knn_top1@{k}'] = v
        clock('bbox')
    return res


class _Clock:
    """Seconds since the previous call, stored under each name (the device is
    synchronised first, so a GPU stage is counted where it ran)."""

    def __init__(self, timings: dict | None, device) -> None:
        self.timings, self.device = timings, torch.device(device)
        self.last = time.perf_counter()

    def __call__(self, name: str) -> None:
        if self.timings is None:
            return
        if self.device.type == 'cuda':
            torch.cuda.synchronize(self.device)
        now = time.perf_counter()
        self.timings[name] = now - self.last
        self.last = now
