"""Fixed 2-D sin-cos position embedding of FLSL and its resizing (FLSL_SPEC §1)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def get_1d_sincos_pos_embed(embed_dim: int, pos: torch.Tensor) -> torch.Tensor:
    """Sin-cos code of positions ``pos`` (any shape) -> (pos.numel(), embed_dim).

    The first ``embed_dim / 2`` channels are ``sin(pos * omega_i)``, the last
    ``embed_dim / 2`` are ``cos(pos * omega_i)``, ``omega_i = 1 / 10000^(2i / D)``.
    """
    if embed_dim % 2:
        raise ValueError(f'embed_dim must be even, got {embed_dim}')
    omega = torch.arange(embed_dim // 2, dtype=torch.float64) / (embed_dim / 2.0)
    omega = 1.0 / 10000**omega
    out = pos.reshape(-1).to(torch.float64)[:, None] * omega[None, :]
    return torch.cat([torch.sin(out), torch.cos(out)], dim=1)


def get_2d_sincos_pos_embed(embed_dim: int, grid_size: int | tuple[int, int]
                            ) -> torch.Tensor:
    """2-D sin-cos embedding of a ``grid_h x grid_w`` grid, row-major tokens.

    Channels ``[0, D/2)`` encode the column (x) index and ``[D/2, D)`` the row (y)
    index (the MAE convention). Returns float32 ``(grid_h * grid_w, embed_dim)``.
    """
    if embed_dim % 4:
        raise ValueError(f'embed_dim must be divisible by 4, got {embed_dim}')
    gh, gw = (grid_size, grid_size) if isinstance(grid_size, int) else grid_size
    ys, xs = torch.meshgrid(torch.arange(gh, dtype=torch.float64),
                            torch.arange(gw, dtype=torch.float64), indexing='ij')
    emb_x = get_1d_sincos_pos_embed(embed_dim // 2, xs)
    emb_y = get_1d_sincos_pos_embed(embed_dim // 2, ys)
    return torch.cat([emb_x, emb_y], dim=1).float()


def resize_pos_embed(pos_embed: torch.Tensor, grid: int, out_hw: tuple[int, int]
                     ) -> torch.Tensor:
    """Resize a ``(1, grid*grid, C)`` embedding to an ``(h, w)`` token grid.

    Exactly as the reference: bicubic ``F.interpolate`` driven by
    ``scale_factor=((h + 0.1) / grid, (w + 0.1) / grid)``, ``align_corners=False``,
    no antialias. At ``(grid, grid)`` the embedding is returned unchanged.
    """
    h, w = out_hw
    if (h, w) == (grid, grid):
        return pos_embed
    dim = pos_embed.shape[-1]
    pe = pos_embed.reshape(1, grid, grid, dim).permute(0, 3, 1, 2)
    pe = F.interpolate(pe, scale_factor=((h + 0.1) / grid, (w + 0.1) / grid),
                       mode='bicubic', align_corners=False)
    if pe.shape[-2:] != (h, w):  # cannot happen for h, w >= 1; guard anyway
        raise RuntimeError(f'position embedding resized to {tuple(pe.shape[-2:])}, '
                           f'expected {(h, w)}')
    return pe.permute(0, 2, 3, 1).reshape(1, h * w, dim)


__all__ = ['get_1d_sincos_pos_embed', 'get_2d_sincos_pos_embed', 'resize_pos_embed']
