"""Checkpoints that load with ``torch.load(weights_only=True)``: numpy objects and
mmengine's ``HistoryBuffer`` written as plain data (``docs/checkpoints.md``).

mmengine writes numpy arrays and scalars (message hub, RNG states) and
``HistoryBuffer`` objects into every checkpoint; unpickling those needs numpy's
reconstruction functions, ``numpy.dtype`` -- rebuilt through ``builtins.getattr``,
which reaches any attribute of anything -- and mmengine's class. Before a
checkpoint is saved, :func:`to_plain` replaces each of them by a small dict of
tensors, lists and numbers tagged with ``TYPE_KEY``; after a safe load,
:func:`from_plain` restores the very same objects (dtype, shape and values
bit for bit), so a resumed run is bitwise the run that never stopped.

Nothing but tensors, containers and Python scalars is written; everything else
is left as it is (and a safe load then names it).
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np
import torch

TYPE_KEY = '__flsl_mm_type__'
#: numpy dtypes stored as a tensor of the same width (torch's unsigned support
#: is partial: they travel as the signed type's bits).
_SAME_BITS = {'uint16': 'int16', 'uint32': 'int32', 'uint64': 'int64'}
_TENSOR_DTYPES = {'bool', 'uint8', 'int8', 'int16', 'int32', 'int64', 'float16',
                  'float32', 'float64', 'complex64', 'complex128'}


def _history_buffer_class():
    from mmengine.logging import HistoryBuffer
    return HistoryBuffer


def _encode_array(arr: np.ndarray) -> dict:
    name = arr.dtype.name
    if arr.dtype.byteorder == '>':
        arr = arr.astype(arr.dtype.newbyteorder('<'))
    if name in _SAME_BITS:
        data = torch.from_numpy(arr.copy(order='C').view(_SAME_BITS[name]))
    elif name in _TENSOR_DTYPES:
        data = torch.from_numpy(arr.copy(order='C'))
    else:  # strings, objects: as (nested) lists
        return {TYPE_KEY: 'ndarray_list', 'dtype': arr.dtype.str,
                'data': to_plain(arr.tolist())}
    return {TYPE_KEY: 'ndarray', 'dtype': name, 'data': data}


def _decode_array(obj: dict) -> np.ndarray:
    if obj[TYPE_KEY] == 'ndarray_list':
        return np.array(from_plain(obj['data']), dtype=np.dtype(obj['dtype']))
    arr = obj['data'].numpy()
    if obj['dtype'] in _SAME_BITS:
        arr = arr.view(obj['dtype'])
    return arr.copy()


def to_plain(obj: Any) -> Any:
    """``obj`` with every numpy array / scalar and ``HistoryBuffer`` replaced by a
    tagged dict of plain data (containers rebuilt, tensors and the rest kept)."""
    if isinstance(obj, torch.Tensor):
        return obj
    if isinstance(obj, np.ndarray):
        return _encode_array(obj)
    if isinstance(obj, np.generic):
        return {TYPE_KEY: 'np_scalar', 'dtype': obj.dtype.name,
                'data': _encode_array(np.asarray(obj))}
    if type(obj) in (dict, OrderedDict):
        return type(obj)((k, to_plain(v)) for k, v in obj.items())
    if isinstance(obj, list):
        return [to_plain(v) for v in obj]
    if isinstance(obj, tuple) and not hasattr(obj, '_fields'):
        return tuple(to_plain(v) for v in obj)
    if type(obj) is _history_buffer_class():
        return {TYPE_KEY: 'HistoryBuffer', 'state': to_plain(dict(vars(obj)))}
    return obj


def from_plain(obj: Any) -> Any:
    """The inverse of :func:`to_plain` (anything untagged is returned as it is)."""
    if isinstance(obj, dict):
        kind = obj.get(TYPE_KEY)
        if kind in ('ndarray', 'ndarray_list'):
            return _decode_array(obj)
        if kind == 'np_scalar':
            return _decode_array(obj['data'])[()]
        if kind == 'HistoryBuffer':
            cls = _history_buffer_class()
            buffer = cls.__new__(cls)
            buffer.__dict__.update(from_plain(obj['state']))
            buffer._set_default_statistics()  # what __init__ registers (class-wide)
            return buffer
        if kind is not None:
            raise ValueError(f'unknown {TYPE_KEY} {kind!r} in a checkpoint written '
                             'by a newer flsl_mm')
        return type(obj)((k, from_plain(v)) for k, v in obj.items())
    if isinstance(obj, list):
        return [from_plain(v) for v in obj]
    if isinstance(obj, tuple) and not hasattr(obj, '_fields'):
        return tuple(from_plain(v) for v in obj)
    return obj


def plain_checkpoint(checkpoint: dict) -> dict:
    """A checkpoint dict ready for ``torch.save``: every entry but the model's
    ``state_dict`` (tensors only, left untouched) through :func:`to_plain`."""
    return {k: (v if k == 'state_dict' else to_plain(v)) for k, v in checkpoint.items()}
