"""DINO's multi-crop views of one image (Caron et al. 2021, Sec. 3.1; docs/dino.md)."""
from __future__ import annotations

from typing import Sequence

from mmcv.transforms import BaseTransform

from flsl_mm.registry import TRANSFORMS
from .photometric import (bgr_array, check_image, crop_pil, image_hw, photometric_pil,
                          rgb_pil, rgb_tensor)
from .view_params import (ViewParams, draw_blur, draw_color, draw_crop, draw_flip,
                          draw_solarize, pack_view_params)


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
    of BGR arrays (normalised later by ``MultiViewDataPreprocessor``).

    With ``on_device=True`` the worker only draws the same parameters
    (``results['view_params']``) and :class:`DeviceViewPreprocessor` makes the
    views on the training device, as for :class:`FLSLMultiView`.

    Args:
        global_size / local_size: crop sizes (224 / 96).
        global_scale / local_scale: RandomResizedCrop scales ((0.4, 1) / (0.05, 0.4),
            ``main_dino.py``'s defaults).
        num_local_crops: local crops (8 in ``main_dino.py``'s defaults, 10 in the
            published ViT-S/16 runs and our configs).
        on_device: draw the parameters only (see above).
    """

    def __init__(self,
                 global_size: int = 224,
                 local_size: int = 96,
                 global_scale: Sequence[float] = (0.4, 1.0),
                 local_scale: Sequence[float] = (0.05, 0.4),
                 num_local_crops: int = 8,
                 on_device: bool = False) -> None:
        if num_local_crops < 0:
            raise ValueError(f'DINOMultiCrop: num_local_crops must be >= 0, got '
                             f'{num_local_crops}')
        self.global_size, self.local_size = global_size, local_size
        self.num_local_crops = num_local_crops
        self.global_scale, self.local_scale = tuple(global_scale), tuple(local_scale)
        self.on_device = on_device

    def draw(self, height: int, width: int) -> list[ViewParams]:
        """The crops' parameters for a ``height x width`` image, in the
        reference's order: each crop's box, flip, colour, blur (solarisation)."""
        plan = [(self.global_size, self.global_scale, 1.0, 0.0),
                (self.global_size, self.global_scale, 0.1, 0.2)]
        plan += [(self.local_size, self.local_scale, 0.5, 0.0)] * self.num_local_crops
        views = []
        for size, scale, blur_p, solarize_p in plan:
            view = draw_crop(height, width, size, scale)
            draw_flip(view)
            draw_color(view)
            draw_blur(view, blur_p)
            if solarize_p:
                draw_solarize(view, solarize_p)
            views.append(view)
        return views

    def transform(self, results: dict) -> dict:
        img = check_image(results, 'DINOMultiCrop')
        views = self.draw(*image_hw(img))
        if self.on_device:
            results['view_params'] = pack_view_params(views)
            results['img'] = rgb_tensor(img)
            return results
        pil = rgb_pil(img)
        results['img'] = [bgr_array(photometric_pil(crop_pil(pil, v), v)) for v in views]
        results['img_shape'] = results['img'][0].shape[:2]
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(global_size={self.global_size}, '
                f'local_size={self.local_size}, '
                f'num_local_crops={self.num_local_crops}, on_device={self.on_device})')
