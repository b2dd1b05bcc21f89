import math

import pytest
import torch
import torch.nn.functional as F

from flsl_mm.models import get_2d_sincos_pos_embed, resize_pos_embed


def test_sincos_values_at_known_positions():
    pe = get_2d_sincos_pos_embed(8, 2)  # 2 x 2 grid, C = 8
    assert pe.shape == (4, 8)
    # token 2 = row 1, column 0 (row-major)
    # channels [0, 4): column x=0 -> sin(0), sin(0), cos(0), cos(0)
    # channels [4, 8): row y=1, omega = (1, 1/100) -> sin 1, sin .01, cos 1, cos .01
    expected = torch.tensor([0, 0, 1, 1, math.sin(1), math.sin(0.01),
                             math.cos(1), math.cos(0.01)])
    torch.testing.assert_close(pe[2], expected)
    # token 1 = row 0, column 1: the x half moves, the y half is that of 0
    expected1 = torch.tensor([math.sin(1), math.sin(0.01), math.cos(1),
                              math.cos(0.01), 0, 0, 1, 1])
    torch.testing.assert_close(pe[1], expected1)


def test_sincos_omega_uses_quarter_width():
    c = 384
    pe = get_2d_sincos_pos_embed(c, 14)
    # x = 3 (token 3): channel i < C/4 is sin(3 / 10000^(i / (C/4)))
    for i in (0, 5, 95):
        assert pe[3, i].item() == pytest.approx(math.sin(3 / 10000**(i / 96)), abs=1e-6)
        assert pe[3, 96 + i].item() == pytest.approx(math.cos(3 / 10000**(i / 96)),
                                                     abs=1e-6)


def _reference_resize(pe, g, h, w):
    grid = pe.reshape(1, g, g, -1).permute(0, 3, 1, 2)
    out = F.interpolate(grid, scale_factor=((h + 0.1) / g, (w + 0.1) / g),
                        mode='bicubic', align_corners=False)
    return out.permute(0, 2, 3, 1).reshape(1, h * w, -1)


@pytest.mark.parametrize('hw', [(6, 6), (6, 10), (14, 14), (20, 9)])
def test_resize_matches_scale_factor_bicubic(hw):
    pe = get_2d_sincos_pos_embed(64, 14).unsqueeze(0)
    out = resize_pos_embed(pe, 14, hw)
    assert out.shape == (1, hw[0] * hw[1], 64)
    if hw == (14, 14):
        assert out is pe
    else:
        torch.testing.assert_close(out, _reference_resize(pe, 14, *hw))


def test_resize_96px_differs_from_size_and_antialias():
    pe = get_2d_sincos_pos_embed(384, 14).unsqueeze(0)
    ours = resize_pos_embed(pe, 14, (6, 6)).reshape(1, 6, 6, -1)
    grid = pe.reshape(1, 14, 14, -1).permute(0, 3, 1, 2)
    by_size = F.interpolate(grid, size=(6, 6), mode='bicubic',
                            align_corners=False).permute(0, 2, 3, 1)
    antialiased = F.interpolate(grid, size=(6, 6), mode='bicubic', antialias=True,
                                align_corners=False).permute(0, 2, 3, 1)
    assert (ours - by_size).abs().max() > 0.05
    assert (ours - antialiased).abs().max() > 0.05
