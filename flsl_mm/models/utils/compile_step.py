"""``torch.compile`` of a model's training step (views -> losses) as one graph,
counting its compilations (docs/pretraining.md, "Compiled step")."""
from __future__ import annotations

import logging
import time
from typing import Callable

import torch
from mmengine.logging import print_log


class CompiledStep:
    """``fn`` compiled with ``fullgraph=True`` (a graph break is an error, not
    a silent fallback to Python) and static shapes, counting the graphs its
    backend compiles: ``compiles`` is 1 after the first step of a run whose
    shapes and guards never change; every further one is a recompilation,
    logged as a warning (``TORCH_LOGS=recompiles`` says why).

    Args:
        fn: the step.
        backend: ``'inductor'`` (default) or another ``torch.compile`` backend.
        mode / options: inductor's ``mode`` and ``options``
            (``torch.compile``'s).
        dynamic: ``torch.compile``'s ``dynamic`` (``False``: static shapes).
    """

    def __init__(self, fn: Callable, backend: str | Callable = 'inductor',
                 mode: str | None = None, options: dict | None = None,
                 dynamic: bool | None = False) -> None:
        if backend == 'inductor':
            inner = torch._TorchCompileInductorWrapper(mode, options, dynamic)
        elif mode is not None or options:
            raise ValueError(f'compile: mode / options are inductor\'s, not for the '
                             f'{backend!r} backend')
        else:
            inner = torch._dynamo.lookup_backend(backend) if isinstance(backend, str) \
                else backend
        self.compiles = 0

        def counting(graph, example_inputs):
            self.compiles += 1
            start = time.perf_counter()
            compiled = inner(graph, example_inputs)
            took = f'{time.perf_counter() - start:.1f} s'
            if self.compiles == 1:
                print_log(f'compiled step: graph 1 compiled ({took}, '
                          f'{len(graph.graph.nodes)} nodes)', logger='current')
            else:
                print_log(f'compiled step: graph {self.compiles} compiled ({took}): a '
                          'recompilation (shapes or guards changed; '
                          'TORCH_LOGS=recompiles says why)', logger='current',
                          level=logging.WARNING)
            return compiled

        self.fn = torch.compile(fn, backend=counting, fullgraph=True, dynamic=dynamic)

    def __call__(self, *args, **kwargs):
        return self.fn(*args, **kwargs)


def build_compiled_step(fn: Callable, cfg: bool | dict) -> CompiledStep | None:
    """A :class:`CompiledStep` of ``fn`` from a model's ``compile`` argument
    (``True`` or a dict of :class:`CompiledStep`'s arguments); None for
    ``False``."""
    if not cfg:
        return None
    options = {} if cfg is True else dict(cfg)
    unknown = set(options) - {'backend', 'mode', 'options', 'dynamic'}
    if unknown:
        raise ValueError(f'compile: unknown keys {sorted(unknown)} (backend, mode, '
                         'options, dynamic)')
    return CompiledStep(fn, **options)


__all__ = ['CompiledStep', 'build_compiled_step']
