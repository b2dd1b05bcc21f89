"""DINO's multi-crop views of one image (Caron et al. 2021, Sec. 3.1; docs/dino.md)."""
from __future__ import annotations

from typing import Sequence

import numpy as np
from mmcv.transforms import BaseTransform
from PIL import Image
from torchvision import transforms as T

from flsl_mm.registry import TRANSFORMS
from .photometric import (bgr_array, color_distortion, gaussian_blur, rgb_image,
                          solarize)


@TRANSFORMS.register_module()
class DINOMultiCrop(BaseTransform):
    """Make DINO's crops from ``results['img']`` (BGR uint8).

    Every crop is a bicubic RandomResizedCrop *of the image*, a horizontal flip
    (p 0.5), colour distortion (jitter 0.4/0.4/0.2/0.1 with p 0.8, grayscale p
    0.2), then

    * global crop 1: Gaussian blur (p 1.0);
    * global crop 2: Gaussian blur (p 0.1), solarisation (p 0.2);
    * each local crop: Gaussian blur (p 0.5).

    Output ``results['img']`` is the list ``[global_1, global_2, local_1, ...]``
    of BGR arrays (normalised later by ``SelfSupDataPreprocessor``).

    Args:
        global_size / local_size: crop sizes (224 / 96).
        global_scale / local_scale: RandomResizedCrop scales ((0.4, 1) / (0.05, 0.4),
            ``main_dino.py``'s defaults).
        num_local_crops: local crops (8 in ``main_dino.py``'s defaults, 10 in the
            published ViT-S/16 runs and our configs).
    """

    def __init__(self,
                 global_size: int = 224,
                 local_size: int = 96,
                 global_scale: Sequence[float] = (0.4, 1.0),
                 local_scale: Sequence[float] = (0.05, 0.4),
                 num_local_crops: int = 8) -> None:
        if num_local_crops < 0:
            raise ValueError(f'DINOMultiCrop: num_local_crops must be >= 0, got '
                             f'{num_local_crops}')
        self.global_size, self.local_size = global_size, local_size
        self.num_local_crops = num_local_crops
        bicubic = T.InterpolationMode.BICUBIC
        self.global_crop = T.RandomResizedCrop(global_size, scale=tuple(global_scale),
                                               interpolation=bicubic)
        self.local_crop = T.RandomResizedCrop(local_size, scale=tuple(local_scale),
                                              interpolation=bicubic)
        self.flip_and_color = T.Compose([T.RandomHorizontalFlip(p=0.5),
                                         color_distortion()])

    def _view(self, img: Image.Image, crop, blur_p: float,
              solarize_p: float = 0.0) -> np.ndarray:
        view = gaussian_blur(self.flip_and_color(crop(img)), blur_p)
        if solarize_p:
            view = solarize(view, solarize_p)
        return bgr_array(view)

    def transform(self, results: dict) -> dict:
        pil = rgb_image(results, 'DINOMultiCrop')
        views = [self._view(pil, self.global_crop, 1.0),
                 self._view(pil, self.global_crop, 0.1, solarize_p=0.2)]
        views += [self._view(pil, self.local_crop, 0.5)
                  for _ in range(self.num_local_crops)]
        results['img'] = views
        results['img_shape'] = views[0].shape[:2]
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(global_size={self.global_size}, '
                f'local_size={self.local_size}, '
                f'num_local_crops={self.num_local_crops})')
