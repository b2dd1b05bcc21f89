"""Where flsl_mm registers its components.

Every flsl_mm component is registered once, in mmengine's *root* registries. The
OpenMMLab downstream libraries' registries (``mmdet.registry.MODELS``,
``mmpretrain.registry.MODELS``, ...) are children of those roots, and a child that
does not know a name asks its parents. So ``type='FLSLViT'`` resolves from a config
whose ``default_scope`` is ``mmpretrain`` *and* from one whose scope is ``mmdet``,
with no duplicated registration. See ``docs/registry.md``.
"""
from mmengine.registry import (DATA_SAMPLERS, DATASETS, FUNCTIONS, HOOKS, LOOPS, METRICS,
                               MODEL_WRAPPERS, MODELS, TRANSFORMS)

__all__ = ['DATA_SAMPLERS', 'DATASETS', 'FUNCTIONS', 'HOOKS', 'LOOPS', 'METRICS',
           'MODEL_WRAPPERS', 'MODELS', 'TRANSFORMS']
