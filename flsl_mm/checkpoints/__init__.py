"""Reading and writing checkpoints safely (``docs/checkpoints.md``): every load
without running pickles (:mod:`.safe_load`), checkpoints written without numpy
objects so that they need none (:mod:`.plain_format`). Imports nothing of flsl_mm
beyond this package (``flsl_mm.compat`` uses it while flsl_mm is imported)."""
from .plain_format import from_plain, plain_checkpoint, to_plain
from .safe_load import (TRUST_ENV, UnsafeCheckpointError, is_trusted,
                        load_checkpoint_file, trust_checkpoint)

__all__ = ['from_plain', 'to_plain', 'plain_checkpoint', 'load_checkpoint_file',
           'UnsafeCheckpointError', 'trust_checkpoint', 'is_trusted', 'TRUST_ENV']
