"""Batched view operations on the training device, defined as PIL's (the CPU
view path) so that a view made here matches the loader's (docs/pretraining.md,
"Views").

Images are float32 tensors holding uint8 values (0..255, RGB); like PIL, every
operation ends on whole numbers (PIL keeps 8-bit images between operations).
Each photometric operation takes one factor per image of the batch, which is why
torchvision's tensor ops (one scalar factor per call) and kornia's (its
``adjust_contrast`` scales instead of blending with the mean) are not used here;
the resize is PIL's resampling written as two batched matrix products (one call
for a whole batch of crops of different boxes, where torch's ``interpolate``
takes one call per crop).

Every operation is PIL's, value for value (tests/test_models/test_view_ops.py):
the resize uses PIL's fixed-point weights and pass order in exact float64
matrix products, the blur PIL's box-blur passes, the hue PIL's 8-bit HSV
conversions.
"""
from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F

# PIL's ITU-R 601-2 luma in 16-bit fixed point: L = (19595 R + 38470 G + 7471 B
# + 2**15) >> 16
_LUMA = (19595 / 65536, 38470 / 65536, 7471 / 65536)


def _floor_clip(x: torch.Tensor) -> torch.Tensor:
    """PIL's 8-bit store of a blend: clip to [0, 255], truncate."""
    return x.clamp_(0, 255).floor_()


# PIL's 8-bit resampling: weights in fixed point with 22 fractional bits
_PRECISION_BITS = 22


def _bicubic(x: np.ndarray) -> np.ndarray:
    """PIL's bicubic filter (a = -0.5), in its order of double operations."""
    x = np.abs(x)
    near = (1.5 * x - 2.5) * x * x + 1
    far = (((x - 5) * x + 8) * x - 4) * -0.5
    return np.where(x < 1.0, near, np.where(x < 2.0, far, 0.0))


def pil_resample_coeffs(in_sizes: np.ndarray, out_size: int
                        ) -> tuple[np.ndarray, np.ndarray]:
    """PIL's antialiased bicubic resampling of sources of ``in_sizes`` pixels
    (one per crop) to ``out_size``: per output pixel the first source pixel
    ``xmin`` ``(N, S)`` and the fixed-point weights ``(N, S, K)`` of the source
    pixels ``xmin, xmin + 1, ...`` (``precompute_coeffs`` and
    ``normalize_coeffs_8bpc`` of PIL's Resample.c, the same double operations in
    the same order, vectorised over the crops)."""
    in_sizes = np.asarray(in_sizes, dtype=np.int64)
    scale = in_sizes.astype(np.float64) / out_size
    filterscale = np.maximum(scale, 1.0)
    support = 2.0 * filterscale
    taps = int((np.ceil(support).astype(np.int64) * 2 + 1).max())
    center = (np.arange(out_size)[None] + 0.5) * scale[:, None]
    xmin = np.maximum(np.trunc(center - support[:, None] + 0.5), 0).astype(np.int64)
    xmax = np.minimum(np.trunc(center + support[:, None] + 0.5).astype(np.int64),
                      in_sizes[:, None]) - xmin
    x = np.arange(taps)[None, None]
    w = _bicubic(((x + xmin[..., None]) - center[..., None] + 0.5)
                 * (1.0 / filterscale)[:, None, None])
    w = np.where(x < xmax[..., None], w, 0.0)
    total = np.zeros(w.shape[:2])
    for k in range(taps):  # PIL's sequential sum
        total = total + w[..., k]
    w = np.where(total[..., None] != 0.0, w / np.where(total == 0.0, 1.0, total)[..., None],
                 w)
    fixed = w * (1 << _PRECISION_BITS)
    return xmin, np.trunc(np.where(w < 0, -0.5 + fixed, 0.5 + fixed))


@functools.lru_cache(maxsize=4096)
def _coeffs_of_length(length: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`pil_resample_coeffs` of one source length (cached: a run sees the
    same crop lengths again and again)."""
    xmin, weights = pil_resample_coeffs(np.array([length]), out_size)
    return xmin[0], weights[0]


def _resample_matrix(starts: np.ndarray, lengths: np.ndarray, out_size: int,
                     in_extent: int, device) -> torch.Tensor:
    """``(N, out_size, in_extent)`` float64 matrices of PIL's fixed-point
    weights for the crops ``[start, start + length)`` of a source of
    ``in_extent`` pixels (zero outside the crop)."""
    per_crop = [_coeffs_of_length(int(n), out_size) for n in lengths]
    taps = max(w.shape[-1] for _, w in per_crop)
    weights = np.zeros((len(per_crop), out_size, taps))
    cols = np.empty((len(per_crop), out_size, taps), dtype=np.int64)
    offsets = np.arange(taps)
    for i, ((xmin, w), start) in enumerate(zip(per_crop, starts)):
        weights[i, :, :w.shape[-1]] = w
        cols[i] = start + xmin[:, None] + offsets
    cols = np.minimum(cols, in_extent - 1)  # past a crop's taps the weights are 0
    matrix = torch.zeros(len(per_crop), out_size, in_extent, dtype=torch.float64,
                         device=device)
    return matrix.scatter_add_(2, torch.as_tensor(cols).to(device, non_blocking=True),
                               torch.as_tensor(weights).to(device, non_blocking=True))


def _pil_store(x: torch.Tensor) -> torch.Tensor:
    """PIL's 8-bit store of a fixed-point sum: ``(sum + 2**21) >> 22``, clipped."""
    half = float(1 << (_PRECISION_BITS - 1))
    return x.add_(half).div_(float(1 << _PRECISION_BITS)).floor_().clamp_(0, 255)


def _two_passes(x: torch.Tensor, horizontal: torch.Tensor, vertical: torch.Tensor,
                v_first: bool) -> torch.Tensor:
    """PIL's two resampling passes of ``x`` ``(N or 1, 3, H, W)`` with the
    ``(N, S, W)`` / ``(N, S, H)`` weight matrices, each stored to 8 bits, the
    vertical one first if ``v_first``."""
    h_t, v = horizontal.transpose(1, 2).unsqueeze(1), vertical.unsqueeze(1)
    if v_first:
        return _pil_store(torch.matmul(_pil_store(torch.matmul(v, x)), h_t))
    return _pil_store(torch.matmul(v, _pil_store(torch.matmul(x, h_t))))


def vertical_first(heights: np.ndarray, widths: np.ndarray, size: int) -> np.ndarray:
    """Where the installed PIL runs its vertical pass first. Pillow's Resample.c
    (recent versions) does when the height shrinks by more than twice as many
    pixels as the width; older ones always run the horizontal pass first
    (:func:`pil_pass_order` finds out which)."""
    shrink_h, shrink_w = np.asarray(heights) - size, np.asarray(widths) - size
    rule = (shrink_h > 0) & (shrink_h > 2 * shrink_w)
    return rule if pil_pass_order() == 'by_shape' else np.zeros_like(rule)


@functools.lru_cache(maxsize=1)
def pil_pass_order() -> str:
    """``'by_shape'`` or ``'horizontal_first'``: which order of passes the
    installed PIL uses, found once by resizing a tall noise image (where the two
    orders give other values) and comparing. A PIL that matches neither (e.g.
    Pillow-SIMD, other rounding) gets a warning: the device views then differ
    from its views by a few levels."""
    import warnings

    from PIL import Image
    img = np.random.RandomState(0).randint(0, 256, (227, 49, 3)).astype(np.uint8)
    ref = torch.from_numpy(np.asarray(Image.fromarray(img).resize(
        (64, 64), Image.Resampling.BICUBIC)).copy()).permute(2, 0, 1).double()
    x = torch.from_numpy(img).permute(2, 0, 1)[None].double()
    horizontal = _resample_matrix(np.array([0]), np.array([49]), 64, 49, 'cpu')
    vertical = _resample_matrix(np.array([0]), np.array([227]), 64, 227, 'cpu')
    for order, v_first in (('by_shape', True), ('horizontal_first', False)):
        if torch.equal(_two_passes(x, horizontal, vertical, v_first)[0], ref):
            return order
    warnings.warn(f'PIL {Image.__version__} resizes with other rounding than Pillow: '
                  'views made on the device differ from the CPU path\'s by a few '
                  'levels (docs/pretraining.md, "Views")')
    return 'by_shape'


def resized_crops(images: torch.Tensor, boxes: np.ndarray, size: int) -> torch.Tensor:
    """Crop ``boxes`` (top, left, height, width; one per image) of ``images``
    ``(N, 3, H, W)``, or all ``N`` boxes of one image ``(1, 3, H, W)`` (values
    0..255; padding past an image's own size is never read), and resize each to
    ``size x size``: PIL's antialiased bicubic resize,
    value for value (its fixed-point weights, its two passes in its order, each
    stored to 8 bits), as batched matrix products in float64, exact for these
    integers. Returns float64 ``(N, 3, size, size)``."""
    boxes = np.asarray(boxes, dtype=np.int64).reshape(-1, 4)
    x = images.to(torch.float64)
    horizontal = _resample_matrix(boxes[:, 1], boxes[:, 3], size, x.shape[-1], x.device)
    vertical = _resample_matrix(boxes[:, 0], boxes[:, 2], size, x.shape[-2], x.device)
    out = x.new_empty(len(boxes), 3, size, size)
    v_first = vertical_first(boxes[:, 2], boxes[:, 3], size)
    for order in (False, True):
        rows = np.flatnonzero(v_first == order)
        if rows.size == 0:
            continue
        index = torch.as_tensor(rows, device=x.device)
        out[index] = _two_passes(x if x.shape[0] == 1 else x[index],
                                 horizontal[index], vertical[index], bool(order))
    return out


def resized_crop(img: torch.Tensor, box, size: int) -> torch.Tensor:
    """:func:`resized_crops` of one ``(3, H, W)`` image, as float32."""
    return resized_crops(img[None], np.asarray(box)[None], size)[0].float()


def luma(x: torch.Tensor) -> torch.Tensor:
    """PIL's ``convert('L')`` of ``(N, 3, H, W)`` -> ``(N, 1, H, W)``."""
    return (x[:, 0:1] * _LUMA[0] + x[:, 1:2] * _LUMA[1] + x[:, 2:3] * _LUMA[2]
            ).add_(0.5).floor_()


def _blend(base: torch.Tensor, x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """PIL's ``Image.blend(base, x, factor)``: ``base + factor * (x - base)``."""
    return _floor_clip(base + factor.view(-1, 1, 1, 1) * (x - base))


def adjust_brightness(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """``ImageEnhance.Brightness``: blend with black, ``0 + factor * (x - 0)``."""
    return _floor_clip(factor.view(-1, 1, 1, 1) * x)


def adjust_contrast(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """``ImageEnhance.Contrast``: blend with the image's mean luma, rounded."""
    mean = luma(x).double().mean(dim=(1, 2, 3), keepdim=True).add_(0.5).floor_()
    return _blend(mean.float().expand_as(x), x, factor)


def adjust_saturation(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """``ImageEnhance.Color``: blend with the image's luma."""
    return _blend(luma(x).expand_as(x), x, factor)


def adjust_hue(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """torchvision's PIL ``adjust_hue``: PIL's 8-bit HSV, the hue channel shifted
    by ``int(factor * 255)`` modulo 256, back to RGB (PIL's conversions, in
    their single / double precision)."""
    x64 = x.double()
    r, g, b = x64[:, 0], x64[:, 1], x64[:, 2]
    maxc = torch.maximum(torch.maximum(r, g), b)
    minc = torch.minimum(torch.minimum(r, g), b)
    cr = maxc - minc
    grey = cr == 0
    crs = torch.where(grey, torch.ones_like(cr), cr).float()
    s = (crs / torch.where(grey, torch.ones_like(maxc), maxc).float()).double()
    # PIL's rgb2hsv: rc, gc, bc and h are C floats, the sums with 2.0 / 4.0 and
    # the division by 6.0 are done in double
    rc, gc, bc = (((maxc - c).float() / crs).double() for c in (r, g, b))
    h = torch.where(r == maxc, (bc.float() - gc.float()).double(),
                    torch.where(g == maxc, 2.0 + rc - bc, 4.0 + gc - rc)).float()
    h = torch.fmod(h.double() / 6.0 + 1.0, 1.0).float().double()
    uh = torch.where(grey, 0.0, (h * 255.0).clamp(0, 255).trunc())
    us = torch.where(grey, 0.0, (s * 255.0).clamp(0, 255).trunc())
    v = maxc
    shift = torch.remainder(torch.trunc(factor.double() * 255), 256)  # int -> uint8
    uh = torch.remainder(uh + shift.view(-1, 1, 1), 256)
    # PIL's hsv2rgb
    i = torch.floor(uh * 6.0 / 255.0)
    f = (uh * 6.0 / 255.0 - i).float()
    fs = (f * us.float()).double()
    p = torch.floor(v * (1.0 - us / 255.0) + 0.5).clamp(0, 255)
    q = torch.floor(v * (1.0 - fs / 255.0) + 0.5).clamp(0, 255)
    t = torch.floor(v * (1.0 - (us - fs) / 255.0) + 0.5).clamp(0, 255)
    sector = torch.remainder(i, 6).long()
    choices_r = torch.stack([v, q, p, p, t, v])
    choices_g = torch.stack([t, v, v, q, p, p])
    choices_b = torch.stack([p, p, t, v, v, q])
    idx = sector.unsqueeze(0)
    out = torch.stack([choices_r.gather(0, idx)[0], choices_g.gather(0, idx)[0],
                       choices_b.gather(0, idx)[0]], dim=1)
    flat = (us == 0).unsqueeze(1)
    return torch.where(flat, v.unsqueeze(1).expand_as(out), out).float()


JITTER_OPS = (adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue)


def grayscale(x: torch.Tensor) -> torch.Tensor:
    """PIL's ``convert('L')`` back to 3 channels."""
    return luma(x).expand_as(x).contiguous()


def solarize(x: torch.Tensor) -> torch.Tensor:
    """``ImageOps.solarize`` (threshold 128): values >= 128 inverted."""
    return torch.where(x >= 128, 255 - x, x)


def pil_box_radius(radius: np.ndarray, passes: int = 3) -> np.ndarray:
    """The extended box radius with which PIL approximates a Gaussian of
    ``radius`` (Gwosdek et al. 2011), in PIL's single precision."""
    r = np.asarray(radius, dtype=np.float32)
    sigma2 = (r * r / np.float32(passes)).astype(np.float32)
    big_l = np.sqrt(12.0 * sigma2.astype(np.float64) + 1.0).astype(np.float32)
    small_l = np.floor((big_l.astype(np.float64) - 1.0) / 2.0).astype(np.float32)
    a = ((2 * small_l + 1) * (small_l * (small_l + 1) - 3 * sigma2)).astype(np.float32)
    a = (a / (6 * (sigma2 - (small_l + 1) * (small_l + 1)))).astype(np.float32)
    return (small_l + a).astype(np.float32)


def gaussian_blur(x: torch.Tensor, radius: np.ndarray, passes: int = 3) -> torch.Tensor:
    """``ImageFilter.GaussianBlur(radius)`` as PIL computes it: ``passes``
    horizontal then ``passes`` vertical box blurs of the extended radius, each
    in PIL's 24-bit fixed point with edge pixels repeated. One radius per image
    (numpy, on the host: the weights are computed there)."""
    box = pil_box_radius(radius, passes)
    whole = box.astype(np.int64)  # PIL: (int) floatRadius
    ww = np.floor(np.float32(1 << 24) / (box * np.float32(2) + np.float32(1))
                  ).astype(np.int64)
    fw = ((1 << 24) - (whole * 2 + 1) * ww) // 2
    reach = int(whole.max()) + 1
    taps = np.arange(-reach, reach + 1)
    weights = np.where(np.abs(taps)[None] <= whole[:, None], ww[:, None],
                       np.where(np.abs(taps)[None] == whole[:, None] + 1, fw[:, None], 0))
    w = torch.as_tensor(weights, dtype=torch.float64, device=x.device)
    out = x.double()
    for dim in (3, 2):  # horizontal passes first, as PIL
        for _ in range(passes):
            pad = (reach, reach, 0, 0) if dim == 3 else (0, 0, reach, reach)
            padded = F.pad(out, pad, mode='replicate')
            acc = torch.zeros_like(out)
            size = out.shape[dim]
            for k in range(len(taps)):
                acc += w[:, k].view(-1, 1, 1, 1) * padded.narrow(dim, k, size)
            out = torch.floor((acc + (1 << 23)) / (1 << 24))
    return out.float()


__all__ = ['resized_crop', 'luma', 'adjust_brightness', 'adjust_contrast',
           'adjust_saturation', 'adjust_hue', 'JITTER_OPS', 'grayscale', 'solarize',
           'pil_box_radius', 'gaussian_blur']
