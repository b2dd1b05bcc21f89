"""Writing generated data sets safely: all or nothing, and once under races."""
from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator


@contextmanager
def atomic_directory(root: Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``root``; renamed to ``root`` when the block
    succeeds, removed when it fails, so ``root`` is never half-written."""
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f'.{root.name}.', dir=root.parent))
    try:
        yield tmp
        os.replace(tmp, root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def ensure_generated(root: str | os.PathLike, marker: str,
                     make: Callable[..., Path], **kwargs) -> Path:
    """``make(root, **kwargs)`` unless ``root/marker`` exists.

    When several processes race, each writes its own temporary folder; the first
    rename wins and the others, finding ``marker``, return ``root``.
    """
    root = Path(root)
    if (root / marker).exists():
        return root
    try:
        return make(root, **kwargs)
    except (FileExistsError, OSError):
        if (root / marker).exists():
            return root
        raise
