"""Photometric augmentations shared by FLSL's and DINO's views (BYOL / DINO's).

Each draws from Python's ``random`` (and torchvision's colour jitter from torch's
generator), in the order of the reference transforms.
"""
from __future__ import annotations

import random

import numpy as np
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


def rgb_image(results: dict, transform: str) -> Image.Image:
    """``results['img']`` (BGR uint8 HxWx3) as an RGB PIL image; anything else is
    refused naming the file."""
    img = results['img']
    if not isinstance(img, np.ndarray) or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f'{transform} needs an HxWx3 image, got '
                         f'{getattr(img, "shape", type(img))} for '
                         f'{results.get("img_path", "<unknown image>")}')
    return Image.fromarray(np.ascontiguousarray(img[..., ::-1]))


def bgr_array(img: Image.Image) -> np.ndarray:
    """An RGB PIL view back to a contiguous BGR uint8 array."""
    return np.ascontiguousarray(np.asarray(img)[..., ::-1])


__all__ = ['color_distortion', 'gaussian_blur', 'solarize', 'rgb_image', 'bgr_array']
