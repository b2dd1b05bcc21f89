"""Test plugin (``custom_imports``): the run ends, as a kill would, right after
``ResumableCheckpointHook`` wrote the checkpoint named by
``FLSL_MM_TEST_STOP_AFTER`` (e.g. ``iter_2.pth``), before anything else of the
iteration; for a resume from a mid-epoch checkpoint that a later regular one
would otherwise have superseded (and pruned)."""
import os

from flsl_mm.engine.hooks.resumable_checkpoint_hook import ResumableCheckpointHook

_write = ResumableCheckpointHook._write


def _write_then_stop(self, runner, name, meta, mid_epoch):
    path = _write(self, runner, name, meta, mid_epoch)
    if name == os.environ.get('FLSL_MM_TEST_STOP_AFTER'):
        raise KeyboardInterrupt(f'test stop after writing {name}')
    return path


ResumableCheckpointHook._write = _write_then_stop
