"""A small UAVDT-format tree of synthetic drone-view sequences (tests, demo).

Vehicles (car / truck / bus: rectangles of class-typical size and colour) drive
across a road texture at constant velocity; each sequence has an ignore region
whose vehicles are not annotated (as in UAVDT's far-field areas). One sequence has
images but no ground truth. Annotation files use UAVDT's columns and, with
``messy=True``, Windows line ends, trailing commas and blank lines.
"""
from __future__ import annotations

import inspect
import json
import os
from pathlib import Path

import cv2
import numpy as np

from flsl_mm.utils.generated import atomic_directory, ensure_generated
from .format import ANNOTATIONS_DIR, IMAGES_DIR

DEFAULT_SEQUENCES = ('M0101', 'M0204', 'M0401', 'M0203', 'M0205')  # 3 train, 2 test
NO_GT_SEQUENCE = 'M0901'
GENERATOR_VERSION = 2  # 2: larger vehicles, all three classes in every sequence
SETTINGS_FILE = 'demo.json'
# category -> (length, width) in px at an image width of 320 (scaled with the width)
_SIZES = {1: (28, 14), 2: (44, 18), 3: (60, 22)}
_COLOURS = {1: (40, 40, 200), 2: (200, 160, 40), 3: (40, 200, 230)}


def _sequence(rng, num_frames, h, w):
    """Frames (BGR uint8), gt rows and the ignore region of one sequence.

    Every sequence has one car, one truck and one bus driving horizontally below
    the ignore region (so every split holds all three classes), plus 0-3 random
    vehicles anywhere (those inside the ignore region are not annotated).
    """
    ign = [int(w * 0.7), 0, int(w * 0.3), int(h * 0.3)]  # left, top, width, height
    scale = w / 320
    cats = [1, 2, 3] + [int(rng.choice([1, 1, 1, 2, 3]))
                        for _ in range(rng.randint(0, 4))]
    vehicles = []
    lanes = rng.permutation(3)
    for tid, cat in enumerate(cats, start=1):
        ln, wd = (max(4, round(v * scale)) for v in _SIZES[cat])
        horizontal = tid <= 3 or rng.rand() < 0.6
        bw, bh = (ln, wd) if horizontal else (wd, ln)
        x = rng.uniform(0, w - bw)
        if tid <= 3:  # one lane each in the lower 65 % of the frame
            lane = 0.65 * h / 3
            top = 0.35 * h + lane * lanes[tid - 1]
            y = top + rng.uniform(0, max(lane - bh, 0))
        else:
            y = rng.uniform(0, h - bh)
        speed = rng.uniform(1, 3) * scale * rng.choice([-1, 1])
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
        (tmp / SETTINGS_FILE).write_text(json.dumps(_settings(
            layout=layout, sequences=list(sequences), num_frames=num_frames,
            img_size=list(img_size), seed=seed, messy=messy,
            with_no_gt_sequence=with_no_gt_sequence, prefix=prefix), indent=1))
    return root


def _settings(**kwargs) -> dict:
    return dict(version=GENERATOR_VERSION, **kwargs)


def ensure_uavdt_demo(root: str | os.PathLike, **kwargs) -> Path:
    """Write the demo tree at ``root`` unless it is there (safe under races).

    A tree that is there but was generated with other settings (or by an earlier
    version of the generator) is refused with a message: delete it to regenerate.
    """
    root = Path(root)
    stamp = root / SETTINGS_FILE
    if (root / IMAGES_DIR).exists() and not stamp.is_file():
        raise FileExistsError(
            f'{root} holds a UAVDT demo tree from an earlier flsl_mm (no '
            f'{SETTINGS_FILE}); delete the folder and it is generated again')
    ensure_generated(root, SETTINGS_FILE, make_uavdt_demo, **kwargs)
    defaults = {k: v.default for k, v in
                inspect.signature(make_uavdt_demo).parameters.items()
                if v.default is not inspect.Parameter.empty}
    wanted = json.loads(json.dumps(_settings(**{**defaults, **kwargs})))
    wanted['sequences'] = list(wanted['sequences'])
    found = json.loads(stamp.read_text())
    if found != wanted:
        diff = '; '.join(f'{k}: {found.get(k)} there, {v} asked'
                         for k, v in wanted.items() if found.get(k) != v)
        raise FileExistsError(
            f'{root} was generated with other settings ({diff}); delete the folder '
            'and it is generated again, or point data_root elsewhere')
    return root
