"""ViT-to-FPN adapter: one-stride ViT maps -> strides 4/8/16/32 (FLSL_SPEC §8)."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
from mmcv.cnn import build_norm_layer
from mmengine.model import BaseModule
from mmpretrain.models.utils import LayerNorm2d

from flsl_mm.registry import MODELS


def _norm(norm_cfg: dict, channels: int) -> nn.Module:
    if norm_cfg.get('type') == 'LN2d':  # channels-first LayerNorm (ViTDet style)
        return LayerNorm2d(channels, eps=norm_cfg.get('eps', 1e-6))
    return build_norm_layer(norm_cfg, channels)[1]


@MODELS.register_module()
class ViTFPNAdapter(BaseModule):
    """Turn the backbone's maps of blocks [3, 5, 7, 11] (all at stride ``p``) into
    a stride-4/8/16/32 pyramid for mmdet's ``FPN``.

    * patch 16: deconv(2x)-norm-GELU-deconv(2x) | deconv(2x) | identity | maxpool(2)
    * patch 8:  deconv(2x) | identity | maxpool(2) | maxpool(4)

    Args:
        in_channels: ViT width C (the pyramid keeps C channels at every level).
        patch_size: 16 or 8.
        norm_cfg: norm inside the p16 stride-4 branch: ``dict(type='BN')``
            (single process), ``dict(type='SyncBN')`` (distributed) or
            ``dict(type='LN2d')``.
    """

    def __init__(self, in_channels: int, patch_size: int = 16,
                 norm_cfg: dict | None = None, init_cfg: dict | list | None = None
                 ) -> None:
        super().__init__(init_cfg=init_cfg)
        norm_cfg = norm_cfg or dict(type='BN')
        c = in_channels

        def deconv() -> nn.Module:
            return nn.ConvTranspose2d(c, c, kernel_size=2, stride=2)

        if patch_size == 16:
            branches = [
                nn.Sequential(deconv(), _norm(norm_cfg, c), nn.GELU(), deconv()),
                deconv(), nn.Identity(), nn.MaxPool2d(kernel_size=2, stride=2)
            ]
        elif patch_size == 8:
            branches = [deconv(), nn.Identity(), nn.MaxPool2d(kernel_size=2, stride=2),
                        nn.MaxPool2d(kernel_size=4, stride=4)]
        else:
            raise ValueError(f'ViTFPNAdapter: patch_size must be 16 or 8, got '
                             f'{patch_size}')
        self.patch_size = patch_size
        self.branches = nn.ModuleList(branches)

    def forward(self, inputs: Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        if len(inputs) != 4:
            raise ValueError(f'ViTFPNAdapter expects 4 feature maps (blocks 3, 5, 7, '
                             f'11), got {len(inputs)}')
        return tuple(branch(x) for branch, x in zip(self.branches, inputs))
