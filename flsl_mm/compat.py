"""Fixes for running mmengine 0.10 / mmdet 3.3 / mmpretrain 1.2 on torch >= 2.6 and
numpy 2. Applied once when ``flsl_mm`` is imported; each fix says what it fixes.
Nothing in site-packages is edited: we re-register or wrap at run time.
"""
from __future__ import annotations

import os.path as osp

import torch

_APPLIED = False


def _load_trusted(filename, map_location=None):
    """``torch.load`` of a checkpoint the user asked for, pickles allowed."""
    return torch.load(filename, map_location=map_location, weights_only=False)


def _fix_mmengine_torch_load() -> None:
    """mmengine 0.10.7 calls ``torch.load(f)`` without ``weights_only``.

    Since torch 2.6 the default is ``weights_only=True``, which refuses the numpy
    scalars / arrays and ``HistoryBuffer`` objects that mmengine itself writes into
    every checkpoint (message hub, meta), so ``--resume`` and ``load_from`` break
    with an ``UnpicklingError``. We re-register mmengine's local-file loader
    (the scheme every path without a URL prefix goes through) with
    ``weights_only=False`` -- mmengine's behaviour under torch < 2.6. URL
    loaders are left alone: flsl_mm never downloads weights. Only files the
    user names in a config or on the command line go through this loader;
    treat checkpoints like code and load only trusted ones.
    """
    from mmengine.runner.checkpoint import CheckpointLoader

    @CheckpointLoader.register_scheme(prefixes='', force=True)
    def load_from_local(filename, map_location):  # noqa: F811
        filename = osp.expanduser(filename)
        if not osp.isfile(filename):
            raise FileNotFoundError(f'{filename} can not be found.')
        return _load_trusted(filename, map_location)


def _fix_mmengine_init_dist_without_cuda() -> None:
    """mmengine 0.10.7's ``init_dist('pytorch')`` calls ``torch.cuda.set_device``
    unconditionally, so ``torchrun`` on a machine without a GPU fails before the
    first iteration. Where CUDA is not available we initialise the process group
    ourselves, with ``gloo`` (``nccl`` needs GPUs; a config asking for it gets
    ``gloo`` and a warning). With CUDA, mmengine's own function runs unchanged.
    """
    import torch.distributed as torch_dist
    from mmengine.dist import utils as dist_utils

    original = dist_utils._init_dist_pytorch
    if getattr(original, '_flsl_mm_compat', False):
        return

    def init_dist_pytorch(backend, init_backend='torch', **kwargs) -> None:
        if torch.cuda.is_available():
            return original(backend, init_backend=init_backend, **kwargs)
        if backend != 'gloo':
            import warnings
            warnings.warn(f'flsl_mm: no CUDA device, using the gloo backend instead '
                          f'of {backend!r} for distributed training on CPU')
        torch_dist.init_process_group(backend='gloo', **kwargs)

    init_dist_pytorch._flsl_mm_compat = True
    dist_utils._init_dist_pytorch = init_dist_pytorch


def cpu_ddp_wrapper_cfg(cfg) -> None:
    """mmengine's runner gives DDP ``device_ids=[LOCAL_RANK]`` (also as a default
    argument when the config has a ``model_wrapper_cfg``), which DDP refuses for a
    model on CPU. On a machine without CUDA, a distributed config gets
    ``device_ids=None`` in its ``model_wrapper_cfg`` (created when missing); called by
    ``tools/train.py`` / ``tools/test.py``."""
    if torch.cuda.is_available() or cfg.get('launcher', 'none') == 'none':
        return
    if cfg.get('model_wrapper_cfg') is None:
        cfg.model_wrapper_cfg = dict(
            type='MMDistributedDataParallel', broadcast_buffers=False,
            find_unused_parameters=cfg.get('find_unused_parameters', False))
    cfg.model_wrapper_cfg.setdefault('device_ids', None)


def ops_preflight() -> str:
    """Before a run: refuse an ops setting that would fail at the first detection
    iteration on this machine's device, and return the line saying which ops
    path (mmcv or torchvision) each device uses; ``tools/train.py`` and
    ``tools/test.py`` print it. See :mod:`flsl_mm.compat_ops`."""
    from . import compat_ops
    device = 'cuda' if torch.cuda.is_available() else 'cpu'
    try:
        compat_ops.check_ops_for_device(device)
    except RuntimeError as exc:
        raise SystemExit(str(exc)) from None
    return compat_ops.describe_ops()


def apply() -> None:
    """Apply every fix (idempotent)."""
    global _APPLIED
    if _APPLIED:
        return
    _fix_mmengine_torch_load()
    _fix_mmengine_init_dist_without_cuda()
    # nms / RoIAlign through torchvision where mmcv has no kernels for the device
    from . import compat_ops
    compat_ops.apply()
    _APPLIED = True
