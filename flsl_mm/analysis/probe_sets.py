"""Labelled image sets for the dense probes (docs/probes.md).

A probe set is a train split (the k-NN memory, the linear probe's training set)
and a val split (what is scored) of images with per-pixel label PNGs. Layouts:

* ``demo``: the embedded demo data (``tools/misc/make_demo_data.py``; its
  random-colour variant is the same layout);
* ``ade20k``: mmseg's ADEChallengeData2016 (``images/{training,validation}/*.jpg``,
  ``annotations/{training,validation}/*.png``; 150 classes, 0 = other -> ignored);
* ``voc``: Pascal VOC 2012 (``JPEGImages``, ``SegmentationClass`` palette PNGs,
  ``ImageSets/Segmentation/{train,val}.txt``; 21 classes, 255 = border);
* ``cityscapes``: ``leftImg8bit/{train,val}/<city>/*_leftImg8bit.png`` with
  ``gtFine/{train,val}/<city>/*_gtFine_labelIds.png`` (label ids mapped to the 19
  train ids, the rest ignored);
* ``folder``: any image folders + label folders (``<stem>.png`` per image).

Each split is capped (``max_train`` / ``max_val``: a subset drawn with ``seed``,
the same for every run, so curves of different runs are comparable) and images
can be scaled to a ``short_side`` (labels by nearest neighbour), so a probe costs
seconds to minutes. :meth:`ProbeSet.load` reads and checks every image and label
once (missing file, undecodable image, label of another size, class id out of
range: an error naming the file) and keeps them in memory for every probe.
"""
from __future__ import annotations

import glob
import json
import os
from dataclasses import dataclass, field

import cv2
import numpy as np

from .dense_probe import IGNORE, labels_to_patches
from flsl_mm.datasets.transforms.loading import LoadImageLikeImageFolder

IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg', '.bmp')

# Cityscapes labelIds -> trainIds (the 19 evaluated classes; everything else ignored)
CITYSCAPES_TRAIN_IDS = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8,
                        22: 9, 23: 10, 24: 11, 25: 12, 26: 13, 27: 14, 28: 15,
                        31: 16, 32: 17, 33: 18}


#: the pretraining loader's decoding (PIL's / torchvision's, EXIF orientation
#: ignored), BGR like OpenCV's: the probes see the pixels training sees
_DECODE = LoadImageLikeImageFolder()


class ProbeSetError(ValueError):
    """A probe set that cannot be used (the message names the path)."""


@dataclass
class ProbeSplit:
    """One split: image paths and their label PNGs (same order); ``ann_file``:
    COCO instances for the bbox-aligned probe (the demo data has them)."""
    images: list[str]
    labels: list[str]
    ann_file: str | None = None


@dataclass
class LoadedSplit:
    """Decoded images (BGR uint8, cropped to whole patches) and patch labels."""
    names: list[str]
    images: list[np.ndarray]
    patch_labels: list[np.ndarray]
    ann_file: str | None = None


@dataclass
class ProbeSet:
    name: str
    train: ProbeSplit
    val: ProbeSplit
    num_classes: int
    ignore_index: int = IGNORE
    #: raw label value -> class id (``IGNORE``: ignored, -1: out of range);
    #: None: values are class ids, ``ignore_index`` ignored
    label_map: np.ndarray | None = field(default=None, repr=False)
    short_side: int | None = None

    def describe(self) -> str:
        size = f', short side {self.short_side}' if self.short_side else ''
        return (f'{self.name}: {len(self.train.images)} train / {len(self.val.images)}'
                f' val images, {self.num_classes} classes{size}')

    def load(self, patch: int, shard: tuple[int, int] = (0, 1)
             ) -> tuple[LoadedSplit, LoadedSplit]:
        """Read and check every image and label; raise :class:`ProbeSetError`
        naming the first bad file. ``shard=(rank, world)``: only that rank's
        contiguous part of each split (:func:`shard_range`), so the ranks of a
        distributed run read, check and embed one part each."""
        return (self._load_split(self.train, patch, shard),
                self._load_split(self.val, patch, shard))

    def _label(self, path: str, image_hw: tuple[int, int]) -> np.ndarray:
        from PIL import Image
        try:
            with Image.open(path) as im:
                # palette PNGs (VOC) give their indices, not colours
                label = np.array(im)
        except FileNotFoundError:
            raise ProbeSetError(f'{path}: label PNG missing') from None
        except Exception as exc:
            raise ProbeSetError(f'{path}: cannot be read as a label PNG ({exc})') \
                from exc
        if label.ndim != 2:
            raise ProbeSetError(f'{path}: a label PNG must have one channel of class '
                                f'ids, this one has shape {label.shape}')
        if label.shape != image_hw:
            raise ProbeSetError(f'{path}: label size {label.shape[1]}x{label.shape[0]} '
                                f'differs from its image\'s {image_hw[1]}x{image_hw[0]}')
        label = label.astype(np.int64)
        if self.label_map is not None:
            if label.min() < 0 or label.max() >= len(self.label_map):
                raise ProbeSetError(f'{path}: label value {label.max()} outside the '
                                    f'label map of {len(self.label_map)} entries')
            mapped = self.label_map[label]
            if (mapped < 0).any():
                value = int(label[mapped < 0][0])
                raise ProbeSetError(
                    f'{path}: class id {value} out of range (label value {value} is '
                    f'neither a class nor ignored; {self.num_classes} classes)')
            label = mapped
        elif self.ignore_index != IGNORE:
            label = np.where(label == self.ignore_index, IGNORE, label)
        bad = (label != IGNORE) & ((label < 0) | (label >= self.num_classes))
        if bad.any():
            value = int(label[bad][0])
            raise ProbeSetError(
                f'{path}: class id {value} out of range (num_classes '
                f'{self.num_classes}, ignore index {self.ignore_index}); wrong '
                'num_classes, or a label set that needs reduce_zero_label / a label map')
        return label.astype(np.int64)

    def _load_split(self, split: ProbeSplit, patch: int,
                    shard: tuple[int, int] = (0, 1)) -> LoadedSplit:
        images, patch_labels, names = [], [], []
        start, end = shard_range(len(split.images), *shard)
        for img_path, label_path in zip(split.images[start:end],
                                        split.labels[start:end]):
            try:  # decoded as the training loader does (no EXIF rotation: the
                # labels are not rotated either)
                img = _DECODE.transform(dict(img_path=img_path))['img']
            except ValueError as exc:
                raise ProbeSetError(f'{img_path}: missing or cannot be decoded as '
                                    f'an image ({exc})') from None
            label = self._label(label_path, img.shape[:2])
            if self.short_side:
                img, label = _rescale(img, label, self.short_side)
            h, w = img.shape[0] // patch * patch, img.shape[1] // patch * patch
            if h == 0 or w == 0:
                raise ProbeSetError(f'{img_path}: {img.shape[1]}x{img.shape[0]} is '
                                    f'smaller than one {patch}-pixel patch')
            images.append(np.ascontiguousarray(img[:h, :w]))
            patch_labels.append(labels_to_patches(label[:h, :w], patch).reshape(-1))
            names.append(os.path.basename(img_path))
        return LoadedSplit(names, images, patch_labels, split.ann_file)


def shard_range(num: int, rank: int, world: int) -> tuple[int, int]:
    """``[start, end)`` of ``rank``'s contiguous part of ``num`` items split over
    ``world`` ranks (sizes differ by at most one; in rank order the parts are
    the whole list, in order)."""
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f'shard_range: rank {rank} of world size {world}')
    return num * rank // world, num * (rank + 1) // world


def _rescale(img: np.ndarray, label: np.ndarray, short_side: int
             ) -> tuple[np.ndarray, np.ndarray]:
    h, w = img.shape[:2]
    scale = short_side / min(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    img = cv2.resize(img, size, interpolation=interp)
    label = cv2.resize(label.astype(np.int32), size, interpolation=cv2.INTER_NEAREST)
    return img, label.astype(np.int64)


def _subset(items: list, cap: int | None, seed: int) -> list:
    """At most ``cap`` items, drawn with ``seed`` (kept in their order)."""
    if cap is None or len(items) <= cap:
        return items
    keep = np.sort(np.random.default_rng(seed).permutation(len(items))[:cap])
    return [items[i] for i in keep]


def _need_dir(path: str, what: str) -> str:
    if not os.path.isdir(path):
        raise ProbeSetError(f'{path}: {what} folder not found')
    return path


def _pairs_from_dirs(img_dir: str, label_dir: str, label_suffix: str = '.png'
                     ) -> list[tuple[str, str]]:
    """(image, label) of every image in ``img_dir`` (sorted); the label is
    ``<image stem><label_suffix>`` in ``label_dir``."""
    _need_dir(img_dir, 'image')
    _need_dir(label_dir, 'label')
    names = sorted(n for n in os.listdir(img_dir) if n.lower().endswith(IMAGE_SUFFIXES))
    if not names:
        raise ProbeSetError(f'{img_dir}: no images ({", ".join(IMAGE_SUFFIXES)})')
    pairs = []
    for n in names:
        stem = os.path.splitext(n)[0]
        pairs.append((os.path.join(img_dir, n),
                      os.path.join(label_dir, stem + label_suffix)))
    return pairs


def _split(pairs: list[tuple[str, str]], cap: int | None, seed: int,
           ann_file: str | None = None) -> ProbeSplit:
    pairs = _subset(pairs, cap, seed)
    for image, label in pairs:
        if not os.path.isfile(label):
            raise ProbeSetError(f'{label}: label PNG missing (for image '
                                f'{os.path.basename(image)})')
    return ProbeSplit([p[0] for p in pairs], [p[1] for p in pairs], ann_file)


def demo_probe_set(data_root: str, max_train: int | None = None,
                   max_val: int | None = None, seed: int = 0,
                   short_side: int | None = None, demo_kwargs: dict | None = None
                   ) -> ProbeSet:
    """The embedded demo data at ``data_root`` (generated there when missing,
    with ``demo_kwargs``, as the demo pretraining configs do)."""
    from flsl_mm.datasets import ensure_demo_data
    if demo_kwargs is not None or not os.path.exists(data_root):
        ensure_demo_data(data_root, **(demo_kwargs or {}))
    meta_path = os.path.join(data_root, 'meta.json')
    if not os.path.isfile(meta_path):
        raise ProbeSetError(f'{meta_path} not found: not a demo data set '
                            '(tools/misc/make_demo_data.py writes one)')
    with open(meta_path) as f:
        num_classes = len(json.load(f)['semantic_classes'])
    # COCO boxes (the bbox probe) are in the images' pixels: not with short_side
    splits = [_split(_pairs_from_dirs(os.path.join(data_root, s, 'images'),
                                      os.path.join(data_root, s, 'semantic')),
                     cap, seed,
                     None if short_side else
                     os.path.join(data_root, 'annotations', f'instances_{s}.json'))
              for s, cap in (('train', max_train), ('val', max_val))]
    return ProbeSet(f'demo data {data_root}', splits[0], splits[1], num_classes,
                    short_side=short_side)


def folder_probe_set(train_img_dir: str, train_label_dir: str, val_img_dir: str,
                     val_label_dir: str, num_classes: int, ignore_index: int = IGNORE,
                     reduce_zero_label: bool = False, max_train: int | None = 500,
                     max_val: int | None = 200, seed: int = 0,
                     short_side: int | None = 224, label_suffix: str = '.png',
                     name: str = 'folders') -> ProbeSet:
    """Image folders + label folders (``<image stem><label_suffix>``).
    ``reduce_zero_label``: label 0 is "other" (ignored), 1..N are classes 0..N-1
    (ADE20K's convention)."""
    label_map = None
    if reduce_zero_label:
        label_map = np.full(65536, -1, np.int64)  # -1: out of range
        label_map[0] = IGNORE
        label_map[1:num_classes + 1] = np.arange(num_classes)
        if 0 <= ignore_index < 65536:
            label_map[ignore_index] = IGNORE
    train = _split(_pairs_from_dirs(train_img_dir, train_label_dir, label_suffix),
                   max_train, seed)
    val = _split(_pairs_from_dirs(val_img_dir, val_label_dir, label_suffix),
                 max_val, seed)
    return ProbeSet(f'{name} {train_img_dir}', train, val, num_classes, ignore_index,
                    label_map, short_side)


def ade20k_probe_set(data_root: str, max_train: int | None = 500,
                     max_val: int | None = 200, seed: int = 0,
                     short_side: int | None = 224) -> ProbeSet:
    """mmseg's ADE20K layout (ADEChallengeData2016), 150 classes."""
    _need_dir(data_root, 'ADE20K data_root')
    j = os.path.join
    return folder_probe_set(
        j(data_root, 'images', 'training'), j(data_root, 'annotations', 'training'),
        j(data_root, 'images', 'validation'), j(data_root, 'annotations', 'validation'),
        num_classes=150, reduce_zero_label=True, max_train=max_train, max_val=max_val,
        seed=seed, short_side=short_side, name='ADE20K')


def voc_probe_set(data_root: str, max_train: int | None = 500,
                  max_val: int | None = 200, seed: int = 0,
                  short_side: int | None = 224) -> ProbeSet:
    """Pascal VOC 2012 segmentation (``data_root`` holds ``JPEGImages``,
    ``SegmentationClass``, ``ImageSets/Segmentation``), 21 classes."""
    _need_dir(data_root, 'VOC data_root')
    splits = []
    for split, cap in (('train', max_train), ('val', max_val)):
        listing = os.path.join(data_root, 'ImageSets', 'Segmentation', f'{split}.txt')
        if not os.path.isfile(listing):
            raise ProbeSetError(f'{listing}: VOC split list not found')
        with open(listing) as f:
            ids = [line.strip() for line in f if line.strip()]
        if not ids:
            raise ProbeSetError(f'{listing}: empty split list')
        pairs = [(os.path.join(data_root, 'JPEGImages', i + '.jpg'),
                  os.path.join(data_root, 'SegmentationClass', i + '.png'))
                 for i in ids]
        splits.append(_split(pairs, cap, seed))
    return ProbeSet(f'Pascal VOC {data_root}', splits[0], splits[1], 21,
                    short_side=short_side)


def cityscapes_probe_set(data_root: str, max_train: int | None = 500,
                         max_val: int | None = 200, seed: int = 0,
                         short_side: int | None = 224) -> ProbeSet:
    """Cityscapes fine annotations: ``*_gtFine_labelIds.png`` mapped to the 19
    train ids (other label ids ignored)."""
    _need_dir(data_root, 'Cityscapes data_root')
    label_map = np.full(256, IGNORE, np.int64)
    for label_id, train_id in CITYSCAPES_TRAIN_IDS.items():
        label_map[label_id] = train_id
    splits = []
    for split, cap in (('train', max_train), ('val', max_val)):
        img_root = _need_dir(os.path.join(data_root, 'leftImg8bit', split), 'image')
        images = sorted(glob.glob(os.path.join(img_root, '*', '*_leftImg8bit.png')))
        if not images:
            raise ProbeSetError(f'{img_root}: no */*_leftImg8bit.png images')
        pairs = []
        for img in images:
            city = os.path.basename(os.path.dirname(img))
            stem = os.path.basename(img)[:-len('_leftImg8bit.png')]
            pairs.append((img, os.path.join(data_root, 'gtFine', split, city,
                                            stem + '_gtFine_labelIds.png')))
        splits.append(_split(pairs, cap, seed))
    return ProbeSet(f'Cityscapes {data_root}', splits[0], splits[1], 19,
                    label_map=label_map, short_side=short_side)


PROBE_SETS = dict(demo=demo_probe_set, folder=folder_probe_set, ade20k=ade20k_probe_set,
                  voc=voc_probe_set, cityscapes=cityscapes_probe_set)


def build_probe_set(cfg: dict, seed: int = 0) -> ProbeSet:
    """``dict(type=<layout>, **arguments of its builder)``; unknown types or
    arguments are refused with the accepted ones."""
    import inspect
    cfg = dict(cfg)
    kind = cfg.pop('type', None)
    if kind not in PROBE_SETS:
        raise ProbeSetError(f'probe set type {kind!r}: expected one of '
                            f'{sorted(PROBE_SETS)} (docs/probes.md)')
    builder = PROBE_SETS[kind]
    accepted = set(inspect.signature(builder).parameters) - {'name'}
    unknown = set(cfg) - accepted
    if unknown:
        raise ProbeSetError(f'probe set {kind!r}: unknown argument(s) '
                            f'{sorted(unknown)}; accepted: {sorted(accepted)}')
    cfg.setdefault('seed', seed)
    return builder(**cfg)
