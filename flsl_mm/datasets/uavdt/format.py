"""UAVDT on disk: layouts, annotation files, official split, and the frame index.

Layouts (detected per sequence; see ``docs/uavdt.md``):

1. ``UAV-benchmark-M/M0101/img1/img000001.jpg`` + ``M0101/gt/gt_whole.txt``,
   ``gt/gt_ignore.txt``;
2. ``UAV-benchmark-M/M0101/img000001.jpg`` (or ``000001.jpg``) +
   ``UAV-benchmark-MOTD_v1.0/GT/M0101_gt_whole.txt``, ``M0101_gt_ignore.txt``;
3. either image layout with the annotations from the other place.
"""
from __future__ import annotations

import hashlib
import os
import pickle
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ('car', 'truck', 'bus')
OFFICIAL_TEST_SEQUENCES = (
    'M0203', 'M0205', 'M0208', 'M0209', 'M0403', 'M0601', 'M0602', 'M0606', 'M0701',
    'M0801', 'M0802', 'M1001', 'M1004', 'M1007', 'M1009', 'M1101', 'M1301', 'M1302',
    'M1303', 'M1401')
IMAGES_DIR = 'UAV-benchmark-M'
ANNOTATIONS_DIR = os.path.join('UAV-benchmark-MOTD_v1.0', 'GT')
_SEQ_RE = re.compile(r'^M\d{4}$')
_FRAME_RE = re.compile(r'^(?:img)?(\d+)\.jpe?g$', re.IGNORECASE)
INDEX_VERSION = 2  # 2: invalid rows kept as records


class UAVDTFormatError(ValueError):
    """A UAVDT file is malformed; the message names the file and line."""


def parse_annotation_file(path: str | os.PathLike, min_columns: int = 9,
                          invalid: list | None = None,
                          categories: tuple[int, int] | None = None) -> np.ndarray:
    """Read a ``*_gt_whole.txt`` / ``*_gt_ignore.txt`` file into an int array.

    Columns: ``frame, target_id, left, top, width, height, out_of_view, occlusion,
    category``. Blank lines, trailing commas, spaces and Windows line ends are
    accepted; anything else that is not ``min_columns`` integers raises
    :class:`UAVDTFormatError` naming the file and the 1-based line number.

    A row of integers whose values cannot be an object (a frame < 1, a box of
    zero or negative width or height, a category outside ``categories``) raises
    too, or -- with an ``invalid`` list -- is left out and recorded there as
    ``dict(path, line, reason)`` (the dataset names it and trains on the rest).
    """
    rows = []
    with open(path, encoding='utf-8', errors='replace', newline='') as f:
        for lineno, line in enumerate(f, start=1):
            text = line.strip().rstrip(',').strip()
            if not text:
                continue
            fields = [x.strip() for x in text.split(',')]
            if len(fields) < min_columns:
                raise UAVDTFormatError(
                    f'{path}:{lineno}: expected {min_columns} comma-separated '
                    f'integers, got {len(fields)}: {text!r}')
            try:
                values = [int(float(x)) for x in fields[:min_columns]]
            except ValueError:
                raise UAVDTFormatError(f'{path}:{lineno}: not an integer in {text!r}')
            reason = None
            if values[0] < 1:
                reason = f'frame {values[0]} < 1'
            elif values[4] <= 0 or values[5] <= 0:
                reason = (f'box of {"negative" if min(values[4:6]) < 0 else "zero"} '
                          f'size ({values[4]} x {values[5]})')
            elif categories is not None and not (
                    categories[0] <= values[8] <= categories[1]):
                reason = (f'category {values[8]} is not 1 (car), 2 (truck) or 3 '
                          '(bus)')
            if reason is not None:
                if invalid is None:
                    raise UAVDTFormatError(f'{path}:{lineno}: {reason} in {text!r}')
                invalid.append(dict(path=str(path), line=lineno, reason=reason))
                continue
            rows.append(values)
    return np.asarray(rows, dtype=np.int64).reshape(-1, min_columns)


@dataclass
class Sequence:
    name: str
    image_dir: Path
    frames: dict  # frame number -> image file name
    gt_whole: Path | None = None
    gt_ignore: Path | None = None
    size: tuple = (0, 0)  # (height, width), read from the first image
    stamp: list = field(default_factory=list)


def _frames_in(folder: Path) -> dict:
    frames = {}
    if not folder.is_dir():
        return frames
    for entry in os.scandir(folder):
        m = _FRAME_RE.match(entry.name)
        if m and entry.is_file():
            frames[int(m.group(1))] = entry.name
    return frames


def _find_annotations(root: Path, seq_dir: Path, name: str
                      ) -> tuple[Path | None, Path | None]:
    candidates = [
        (seq_dir / 'gt' / 'gt_whole.txt', seq_dir / 'gt' / 'gt_ignore.txt'),
        (root / ANNOTATIONS_DIR / f'{name}_gt_whole.txt',
         root / ANNOTATIONS_DIR / f'{name}_gt_ignore.txt'),
    ]
    for whole, ignore in candidates:
        if whole.is_file():
            return whole, (ignore if ignore.is_file() else None)
    return None, None


def discover_sequences(root: str | os.PathLike) -> list[Sequence]:
    """All sequences under ``root`` with their image folder and annotation files."""
    root = Path(root)
    images_root = root / IMAGES_DIR
    if not images_root.is_dir():
        raise FileNotFoundError(f'{images_root} not found: data_root must hold '
                                f'{IMAGES_DIR}/ (and optionally {ANNOTATIONS_DIR}/)')
    sequences = []
    for seq_dir in sorted(p for p in images_root.iterdir() if p.is_dir()):
        if not _SEQ_RE.match(seq_dir.name):
            continue
        image_dir = seq_dir / 'img1' if (seq_dir / 'img1').is_dir() else seq_dir
        frames = _frames_in(image_dir)
        if not frames:
            continue
        whole, ignore = _find_annotations(root, seq_dir, seq_dir.name)
        sequences.append(Sequence(seq_dir.name, image_dir, frames, whole, ignore))
    return sequences


def _stamp(seq: Sequence) -> list:
    """What the cached index of a sequence depends on (names, sizes, mtimes)."""
    items = [str(seq.image_dir), os.stat(seq.image_dir).st_mtime_ns, len(seq.frames)]
    for p in (seq.gt_whole, seq.gt_ignore):
        if p is not None:
            st = os.stat(p)
            items += [str(p), st.st_size, st.st_mtime_ns]
    return items


def _boxes_xyxy(rows: np.ndarray) -> np.ndarray:
    xy = rows[:, 2:4].astype(np.float32)
    wh = rows[:, 4:6].astype(np.float32)
    return np.concatenate([xy, xy + wh], axis=1)


def index_sequence(seq: Sequence) -> dict:
    """Per-frame boxes / labels / ignore regions of one annotated sequence."""
    with Image.open(seq.image_dir / seq.frames[min(seq.frames)]) as im:
        width, height = im.size
    invalid = []  # rows that cannot be objects: named by the dataset, left out
    whole = parse_annotation_file(seq.gt_whole, invalid=invalid,
                                  categories=(1, len(CLASSES)))
    ignore = (parse_annotation_file(seq.gt_ignore, invalid=invalid)
              if seq.gt_ignore is not None else np.zeros((0, 9), np.int64))
    missing = sorted(set(whole[:, 0].tolist()) - set(seq.frames))
    if missing:
        raise UAVDTFormatError(f'{seq.gt_whole}: frames {missing[:5]} have '
                               f'annotations but no image in {seq.image_dir}')
    frames = {}
    boxes, ign_boxes = _boxes_xyxy(whole), _boxes_xyxy(ignore)
    for f in sorted(seq.frames):
        sel = whole[:, 0] == f
        isel = ignore[:, 0] == f
        frames[f] = dict(bboxes=boxes[sel], labels=(whole[sel, 8] - 1),
                         ignore=ign_boxes[isel])
    return dict(name=seq.name, height=height, width=width, image_dir=str(seq.image_dir),
                files={f: seq.frames[f] for f in frames}, frames=frames,
                invalid=invalid)


def _cache_file(root: Path) -> Path:
    base = os.environ.get('FLSL_MM_CACHE', str(Path.home() / '.cache' / 'flsl_mm'))
    key = hashlib.sha1(str(root.resolve()).encode()).hexdigest()[:16]
    return Path(base) / 'uavdt_index' / f'{key}.pkl'


def load_index(root: str | os.PathLike, use_cache: bool = True
               ) -> tuple[dict, list[str]]:
    """Index every annotated sequence under ``root``; names of those without GT.

    Parsed sequences are cached (``$FLSL_MM_CACHE/uavdt_index``) and re-parsed only
    when their image folder or annotation files change.
    """
    root = Path(root)
    sequences = discover_sequences(root)
    cache_path = _cache_file(root)
    cache = {}
    if use_cache and cache_path.is_file():
        try:
            with open(cache_path, 'rb') as f:
                stored = pickle.load(f)
            if stored.get('version') == INDEX_VERSION:
                cache = stored['sequences']
        except Exception:  # unreadable cache: rebuild it
            cache = {}
    index, no_gt, changed = {}, [], False
    for seq in sequences:
        if seq.gt_whole is None:
            no_gt.append(seq.name)
            continue
        stamp = _stamp(seq)
        hit = cache.get(seq.name)
        if hit is not None and hit['stamp'] == stamp:
            index[seq.name] = hit['index']
            continue
        index[seq.name] = index_sequence(seq)
        cache[seq.name] = dict(stamp=stamp, index=index[seq.name])
        changed = True
    if use_cache and changed:
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=cache_path.parent, suffix='.partial')
        with os.fdopen(fd, 'wb') as f:
            pickle.dump(dict(version=INDEX_VERSION, sequences=cache), f)
        os.replace(tmp, cache_path)
    return index, no_gt


def select_sequences(available: list[str], split: str = 'train',
                     sequences: list[str] | None = None) -> list[str]:
    """Sequence names of a split: the official one, or an explicit list."""
    if sequences is not None:
        unknown = sorted(set(sequences) - set(available))
        if unknown:
            raise KeyError(f'sequences {unknown} are not among the annotated '
                           f'sequences found ({len(available)})')
        return [s for s in available if s in set(sequences)]
    if split == 'test':
        return [s for s in available if s in OFFICIAL_TEST_SEQUENCES]
    if split == 'train':
        return [s for s in available if s not in OFFICIAL_TEST_SEQUENCES]
    if split == 'all':
        return list(available)
    raise ValueError(f"split must be 'train', 'test' or 'all', got {split!r}")
