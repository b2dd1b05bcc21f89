"""DAVIS-2017 semi-supervised J&F, with the official benchmark's semantics.

Region similarity J (IoU), boundary accuracy F (boundary precision / recall with a
distance tolerance), their per-object Mean, Recall and Decay, and the pooled global
table with J&F-Mean, as the DAVIS-2017 evaluation defines them (see
``docs/davis.md``). Implemented here because the small PyPI alternatives report
neither Recall / Decay nor the official object / frame selection.
"""
from __future__ import annotations

import csv
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

GLOBAL_COLUMNS = ('J&F-Mean', 'J-Mean', 'J-Recall', 'J-Decay', 'F-Mean', 'F-Recall',
                  'F-Decay')


def region_similarity(gt: np.ndarray, pred: np.ndarray) -> float:
    """J: IoU of two boolean masks; 1 when both are empty."""
    gt, pred = gt.astype(bool), pred.astype(bool)
    union = np.logical_or(gt, pred).sum()
    if union == 0:
        return 1.0
    return float(np.logical_and(gt, pred).sum() / union)


def boundary_map(mask: np.ndarray) -> np.ndarray:
    """Pixels that differ from their right, lower or lower-right neighbour (the last
    row compares with the right one only, the last column with the lower one)."""
    m = mask.astype(bool)
    b = np.zeros_like(m)
    b[:, :-1] |= m[:, :-1] != m[:, 1:]
    b[:-1, :] |= m[:-1, :] != m[1:, :]
    b[:-1, :-1] |= m[:-1, :-1] != m[1:, 1:]
    return b


def boundary_tolerance(height: int, width: int, ratio: float = 0.008) -> int:
    """Radius r = ceil(ratio * diagonal): 8 px at 854 x 480."""
    return int(math.ceil(ratio * math.hypot(height, width)))


def _dilate(b: np.ndarray, r: int) -> np.ndarray:
    y, x = np.ogrid[-r:r + 1, -r:r + 1]
    disk = (x * x + y * y <= r * r).astype(np.uint8)
    return cv2.dilate(b.astype(np.uint8), disk).astype(bool)


def boundary_accuracy(gt: np.ndarray, pred: np.ndarray) -> float:
    """F: harmonic mean of boundary precision and recall within the tolerance;
    1 when both boundaries are empty, 0 when exactly one is."""
    bg, bp = boundary_map(gt), boundary_map(pred)
    ng, np_ = int(bg.sum()), int(bp.sum())
    if ng == 0 and np_ == 0:
        return 1.0
    if ng == 0 or np_ == 0:
        return 0.0
    r = boundary_tolerance(*gt.shape[:2])
    precision = np.logical_and(bp, _dilate(bg, r)).sum() / np_
    recall = np.logical_and(bg, _dilate(bp, r)).sum() / ng
    if precision + recall == 0:
        return 0.0
    return float(2 * precision * recall / (precision + recall))


def series_statistics(values) -> tuple[float, float, float]:
    """(Mean, Recall, Decay) of one object's per-frame J or F values.

    Mean = nanmean; Recall = fraction > 0.5; Decay = mean of the first quarter
    minus mean of the last, bins ``round(linspace(1, n, 5) + 1e-10) - 1``.
    """
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return float('nan'), float('nan'), float('nan')
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', category=RuntimeWarning)
        mean = float(np.nanmean(v))
        recall = float(np.nanmean(v > 0.5))
        ids = (np.round(np.linspace(1, len(v), 5) + 1e-10) - 1).astype(np.int64)
        bins = [v[ids[i]:ids[i + 1] + 1] for i in range(4)]
        decay = float(np.nanmean(bins[0]) - np.nanmean(bins[3]))
    return mean, recall, decay


class DAVISEvalError(ValueError):
    """A results or ground-truth file is missing or does not fit."""


def read_index_png(path: str | os.PathLike, what: str = 'annotation') -> np.ndarray:
    """An indexed (palette) PNG as an ``H x W`` uint8 array of object ids; 255 -> 0
    for annotations. Errors name the file."""
    from PIL import Image
    path = Path(path)
    if not path.is_file():
        raise DAVISEvalError(f'{path}: {what} missing')
    try:
        with Image.open(path) as im:
            if im.mode not in ('P', 'L'):
                raise DAVISEvalError(f'{path}: {what} is a {im.mode} image, expected a '
                                     'palette ("P") PNG of object ids')
            arr = np.array(im)
    except DAVISEvalError:
        raise
    except Exception as exc:  # truncated / not an image
        raise DAVISEvalError(f'{path}: cannot read {what} ({exc})') from exc
    return arr


@dataclass
class SequenceScores:
    """Per-object J and F series of one sequence (frames 1 .. n-2)."""
    name: str
    j: list = field(default_factory=list)  # one array per object
    f: list = field(default_factory=list)


def evaluate_sequence(name: str, gt_masks: list[np.ndarray],
                      pred_masks: list[np.ndarray]) -> SequenceScores:
    """Score one sequence: objects 1..max(GT of frame 0), all frames but the first
    and the last. ``gt_masks`` / ``pred_masks`` are id maps of equal shapes."""
    first = np.where(gt_masks[0] == 255, 0, gt_masks[0])
    num_objects = int(first.max())
    frames = range(1, len(gt_masks) - 1)
    scores = SequenceScores(name)
    for obj in range(1, num_objects + 1):
        js, fs = [], []
        for t in frames:
            g = np.where(gt_masks[t] == 255, 0, gt_masks[t]) == obj
            p = pred_masks[t] == obj
            js.append(region_similarity(g, p))
            fs.append(boundary_accuracy(g, p))
        scores.j.append(np.array(js))
        scores.f.append(np.array(fs))
    return scores


def global_results(sequences: list[SequenceScores]) -> dict[str, float]:
    """The official global table: every statistic pooled over all objects."""
    stats = {k: [] for k in ('J', 'F')}
    for seq in sequences:
        for series_j, series_f in zip(seq.j, seq.f):
            stats['J'].append(series_statistics(series_j))
            stats['F'].append(series_statistics(series_f))
    if not stats['J']:
        raise DAVISEvalError('no object was evaluated')
    j = np.array(stats['J'])
    f = np.array(stats['F'])
    out = {'J-Mean': j[:, 0].mean(), 'J-Recall': j[:, 1].mean(),
           'J-Decay': j[:, 2].mean(), 'F-Mean': f[:, 0].mean(),
           'F-Recall': f[:, 1].mean(), 'F-Decay': f[:, 2].mean()}
    out['J&F-Mean'] = (out['J-Mean'] + out['F-Mean']) / 2
    return {k: float(out[k]) for k in GLOBAL_COLUMNS}


def per_sequence_results(sequences: list[SequenceScores]) -> list[tuple[str, float,
                                                                        float]]:
    """``(sequence_objectid, J-Mean, F-Mean)`` rows, as the official CSV."""
    rows = []
    for seq in sequences:
        for i, (series_j, series_f) in enumerate(zip(seq.j, seq.f), start=1):
            rows.append((f'{seq.name}_{i}', series_statistics(series_j)[0],
                         series_statistics(series_f)[0]))
    return rows


def write_csvs(out_dir: str | os.PathLike, split: str, table: dict,
               rows: list) -> tuple[Path, Path]:
    """``global_results-<split>.csv`` and ``per-sequence_results-<split>.csv`` in
    the official format (3 decimals), each written atomically."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = (out_dir / f'global_results-{split}.csv',
             out_dir / f'per-sequence_results-{split}.csv')
    contents = ([list(GLOBAL_COLUMNS), [f'{table[k]:.3f}' for k in GLOBAL_COLUMNS]],
                [['Sequence', 'J-Mean', 'F-Mean']] +
                [[n, f'{j:.3f}', f'{f:.3f}'] for n, j, f in rows])
    for path, lines in zip(paths, contents):
        tmp = path.with_suffix('.csv.partial')
        with open(tmp, 'w', newline='') as fh:
            csv.writer(fh).writerows(lines)
        os.replace(tmp, path)
    return paths


def format_table(table: dict) -> str:
    head = ' | '.join(f'{k:>8}' for k in GLOBAL_COLUMNS)
    vals = ' | '.join(f'{table[k]:8.3f}' for k in GLOBAL_COLUMNS)
    return f'{head}\n{vals}'


def evaluate_results_dir(results_dir: str | os.PathLike, davis_root: str | os.PathLike,
                         sequences: list[str]) -> tuple[dict, list, list]:
    """Score the palette PNGs under ``results_dir/<seq>/`` against
    ``davis_root/Annotations/480p/<seq>/``: (global table, per-sequence rows,
    per-sequence scores). A missing or mis-sized prediction is an error naming it."""
    results_dir, davis_root = Path(results_dir), Path(davis_root)
    scored = []
    for seq in sequences:
        ann_dir = davis_root / 'Annotations' / '480p' / seq
        names = sorted(p.name for p in ann_dir.glob('*.png'))
        if not names:
            raise DAVISEvalError(f'{ann_dir}: no annotation PNGs')
        gts, preds = [], []
        for name in names:
            gt = read_index_png(ann_dir / name)
            pred = read_index_png(results_dir / seq / name, what='prediction')
            if pred.shape != gt.shape:
                raise DAVISEvalError(f'{results_dir / seq / name}: prediction is '
                                     f'{pred.shape[1]}x{pred.shape[0]}, the annotation '
                                     f'{gt.shape[1]}x{gt.shape[0]}')
            gts.append(gt)
            preds.append(pred)
        scored.append(evaluate_sequence(seq, gts, preds))
    return global_results(scored), per_sequence_results(scored), scored
