"""The random parameters of one view (crop, flip, colour jitter, grayscale, blur,
solarisation), drawn as the reference transforms draw them.

Both view paths use these functions: the CPU path applies the parameters with PIL
in the loader worker (:mod:`.photometric`), the device path ships them with the
decoded image and applies them on the training device
(:class:`~flsl_mm.models.data_preprocessors.DeviceViewPreprocessor`). The draws
are those of torchvision's parameter samplers (``RandomResizedCrop.get_params``
and ``ColorJitter.get_params``, re-written draw for draw at a fraction of the
cost and tested against them) in the reference order: torch's generator
for the crop, flip, the jitter gate and factors and grayscale, Python's
``random`` for blur and solarisation (docs/pretraining.md, "Views").
"""
from __future__ import annotations

import functools
import math
import random
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torchvision import transforms as T

#: ColorJitter(0.4, 0.4, 0.2, 0.1) of BYOL / DINO / FLSL, applied with p 0.8
JITTER = T.ColorJitter(0.4, 0.4, 0.2, 0.1)
JITTER_P, GRAYSCALE_P = 0.8, 0.2
BLUR_RADIUS = (0.1, 2.0)
#: the source of a crop: the decoded image, or the first view before its
#: photometric augmentation (FLSL's student and local crops are crops of it)
FROM_IMAGE, FROM_FIRST_VIEW = -1, 0


@dataclass
class ViewParams:
    """One view: ``box`` (top, left, height, width) in its ``source``, resized
    to ``size`` x ``size``; then ``flip``, colour jitter (``jitter_order``: the
    order of brightness 0 / contrast 1 / saturation 2 / hue 3, ``jitter``: their
    factors; ``None``: no jitter), ``gray``, blur of ``blur_radius`` (0: none),
    ``solarize``."""
    box: tuple[int, int, int, int]
    size: int
    source: int = FROM_IMAGE
    flip: bool = False
    jitter_order: tuple[int, ...] | None = None
    jitter: tuple[float, float, float, float] | None = None
    gray: bool = False
    blur_radius: float = 0.0
    solarize: bool = False


@functools.lru_cache(maxsize=8)
def _log_ratio(ratio: tuple[float, float]) -> tuple[float, float]:
    """torchvision's ``torch.log(torch.tensor(ratio))`` (float32), as floats."""
    lo, hi = torch.log(torch.tensor(list(ratio), dtype=torch.float32)).tolist()
    return lo, hi


def crop_box(height: int, width: int, scale: Sequence[float],
             ratio: Sequence[float] = (3 / 4, 4 / 3)) -> tuple[int, int, int, int]:
    """``RandomResizedCrop.get_params`` of torchvision: the same draws from
    torch's generator, the same box (tested draw for draw against it), at a
    third of its cost (one scratch tensor per call instead of one per draw;
    the loader worker's time is what the device view path is for)."""
    area = height * width
    lo, hi = _log_ratio(tuple(ratio))
    u = torch.empty(1)  # torch's default dtype, as torchvision's torch.empty(1)
    n = torch.empty(1, dtype=torch.int64)
    for _ in range(10):
        target_area = area * u.uniform_(scale[0], scale[1]).item()
        aspect_ratio = u.uniform_(lo, hi).exp_().item()
        w = int(round(math.sqrt(target_area * aspect_ratio)))
        h = int(round(math.sqrt(target_area / aspect_ratio)))
        if 0 < w <= width and 0 < h <= height:
            i = n.random_(0, height - h + 1).item()
            j = n.random_(0, width - w + 1).item()
            return i, j, h, w
    in_ratio = float(width) / float(height)  # torchvision's fallback: central crop
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def draw_crop(height: int, width: int, size: int, scale: Sequence[float],
              source: int = FROM_IMAGE,
              ratio: Sequence[float] = (3 / 4, 4 / 3)) -> ViewParams:
    """``RandomResizedCrop(size, scale, ratio)``'s box of a ``height x width``
    source."""
    return ViewParams(box=crop_box(height, width, scale, ratio), size=size,
                      source=source)


def _f32(p: float) -> float:
    """``p`` rounded to float32: torchvision compares ``torch.rand(1) < p`` in
    float32, a float comparison with this is the same and 3x cheaper."""
    return float(np.float32(p))


def draw_flip(view: ViewParams, p: float = 0.5) -> None:
    """``RandomHorizontalFlip(p)``."""
    view.flip = torch.rand(1).item() < _f32(p)


def jitter_params(brightness=JITTER.brightness, contrast=JITTER.contrast,
                  saturation=JITTER.saturation, hue=JITTER.hue):
    """``ColorJitter.get_params`` of torchvision (the same draws and values,
    tested against it; one scratch tensor): the order of the four operations
    and their factors."""
    order = torch.randperm(4).tolist()
    u = torch.empty(1)
    factors = tuple(None if r is None else u.uniform_(r[0], r[1]).item()
                    for r in (brightness, contrast, saturation, hue))
    return order, factors


def draw_color(view: ViewParams) -> None:
    """``RandomApply([ColorJitter(0.4, 0.4, 0.2, 0.1)], p=0.8)`` then
    ``RandomGrayscale(p=0.2)``."""
    if not _f32(JITTER_P) < torch.rand(1).item():
        order, factors = jitter_params()
        view.jitter_order = tuple(order)
        view.jitter = factors
    view.gray = torch.rand(1).item() < _f32(GRAYSCALE_P)


def draw_blur(view: ViewParams, p: float) -> None:
    """With probability ``p``: Gaussian blur of radius uniform in [0.1, 2]."""
    if not random.random() > p:
        view.blur_radius = random.uniform(*BLUR_RADIUS)


def draw_solarize(view: ViewParams, p: float) -> None:
    """With probability ``p``: solarisation (threshold 128)."""
    view.solarize = random.random() < p


def pack_view_params(views: Sequence[ViewParams]) -> dict[str, np.ndarray]:
    """The views of one sample as arrays (what the loader sends to the device)."""
    order = [v.jitter_order or (0, 1, 2, 3) for v in views]
    return dict(
        box=np.array([v.box for v in views], dtype=np.int32).reshape(-1, 4),
        size=np.array([v.size for v in views], dtype=np.int32),
        source=np.array([v.source for v in views], dtype=np.int8),
        flip=np.array([v.flip for v in views], dtype=bool),
        jitter_on=np.array([v.jitter is not None for v in views], dtype=bool),
        jitter_order=np.array(order, dtype=np.int8).reshape(-1, 4),
        jitter=np.array([v.jitter or (1.0, 1.0, 1.0, 0.0) for v in views],
                        dtype=np.float64).reshape(-1, 4),
        gray=np.array([v.gray for v in views], dtype=bool),
        blur_radius=np.array([v.blur_radius for v in views], dtype=np.float64),
        solarize=np.array([v.solarize for v in views], dtype=bool))


__all__ = ['ViewParams', 'crop_box', 'jitter_params', 'draw_crop', 'draw_flip', 'draw_color', 'draw_blur',
           'draw_solarize', 'pack_view_params', 'FROM_IMAGE', 'FROM_FIRST_VIEW']
