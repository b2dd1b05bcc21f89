"""Optimizer constructor of FLSL pretraining: the EMA teacher stays out."""
from __future__ import annotations

import torch.nn as nn
from mmengine.optim import DefaultOptimWrapperConstructor
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class FLSLOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """mmengine's default constructor that skips the ``teacher`` sub-module.

    The teacher only moves by EMA; the default constructor would leave its frozen
    parameters out too, but log one warning per parameter (hundreds of lines).
    """

    def add_params(self, params: list, module: nn.Module, prefix: str = '',
                   is_dcn_module=None) -> None:
        if prefix == 'teacher' or prefix.startswith('teacher.'):
            return
        super().add_params(params, module, prefix, is_dcn_module)
