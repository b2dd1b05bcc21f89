"""Video object segmentation by label propagation with frozen features (DAVIS-2017
protocol of DINO / FLSL; ``docs/davis.md``).

The first frame's object masks travel through the video by nearest neighbours in
feature space: each token of frame t takes the label average of its top-k most
similar tokens (within a spatial radius) of frame 0 and the last few predicted
frames. Everything is vectorised; queries are processed in chunks so that ViT-S/8
at 480p stays within a few GB.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F


@dataclass
class PropagationConfig:
    """The published protocol's defaults (DINO's ``eval_video_segmentation.py``)."""
    topk: int = 5
    n_last_frames: int = 7
    radius: int = 12  # neighbourhood in tokens (size_mask_neighborhood)
    temperature: float = 0.1
    short_side: int = 480
    multiple: int = 64
    mean: tuple = (0.485, 0.456, 0.406)
    std: tuple = (0.228, 0.224, 0.225)
    query_chunk: int = 1024


def frame_size(height: int, width: int, short_side: int, multiple: int
               ) -> tuple[int, int]:
    """One rule for every orientation: the short side becomes ``short_side``, the
    long side is scaled alike and floored to a multiple of ``multiple``."""
    if height <= width:
        new_h = short_side
        new_w = int(width * short_side / height) // multiple * multiple
    else:
        new_w = short_side
        new_h = int(height * short_side / width) // multiple * multiple
    return new_h, new_w


def prepare_frame(img_rgb: np.ndarray, cfg: PropagationConfig) -> torch.Tensor:
    """RGB uint8 HxWx3 -> normalised 1x3xH'xW' (bilinear resize, [0, 1], mean/std)."""
    import cv2
    h, w = frame_size(img_rgb.shape[0], img_rgb.shape[1], cfg.short_side, cfg.multiple)
    img = cv2.resize(img_rgb, (w, h), interpolation=cv2.INTER_LINEAR)
    x = torch.from_numpy(img).float().div_(255).permute(2, 0, 1)
    mean = torch.tensor(cfg.mean).view(3, 1, 1)
    std = torch.tensor(cfg.std).view(3, 1, 1)
    return ((x - mean) / std)[None]


def neighbourhood_mask(h: int, w: int, radius: int, device=None) -> torch.Tensor:
    """``(h*w, h*w)`` bool: query token q may use context token s when both their
    row and column distances are <= ``radius`` (row-major token order)."""
    rows = torch.arange(h, device=device).repeat_interleave(w)
    cols = torch.arange(w, device=device).repeat(h)
    near_r = (rows[:, None] - rows[None, :]).abs() <= radius
    near_c = (cols[:, None] - cols[None, :]).abs() <= radius
    return near_r & near_c


def propagate_frame(query: torch.Tensor, ctx_feats: torch.Tensor,
                    ctx_labels: torch.Tensor, mask: torch.Tensor,
                    cfg: PropagationConfig) -> torch.Tensor:
    """Soft labels of one frame.

    Args:
        query: ``(N, C)`` L2-normalised tokens of frame t.
        ctx_feats: ``(F, N, C)`` L2-normalised tokens of the context frames.
        ctx_labels: ``(F, N, K)`` their soft labels.
        mask: ``(N, N)`` neighbourhood mask.

    Returns ``(N, K)``: per query, the labels of the context entries whose affinity
    ``exp(cos / T)`` (0 outside the neighbourhood) is >= the k-th largest over all
    context frames together (ties kept), averaged with those affinities as weights.
    """
    n_ctx, n, _ = ctx_feats.shape
    labels = ctx_labels.reshape(n_ctx * n, -1)
    out = []
    for start in range(0, query.shape[0], cfg.query_chunk):
        q = query[start:start + cfg.query_chunk]
        sim = torch.einsum('qc,fnc->qfn', q, ctx_feats)
        aff = torch.exp(sim / cfg.temperature)
        aff = aff * mask[start:start + cfg.query_chunk, None, :]
        aff = aff.reshape(q.shape[0], n_ctx * n)
        kth = aff.topk(cfg.topk, dim=1).values[:, -1:]
        aff = torch.where(aff >= kth, aff, torch.zeros_like(aff))
        aff = aff / aff.sum(1, keepdim=True).clamp_min(1e-12)
        out.append(aff @ labels)
    return torch.cat(out)


def labels_to_ids(soft: torch.Tensor, grid: tuple[int, int], patch: int,
                  out_hw: tuple[int, int]) -> np.ndarray:
    """Soft token labels ``(N, K)`` -> an id map of the original frame size:
    bilinear x ``patch``, each non-zero channel min-max scaled to [0, 1], argmax,
    nearest resize."""
    import cv2
    h, w = grid
    lab = soft.t().reshape(1, -1, h, w)
    lab = F.interpolate(lab, scale_factor=patch, mode='bilinear',
                        align_corners=False)[0]
    flat = lab.reshape(lab.shape[0], -1)
    lo, hi = flat.min(1).values, flat.max(1).values
    scale = torch.where(hi - lo > 0, hi - lo, torch.ones_like(hi))
    norm = torch.where((hi > 0)[:, None], (flat - lo[:, None]) / scale[:, None], flat)
    ids = norm.argmax(0).reshape(lab.shape[1:]).to(torch.uint8).cpu().numpy()
    return cv2.resize(ids, (out_hw[1], out_hw[0]), interpolation=cv2.INTER_NEAREST)


def first_frame_labels(ids: np.ndarray, grid: tuple[int, int]) -> torch.Tensor:
    """One-hot ``(h*w, max_id + 1)`` of the GT resized (nearest) to the token grid;
    255 (DAVIS' void) counts as background."""
    import cv2
    ids = np.where(ids == 255, 0, ids)
    small = cv2.resize(ids.astype(np.uint8), (grid[1], grid[0]),
                       interpolation=cv2.INTER_NEAREST)
    t = torch.from_numpy(small.astype(np.int64)).flatten()
    return F.one_hot(t, int(ids.max()) + 1).float()


def propagate_video(frames: list[np.ndarray], first_ids: np.ndarray,
                    features: Callable[[torch.Tensor], torch.Tensor], patch: int,
                    cfg: PropagationConfig, device: str | torch.device = 'cpu',
                    on_frame: Callable[[int, np.ndarray], None] | None = None
                    ) -> list[np.ndarray]:
    """Id maps of every frame of a video (frame 0 = ``first_ids``).

    ``features(x)`` maps a normalised ``1x3xHxW`` frame to ``(H/p * W/p, C)`` tokens
    (row-major). ``on_frame(t, ids)`` is called as each frame is done (t >= 1).
    """
    outputs = [first_ids]
    x0 = prepare_frame(frames[0], cfg).to(device)
    grid = (x0.shape[-2] // patch, x0.shape[-1] // patch)
    f0 = F.normalize(features(x0).float(), dim=-1)
    l0 = first_frame_labels(first_ids, grid).to(device)
    mask = neighbourhood_mask(*grid, cfg.radius, device=device)
    queue: list[tuple[torch.Tensor, torch.Tensor]] = []
    for t in range(1, len(frames)):
        x = prepare_frame(frames[t], cfg).to(device)
        if x.shape != x0.shape:
            raise ValueError(f'frame {t} is {tuple(x.shape[-2:])} after resizing, '
                             f'frame 0 {tuple(x0.shape[-2:])}: frames of a video '
                             'must share one size')
        ft = F.normalize(features(x).float(), dim=-1)
        ctx_f = torch.stack([f0] + [f for f, _ in queue])
        ctx_l = torch.stack([l0] + [lab for _, lab in queue])
        soft = propagate_frame(ft, ctx_f, ctx_l, mask, cfg)
        queue.append((ft, soft))
        if len(queue) > cfg.n_last_frames:
            queue.pop(0)
        ids = labels_to_ids(soft, grid, patch, frames[t].shape[:2])
        outputs.append(ids)
        if on_frame is not None:
            on_frame(t, ids)
    return outputs


def backbone_features(backbone) -> Callable[[torch.Tensor], torch.Tensor]:
    """``x -> (N, C)`` tokens of a frozen FLSLViT in ``'tokens'`` mode (last block,
    after the final norm when the model has one)."""
    @torch.no_grad()
    def features(x: torch.Tensor) -> torch.Tensor:
        return backbone(x)[0]
    return features
