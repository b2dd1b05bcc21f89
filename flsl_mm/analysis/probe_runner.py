"""Run the four dense probes of :mod:`flsl_mm.analysis.dense_probe` on a split
pair of images + per-pixel label PNGs (and COCO boxes for the bbox probe)."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass

import cv2
import numpy as np
from mmengine.utils import ProgressBar

from .dense_probe import (IGNORE, bbox_grid_positions, bbox_knn_top1,
                          confusion_matrix, hungarian_cluster_miou, knn_segmentation,
                          labels_to_patches, linear_probe, miou_and_acc)
from .tokens import extract_tokens


@dataclass
class ProbeSplit:
    img_dir: str
    label_dir: str
    ann_file: str | None = None  # COCO instances, for the bbox-aligned probe


def demo_splits(root: str) -> tuple[ProbeSplit, ProbeSplit, int]:
    """Train / val splits and class count of the embedded demo data at ``root``."""
    meta_path = os.path.join(root, 'meta.json')
    if not os.path.isfile(meta_path):
        raise FileNotFoundError(f'{meta_path} not found: not a demo data set '
                                '(tools/misc/make_demo_data.py writes one)')
    with open(meta_path) as f:
        num_classes = len(json.load(f)['semantic_classes'])
    splits = [ProbeSplit(os.path.join(root, s, 'images'),
                         os.path.join(root, s, 'semantic'),
                         os.path.join(root, 'annotations', f'instances_{s}.json'))
              for s in ('train', 'val')]
    return splits[0], splits[1], num_classes


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


def collect(backbone, split: ProbeSplit, block: int = -1, desc: str = '') -> dict:
    """Tokens and patch labels of every image of a split (progress bar)."""
    patch = backbone.patch_size
    names = sorted(n for n in os.listdir(split.img_dir)
                   if n.lower().endswith(('.png', '.jpg', '.jpeg', '.bmp')))
    if not names:
        raise FileNotFoundError(f'no images in {split.img_dir}')
    boxes = _largest_boxes(split.ann_file) if split.ann_file and \
        os.path.isfile(split.ann_file) else None
    tokens, labels, box_feats, box_labels = [], [], [], []
    if desc:
        print(desc)
    bar = ProgressBar(len(names))
    for name in names:
        img = cv2.imread(os.path.join(split.img_dir, name), cv2.IMREAD_COLOR)
        if img is None:
            raise ValueError(f'{os.path.join(split.img_dir, name)}: cannot be decoded '
                             'as an image')
        stem = os.path.splitext(name)[0]
        label_path = os.path.join(split.label_dir, stem + '.png')
        label = cv2.imread(label_path, cv2.IMREAD_UNCHANGED)
        if label is None:
            raise FileNotFoundError(f'{label_path}: label PNG missing or unreadable '
                                    f'(for image {name})')
        if label.shape[:2] != img.shape[:2]:
            raise ValueError(f'{label_path}: size {label.shape[:2]} differs from its '
                             f'image {img.shape[:2]}')
        h, w = img.shape[0] // patch * patch, img.shape[1] // patch * patch
        grid = extract_tokens(backbone, img[:h, :w], block)
        tokens.append(grid.reshape(-1, grid.shape[-1]))
        labels.append(labels_to_patches(label[:h, :w], patch).reshape(-1))
        if boxes is not None and name in boxes:
            bbox, cat = boxes[name]
            pos = bbox_grid_positions(bbox, grid.shape[:2], patch)
            box_feats.append(np.stack([grid[r, c] for r, c in pos]))
            box_labels.append(cat)
        bar.update()
    print()
    return dict(tokens=np.concatenate(tokens), labels=np.concatenate(labels),
                box_feats=np.stack(box_feats) if box_feats else None,
                box_labels=np.array(box_labels))


def run_probes(backbone, train: ProbeSplit, val: ProbeSplit, num_classes: int,
               block: int = -1, seed: int = 0, device: str = 'cpu') -> dict:
    """Token extraction, k-NN and linear probes on ``device`` (the backbone is
    moved there); k-means + Hungarian on the CPU (numpy)."""
    backbone.to(device)
    tr = collect(backbone, train, block, 'extracting train tokens')
    va = collect(backbone, val, block, 'extracting val tokens')
    keep_tr, keep_va = tr['labels'] != IGNORE, va['labels'] != IGNORE
    xt, yt = tr['tokens'][keep_tr], tr['labels'][keep_tr]
    xv, yv = va['tokens'][keep_va], va['labels'][keep_va]
    res = {}
    pred = knn_segmentation(xt, yt, xv, num_classes, k=20, temperature=0.07,
                            device=device)
    res['knn_miou'], res['knn_acc'] = miou_and_acc(confusion_matrix(pred, yv,
                                                                    num_classes))
    pred = linear_probe(xt, yt, xv, num_classes, seed=seed, device=device)
    res['linear_miou'], res['linear_acc'] = miou_and_acc(
        confusion_matrix(pred, yv, num_classes))
    res['cluster_miou'], _ = hungarian_cluster_miou(xv, yv, num_classes, seed=seed)
    if tr['box_feats'] is not None and va['box_feats'] is not None:
        for k, v in bbox_knn_top1(tr['box_feats'], tr['box_labels'], va['box_feats'],
                                  va['box_labels'], num_classes,
                                  device=device).items():
            res[f'bbox_knn_top1@{k}'] = v
    return res
