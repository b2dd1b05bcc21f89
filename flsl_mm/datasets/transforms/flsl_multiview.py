"""FLSL's views of one image: teacher crop, student crops, query masks (§3-4)."""
from __future__ import annotations

import random
from typing import Sequence

from mmcv.transforms import BaseTransform
from PIL import Image
from torchvision import transforms as T

from flsl_mm.registry import TRANSFORMS
from .photometric import (bgr_array, color_distortion, gaussian_blur, rgb_image,
                          solarize)
from .query_mask import query_mask


class _PhotometricAug:
    """ColorJitter(0.4, 0.4, 0.2, 0.1) p .8, grayscale p .2, then blur/solarise.

    With p 0.5 GaussianBlur(p ``blur_p_a``) else GaussianBlur(p ``blur_p_b``) then
    Solarization(p ``solarize_p``); blur radius uniform in [0.1, 2.0] per call.
    """

    def __init__(self, blur_p_a: float = 0.5, blur_p_b: float = 0.1,
                 solarize_p: float = 0.2) -> None:
        self.color = color_distortion()
        self.blur_p_a, self.blur_p_b, self.solarize_p = blur_p_a, blur_p_b, solarize_p

    def __call__(self, img: Image.Image) -> Image.Image:
        img = self.color(img)
        if random.random() < 0.5:
            return gaussian_blur(img, self.blur_p_a)
        img = gaussian_blur(img, self.blur_p_b)
        return solarize(img, self.solarize_p)


@TRANSFORMS.register_module()
class FLSLMultiView(BaseTransform):
    """Make FLSL's views and query masks from ``results['img']`` (BGR uint8).

    1. teacher crop: RandomResizedCrop(``global_size``, ``teacher_scale``) of the
       image; 2. student global crop(s) of *crop 1*; 3. ``num_local_crops`` local
    crops of *crop 1*. All bicubic, no flip; each crop then gets the photometric
    augmentation independently. Output ``results['img']`` is the list
    ``[teacher, student_global..., local...]`` of BGR arrays (normalised later by
    ``SelfSupDataPreprocessor``), and ``results['query_masks']`` the list of
    boolean token masks of the student views (``query_mask`` with the grid
    ``crop_size // patch_size``).

    Args:
        patch_size: backbone patch size (16 or 8), to size the token grids.
        global_size / local_size: crop sizes (224 / 96).
        teacher_scale / student_scale / local_scale: RandomResizedCrop scales
            ((0.8, 1), (0.5, 1), (0.05, 0.4)).
        num_global_crops: student global crops (1); num_local_crops (2).
        global_window / local_window: query windows (3 / 2).
        random_sampling: random instead of top-left query inside each window.
    """

    def __init__(self,
                 patch_size: int = 16,
                 global_size: int = 224,
                 local_size: int = 96,
                 teacher_scale: Sequence[float] = (0.8, 1.0),
                 student_scale: Sequence[float] = (0.5, 1.0),
                 local_scale: Sequence[float] = (0.05, 0.4),
                 num_global_crops: int = 1,
                 num_local_crops: int = 2,
                 global_window: int = 3,
                 local_window: int = 2,
                 random_sampling: bool = False) -> None:
        for name, size in (('global_size', global_size), ('local_size', local_size)):
            if size % patch_size:
                raise ValueError(f'FLSLMultiView: {name}={size} is not a multiple of '
                                 f'patch_size={patch_size}')
        self.patch_size = patch_size
        self.global_size, self.local_size = global_size, local_size
        self.num_global_crops, self.num_local_crops = num_global_crops, num_local_crops
        self.global_window, self.local_window = global_window, local_window
        self.random_sampling = random_sampling
        bicubic = T.InterpolationMode.BICUBIC
        self.teacher_crop = T.RandomResizedCrop(global_size, scale=tuple(teacher_scale),
                                                interpolation=bicubic)
        self.student_crop = T.RandomResizedCrop(global_size, scale=tuple(student_scale),
                                                interpolation=bicubic)
        self.local_crop = T.RandomResizedCrop(local_size, scale=tuple(local_scale),
                                              interpolation=bicubic)
        self.photometric = _PhotometricAug()

    def transform(self, results: dict) -> dict:
        pil = rgb_image(results, 'FLSLMultiView')
        crop1 = self.teacher_crop(pil)
        crops = [crop1]
        crops += [self.student_crop(crop1) for _ in range(self.num_global_crops)]
        crops += [self.local_crop(crop1) for _ in range(self.num_local_crops)]
        views = [bgr_array(self.photometric(c)) for c in crops]
        g = self.global_size // self.patch_size
        loc = self.local_size // self.patch_size
        masks = [query_mask(g, self.global_window, self.random_sampling)
                 for _ in range(self.num_global_crops)]
        masks += [query_mask(loc, self.local_window, self.random_sampling)
                  for _ in range(self.num_local_crops)]
        results['img'] = views
        results['query_masks'] = masks
        results['img_shape'] = views[0].shape[:2]
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(patch_size={self.patch_size}, '
                f'global_size={self.global_size}, local_size={self.local_size}, '
                f'num_global_crops={self.num_global_crops}, '
                f'num_local_crops={self.num_local_crops})')
