"""Photometric augmentations shared by FLSL's and DINO's views (BYOL / DINO's).

Each draws from Python's ``random`` (and torchvision's colour jitter from torch's
generator), in the order of the reference transforms.
"""
from __future__ import annotations

import random

from PIL import Image, ImageFilter, ImageOps
from torchvision import transforms as T


def color_distortion() -> T.Compose:
    """ColorJitter(0.4, 0.4, 0.2, 0.1) with p 0.8, then grayscale with p 0.2."""
    return T.Compose([
        T.RandomApply([T.ColorJitter(0.4, 0.4, 0.2, 0.1)], p=0.8),
        T.RandomGrayscale(p=0.2)])


def gaussian_blur(img: Image.Image, p: float) -> Image.Image:
    """With probability ``p``: Gaussian blur of radius uniform in [0.1, 2.0]."""
    if random.random() > p:
        return img
    return img.filter(ImageFilter.GaussianBlur(radius=random.uniform(0.1, 2.0)))


def solarize(img: Image.Image, p: float) -> Image.Image:
    """With probability ``p``: solarisation (threshold 128)."""
    if random.random() < p:
        return ImageOps.solarize(img)
    return img


__all__ = ['color_distortion', 'gaussian_blur', 'solarize']
