"""Batched view operations on the training device, defined as PIL's (the CPU
view path) so that a view made here matches the loader's (docs/pretraining.md,
"Views").

Images are channels-last ``(N, H, W, 3)`` tensors holding 8-bit RGB values
(uint8, or float32 for the photometric operations); like PIL, every operation
ends on whole numbers. The host computed every table (PIL's fixed-point weights,
the rows of each operation: :mod:`flsl_mm.datasets.view_plan`), so this module
only multiplies and adds:

* the bicubic resize is PIL's two separable passes over each crop's own pixels,
  in int32 fixed point as PIL does them: per tap one gather and one
  multiply-add, work and memory proportional to the crop, never to the whole
  (padded) image times the output size, and no float64;
* brightness / contrast / saturation are PIL's float32 blends, the contrast's
  mean an integer sum;
* the hue is PIL's own 8-bit HSV conversions as look-up tables
  (:func:`~flsl_mm.datasets.pil_tables.hsv_tables`), shifted;
* the blur is PIL's box blur in its 24-bit fixed point (int64, as PIL's
  unsigned 32-bit sums do not fit int32).

Each photometric operation takes one parameter per image of the batch, which
is why torchvision's tensor ops (one scalar factor per call) and kornia's (its
``adjust_contrast`` scales instead of blending with the mean) are not used.
"""
from __future__ import annotations

import torch

from flsl_mm.datasets.pil_tables import BLUR_BITS, PRECISION_BITS, hsv_tables

# PIL's ITU-R 601-2 luma in 16-bit fixed point: L = (19595 R + 38470 G + 7471 B
# + 2**15) >> 16; exact in float32 (every sum stays below 2**24)
_LUMA = (19595.0, 38470.0, 7471.0)


def resample(x: torch.Tensor, index: torch.Tensor, weights: torch.Tensor,
             axis: int) -> torch.Tensor:
    """One of PIL's resampling passes of ``x`` ``(n, H, W, 3)`` (uint8) along
    ``axis`` (1: vertical, 2: horizontal): output pixel ``s`` of image ``i`` is
    ``sum_k weights[i, s, k] * x[i, ..., index[i, s, k], ...]`` in PIL's 22-bit
    fixed point, stored to 8 bits. ``index`` / ``weights``: ``(n, S, K)``
    int32."""
    shape = list(x.shape)
    shape[axis] = index.shape[1]
    acc = torch.zeros(shape, dtype=torch.int32, device=x.device)
    index = index.long()
    for k in range(index.shape[2]):
        if axis == 1:
            taps = index[:, :, None, k, None].expand(shape)
            w = weights[:, :, None, k, None]
        else:
            taps = index[:, None, :, k, None].expand(shape)
            w = weights[:, None, :, k, None]
        acc.addcmul_(torch.gather(x, axis, taps), w)
    half = 1 << (PRECISION_BITS - 1)
    return acc.add_(half).bitwise_right_shift_(PRECISION_BITS).clamp_(0, 255).to(
        torch.uint8)


def resized_crops(source: torch.Tensor, image: torch.Tensor, rows: torch.Tensor,
                  cols: torch.Tensor, h_taps: tuple[torch.Tensor, torch.Tensor],
                  v_taps: tuple[torch.Tensor, torch.Tensor], v_first: bool
                  ) -> torch.Tensor:
    """Crops of ``source`` ``(G, H, W, 3)`` uint8, resized as PIL resizes them:
    crop ``i`` is made of the pixels ``rows[i] x cols[i]`` of image
    ``image[i]`` (one gather, padded by repetition), then PIL's two passes in
    its order (``v_first``) with the crop-local taps ``h_taps`` / ``v_taps``
    (index, weights). Returns ``(n, S, S, 3)`` uint8."""
    block = source[image.long()[:, None, None], rows.long()[:, :, None],
                   cols.long()[:, None, :]]
    if v_first:
        return resample(resample(block, *v_taps, axis=1), *h_taps, axis=2)
    return resample(resample(block, *h_taps, axis=2), *v_taps, axis=1)


def _floor_clip(x: torch.Tensor) -> torch.Tensor:
    """PIL's 8-bit store of a blend: clip to [0, 255], truncate."""
    return x.clamp_(0, 255).floor_()


def luma(x: torch.Tensor) -> torch.Tensor:
    """PIL's ``convert('L')`` of ``(N, H, W, 3)`` -> ``(N, H, W, 1)``."""
    weighted = x[..., 0:1] * _LUMA[0] + x[..., 1:2] * _LUMA[1] + x[..., 2:3] * _LUMA[2]
    return weighted.add_(32768.0).div_(65536.0).floor_()


def _factor(factor: torch.Tensor) -> torch.Tensor:
    return factor.view(-1, 1, 1, 1)


def _blend(base: torch.Tensor, x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """PIL's ``Image.blend(base, x, factor)``: ``base + factor * (x - base)``
    in C floats."""
    return _floor_clip(base + _factor(factor) * (x - base))


def adjust_brightness(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """``ImageEnhance.Brightness``: blend with black, ``0 + factor * (x - 0)``."""
    return _floor_clip(_factor(factor) * x)


def adjust_contrast(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """``ImageEnhance.Contrast``: blend with the image's mean luma, rounded
    (``int(mean + 0.5)``, as integers: ``(2 sum + n) // 2n``)."""
    total = luma(x).to(torch.int64).sum(dim=(1, 2, 3), keepdim=True)
    n = x.shape[1] * x.shape[2]
    mean = torch.div(2 * total + n, 2 * n, rounding_mode='floor').to(x.dtype)
    return _blend(mean.expand_as(x), x, factor)


def adjust_saturation(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """``ImageEnhance.Color``: blend with the image's luma."""
    return _blend(luma(x).expand_as(x), x, factor)


_HSV_TABLES: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}


def hsv_luts(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """PIL's HSV conversions (:func:`~flsl_mm.datasets.pil_tables.hsv_tables`)
    on ``device``, made once per process and device (80 MiB)."""
    device = torch.device(device)
    if device not in _HSV_TABLES:
        rgb_to_hs, hsv_to_rgb = hsv_tables()
        _HSV_TABLES[device] = (torch.from_numpy(rgb_to_hs).to(device),
                               torch.from_numpy(hsv_to_rgb).to(device))
    return _HSV_TABLES[device]


def adjust_hue(x: torch.Tensor, shift: torch.Tensor, luts=None) -> torch.Tensor:
    """torchvision's PIL ``adjust_hue``: PIL's 8-bit HSV (a table), the hue
    shifted by ``shift`` (0..255, :func:`~flsl_mm.datasets.pil_tables.
    hue_shift`) modulo 256, PIL's conversion back (a table). ``luts``: the
    tables on ``x``'s device (default: :func:`hsv_luts`)."""
    rgb_to_hs, hsv_to_rgb = luts if luts is not None else hsv_luts(x.device)
    xi = x.to(torch.int64)
    hs = rgb_to_hs[(xi[..., 0] * 256 + xi[..., 1]) * 256 + xi[..., 2]].to(torch.int64)
    hue = (hs[..., 0] + shift.to(torch.int64).view(-1, 1, 1)).bitwise_and_(255)
    value = xi.amax(dim=-1)
    return hsv_to_rgb[(hue * 256 + hs[..., 1]) * 256 + value].to(x.dtype)


JITTER_OPS = (adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue)


def grayscale(x: torch.Tensor) -> torch.Tensor:
    """PIL's ``convert('L')`` back to 3 channels."""
    return luma(x).expand_as(x)


def solarize(x: torch.Tensor) -> torch.Tensor:
    """``ImageOps.solarize`` (threshold 128): values >= 128 inverted."""
    return torch.where(x >= 128, 255 - x, x)


def gaussian_blur(x: torch.Tensor, weights: torch.Tensor, passes: int = 3
                  ) -> torch.Tensor:
    """``ImageFilter.GaussianBlur(radius)`` as PIL computes it: ``passes``
    horizontal then ``passes`` vertical box blurs, each in PIL's 24-bit fixed
    point with edge pixels repeated, stored to 8 bits. ``weights``: per image
    the taps ``-R..R`` (:func:`~flsl_mm.datasets.pil_tables.box_blur_weights`)."""
    w = weights.to(torch.int64)
    reach = (w.shape[1] - 1) // 2
    out = x.to(torch.int64)
    half = 1 << (BLUR_BITS - 1)
    for axis in (2, 1):  # horizontal passes first, as PIL
        length = out.shape[axis]
        edge = torch.arange(-reach, length + reach, device=x.device).clamp_(0, length - 1)
        for _ in range(passes):
            padded = out.index_select(axis, edge)
            acc = torch.zeros_like(out)
            for k in range(2 * reach + 1):
                acc.addcmul_(padded.narrow(axis, k, length), w[:, k].view(-1, 1, 1, 1))
            out = acc.add_(half).bitwise_right_shift_(BLUR_BITS)
    return out.to(x.dtype)


__all__ = ['resample', 'resized_crops', 'luma', 'adjust_brightness', 'adjust_contrast',
           'adjust_saturation', 'adjust_hue', 'hsv_luts', 'JITTER_OPS', 'grayscale',
           'solarize', 'gaussian_blur']
