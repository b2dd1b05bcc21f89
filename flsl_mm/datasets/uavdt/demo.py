"""A small UAVDT-format tree of synthetic drone-view sequences (tests, demo).

Vehicles (car / truck / bus: rectangles of class-typical size and colour) drive
across a road texture at constant velocity; each sequence has an ignore region
whose vehicles are not annotated (as in UAVDT's far-field areas). One sequence has
images but no ground truth. Annotation files use UAVDT's columns and, with
``messy=True``, Windows line ends, trailing commas and blank lines.
"""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from flsl_mm.utils.generated import atomic_directory, ensure_generated
from .format import ANNOTATIONS_DIR, IMAGES_DIR

DEFAULT_SEQUENCES = ('M0101', 'M0204', 'M0401', 'M0203', 'M0205')  # 3 train, 2 test
NO_GT_SEQUENCE = 'M0901'
_SIZES = {1: (14, 8), 2: (24, 10), 3: (32, 12)}  # category -> (length, width) px
_COLOURS = {1: (40, 40, 200), 2: (200, 160, 40), 3: (40, 200, 230)}


def _sequence(rng, num_frames, h, w):
    """Frames (BGR uint8), gt rows and the ignore region of one sequence."""
    ign = [int(w * 0.7), 0, int(w * 0.3), int(h * 0.3)]  # left, top, width, height
    vehicles = []
    for tid in range(1, rng.randint(3, 7)):
        cat = int(rng.choice([1, 1, 1, 2, 3]))
        ln, wd = _SIZES[cat]
        horizontal = rng.rand() < 0.6
        bw, bh = (ln, wd) if horizontal else (wd, ln)
        x, y = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
        speed = rng.uniform(1, 3) * rng.choice([-1, 1])
        vx, vy = (speed, 0) if horizontal else (0, speed)
        vehicles.append([tid, cat, x, y, bw, bh, vx, vy, rng.uniform(0.8, 1.1)])
    base = np.full((h, w, 3), 100, np.float32) + rng.normal(0, 6, (h, w, 1))
    base[:, ::40] += 60  # lane marks
    frames, rows = [], []
    for f in range(1, num_frames + 1):
        img = base.copy()
        for v in vehicles:
            tid, cat, x, y, bw, bh, vx, vy, shade = v
            x = float(np.clip(x + vx * (f - 1), 0, w - bw))
            y = float(np.clip(y + vy * (f - 1), 0, h - bh))
            l, t = int(round(x)), int(round(y))
            img[t:t + int(bh), l:l + int(bw)] = np.array(_COLOURS[cat]) * shade
            cx, cy = l + bw / 2, t + bh / 2
            inside = (ign[0] <= cx <= ign[0] + ign[2]) and (ign[1] <= cy <= ign[1] + ign[3])
            if not inside:
                rows.append([f, tid, l, t, int(bw), int(bh), 1, 1, cat])
        frames.append(np.clip(img, 0, 255).astype(np.uint8))
    ignore_rows = [[f, -1, *ign, -1, -1, -1] for f in range(1, num_frames + 1)]
    return frames, rows, ignore_rows


def _write_rows(path: Path, rows, messy: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nl = '\r\n' if messy else '\n'
    with open(path, 'w', newline='') as f:
        for i, r in enumerate(rows):
            f.write(','.join(str(int(v)) for v in r) + (',' if messy else '') + nl)
            if messy and i % 7 == 3:
                f.write(nl)  # blank line


def make_uavdt_demo(root: str | os.PathLike, layout: int = 1,
                    sequences: tuple = DEFAULT_SEQUENCES, num_frames: int = 8,
                    img_size: tuple = (96, 160), seed: int = 0, messy: bool = True,
                    with_no_gt_sequence: bool = True, prefix: str = 'img') -> Path:
    """Write a UAVDT tree at ``root`` in ``layout`` 1, 2 or 3 (see format.py).

    ``prefix`` is the image-name prefix (``'img'`` -> ``img000001.jpg``; ``''`` ->
    ``000001.jpg``, as some mirrors have it). Written to a temporary folder and
    moved into place, so nothing half-written is left behind.
    """
    if layout not in (1, 2, 3):
        raise ValueError(f'layout must be 1, 2 or 3, got {layout}')
    root = Path(root)
    if root.exists():
        raise FileExistsError(f'{root} exists')
    with atomic_directory(root) as tmp:
        h, w = img_size
        names = list(sequences) + ([NO_GT_SEQUENCE] if with_no_gt_sequence else [])
        for i, name in enumerate(names):
            rng = np.random.RandomState(seed * 1000 + i)
            frames, rows, ignore_rows = _sequence(rng, num_frames, h, w)
            seq_dir = tmp / IMAGES_DIR / name
            img_dir = seq_dir / 'img1' if layout in (1, 3) else seq_dir
            img_dir.mkdir(parents=True, exist_ok=True)
            for f, img in enumerate(frames, start=1):
                cv2.imwrite(str(img_dir / f'{prefix}{f:06d}.jpg'), img)
            if name == NO_GT_SEQUENCE:
                continue
            if layout == 1:
                whole, ignore = seq_dir / 'gt' / 'gt_whole.txt', seq_dir / 'gt' / 'gt_ignore.txt'
            else:
                gt = tmp / ANNOTATIONS_DIR
                whole, ignore = gt / f'{name}_gt_whole.txt', gt / f'{name}_gt_ignore.txt'
            _write_rows(whole, rows, messy)
            _write_rows(ignore, ignore_rows, messy)
    return root


def ensure_uavdt_demo(root: str | os.PathLike, **kwargs) -> Path:
    """Write the demo tree at ``root`` unless it is there (safe under races)."""
    return ensure_generated(root, IMAGES_DIR, make_uavdt_demo, **kwargs)
