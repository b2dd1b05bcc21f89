"""FLSL projection head g: DINO-style MLP + weight-normalised prototypes (§2)."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule
from timm.layers import trunc_normal_
from torch.nn.utils.parametrizations import weight_norm

from flsl_mm.registry import MODELS

# Names of the last layer's weight-norm parameters: the reference (old
# ``nn.utils.weight_norm``) and ours (``torch.nn.utils.parametrizations``).
REFERENCE_LAST_LAYER_KEYS = {
    'last_layer.weight_g': 'last_layer.parametrizations.weight.original0',
    'last_layer.weight_v': 'last_layer.parametrizations.weight.original1',
}


@MODELS.register_module()
class FLSLHead(BaseModule):
    """``Linear-GELU-Linear-GELU-Linear -> L2 norm -> weight-normed Linear(K)``.

    Args:
        in_channels: backbone width C.
        out_channels: number of prototypes K (4096 in the published run).
        hidden_channels: MLP width (2048).
        bottleneck_channels: width before the prototypes (256).
        num_layers: MLP layers (3).
        use_bn: BatchNorm1d after the hidden Linear layers (off by default).
        norm_last_layer: freeze the weight-norm magnitude ``g`` at 1.
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int = 4096,
                 hidden_channels: int = 2048,
                 bottleneck_channels: int = 256,
                 num_layers: int = 3,
                 use_bn: bool = False,
                 norm_last_layer: bool = True,
                 init_cfg: dict | None = None) -> None:
        super().__init__(init_cfg=init_cfg)
        num_layers = max(num_layers, 1)
        if num_layers == 1:
            self.mlp = nn.Linear(in_channels, bottleneck_channels)
        else:
            layers: list[nn.Module] = [nn.Linear(in_channels, hidden_channels)]
            if use_bn:
                layers.append(nn.BatchNorm1d(hidden_channels))
            layers.append(nn.GELU())
            for _ in range(num_layers - 2):
                layers.append(nn.Linear(hidden_channels, hidden_channels))
                if use_bn:
                    layers.append(nn.BatchNorm1d(hidden_channels))
                layers.append(nn.GELU())
            layers.append(nn.Linear(hidden_channels, bottleneck_channels))
            self.mlp = nn.Sequential(*layers)
        for m in self.mlp.modules():
            if isinstance(m, nn.Linear):
                trunc_normal_(m.weight, std=.02)
                nn.init.zeros_(m.bias)
        self.last_layer = weight_norm(
            nn.Linear(bottleneck_channels, out_channels, bias=False))
        self.last_layer.parametrizations.weight.original0.data.fill_(1.0)
        self.norm_last_layer = norm_last_layer
        if norm_last_layer:
            self.last_layer.parametrizations.weight.original0.requires_grad = False
        self.out_channels = out_channels
        self._register_load_state_dict_pre_hook(self._load_reference_keys)

    def init_weights(self) -> None:
        if self.init_cfg is not None:
            super().init_weights()

    @staticmethod
    def _load_reference_keys(state_dict, prefix, *args, **kwargs) -> None:
        """Accept the reference's ``last_layer.weight_g/_v`` names."""
        for old, new in REFERENCE_LAST_LAYER_KEYS.items():
            if prefix + old in state_dict and prefix + new not in state_dict:
                state_dict[prefix + new] = state_dict.pop(prefix + old)

    def last_layer_parameters(self) -> list[nn.Parameter]:
        return list(self.last_layer.parameters())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.mlp(x)
        x = F.normalize(x, dim=-1, p=2)
        return self.last_layer(x)
