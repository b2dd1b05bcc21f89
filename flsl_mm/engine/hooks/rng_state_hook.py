"""Save and restore random-number-generator states so that resuming is exact."""
from __future__ import annotations

import contextlib
import random

import numpy as np
import torch
from mmengine.dist import all_gather_object, get_rank, get_world_size
from mmengine.hooks import Hook

from flsl_mm.registry import HOOKS
from .iter_schedule import checkpoint_due


def get_rng_state() -> dict:
    """This process's RNG states. On CUDA only the *current* device's generator is
    kept (each rank draws on its own device): a run saved with 8 visible GPUs then
    resumes where fewer are visible."""
    state = dict(python=random.getstate(), numpy=np.random.get_state(),
                 torch=torch.get_rng_state())
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict) -> bool:
    """Restore :func:`get_rng_state`'s states; returns False when a CUDA state
    could not be restored (then the CUDA generator keeps its seeding).

    Checkpoints written before the current-device rule hold every visible GPU's
    state (a list): the current device's entry is used when it exists."""
    random.setstate(state['python'])
    np.random.set_state(state['numpy'])
    torch.set_rng_state(state['torch'])
    cuda = state.get('cuda')
    if cuda is None or not torch.cuda.is_available():
        return cuda is None
    if isinstance(cuda, (list, tuple)):
        index = torch.cuda.current_device()
        if index >= len(cuda):
            return False
        cuda = cuda[index]
    torch.cuda.set_rng_state(cuda)
    return True


@contextlib.contextmanager
def preserved_rng_state():
    """Run the body without consuming the process's random streams: Python's,
    numpy's, torch's CPU and current CUDA generators are restored after it
    (for work beside training, e.g. :class:`DenseProbeHook`)."""
    state = get_rng_state()
    try:
        yield
    finally:
        set_rng_state(state)


@HOOKS.register_module()
class RNGStateHook(Hook):
    """Store every rank's RNG states in checkpoints; restore them on resume.

    mmengine re-seeds a resumed run from the start, so drop path and (with
    ``num_workers=0``) the data augmentation would draw other numbers than the
    uninterrupted run. With this hook, training N iterations equals training k,
    resuming and training N - k (for resumes at epoch boundaries, where
    mmengine's epoch loop restarts its data loader).

    mmengine saves checkpoints on rank 0 only (``Runner.save_checkpoint`` is
    ``master_only``), so the states cannot be gathered there: every rank gathers
    them right before a save that ``CheckpointHook`` will make (its own interval
    rule, evaluated on every rank; this hook's priority is above the checkpoint
    hook's), and at every epoch end, and rank 0 writes the gathered list.
    """

    priority = 'LOW'  # before CheckpointHook (VERY_LOW) in after_train_*

    def __init__(self) -> None:
        self._pending: dict | None = None
        self._gathered: tuple[int, list] | None = None  # (iter, states)

    def _gather(self, runner) -> None:
        state = get_rng_state()
        states = all_gather_object(state) if get_world_size() > 1 else [state]
        self._gathered = (runner.iter, states)

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs=None) -> None:
        if checkpoint_due(runner, by_epoch=False):
            self._gather(runner)

    def after_train_epoch(self, runner) -> None:
        self._gather(runner)

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        if self._gathered is not None and self._gathered[0] == runner.iter:
            checkpoint['rng_states'] = self._gathered[1]
        elif get_world_size() == 1:
            checkpoint['rng_states'] = [get_rng_state()]
        else:
            runner.logger.warning(
                'RNGStateHook: checkpoint at iteration %d saved without RNG states '
                '(not a save point CheckpointHook announced); a resume from it is '
                're-seeded, not exact', runner.iter)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        states = checkpoint.get('rng_states')
        if not states:
            return
        if len(states) != get_world_size():
            runner.logger.warning(
                'RNGStateHook: the checkpoint holds RNG states of %d process(es), '
                'this run has %d: RNG states are not restored (the resumed run is '
                're-seeded; model, optimiser and schedules are restored exactly)',
                len(states), get_world_size())
            return
        self._pending = states[get_rank()]

    def before_train(self, runner) -> None:
        # Only a resumed run (iter > 0) continues the saved streams; `load_from`
        # alone starts a new run with fresh seeding.
        if self._pending is not None and runner.iter > 0:
            if not set_rng_state(self._pending):
                runner.logger.warning(
                    'RNGStateHook: the checkpoint\'s CUDA RNG state does not fit this '
                    'machine (CPU-only now, or fewer visible GPUs than when it was '
                    'saved): the CUDA generator is re-seeded, the rest restored')
        self._pending = None
