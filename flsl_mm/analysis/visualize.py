"""Pictures of what FLSL learns: token PCA, token clusters, mean-shift attention."""
from __future__ import annotations

import math

import cv2
import numpy as np

from .dense_probe import kmeans
from .tokens import extract_tokens

_PALETTE = np.array([(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200),
                     (245, 130, 48), (145, 30, 180), (70, 240, 240), (240, 50, 230),
                     (210, 245, 60), (250, 190, 190)], np.uint8)[:, ::-1]  # BGR


def pca_rgb(tokens: np.ndarray) -> np.ndarray:
    """First three principal components of ``(h, w, C)`` tokens as uint8 BGR.

    Signs are fixed (largest loading positive) so that the picture is the same
    for the same tokens."""
    h, w, c = tokens.shape
    x = tokens.reshape(-1, c).astype(np.float64)
    x = x - x.mean(0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    comps = vt[:3]
    comps *= np.sign(comps[np.arange(len(comps)), np.abs(comps).argmax(1)])[:, None]
    proj = x @ comps.T
    if proj.shape[1] < 3:
        proj = np.pad(proj, ((0, 0), (0, 3 - proj.shape[1])))
    lo, hi = proj.min(0), proj.max(0)
    proj = (proj - lo) / np.where(hi > lo, hi - lo, 1)
    return (proj.reshape(h, w, 3) * 255).astype(np.uint8)


def mean_shift_attention(tokens: np.ndarray, point_rc: tuple[int, int],
                         beta: float) -> np.ndarray:
    """``softmax(beta * q z^T)`` of the token at ``point_rc`` over all tokens."""
    h, w, c = tokens.shape
    z = tokens.reshape(-1, c).astype(np.float64)
    q = tokens[point_rc]
    logits = beta * (z @ q)
    logits -= logits.max()
    attn = np.exp(logits)
    return (attn / attn.sum()).reshape(h, w)


def _up(grid: np.ndarray, size: tuple[int, int], nearest: bool = True) -> np.ndarray:
    return cv2.resize(grid, (size[1], size[0]),
                      interpolation=cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR)


def default_points(h: int, w: int, n: int = 4) -> list[tuple[int, int]]:
    """A ``sqrt(n) x sqrt(n)`` grid of token positions, away from the borders."""
    side = max(int(math.sqrt(n)), 1)
    return [(int((i + 0.5) * h / side), int((j + 0.5) * w / side))
            for i in range(side) for j in range(side)]


def visualize_tokens(backbone, img_bgr: np.ndarray, points_xy=None,
                     num_clusters: int = 5, beta: float = 0.1 / math.sqrt(384),
                     seed: int = 0, block: int = -1) -> np.ndarray:
    """One picture: input | PCA | clusters | attention of each query point.

    ``points_xy`` are pixel positions ``(x, y)`` of the queries (default: a 2 x 2
    grid). The image is cropped to a multiple of the patch size.
    """
    patch = backbone.patch_size
    h, w = img_bgr.shape[0] // patch * patch, img_bgr.shape[1] // patch * patch
    if h == 0 or w == 0:
        raise ValueError(f'image {img_bgr.shape[:2]} is smaller than a patch')
    img = np.ascontiguousarray(img_bgr[:h, :w])
    tokens = extract_tokens(backbone, img, block)
    gh, gw = tokens.shape[:2]
    panels = [img, _up(pca_rgb(tokens), (h, w))]
    flat = tokens.reshape(-1, tokens.shape[-1])
    clusters = kmeans(flat, min(num_clusters, len(flat)), seed=seed).reshape(gh, gw)
    colour = _up(_PALETTE[clusters % len(_PALETTE)], (h, w))
    panels.append(cv2.addWeighted(img, 0.4, colour, 0.6, 0))
    if points_xy is None:
        points_rc = default_points(gh, gw)
    else:
        points_rc = [(min(int(y) // patch, gh - 1), min(int(x) // patch, gw - 1))
                     for x, y in points_xy]
    for r, c in points_rc:
        attn = mean_shift_attention(tokens, (r, c), beta)
        heat = (attn / attn.max() * 255).astype(np.uint8)
        heat = cv2.applyColorMap(_up(heat, (h, w), nearest=False), cv2.COLORMAP_JET)
        panel = cv2.addWeighted(img, 0.4, heat, 0.6, 0)
        centre = (int((c + 0.5) * patch), int((r + 0.5) * patch))
        cv2.circle(panel, centre, max(patch // 4, 2), (255, 255, 255), -1)
        panels.append(panel)
    sep = np.full((h, 4, 3), 255, np.uint8)
    out = [panels[0]]
    for p in panels[1:]:
        out += [sep, p]
    return np.concatenate(out, axis=1)
