"""Save and restore random-number-generator states so that resuming is exact."""
from __future__ import annotations

import random

import numpy as np
import torch
from mmengine.dist import all_gather_object, get_rank, get_world_size
from mmengine.hooks import Hook

from flsl_mm.registry import HOOKS


def get_rng_state() -> dict:
    state = dict(python=random.getstate(), numpy=np.random.get_state(),
                 torch=torch.get_rng_state())
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state['python'])
    np.random.set_state(state['numpy'])
    torch.set_rng_state(state['torch'])
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])


@HOOKS.register_module()
class RNGStateHook(Hook):
    """Store every rank's RNG states in checkpoints; restore them on resume.

    mmengine re-seeds a resumed run from the start, so drop path and (with
    ``num_workers=0``) the data augmentation would draw other numbers than the
    uninterrupted run. With this hook, training N iterations equals training k,
    resuming and training N - k (for resumes at epoch boundaries, where
    mmengine's epoch loop restarts its data loader).
    """

    priority = 'VERY_LOW'

    def __init__(self) -> None:
        self._pending: dict | None = None

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        states = all_gather_object(get_rng_state()) if get_world_size() > 1 \
            else [get_rng_state()]
        checkpoint['rng_states'] = states

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        states = checkpoint.get('rng_states')
        if states and len(states) == get_world_size():
            self._pending = states[get_rank()]

    def before_train(self, runner) -> None:
        # Only a resumed run (iter > 0) continues the saved streams; `load_from`
        # alone starts a new run with fresh seeding.
        if self._pending is not None and runner.iter > 0:
            set_rng_state(self._pending)
        self._pending = None
