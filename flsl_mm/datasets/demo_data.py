"""The embedded demo data: a deterministic "things and stuff" image set.

Each image has textured *stuff* regions (sky, grass, road) and a few
non-overlapping *things* (circle, square, triangle) of random size, colour shade
and position. Written per split:

``<root>/<split>/images/*.png``, ``<root>/<split>/semantic/*.png`` (per-pixel class
ids, see :data:`SEMANTIC_CLASSES`, 255 = none) and
``<root>/annotations/instances_<split>.json`` (COCO instances of the things:
boxes, polygon masks, areas). ``<root>/meta.json`` records the generator settings;
it is written last, so a present ``meta.json`` means a complete data set.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import cv2
import numpy as np

from flsl_mm.utils.generated import atomic_directory, ensure_generated

STUFF_CLASSES = ('sky', 'grass', 'road')
THING_CLASSES = ('circle', 'square', 'triangle')
SEMANTIC_CLASSES = STUFF_CLASSES + THING_CLASSES
GENERATOR_VERSION = 1

_THING_COLOURS = {'circle': (60, 60, 220), 'square': (40, 200, 230),
                  'triangle': (200, 60, 160)}  # BGR base shades


def _random_colour(rng: np.random.RandomState) -> np.ndarray:
    return rng.uniform(40, 230, size=3)


def _stuff(rng: np.random.RandomState, h: int, w: int, random_colours: bool = False
           ) -> tuple[np.ndarray, np.ndarray]:
    """Background image and its stuff label map.

    Each stuff class has its own structure (sky: smooth vertical gradient, grass:
    strong pixel noise, road: diagonal stripes); ``random_colours`` draws each
    region's base colour at random instead of from its class."""
    img = np.zeros((h, w, 3), np.float32)
    label = np.zeros((h, w), np.uint8)
    horizon = int(h * rng.uniform(0.25, 0.5))
    ys, xs = np.mgrid[0:h, 0:w]
    # sky: vertical blue gradient + soft noise
    sky_base = _random_colour(rng) if random_colours else np.array([230, 180, 120])
    sky = sky_base - np.stack([60 * ys / h, 50 * ys / h, 0 * ys], -1)
    # ground split by a slanted line into grass (left) and road (right)
    x0, x1 = rng.uniform(0.2, 0.8, size=2) * w
    boundary = x0 + (x1 - x0) * (ys - horizon) / max(h - horizon, 1)
    ground = ys >= horizon
    road = ground & (xs >= boundary)
    grass = ground & ~road
    img[~ground] = sky[~ground]
    label[~ground] = 0
    grass_base = _random_colour(rng) if random_colours else np.array([50, 150, 60])
    grass_tex = rng.normal(0, 25, (h, w, 1)) + grass_base
    img[grass] = grass_tex[grass]
    label[grass] = 1
    stripes = 20 * (np.sin(xs / 3.0 + ys / 7.0) > 0)[..., None]
    road_base = _random_colour(rng) if random_colours else np.array([110, 110, 110])
    road_tex = road_base + stripes + rng.normal(0, 6, (h, w, 1))
    img[road] = road_tex[road]
    label[road] = 2
    img += rng.normal(0, 4, img.shape)
    return img, label


def _thing_polygon(rng: np.random.RandomState, kind: str, cx: float, cy: float,
                   r: float) -> np.ndarray:
    if kind == 'circle':
        return cv2.ellipse2Poly((int(cx), int(cy)), (int(r), int(r)), 0, 0, 360, 15)
    if kind == 'square':
        angle = rng.uniform(0, np.pi / 2)
        offs = [angle + k * np.pi / 2 + np.pi / 4 for k in range(4)]
    else:
        angle = rng.uniform(0, 2 * np.pi)
        offs = [angle + k * 2 * np.pi / 3 for k in range(3)]
    return np.array([[cx + r * np.cos(a), cy + r * np.sin(a)] for a in offs]).round()


def make_image(rng: np.random.RandomState, h: int, w: int, max_things: int,
               random_colours: bool = False
               ) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """One image (BGR uint8), its semantic map and its thing instances."""
    img, label = _stuff(rng, h, w, random_colours)
    occupied = np.zeros((h, w), bool)
    instances = []
    for _ in range(rng.randint(1, max_things + 1)):
        kind = THING_CLASSES[rng.randint(len(THING_CLASSES))]
        for _attempt in range(20):
            r = rng.uniform(0.08, 0.2) * min(h, w)
            cx, cy = rng.uniform(r + 1, w - r - 1), rng.uniform(r + 1, h - r - 1)
            poly = _thing_polygon(rng, kind, cx, cy, r).astype(np.int32)
            mask = np.zeros((h, w), np.uint8)
            cv2.fillPoly(mask, [poly], 1)
            mask = mask.astype(bool)
            if mask.sum() > 16 and not (mask & occupied).any():
                break
        else:
            continue
        occupied |= mask
        shade = (_random_colour(rng) if random_colours else
                 np.array(_THING_COLOURS[kind], np.float32) * rng.uniform(0.75, 1.1))
        img[mask] = shade + rng.normal(0, 8, (int(mask.sum()), 3))
        label[mask] = SEMANTIC_CLASSES.index(kind)
        x, y, bw, bh = cv2.boundingRect(poly)
        instances.append(dict(category=kind, bbox=[float(x), float(y), float(bw),
                                                   float(bh)],
                              segmentation=[poly.reshape(-1).astype(float).tolist()],
                              area=float(mask.sum())))
    return np.clip(img, 0, 255).astype(np.uint8), label, instances


def make_demo_data(root: str | os.PathLike, num_train: int = 64, num_val: int = 16,
                   img_size: tuple[int, int] = (128, 160), max_things: int = 4,
                   seed: int = 0, overwrite: bool = False,
                   random_colours: bool = False) -> Path:
    """Write the demo data set to ``root`` (deterministic given the arguments).

    The set is written to a temporary sibling folder and moved into place at the
    end, so an interrupted run never leaves a half-written ``root``.

    Args:
        root: output folder.
        num_train / num_val: images per split.
        img_size: ``(height, width)``.
        max_things: at most this many things per image (at least one).
        seed: random seed.
        overwrite: replace an existing ``root``.
        random_colours: give every region and thing a random colour, so that
            classes differ only by shape (things) and texture (stuff); colour
            alone then cannot tell them apart (a harder probe set).
    """
    root = Path(root)
    settings = dict(version=GENERATOR_VERSION, num_train=num_train, num_val=num_val,
                    img_size=list(img_size), max_things=max_things, seed=seed,
                    random_colours=random_colours)
    if root.exists():
        if not overwrite:
            raise FileExistsError(f'{root} exists; pass overwrite=True to replace it')
        shutil.rmtree(root)
    with atomic_directory(root) as tmp:
        rng = np.random.RandomState(seed)
        h, w = img_size
        categories = [dict(id=i + 1, name=n, supercategory='thing')
                      for i, n in enumerate(THING_CLASSES)]
        for split, count in (('train', num_train), ('val', num_val)):
            (tmp / split / 'images').mkdir(parents=True)
            (tmp / split / 'semantic').mkdir(parents=True)
            images, annotations = [], []
            for i in range(count):
                img, label, instances = make_image(rng, h, w, max_things,
                                                      random_colours)
                name = f'{split}_{i:05d}.png'
                cv2.imwrite(str(tmp / split / 'images' / name), img)
                cv2.imwrite(str(tmp / split / 'semantic' / name), label)
                images.append(dict(id=i + 1, file_name=name, height=h, width=w))
                for inst in instances:
                    annotations.append(dict(
                        id=len(annotations) + 1, image_id=i + 1,
                        category_id=THING_CLASSES.index(inst['category']) + 1,
                        bbox=inst['bbox'], segmentation=inst['segmentation'],
                        area=inst['area'], iscrowd=0))
            (tmp / 'annotations').mkdir(exist_ok=True)
            with open(tmp / 'annotations' / f'instances_{split}.json', 'w') as f:
                json.dump(dict(images=images, annotations=annotations,
                               categories=categories), f)
        settings['semantic_classes'] = list(SEMANTIC_CLASSES)
        with open(tmp / 'meta.json', 'w') as f:
            json.dump(settings, f, indent=1)
    return root


def ensure_demo_data(root: str | os.PathLike, **kwargs) -> Path:
    """Generate the demo data at ``root`` unless a complete set is there.

    Safe when several processes call it at once: each writes to its own temporary
    folder and the first to finish moves it into place.
    """
    root = Path(root)
    if (root / 'meta.json').is_file():
        _check_settings(root, kwargs)
        return root
    if root.exists() and any(root.iterdir()):
        raise FileExistsError(f'{root} exists but holds no demo meta.json; it is not '
                              'a (complete) demo data set. Remove it or choose another '
                              'data_root.')
    if root.exists():
        root.rmdir()  # an empty folder: generate into it
    ensure_generated(root, 'meta.json', make_demo_data, **kwargs)
    _check_settings(root, kwargs)  # another process may have won with others
    return root


def _check_settings(root: Path, requested: dict) -> None:
    """Refuse a set generated with other settings than the ones asked for.

    Only the settings passed explicitly are compared; ``img_size`` is stored as a
    list in ``meta.json``.
    """
    with open(root / 'meta.json') as f:
        meta = json.load(f)
    wrong = []
    for key, want in requested.items():
        if key == 'overwrite':
            continue
        want = list(want) if isinstance(want, tuple) else want
        if meta.get(key) != want:
            wrong.append(f'{key}={meta.get(key)!r} (asked for {want!r})')
    if wrong:
        raise ValueError(f'{root / "meta.json"}: this demo data set was generated '
                         f'with other settings: {", ".join(wrong)}. Delete {root} '
                         'to regenerate it, or choose another data_root.')
