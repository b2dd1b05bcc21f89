"""DAVIS-2017 on disk (``JPEGImages/480p``, ``Annotations/480p``,
``ImageSets/2017/<split>.txt``) and a small generated set in the same layout."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from flsl_mm.utils.generated import atomic_directory, ensure_generated

IMAGES = Path('JPEGImages') / '480p'
ANNOTATIONS = Path('Annotations') / '480p'
IMAGE_SETS = Path('ImageSets') / '2017'
# DAVIS' own palette for ids 0..N (0 black, 1 red, 2 green, ...)
DAVIS_PALETTE = [0, 0, 0, 128, 0, 0, 0, 128, 0, 128, 128, 0, 0, 0, 128, 128, 0, 128,
                 0, 128, 128, 128, 128, 128, 64, 0, 0, 191, 0, 0, 64, 128, 0]


class DAVISFormatError(ValueError):
    """The DAVIS folder does not have the expected layout; says which file."""


@dataclass
class DAVISSequence:
    name: str
    frames: list[Path]  # JPEGs in order
    first_annotation: Path  # the GT of frame 0 (the only one propagation reads)


def read_split(root: str | os.PathLike, split: str) -> list[str]:
    path = Path(root) / IMAGE_SETS / f'{split}.txt'
    if not path.is_file():
        raise DAVISFormatError(f'{path}: missing; expected the DAVIS-2017 split file '
                               f'listing the {split} sequences (is --data-root the '
                               'DAVIS folder?)')
    names = [n.strip() for n in path.read_text().splitlines() if n.strip()]
    if not names:
        raise DAVISFormatError(f'{path}: lists no sequence')
    return names


def load_sequence(root: str | os.PathLike, name: str) -> DAVISSequence | None:
    """The frames of ``name`` and its first annotation; None (to be skipped and
    reported) when the sequence has no images or no annotations at all."""
    root = Path(root)
    img_dir, ann_dir = root / IMAGES / name, root / ANNOTATIONS / name
    frames = sorted(img_dir.glob('*.jpg'))
    anns = sorted(ann_dir.glob('*.png'))
    if not frames or not anns:
        return None
    if len(anns) != len(frames):
        raise DAVISFormatError(f'{ann_dir}: {len(anns)} annotation PNGs for '
                               f'{len(frames)} frames in {img_dir}')
    if anns[0].stem != frames[0].stem:
        raise DAVISFormatError(f'{anns[0]}: first annotation does not match the first '
                               f'frame {frames[0].name}')
    return DAVISSequence(name, frames, anns[0])


def write_index_png(path: str | os.PathLike, ids: np.ndarray,
                    palette: list[int] | None = None) -> None:
    """Write ``ids`` as a palette PNG, atomically (a temporary file renamed)."""
    from PIL import Image
    path = Path(path)
    im = Image.fromarray(ids.astype(np.uint8), mode='P')
    im.putpalette(palette or DAVIS_PALETTE)
    tmp = path.with_name(f'.{path.name}.partial')
    im.save(tmp, format='PNG')
    os.replace(tmp, path)


def read_palette(path: str | os.PathLike) -> list[int] | None:
    from PIL import Image
    with Image.open(path) as im:
        return im.getpalette()


def make_davis_demo(root: str | os.PathLike, num_sequences: int = 3,
                    num_frames: int = 8, size: tuple[int, int] = (192, 320),
                    seed: int = 0) -> Path:
    """A small DAVIS-2017 layout: textured background, 1-3 objects per video
    (discs and boxes with their own textures) that move a few pixels a frame.
    Frames are ``size`` = (height, width), not square, width a multiple of 64.
    All sequences are in ``val`` (and ``train``). Written atomically."""
    import cv2
    root = Path(root)
    h, w = size
    names = [f'demo-{i:02d}' for i in range(num_sequences)]
    with atomic_directory(root) as tmp:
        for s, name in enumerate(names):
            rng = np.random.RandomState(seed * 100 + s)
            (tmp / IMAGES / name).mkdir(parents=True)
            (tmp / ANNOTATIONS / name).mkdir(parents=True)
            bg = rng.randint(60, 200, (h // 8 + 1, w // 8 + 1, 3)).astype(np.uint8)
            bg = cv2.resize(bg, (w, h), interpolation=cv2.INTER_CUBIC)
            objects = []
            for k in range(1 + s % 3):
                colour = rng.randint(0, 256, 3)
                radius = rng.randint(h // 10, h // 5)
                x, y = rng.uniform(radius, w - radius), rng.uniform(radius, h - radius)
                vx, vy = rng.uniform(-6, 6), rng.uniform(-3, 3)
                objects.append((colour, radius, x, y, vx, vy, k % 2))
            for t in range(num_frames):
                img = bg.copy()
                ids = np.zeros((h, w), np.uint8)
                for k, (colour, radius, x, y, vx, vy, box) in enumerate(objects):
                    cx = int(np.clip(x + vx * t, radius, w - radius))
                    cy = int(np.clip(y + vy * t, radius, h - radius))
                    mask = np.zeros((h, w), np.uint8)
                    if box:
                        cv2.rectangle(mask, (cx - radius, cy - radius // 2),
                                      (cx + radius, cy + radius // 2), 1, -1)
                    else:
                        cv2.circle(mask, (cx, cy), radius, 1, -1)
                    stripes = ((np.arange(w)[None, :] // 4 + k) % 2).astype(np.uint8)
                    tex = np.clip(colour[None, None, :] * (0.7 + 0.3 * stripes[..., None]),
                                  0, 255).astype(np.uint8)
                    img[mask > 0] = tex.repeat(h, 0)[mask > 0]
                    ids[mask > 0] = k + 1
                cv2.imwrite(str(tmp / IMAGES / name / f'{t:05d}.jpg'), img,
                            [cv2.IMWRITE_JPEG_QUALITY, 95])
                write_index_png(tmp / ANNOTATIONS / name / f'{t:05d}.png', ids)
        (tmp / IMAGE_SETS).mkdir(parents=True)
        for split in ('train', 'val'):
            (tmp / IMAGE_SETS / f'{split}.txt').write_text('\n'.join(names) + '\n')
    return root


def ensure_davis_demo(root: str | os.PathLike, **kwargs) -> Path:
    """Write the demo set at ``root`` unless it is there."""
    return ensure_generated(root, IMAGE_SETS / 'val.txt', make_davis_demo, **kwargs)
