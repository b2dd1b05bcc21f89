import pytest
import torch.nn as nn
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS

from flsl_mm.models import FLSLViT


class Det(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = FLSLViT(arch=dict(embed_dims=16, num_layers=3, num_heads=2),
                                out_type='featmap', out_indices=(0, 1, 2),
                                final_norm=False)
        self.neck = nn.Conv2d(16, 8, 1)
        self.norm = nn.LayerNorm(8)


def _groups(rate):
    ctor = OPTIM_WRAPPER_CONSTRUCTORS.build(dict(
        type='LayerDecayOptimWrapperConstructor',
        optim_wrapper_cfg=dict(optimizer=dict(type='AdamW', lr=1.0,
                                              weight_decay=0.05)),
        paramwise_cfg=dict(norm_decay_mult=0.0, layer_decay_rate=rate)))
    model = Det()
    opt = ctor(model).optimizer
    names = {id(p): n for n, p in model.named_parameters()}
    return {names[id(g['params'][0])]: g for g in opt.param_groups}


def test_layer_decay_scales_backbone_depths():
    g = _groups(0.5)
    # L = 3 blocks + 2 = 5 depths: patch embed 0 -> .5^4, block i -> .5^(3 - i)
    assert g['backbone.patch_embed.proj.weight']['lr'] == pytest.approx(0.5**4)
    assert g['backbone.blocks.0.attn.qkv.weight']['lr'] == pytest.approx(0.5**3)
    assert g['backbone.blocks.2.mlp.fc1.weight']['lr'] == pytest.approx(0.5)
    assert g['backbone.blocks.2.norm2.weight']['lr'] == pytest.approx(0.5)
    assert g['neck.weight']['lr'] == 1.0
    # the other paramwise options still apply
    assert g['norm.weight']['weight_decay'] == 0.0
    assert g['neck.weight']['weight_decay'] == 0.05


def test_rate_one_is_the_default_constructor():
    g = _groups(1.0)
    assert all(group['lr'] == 1.0 for group in g.values())
