"""Layer-wise learning-rate decay for ViT detectors (ViTDet / BEiT style)."""
from __future__ import annotations

import torch.nn as nn
from mmengine.optim import DefaultOptimWrapperConstructor
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class LayerDecayOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """mmengine's default constructor plus layer-wise lr decay of the backbone.

    A backbone parameter at depth ``l`` of ``L`` (``backbone.get_layer_depth``:
    patch embedding 0, block ``i`` -> ``i + 1``) gets ``lr * rate ** (L - 1 - l)``;
    everything else (neck, heads) keeps ``lr``. All other ``paramwise_cfg``
    options (``norm_decay_mult``, ``custom_keys``, ...) work as usual.

    Switch it on in a detection config::

        optim_wrapper = dict(constructor='LayerDecayOptimWrapperConstructor',
                             paramwise_cfg=dict(layer_decay_rate=0.7, ...))
    """

    def add_params(self, params: list, module: nn.Module, prefix: str = '',
                   is_dcn_module=None) -> None:
        start = len(params)
        super().add_params(params, module, prefix, is_dcn_module)
        if prefix:  # only the top-level call rescales, once
            return
        rate = self.paramwise_cfg.get('layer_decay_rate', 1.0)
        backbone = getattr(module, 'backbone', None)
        if rate == 1.0 or not hasattr(backbone, 'get_layer_depth'):
            return
        names = {id(p): n for n, p in module.named_parameters()}
        for group in params[start:]:
            name = names[id(group['params'][0])]
            if not name.startswith('backbone.'):
                continue
            layer, num_layers = backbone.get_layer_depth(name, 'backbone.')
            scale = rate**(num_layers - 1 - layer)
            group['lr'] = group.get('lr', self.base_lr) * scale
            group['lr_scale'] = scale
