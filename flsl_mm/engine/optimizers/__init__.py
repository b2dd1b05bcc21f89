from .flsl_constructor import FLSLOptimWrapperConstructor
from .layer_decay_constructor import LayerDecayOptimWrapperConstructor

__all__ = ['FLSLOptimWrapperConstructor', 'LayerDecayOptimWrapperConstructor']
