"""PIL's arithmetic for the views, as tables the training device applies
(docs/pretraining.md, "Views").

Everything here runs on the host (numpy, in the loader workers): the bicubic
resampling weights in PIL's fixed point, which pass PIL runs first, the extended
box radii and fixed-point weights of PIL's Gaussian blur, the hue shift in
8-bit steps, and PIL's own HSV conversions of every colour. The device then only
multiplies and adds integers (:mod:`flsl_mm.models.data_preprocessors.view_ops`):
no float64 on the device, and the views are PIL's, value for value.
"""
from __future__ import annotations

import functools

import numpy as np

# PIL's 8-bit resampling: weights in fixed point with 22 fractional bits
PRECISION_BITS = 22
# PIL's box blur: weights in fixed point with 24 fractional bits
BLUR_BITS = 24


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
    fixed = w * (1 << PRECISION_BITS)
    return xmin, np.trunc(np.where(w < 0, -0.5 + fixed, 0.5 + fixed))


@functools.lru_cache(maxsize=8192)
def _taps_of_length(length: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Tap indices (clamped to the source) and int32 weights ``(S, K)`` of one
    source length (cached: a run sees the same crop lengths again and again)."""
    xmin, weights = pil_resample_coeffs(np.array([length]), out_size)
    taps = weights.shape[-1]
    index = np.minimum(xmin[0][:, None] + np.arange(taps), length - 1)
    return index.astype(np.int32), weights[0].astype(np.int32)


def resample_tables(lengths, out_size: int, taps: int | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
    """PIL's resampling of crops of ``lengths`` pixels to ``out_size``: per crop
    and output pixel the ``K`` source pixels (crop-local, ``(N, S, K)`` int32;
    past a crop's own taps the weight is 0 and the index repeats a pixel of the
    crop) and their fixed-point weights (``(N, S, K)`` int32). ``K`` is the
    largest of the crops' (or ``taps``)."""
    per_crop = [_taps_of_length(int(n), out_size) for n in lengths]
    k = max([w.shape[-1] for _, w in per_crop] + [taps or 0])
    index = np.empty((len(per_crop), out_size, k), dtype=np.int32)
    weights = np.zeros((len(per_crop), out_size, k), dtype=np.int32)
    for i, (idx, w) in enumerate(per_crop):
        index[i, :, :idx.shape[1]] = idx
        index[i, :, idx.shape[1]:] = idx[:, -1:]
        weights[i, :, :w.shape[1]] = w
    return index, weights


def vertical_first(heights, widths, size: int) -> np.ndarray:
    """Where the installed PIL runs its vertical pass first. Pillow's Resample.c
    (recent versions) does when the height shrinks by more than twice as many
    pixels as the width; older ones always run the horizontal pass first
    (:func:`pil_pass_order` finds out which)."""
    shrink_h, shrink_w = np.asarray(heights) - size, np.asarray(widths) - size
    rule = (shrink_h > 0) & (shrink_h > 2 * shrink_w)
    return rule if pil_pass_order() == 'by_shape' else np.zeros_like(rule)


def _store(acc: np.ndarray, bits: int) -> np.ndarray:
    """PIL's 8-bit store of a fixed-point sum (with its rounding half added)."""
    return np.clip((acc + (1 << (bits - 1))) >> bits, 0, 255)


def reference_resized_crop(img: np.ndarray, box, size: int, v_first: bool
                           ) -> np.ndarray:
    """PIL's bicubic resize of ``img[top:top + h, left:left + w]`` (``HxWx3``
    uint8) to ``size x size``, in plain numpy integers, the vertical pass first
    if ``v_first``: what the device computes, for checks."""
    top, left, h, w = (int(v) for v in box)
    x = img[top:top + h, left:left + w].astype(np.int64)
    h_idx, h_w = resample_tables([w], size)
    v_idx, v_w = resample_tables([h], size)

    def horizontal(a):
        return _store((a[:, h_idx[0]] * h_w[0][None, :, :, None]).sum(2),
                      PRECISION_BITS)

    def vertical(a):
        return _store((a[v_idx[0]] * v_w[0][:, :, None, None]).sum(1), PRECISION_BITS)

    out = horizontal(vertical(x)) if v_first else vertical(horizontal(x))
    return out.astype(np.uint8)


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
    ref = np.asarray(Image.fromarray(img).resize((64, 64), Image.Resampling.BICUBIC))
    for order, v_first in (('by_shape', True), ('horizontal_first', False)):
        if np.array_equal(reference_resized_crop(img, (0, 0, 227, 49), 64, v_first),
                          ref):
            return order
    warnings.warn(f'PIL {Image.__version__} resizes with other rounding than Pillow: '
                  'views made on the device differ from the CPU path\'s by a few '
                  'levels (docs/pretraining.md, "Views")')
    return 'by_shape'


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


def box_blur_weights(radius: np.ndarray, passes: int = 3) -> np.ndarray:
    """``ImageFilter.GaussianBlur(radius)``'s box blur, one radius per image:
    the fixed-point weights ``(N, 2 R + 1)`` (int32, 24 fractional bits) of the
    taps ``-R..R`` of each of its ``passes`` horizontal and vertical passes
    (PIL: ``ww`` inside the whole box radius, ``fw`` on the two pixels past it).
    ``R`` is the largest reach in the batch; a radius 0 gets the identity."""
    radius = np.asarray(radius, dtype=np.float64)
    box = pil_box_radius(radius, passes)
    whole = box.astype(np.int64)  # PIL: (int) floatRadius
    ww = np.floor(np.float32(1 << BLUR_BITS) / (box * np.float32(2) + np.float32(1))
                  ).astype(np.int64)
    fw = ((1 << BLUR_BITS) - (whole * 2 + 1) * ww) // 2
    reach = int(whole.max()) + 1 if len(whole) else 1
    taps = np.arange(-reach, reach + 1)
    weights = np.where(np.abs(taps)[None] <= whole[:, None], ww[:, None],
                       np.where(np.abs(taps)[None] == whole[:, None] + 1, fw[:, None], 0))
    weights[radius <= 0] = np.where(taps == 0, 1 << BLUR_BITS, 0)
    return weights.astype(np.int32)


def hue_shift(factors) -> np.ndarray:
    """torchvision's PIL ``adjust_hue``: the 8-bit hue shift of each factor,
    ``np.int8(factor * 255)`` as an unsigned step 0..255."""
    return np.array([np.int8(f * 255) for f in np.asarray(factors, dtype=np.float64)],
                    dtype=np.int8).astype(np.uint8).astype(np.int32)


@functools.lru_cache(maxsize=1)
def hsv_tables() -> tuple[np.ndarray, np.ndarray]:
    """PIL's own HSV conversions of every 8-bit colour, as look-up tables:
    ``rgb_to_hs[(r * 256 + g) * 256 + b] = (h, s)`` (``v`` is ``max(r, g, b)``)
    and ``hsv_to_rgb[(h * 256 + s) * 256 + v] = (r, g, b)``, 2 ** 24 entries
    each (32 + 48 MiB), made by ``Image.convert`` itself."""
    from PIL import Image
    every = np.arange(1 << 24, dtype=np.uint32)
    triples = np.stack([(every >> 16) & 255, (every >> 8) & 255, every & 255],
                       axis=-1).astype(np.uint8).reshape(4096, 4096, 3)
    rgb_to_hsv = np.array(Image.fromarray(triples, 'RGB').convert('HSV'))
    rgb_to_hs = np.ascontiguousarray(rgb_to_hsv.reshape(-1, 3)[:, :2])
    hsv_to_rgb = np.array(Image.frombytes('HSV', (4096, 4096), triples.tobytes())
                          .convert('RGB')).reshape(-1, 3)
    return rgb_to_hs, hsv_to_rgb


__all__ = ['PRECISION_BITS', 'BLUR_BITS', 'pil_resample_coeffs', 'resample_tables',
           'vertical_first', 'pil_pass_order', 'reference_resized_crop',
           'pil_box_radius', 'box_blur_weights', 'hue_shift', 'hsv_tables']
