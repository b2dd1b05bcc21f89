"""Fixes for running mmengine 0.10 / mmdet 3.3 / mmpretrain 1.2 on torch >= 2.6 and
numpy 2. Applied once when ``flsl_mm`` is imported; each fix says what it fixes.
Nothing in site-packages is edited: we re-register or wrap at run time.
"""
from __future__ import annotations


import torch

_APPLIED = False


class _TorchWithSafeLoad:
    """``torch`` as ``mmengine.runner.checkpoint`` sees it: ``load`` is
    :func:`flsl_mm.checkpoints.safe_load.load_checkpoint_file`, everything else torch's."""

    @staticmethod
    def load(f, map_location=None, **kwargs):
        from .checkpoints.safe_load import load_checkpoint_file
        kwargs.pop('weights_only', None)
        return load_checkpoint_file(f, map_location, **kwargs)

    def __getattr__(self, name):
        return getattr(torch, name)


def load_url_safely(url, model_dir=None, map_location=None, progress=True,
                    check_hash=False, file_name=None):
    """mmengine's ``load_url`` (``http(s)://``, ``torchvision://``,
    ``open-mmlab://``, ``mmcls://``): download once into torch's hub cache (rank 0
    first), then :func:`flsl_mm.checkpoints.safe_load.load_checkpoint_file`."""
    import os
    import torch.distributed as dist
    from torch.hub import download_url_to_file, get_dir
    from urllib.parse import urlparse

    from .checkpoints.safe_load import load_checkpoint_file
    model_dir = model_dir or os.path.join(get_dir(), 'checkpoints')
    os.makedirs(model_dir, exist_ok=True)
    cached = os.path.join(model_dir, file_name or os.path.basename(urlparse(url).path))

    def fetch():
        if not os.path.exists(cached):
            download_url_to_file(url, cached, hash_prefix=None, progress=progress)
    distributed = dist.is_available() and dist.is_initialized()
    if not distributed or dist.get_rank() == 0:
        fetch()
    if distributed:
        dist.barrier()
        fetch()
    return load_checkpoint_file(cached, map_location, name=f'{url} ({cached})')


def _fix_mmengine_checkpoint_io() -> None:
    """Checkpoints are loaded without running pickles, and written so that they
    need none (``docs/checkpoints.md``).

    mmengine 0.10.7 reads every checkpoint with ``torch.load`` -- without
    ``weights_only``, i.e. a full pickle load under torch < 2.6, a refusal of its
    own numpy / ``HistoryBuffer`` objects under torch >= 2.6 -- and through
    ``torch.hub`` (``weights_only=False``) for URLs. Here:

    * ``mmengine.runner.checkpoint`` sees a ``torch`` whose ``load`` is
      :func:`flsl_mm.checkpoints.safe_load.load_checkpoint_file` (every scheme that
      reads a file or a stream: local paths -- ``--resume``, ``load_from``,
      ``init_cfg=dict(type='Pretrained')`` --, ``s3://``, ``pavi://``), and its
      ``load_url`` is :func:`load_url_safely` (``http(s)://`` and the schemes
      built on it);
    * the ``save_checkpoint`` the Runner calls first replaces numpy objects and
      ``HistoryBuffer`` s by plain data (:mod:`flsl_mm.checkpoints.plain_format`).
    """
    from mmengine.runner import checkpoint as ckpt_module
    from mmengine.runner import runner as runner_module

    from .checkpoints.plain_format import plain_checkpoint
    if isinstance(ckpt_module.torch, _TorchWithSafeLoad):
        return
    ckpt_module.torch = _TorchWithSafeLoad()
    ckpt_module.load_url = load_url_safely
    original_save = ckpt_module.save_checkpoint

    def save_checkpoint(checkpoint, filename, *args, **kwargs):
        return original_save(plain_checkpoint(checkpoint), filename, *args, **kwargs)

    save_checkpoint.__doc__ = original_save.__doc__
    ckpt_module.save_checkpoint = save_checkpoint
    runner_module.save_checkpoint = save_checkpoint


def _fix_mmengine_init_dist_without_cuda() -> None:
    """mmengine 0.10.7's ``init_dist('pytorch')`` and ``init_dist('slurm')`` call
    ``torch.cuda.set_device`` unconditionally, so ``torchrun`` or ``srun`` on a
    machine without a GPU fails before the first iteration. Where CUDA is not
    available the process group is made with ``gloo`` (``nccl`` needs GPUs; a
    config asking for it gets ``gloo`` and a warning): for ``pytorch`` by us, for
    ``slurm`` by mmengine's own function (its environment set-up from
    ``SLURM_*``), with ``torch.cuda.set_device`` skipped. With CUDA, mmengine's
    functions run unchanged.
    """
    import warnings

    import torch.distributed as torch_dist
    from mmengine.dist import utils as dist_utils

    def cpu_backend(backend):
        if backend != 'gloo':
            warnings.warn(f'flsl_mm: no CUDA device, using the gloo backend instead '
                          f'of {backend!r} for distributed training on CPU')
        return 'gloo'

    original = dist_utils._init_dist_pytorch
    if not getattr(original, '_flsl_mm_compat', False):
        def init_dist_pytorch(backend, init_backend='torch', **kwargs) -> None:
            if torch.cuda.is_available():
                return original(backend, init_backend=init_backend, **kwargs)
            torch_dist.init_process_group(backend=cpu_backend(backend), **kwargs)

        init_dist_pytorch._flsl_mm_compat = True
        dist_utils._init_dist_pytorch = init_dist_pytorch

    original_slurm = dist_utils._init_dist_slurm
    if not getattr(original_slurm, '_flsl_mm_compat', False):
        def init_dist_slurm(backend, port=None, init_backend='torch', **kwargs):
            if torch.cuda.is_available():
                return original_slurm(backend, port=port, init_backend=init_backend,
                                      **kwargs)
            set_device = torch.cuda.set_device
            torch.cuda.set_device = lambda device: None
            try:
                return original_slurm(cpu_backend(backend), port=port,
                                      init_backend=init_backend, **kwargs)
            finally:
                torch.cuda.set_device = set_device

        init_dist_slurm._flsl_mm_compat = True
        dist_utils._init_dist_slurm = init_dist_slurm


def _fix_mmseg_visualizer_layout() -> None:
    """mmseg 1.2's ``SegLocalVisualizer._draw_sem_seg`` draws its labels with
    ``cv2.rectangle`` on ``np.zeros_like(image)``, which keeps the image's
    memory layout: OpenCV 5 refuses a non-contiguous array ("Layout of the
    output array img is incompatible with cv::Mat"), and mmseg's own
    ``tools/analysis_tools/browse_dataset.py`` passes one (a permuted tensor).
    The image is made contiguous first (a copy only when it is not)."""
    try:
        from mmseg.visualization import SegLocalVisualizer
    except ImportError:  # mmseg not installed
        return
    original = SegLocalVisualizer._draw_sem_seg
    if getattr(original, '_flsl_mm_contiguous', False):
        return
    import numpy as np

    def _draw_sem_seg(self, image, *args, **kwargs):
        return original(self, np.ascontiguousarray(image), *args, **kwargs)

    _draw_sem_seg._flsl_mm_contiguous = True
    SegLocalVisualizer._draw_sem_seg = _draw_sem_seg


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
    _fix_mmengine_checkpoint_io()
    _fix_mmengine_init_dist_without_cuda()
    _fix_mmseg_visualizer_layout()
    # nms / RoIAlign through torchvision where mmcv has no kernels for the device
    from . import compat_ops
    compat_ops.apply()
    _APPLIED = True
