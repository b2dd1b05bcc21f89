"""FLSL's views of one image: teacher crop, student crops, query masks (§3-4)."""
from __future__ import annotations

import random
from typing import Sequence

from mmcv.transforms import BaseTransform

from flsl_mm.registry import TRANSFORMS
from .photometric import (bgr_array, check_image, crop_pil, image_hw, photometric_pil,
                          rgb_pil, rgb_tensor)
from .query_mask import query_mask
from .view_params import (FROM_FIRST_VIEW, ViewParams, draw_blur, draw_color,
                          draw_crop, draw_solarize, pack_view_params)


def draw_flsl_photometric(view: ViewParams, blur_p_a: float = 0.5,
                          blur_p_b: float = 0.1, solarize_p: float = 0.2) -> None:
    """ColorJitter(0.4, 0.4, 0.2, 0.1) p .8, grayscale p .2, then with p 0.5
    GaussianBlur(p ``blur_p_a``) else GaussianBlur(p ``blur_p_b``) then
    Solarization(p ``solarize_p``); blur radius uniform in [0.1, 2.0]."""
    draw_color(view)
    if random.random() < 0.5:
        draw_blur(view, blur_p_a)
        return
    draw_blur(view, blur_p_b)
    draw_solarize(view, solarize_p)


@TRANSFORMS.register_module()
class FLSLMultiView(BaseTransform):
    """Make FLSL's views and query masks from ``results['img']`` (BGR uint8).

    1. teacher crop: RandomResizedCrop(``global_size``, ``teacher_scale``) of the
       image; 2. student global crop(s) of *crop 1*; 3. ``num_local_crops`` local
    crops of *crop 1*. All bicubic, no flip; each crop then gets the photometric
    augmentation independently. Output ``results['img']`` is the list
    ``[teacher, student_global..., local...]`` of BGR arrays (normalised later by
    ``MultiViewDataPreprocessor``), and ``results['query_masks']`` the list of
    boolean token masks of the student views (``query_mask`` with the grid
    ``crop_size // patch_size``).

    With ``on_device=True`` the worker only draws: the same parameters, from the
    same generators in the same order, go to ``results['view_params']``
    (:func:`~.view_params.pack_view_params`), ``results['img']`` stays the
    decoded image, and :class:`DeviceViewPreprocessor` makes the views on the
    training device (pack with ``algorithm_keys=['query_masks', 'view_params']``
    and collate with ``pack_images_collate``: images differ in size).

    Args:
        patch_size: backbone patch size (16 or 8), to size the token grids.
        global_size / local_size: crop sizes (224 / 96).
        teacher_scale / student_scale / local_scale: RandomResizedCrop scales
            ((0.8, 1), (0.5, 1), (0.05, 0.4)).
        num_global_crops: student global crops (1); num_local_crops (2).
        global_window / local_window: query windows (3 / 2).
        random_sampling: random instead of top-left query inside each window.
        on_device: draw the parameters only (see above).
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
                 random_sampling: bool = False,
                 on_device: bool = False) -> None:
        for name, size in (('global_size', global_size), ('local_size', local_size)):
            if size % patch_size:
                raise ValueError(f'FLSLMultiView: {name}={size} is not a multiple of '
                                 f'patch_size={patch_size}')
        self.patch_size = patch_size
        self.global_size, self.local_size = global_size, local_size
        self.num_global_crops, self.num_local_crops = num_global_crops, num_local_crops
        self.global_window, self.local_window = global_window, local_window
        self.random_sampling = random_sampling
        self.teacher_scale, self.student_scale = tuple(teacher_scale), tuple(student_scale)
        self.local_scale = tuple(local_scale)
        self.on_device = on_device

    def draw(self, height: int, width: int) -> list[ViewParams]:
        """The views' parameters for a ``height x width`` image: teacher crop of
        the image, student and local crops of the teacher crop, then each
        view's photometric augmentation (the reference's order of draws)."""
        size = self.global_size
        views = [draw_crop(height, width, size, self.teacher_scale)]
        views += [draw_crop(size, size, size, self.student_scale, FROM_FIRST_VIEW)
                  for _ in range(self.num_global_crops)]
        views += [draw_crop(size, size, self.local_size, self.local_scale,
                            FROM_FIRST_VIEW) for _ in range(self.num_local_crops)]
        for view in views:
            draw_flsl_photometric(view)
        return views

    def transform(self, results: dict) -> dict:
        img = check_image(results, 'FLSLMultiView')
        views = self.draw(*image_hw(img))
        g = self.global_size // self.patch_size
        loc = self.local_size // self.patch_size
        masks = [query_mask(g, self.global_window, self.random_sampling)
                 for _ in range(self.num_global_crops)]
        masks += [query_mask(loc, self.local_window, self.random_sampling)
                  for _ in range(self.num_local_crops)]
        results['query_masks'] = masks
        if self.on_device:
            results['view_params'] = pack_view_params(views)
            results['img'] = rgb_tensor(img)
            return results
        crop1 = crop_pil(rgb_pil(img), views[0])
        crops = [crop1] + [crop_pil(crop1, view) for view in views[1:]]
        results['img'] = [bgr_array(photometric_pil(c, v)) for c, v in zip(crops, views)]
        results['img_shape'] = results['img'][0].shape[:2]
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(patch_size={self.patch_size}, '
                f'global_size={self.global_size}, local_size={self.local_size}, '
                f'num_global_crops={self.num_global_crops}, '
                f'num_local_crops={self.num_local_crops}, on_device={self.on_device})')
