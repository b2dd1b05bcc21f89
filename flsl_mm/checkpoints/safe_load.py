"""Every checkpoint flsl_mm reads goes through :func:`load_checkpoint_file`: no
pickle of a file can run code (``docs/checkpoints.md``).

* ``.safetensors`` files are read with safetensors (tensors only, by design);
* everything else with ``torch.load(weights_only=True)`` -- torch's restricted
  unpickler: tensors, containers, Python scalars and the globals of
  :data:`ALLOWED_GLOBALS` (none: our checkpoints are written without numpy objects,
  :mod:`.plain_format`) -- then :func:`~.plain_format.from_plain`;
* a file that needs more is refused with :class:`UnsafeCheckpointError`: the file,
  the global it refused, and the two ways on: trust that one file (a warning is
  printed; ``--trust-checkpoint PATH`` on the tools, ``trust_checkpoints=[PATH]``
  in a config, or ``FLSL_MM_TRUST_CHECKPOINTS``), or convert it once with
  ``tools/misc/upgrade_checkpoint.py``.

Trust is given per file (its real path), never globally.
"""
from __future__ import annotations

import io
import os
import os.path as osp
import pickle
import re
import warnings
from typing import Any, BinaryIO

import torch

from .plain_format import from_plain

TRUST_ENV = 'FLSL_MM_TRUST_CHECKPOINTS'
#: Globals a weights-only load may rebuild beyond torch's own: none. Never add
#: ``builtins.getattr`` (it reaches any attribute of anything).
ALLOWED_GLOBALS: list = []

_trusted: set[str] = set()
#: every full-pickle load of this process (path), for tests and the log
trusted_loads: list[str] = []


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint whose pickle would need globals a weights-only load refuses."""

    def __init__(self, name: str, refused: str) -> None:
        self.path = name
        self.refused = refused
        super().__init__(
            f'{name}: refused to load: its pickle needs {refused}, which a '
            'weights-only load does not run (a checkpoint can execute code when '
            'unpickled). If you trust this file -- e.g. a checkpoint written by an '
            'flsl_mm before safe checkpoints -- load it anyway with '
            f'--trust-checkpoint {name} (tools), trust_checkpoints=[{name!r}] '
            f'(config) or {TRUST_ENV}={name}; or convert it once: python '
            f'tools/misc/upgrade_checkpoint.py {name} NEW.pth --trust '
            '(docs/checkpoints.md)')


def _key(path: str) -> str:
    return osp.realpath(osp.expanduser(path))


def trust_checkpoint(path: str) -> None:
    """Allow a full pickle load of ``path`` (and only of it) in this process."""
    _trusted.add(_key(path))


def is_trusted(path: str) -> bool:
    env = [p for p in os.environ.get(TRUST_ENV, '').split(os.pathsep) if p]
    return _key(path) in _trusted or _key(path) in {_key(p) for p in env}


def _refused_global(message: str) -> str | None:
    """The global torch's weights-only unpickler refused (None: it failed on
    something else, e.g. a file that is not a pickle at all)."""
    match = re.search(r'GLOBAL ([\w.]+)', message)
    return match.group(1).rstrip('.') if match else None


def _map_device(map_location) -> str:
    if map_location is None or callable(map_location) or isinstance(map_location, dict):
        return 'cpu'
    return str(map_location)


def load_safetensors(path: str, map_location=None) -> dict:
    from safetensors.torch import load_file
    try:
        return load_file(path, device=_map_device(map_location))
    except Exception as exc:  # noqa: BLE001 - a bad file is the answer
        raise ValueError(f'{path}: not a readable safetensors file ({exc})') from None


def load_checkpoint_file(f: str | os.PathLike | BinaryIO, map_location=None, *,
                         name: str | None = None, trust: bool | None = None,
                         **torch_kwargs) -> Any:
    """Load a checkpoint without running its pickle.

    ``f``: a path (``.safetensors`` or a torch file) or an open binary file;
    ``name``: what messages call it (default: the path); ``trust``: full pickle
    load for this call (default: whether the path was trusted, see
    :func:`trust_checkpoint`); ``torch_kwargs`` (e.g. ``mmap=True``) go to
    ``torch.load``."""
    path = os.fspath(f) if isinstance(f, (str, os.PathLike)) else None
    name = name or path or getattr(f, 'name', '<stream>')
    if path is not None and path.endswith('.safetensors'):
        return load_safetensors(path, map_location)
    if trust is None:
        trust = path is not None and is_trusted(path)
    if trust:
        warnings.warn(f'{name}: loaded with a full pickle load (trusted by the user): '
                      'it can run code', stacklevel=2)
        trusted_loads.append(name)
        ckpt = torch.load(f, map_location=map_location, weights_only=False,
                          **torch_kwargs)
        return from_plain(ckpt)
    try:
        with torch.serialization.safe_globals(ALLOWED_GLOBALS):
            ckpt = torch.load(f, map_location=map_location, weights_only=True,
                              **torch_kwargs)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        if 'Weights only load failed' not in text and 'weights_only' not in text:
            raise
        refused = _refused_global(text)
        if refused is None:
            why = next((ln.strip() for ln in text.splitlines()
                        if 'WeightsUnpickler error' in ln), text.splitlines()[0])
            raise pickle.UnpicklingError(
                f'{name}: not a torch checkpoint that can be read safely ({why})'
            ) from None
        raise UnsafeCheckpointError(name, refused) from None
    return from_plain(ckpt)


def load_bytes(data: bytes, map_location=None, name: str = '<bytes>') -> Any:
    """:func:`load_checkpoint_file` of an in-memory checkpoint (e.g. read from a
    storage backend)."""
    return load_checkpoint_file(io.BytesIO(data), map_location, name=name)


def add_trust_argument(parser) -> None:
    """The tools' ``--trust-checkpoint PATH`` (repeatable)."""
    parser.add_argument(
        '--trust-checkpoint', action='append', default=[], metavar='PATH',
        help='load this checkpoint with a full pickle load (it can run code): only '
             'for a file you trust, e.g. one written by an flsl_mm before safe '
             'checkpoints (docs/checkpoints.md)')


def apply_trust(paths, source: str = '--trust-checkpoint') -> None:
    """Trust each of ``paths`` (a list of paths; ``source`` names where they came
    from in messages)."""
    if paths is None:
        return
    if isinstance(paths, (str, os.PathLike)) or not all(
            isinstance(p, (str, os.PathLike)) for p in paths):
        raise ValueError(f'{source}: expected a list of checkpoint paths, got '
                         f'{paths!r}')
    for path in paths:
        trust_checkpoint(os.fspath(path))
