"""The model a runner trains, without its distributed wrapper (DDP, FSDP): what
FLSL's hooks read and update (teacher, schedules, gradients, probes)."""
from __future__ import annotations

import torch
from mmengine.model import is_model_wrapper


def runner_model(runner) -> torch.nn.Module:
    """``runner.model``, unwrapped from mmengine's model wrappers."""
    model = runner.model
    return model.module if is_model_wrapper(model) else model
