"""The CPU view path: a view's drawn parameters (:mod:`.view_params`) applied with
PIL, exactly as the reference transforms apply them (BYOL / DINO / FLSL); and the
image forms the view transforms accept."""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageFilter, ImageOps
from torchvision.transforms import functional as F

from .view_params import ViewParams

_JITTER_OPS = (F.adjust_brightness, F.adjust_contrast, F.adjust_saturation,
               F.adjust_hue)


def crop_pil(img: Image.Image, view: ViewParams) -> Image.Image:
    """The view's crop, bicubic-resized to its size, then its flip."""
    top, left, height, width = view.box
    out = F.resized_crop(img, top, left, height, width, [view.size, view.size],
                         interpolation=F.InterpolationMode.BICUBIC)
    return F.hflip(out) if view.flip else out


def photometric_pil(img: Image.Image, view: ViewParams) -> Image.Image:
    """Colour jitter (in the drawn order), grayscale, blur, solarisation."""
    if view.jitter is not None:
        for op in view.jitter_order:
            img = _JITTER_OPS[op](img, view.jitter[op])
    if view.gray:
        img = F.rgb_to_grayscale(img, num_output_channels=3)
    if view.blur_radius:
        img = img.filter(ImageFilter.GaussianBlur(radius=view.blur_radius))
    if view.solarize:
        img = ImageOps.solarize(img)
    return img


def check_image(results: dict, transform: str) -> np.ndarray | torch.Tensor:
    """``results['img']``: a BGR ``HxWx3`` array (mmcv's loaders) or an RGB
    ``3xHxW`` uint8 tensor (``LoadImageLikeImageFolder(to_tensor=True)``); else
    a ``ValueError`` naming the file."""
    img = results['img']
    ok = (isinstance(img, np.ndarray) and img.ndim == 3 and img.shape[2] == 3) or (
        isinstance(img, torch.Tensor) and img.ndim == 3 and img.shape[0] == 3)
    if not ok:
        raise ValueError(f'{transform} needs an HxWx3 array or a 3xHxW tensor, got '
                         f'{getattr(img, "shape", type(img))} for '
                         f'{results.get("img_path", "<unknown image>")}')
    return img


def image_hw(img: np.ndarray | torch.Tensor) -> tuple[int, int]:
    """Height and width of a :func:`check_image` image."""
    return tuple(img.shape[:2]) if isinstance(img, np.ndarray) else tuple(img.shape[1:])


def rgb_pil(img: np.ndarray | torch.Tensor) -> Image.Image:
    """A :func:`check_image` image as an RGB PIL image."""
    if isinstance(img, torch.Tensor):
        return Image.fromarray(img.permute(1, 2, 0).numpy())
    return Image.fromarray(np.ascontiguousarray(img[..., ::-1]))


def rgb_tensor(img: np.ndarray | torch.Tensor) -> torch.Tensor:
    """A :func:`check_image` image as an RGB ``3xHxW`` uint8 tensor (what the
    device view path sends; possibly a channels-last view, no copy made)."""
    if isinstance(img, torch.Tensor):
        return img
    return torch.from_numpy(np.ascontiguousarray(img[..., ::-1].transpose(2, 0, 1)))


def bgr_array(img: Image.Image) -> np.ndarray:
    """An RGB PIL view back to a contiguous BGR uint8 array."""
    return np.ascontiguousarray(np.asarray(img)[..., ::-1])


__all__ = ['crop_pil', 'photometric_pil', 'check_image', 'image_hw', 'rgb_pil',
           'rgb_tensor', 'bgr_array']
