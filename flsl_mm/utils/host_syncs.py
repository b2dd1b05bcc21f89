"""Counting what would synchronise a GPU with the host, on any device, the CPU
included (docs/pretraining.md, "Host synchronisations").

On a GPU, the host queues kernels and runs ahead; it stalls until the device's
queue drains whenever it needs a device value (``item``, ``bool(t)``, ``tolist``,
...), an output whose shape depends on device data (``nonzero``, boolean-mask
indexing, ``unique``, ...), or copies host memory to the device without
``non_blocking=True`` from pinned memory (``torch.tensor(data, device=...)``,
``host.to(device)``, indexing a device tensor with a Python list or a host
tensor). :class:`HostSyncCounter` finds all of these on the CPU, where nothing
stalls, by tracking which tensors live on the host:

* *host tensors*: made from host data (``torch.tensor`` / ``as_tensor`` of lists
  or numpy, ``from_numpy``, factories without ``device=``), the loader's batches
  (pinned when the loader pins), the optimiser's host step counts (PyTorch keeps
  them on the CPU unless ``fused`` / ``capturable``), and what is computed from
  host tensors only;
* *device tensors*: everything else -- parameters, buffers, gradients, what a
  ``.to(device)`` returns, and what is computed from any device tensor.

Reading a device tensor on the host, a data-dependent shape of one, a blocking
host-to-device copy and a host tensor (not a 0-dim scalar) meeting device
tensors in an operation are *syncs*; each is recorded with its call stack.
Non-blocking copies from pinned host memory are *transfers* (recorded, not
syncs). On a GPU, ``torch.cuda.set_sync_debug_mode`` counts the same events
(:class:`~flsl_mm.engine.hooks.host_sync_hook.HostSyncHook` uses whichever
applies).

Limits: it sees calls made from Python (``__torch_function__``), not kernels
called from C++ (autograd's backward works on device tensors only), nor inside
a ``torch.compile`` graph (traced through, it counts the graph as one device
computation);
``.to('cpu')`` of a device tensor is counted when ``'cpu'`` is written as a
string (``x.to(torch.device('cpu'))`` is not told apart from ``x.to(device)`` on
a CPU run).
"""
from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from typing import Any, Iterable

import torch
from torch.overrides import TorchFunctionMode
from torch.utils.weak import WeakTensorKeyDictionary

#: a device tensor read on the host
READS = frozenset({
    'item', 'tolist', 'numpy', 'cpu', '__bool__', '__int__', '__float__', '__index__',
    '__complex__', '__format__', '__repr__', '__str__', '__array__', '__contains__',
    '__reduce_ex__', 'equal', 'allclose', 'is_nonzero', '_local_scalar_dense'})
#: outputs whose shape depends on the data
DATA_DEPENDENT = frozenset({
    'nonzero', 'argwhere', 'masked_select', 'unique', 'unique_consecutive',
    '_unique', '_unique2', 'bincount', 'masked_scatter'})
#: indexing: a boolean index, a Python sequence or a host tensor as index syncs
INDEXING = frozenset({'__getitem__', '__setitem__', 'index_put_', 'index_put', 'index'})
#: factories: a host tensor unless ``device=`` is given
FACTORIES = frozenset({
    'zeros', 'ones', 'empty', 'full', 'arange', 'range', 'linspace', 'logspace', 'eye',
    'rand', 'randn', 'randint', 'randperm', 'empty_strided', 'tril_indices',
    'triu_indices', 'scalar_tensor'})
#: tensors from host data: a host tensor, or a blocking copy with ``device=``
FROM_DATA = frozenset({'tensor', 'as_tensor', 'asarray', 'Tensor', 'LongTensor',
                       'FloatTensor', 'IntTensor', 'BoolTensor', 'ByteTensor',
                       'DoubleTensor', 'HalfTensor', 'BFloat16Tensor'})
_HOST, _PINNED = 'host', 'pinned'


@dataclass
class SyncEvent:
    """One host synchronisation: what, and where it came from."""
    kind: str  # 'read', 'data-dependent shape', 'blocking copy', 'host tensor'
    what: str
    stack: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return f'{self.kind}: {self.what}\n' + ''.join(self.stack)


@dataclass
class Transfer:
    """A non-blocking host-to-device copy from pinned memory."""
    shape: tuple
    dtype: torch.dtype
    where: str


def _tensors(obj: Any, depth: int = 0) -> Iterable[torch.Tensor]:
    """The tensors in ``obj`` (tensors, and lists / tuples / dicts of them)."""
    if isinstance(obj, torch.Tensor):
        yield obj
    elif depth < 3 and isinstance(obj, (list, tuple)):
        for item in obj:
            yield from _tensors(item, depth + 1)
    elif depth < 3 and isinstance(obj, dict):
        for item in obj.values():
            yield from _tensors(item, depth + 1)


def _names_cpu(device: Any) -> bool:
    """``device`` written as the host: the string ``'cpu'`` (a ``torch.device``
    may be a tensor's, i.e. the training device on a CPU run)."""
    return isinstance(device, str) and device.startswith('cpu')


def _is_sequence_index(index: Any) -> bool:
    """A Python list / tuple of numbers used as an advanced index."""
    items = index if isinstance(index, tuple) else (index,)
    return any(isinstance(i, list) and i and not isinstance(i[0], torch.Tensor)
               for i in items)


class HostSyncCounter(TorchFunctionMode):
    """A ``TorchFunctionMode`` that tracks host and device tensors and records
    every host synchronisation a GPU would make (module docstring).

    Use as a context (one per thread); ``counting`` says whether events are
    recorded (tensors are tracked either way, so that a tensor made while not
    counting keeps its place). The tracking outlives the contexts: enter it
    again for the next iteration.

    Args:
        stack_depth: frames kept per event.
        on_sync: called with each :class:`SyncEvent` while counting (e.g. to
            raise at the first one).
    """

    def __init__(self, stack_depth: int = 14, on_sync=None) -> None:
        super().__init__()
        self.stack_depth = stack_depth
        self.on_sync = on_sync
        self.counting = False
        self.events: list[SyncEvent] = []
        self.transfers: list[Transfer] = []
        self._host = WeakTensorKeyDictionary()
        self._patched: list = []

    # ------------------------------------------------------------- marking
    def mark_host(self, data: Any, pinned: bool = False) -> None:
        """Mark the tensors in ``data`` (tensors, lists, tuples, dicts, data
        elements) as host memory, pinned or not."""
        for t in self._walk(data):
            self._host[t] = _PINNED if pinned else _HOST

    def _walk(self, data: Any, depth: int = 0) -> Iterable[torch.Tensor]:
        if isinstance(data, torch.Tensor):
            yield data
        elif depth > 6:
            return
        elif isinstance(data, dict):
            for v in data.values():
                yield from self._walk(v, depth + 1)
        elif isinstance(data, (list, tuple)):
            for v in data:
                yield from self._walk(v, depth + 1)
        elif hasattr(data, 'all_values'):  # mmengine's BaseDataElement
            for v in data.all_values():
                yield from self._walk(v, depth + 1)

    def mark_optimizer_state(self, optimizer: torch.optim.Optimizer) -> None:
        """PyTorch's optimisers keep ``state['step']`` on the host unless the
        group is ``fused`` or ``capturable`` (a checkpoint restores it there)."""
        for group in optimizer.param_groups:
            if group.get('fused') or group.get('capturable'):
                continue
            for p in group['params']:
                step = optimizer.state.get(p, {}).get('step')
                if isinstance(step, torch.Tensor):
                    self._host[step] = _HOST

    def is_host(self, t: torch.Tensor) -> bool:
        return t in self._host

    # ------------------------------------------------------------ recording
    def _record(self, kind: str, what: str) -> None:
        if not self.counting:
            return
        stack = traceback.format_list(
            traceback.extract_stack(limit=self.stack_depth + 2)[:-2])
        event = SyncEvent(kind, what, stack)
        self.events.append(event)
        if self.on_sync is not None:
            self.on_sync(event)

    def _where(self) -> str:
        frame = traceback.extract_stack(limit=3)[0]
        return f'{frame.filename}:{frame.lineno}'

    # ------------------------------------------------------------ the mode
    def __enter__(self):
        # torch.from_numpy / frombuffer bypass __torch_function__
        for name in ('from_numpy', 'frombuffer'):
            original = getattr(torch, name)

            def creator(*args, _original=original, **kwargs):
                out = _original(*args, **kwargs)
                self._host[out] = _HOST
                return out
            setattr(torch, name, creator)
            self._patched.append((name, original))
        return super().__enter__()

    def __exit__(self, *exc):
        for name, original in self._patched:
            setattr(torch, name, original)
        self._patched.clear()
        return super().__exit__(*exc)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if torch.compiler.is_compiling():
            # traced by torch.compile: the compiled graph is one device
            # computation (its host reads would be graph nodes; the compile
            # tests check there are none)
            return func(*args, **kwargs)
        name = getattr(func, '__name__', '')
        inputs = list(_tensors(args)) + list(_tensors(kwargs))
        device_in = [t for t in inputs if t not in self._host]
        host_in = [t for t in inputs if t in self._host]
        out_host = None  # None: decided by the inputs
        if name in READS and device_in:
            self._record('read', f'{name}() of a device tensor '
                         f'{tuple(device_in[0].shape)}')
            out_host = True
        elif name == 'to' or name == 'cuda' or name == 'pin_memory':
            out_host = self._transfer(name, args, kwargs, host_in, device_in)
        elif name == 'copy_':
            self._copy(args, kwargs)
        elif name in FROM_DATA or name in FACTORIES:
            if not inputs:
                device = kwargs.get('device')
                if device is not None and not _names_cpu(device):
                    if name in FROM_DATA:
                        self._record('blocking copy', f'torch.{name}(host data, '
                                     f'device={kwargs["device"]})')
                    out_host = False
                else:
                    out_host = True
        else:
            if name in DATA_DEPENDENT and device_in:
                self._record('data-dependent shape', f'{name}() of a device tensor')
            elif name == 'where' and len(args) + len(kwargs) == 1 and device_in:
                self._record('data-dependent shape', 'torch.where(condition)')
            elif name == 'repeat_interleave' and device_in and \
                    'output_size' not in kwargs:
                self._record('data-dependent shape', 'repeat_interleave() without '
                             'output_size')
            if name in INDEXING and device_in:
                self._indexing(name, args, host_in)
            elif device_in and any(t.dim() > 0 for t in host_in):
                self._record('host tensor', f'{name}() of device tensors and a host '
                             f'tensor {tuple(next(t for t in host_in if t.dim()).shape)}'
                             ' (copied to the device, blocking)')
        out = func(*args, **kwargs)
        if name in ('to', 'cpu') and isinstance(out, torch.Tensor) and out is args[0] \
                and out_host is not None and out_host != (out in self._host):
            # a copy between host and device on a GPU, the same tensor on the CPU:
            # a new tensor object (a view) stands for the copy, the original keeps
            # its place
            out = out.view_as(out)
        if out_host is None:
            out_host = bool(inputs) and not device_in
        if out_host:
            pinned = name == 'pin_memory' or (
                name == '__getitem__' and host_in and self._host.get(args[0]) == _PINNED)
            for t in _tensors(out):
                if t not in self._host or self._host[t] != _PINNED:
                    self._host[t] = _PINNED if pinned else _HOST
        else:
            for t in _tensors(out):
                if t in self._host and not any(t is i for i in inputs):
                    del self._host[t]
        return out

    def _transfer(self, name, args, kwargs, host_in, device_in) -> bool:
        """``to`` / ``cuda`` / ``pin_memory``: whether the output is on the host."""
        src = args[0]
        if name == 'pin_memory':
            return src in self._host
        if name == 'cuda':
            device, non_blocking = 'cuda', kwargs.get('non_blocking', False)
        else:
            device, _, non_blocking, _ = torch._C._nn._parse_to(
                *args[1:], **{k: v for k, v in kwargs.items() if k != 'copy'})
            if device is None and args[1:] and isinstance(args[1], torch.Tensor):
                device = args[1].device
        if device is None:  # a dtype change: where it was
            return src in self._host
        to_cpu = any(_names_cpu(a) for a in list(args[1:]) + [kwargs.get('device')])
        if src in self._host:
            if to_cpu:
                return True
            if non_blocking and self._host[src] == _PINNED:
                if self.counting:
                    self.transfers.append(Transfer(tuple(src.shape), src.dtype,
                                                   self._where()))
            else:
                why = 'not pinned' if non_blocking else 'non_blocking=False'
                self._record('blocking copy', f'{name}(device) of a host tensor '
                             f'{tuple(src.shape)} ({why})')
            return False
        if to_cpu:
            self._record('read', f'{name}(\'cpu\') of a device tensor '
                         f'{tuple(src.shape)}')
            return True
        return False

    def _copy(self, args, kwargs) -> None:
        dst, src = args[0], args[1] if len(args) > 1 else kwargs.get('src')
        if not isinstance(src, torch.Tensor):
            return
        non_blocking = (args[2] if len(args) > 2 else kwargs.get('non_blocking', False))
        if dst in self._host and src not in self._host:
            self._record('read', f'copy_ of a device tensor {tuple(src.shape)} into '
                         'host memory')
        elif dst not in self._host and src in self._host and src.dim() > 0:
            if non_blocking and self._host[src] == _PINNED:
                if self.counting:
                    self.transfers.append(Transfer(tuple(src.shape), src.dtype,
                                                   self._where()))
            else:
                self._record('blocking copy', f'copy_ of a host tensor '
                             f'{tuple(src.shape)} into device memory')

    def _indexing(self, name, args, host_in) -> None:
        index = args[1] if len(args) > 1 else None
        items = index if isinstance(index, tuple) else (index,)
        for item in items:
            if isinstance(item, torch.Tensor) and item.dtype in (torch.bool, torch.uint8):
                self._record('data-dependent shape', f'{name} with a boolean mask')
                return
        if any(t.dim() > 0 for t in host_in):
            self._record('host tensor', f'{name} with a host tensor (index or value, '
                         'copied to the device, blocking)')
        elif _is_sequence_index(index):
            self._record('host tensor', f'{name} with a Python list as index '
                         '(copied to the device, blocking)')


__all__ = ['HostSyncCounter', 'SyncEvent', 'Transfer']
