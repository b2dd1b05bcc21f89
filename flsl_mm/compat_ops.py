"""Detection ops where mmcv has no kernels: nms and RoIAlign through
``torchvision.ops``, and the stand-in for mmcv's compiled extension.

Two situations (``docs/install.md``, ``docs/compat.md``):

* **mmcv without compiled ops** (the default install: PyPI's ``mmcv-lite``): there
  is no ``mmcv._ext``. :func:`install_mmcv_ext_standin` puts a finder at the end
  of ``sys.meta_path`` that answers ``mmcv._ext`` with
  :mod:`flsl_mm.mmcv_ext_standin` (a real module with a spec, so mmengine's
  ``mmcv_full_available()`` and ``pkgutil.find_loader`` work): nms and RoIAlign
  through torchvision, every other kernel a clear error. A compiled ``mmcv._ext``
  is always found first (the finder is consulted last).
* **compiled mmcv** without kernels for a device (an mmcv built without CUDA
  on a GPU machine): the dispatcher below sends that device's nms / RoIAlign to
  torchvision, and the kernels compiled mmcv has for CUDA only (focal losses,
  multi-scale deformable attention) to :mod:`flsl_mm.compat_kernels` wherever
  mmcv has none (the CPU always).

mmdet's Mask R-CNN / Faster R-CNN call ``mmcv.ops.nms`` / ``batched_nms`` (RPN,
test-time NMS), ``mmcv.ops.RoIAlign`` (RoI extractors) and ``mmcv.ops.roi_align``
(mask targets). An mmcv built without CUDA kernels (no CUDA toolkit at install
time, or a wheel built on a GPU-less node) fails at the first iteration on a GPU
with ``nms_impl: implementation for device cuda:0 not found``. torchvision's wheel
carries CUDA kernels for both ops.

The switch is made at the *kernel* level: mmcv's Python functions (score
threshold, ``max_num``, class offsets of ``batched_nms``, return shapes, autograd)
run unchanged and call the compiled ``ext_module`` of their own module, which
:func:`apply` replaces by a dispatcher. Per call, the dispatcher sends the kernel
to mmcv or to torchvision according to ``FLSL_MM_OPS``:

* ``auto`` (default): mmcv where it has kernels for the tensor's device,
  torchvision otherwise (CUDA tensors with an mmcv built without CUDA);
* ``mmcv``: always mmcv (its own error where it has no kernel);
* ``torchvision``: always torchvision (on CPU too: the tests compare both).

Kernel semantics kept (``docs/compat.md``): nms keeps boxes whose IoU with a kept,
higher-scored box is not above the threshold (``IoU > thr`` suppresses), indices in
decreasing score order, tied scores visited in mmcv's order, ``offset=1`` boxes as
``x2 + 1, y2 + 1``; roi_align with rois ``(batch_idx, x1, y1, x2, y2)``,
``aligned=True`` half-pixel shift, ``sampling_ratio=0`` adaptive grid, ``avg``
pooling (torchvision has no ``max`` mode: refused with a message).

"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import os
import sys

import torch

OPS_ENV = 'FLSL_MM_OPS'
OPS_CHOICES = ('auto', 'mmcv', 'torchvision')
PATCHED_MODULES = ('mmcv.ops.nms', 'mmcv.ops.roi_align', 'mmcv.ops.focal_loss',
                   'mmcv.ops.multi_scale_deform_attn')
#: kernels compiled mmcv has for CUDA only (none on the CPU): flsl_mm's
#: (``flsl_mm.compat_kernels``) wherever mmcv has none
CUDA_ONLY_KERNELS = ('sigmoid_focal_loss_forward', 'sigmoid_focal_loss_backward',
                     'softmax_focal_loss_forward', 'softmax_focal_loss_backward',
                     'ms_deform_attn_forward', 'ms_deform_attn_backward')
EXT_NAME = 'mmcv._ext'
STANDIN_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                            'mmcv_ext_standin.py')
COMPILED_MMCV_HOW = ('compiled mmcv: `bash tools/install.sh --mmcv compiled` builds '
                     'mmcv 2.1.0 with its ops (a C++20 compiler, ~13 min on 2 '
                     'cores; docs/install.md "Compiled mmcv")')


class MissingCompiledOpError(NotImplementedError):
    """An mmcv kernel that only compiled mmcv has, called with the stand-in."""

    def __init__(self, op: str) -> None:
        self.op = op
        super().__init__(
            f'mmcv op {op!r} needs mmcv\'s compiled extension (mmcv._ext), which '
            'this environment does not have: mmcv is installed without compiled ops '
            'and flsl_mm\'s stand-in implements only nms, roi_align_forward and '
            'roi_align_backward (through torchvision), the sigmoid / softmax focal '
            'losses, softnms, nms_match and ms_deform_attn (plain torch; '
            f'docs/compat.md). For {op!r}, install ' + COMPILED_MMCV_HOW)


class _StandinFinder(importlib.abc.MetaPathFinder):
    """Answers ``mmcv._ext`` with :mod:`flsl_mm.mmcv_ext_standin`; placed last on
    ``sys.meta_path`` so that a compiled extension is found before it."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != EXT_NAME:
            return None
        return importlib.util.spec_from_file_location(EXT_NAME, STANDIN_FILE)


def install_mmcv_ext_standin() -> None:
    """Make ``import mmcv._ext`` work where mmcv has no compiled ops (idempotent).
    Must run before ``mmcv.ops`` is imported; ``import flsl_mm`` does it."""
    if not any(isinstance(f, _StandinFinder) for f in sys.meta_path):
        sys.meta_path.append(_StandinFinder())


def mmcv_ops_kind() -> str:
    """``'compiled'`` (mmcv's own ``_ext``), ``'stand-in'`` (flsl_mm's) or
    ``'none'`` (mmcv not importable)."""
    try:
        spec = importlib.util.find_spec(EXT_NAME)
    except (ImportError, ValueError):
        return 'none'
    if spec is None:
        return 'none'
    if spec.origin and os.path.abspath(spec.origin) == STANDIN_FILE:
        return 'stand-in'
    return 'compiled'

_mode: str | None = None


def read_ops_mode(environ=None) -> str:
    """``FLSL_MM_OPS`` from ``environ`` (default ``os.environ``), validated."""
    environ = os.environ if environ is None else environ
    value = environ.get(OPS_ENV, 'auto').strip().lower() or 'auto'
    if value not in OPS_CHOICES:
        raise ValueError(
            f'{OPS_ENV}={environ.get(OPS_ENV)!r} is not one of '
            f'{", ".join(OPS_CHOICES)}: auto uses mmcv\'s kernels where mmcv has them '
            'for the device and torchvision\'s otherwise; mmcv or torchvision force '
            'one (see docs/compat.md)')
    return value


def ops_mode() -> str:
    """The mode in use: set by :func:`set_ops_mode`, else read from the env."""
    return _mode if _mode is not None else read_ops_mode()


def set_ops_mode(mode: str | None) -> None:
    """Choose the mode for this process (``None``: follow ``FLSL_MM_OPS`` again)."""
    global _mode
    if mode is not None:
        read_ops_mode({OPS_ENV: mode})
    _mode = mode


def mmcv_compiled_cuda() -> str | None:
    """The CUDA version mmcv's ops were compiled with, None when without CUDA (or
    when mmcv has no compiled ops at all)."""
    try:
        from mmcv.ops import get_compiling_cuda_version
        version = get_compiling_cuda_version()
    except (ImportError, AttributeError, RuntimeError):
        return None
    return None if version in ('', 'not available') else version


def mmcv_has_kernels(device_type: str) -> bool:
    """Whether mmcv's *compiled* ops have kernels for ``device_type`` (never with
    the stand-in)."""
    if mmcv_ops_kind() != 'compiled':
        return False
    if device_type == 'cpu':
        try:
            from mmcv.utils import ext_loader
            ext_loader.load_ext('_ext', ['nms', 'roi_align_forward'])
        except (ImportError, AssertionError, AttributeError):
            return False
        return True
    if device_type == 'cuda':
        return mmcv_compiled_cuda() is not None
    return False


_kernel_cache: dict[str, bool] = {}


def ops_backend(device_type: str, mode: str | None = None) -> str:
    """``'mmcv'`` or ``'torchvision'``: who runs nms / roi_align on
    ``device_type`` under ``mode`` (default: :func:`ops_mode`)."""
    mode = mode or ops_mode()
    if mode != 'auto':
        return mode
    if device_type not in _kernel_cache:
        _kernel_cache[device_type] = mmcv_has_kernels(device_type)
    return 'mmcv' if _kernel_cache[device_type] else 'torchvision'


def describe_ops(devices: list[str] | None = None, mode: str | None = None) -> str:
    """One line: which ops path each device uses, and why."""
    mode = mode or ops_mode()
    if devices is None:
        devices = ['cpu'] + (['cuda'] if torch.cuda.is_available() else [])
    kind = mmcv_ops_kind()
    parts = []
    for device in devices:
        backend = ops_backend(device, mode)
        if mode != 'auto':
            why = f'forced by {OPS_ENV}'
        elif backend == 'mmcv':
            why = 'compiled mmcv has kernels'
        elif kind == 'stand-in':
            why = 'stand-in, torchvision kernels'
        else:
            why = 'compiled mmcv has no kernels for it'
        parts.append(f'{device} -> {backend} ({why})')
    if kind == 'stand-in':
        built = ('mmcv without compiled ops: flsl_mm stand-in for mmcv._ext, '
                 'nms and RoIAlign only')
    elif kind == 'compiled':
        cuda = mmcv_compiled_cuda()
        built = ('compiled mmcv ops, built with CUDA ' + cuda if cuda else
                 'compiled mmcv ops, built without CUDA')
    else:
        built = 'mmcv not importable'
    return f'flsl_mm ops ({OPS_ENV}={mode}; {built}): nms, RoIAlign: ' + '; '.join(parts)


def check_ops_for_device(device_type: str) -> None:
    """Refuse before training what would fail at the first detection iteration:
    ``FLSL_MM_OPS=mmcv`` on a device mmcv has no kernels for."""
    if ops_mode() == 'mmcv' and not mmcv_has_kernels(device_type):
        if mmcv_ops_kind() == 'stand-in':
            raise RuntimeError(
                f'{OPS_ENV}=mmcv, but mmcv is installed without compiled ops '
                f'({describe_ops([device_type])}): unset {OPS_ENV} (auto uses '
                'torchvision\'s kernels) or install ' + COMPILED_MMCV_HOW)
        raise RuntimeError(
            f'{OPS_ENV}=mmcv, but mmcv has no {device_type} kernels for nms / '
            f'RoIAlign ({describe_ops([device_type])}): unset {OPS_ENV} (auto uses '
            'torchvision there) or install an mmcv built with CUDA ops (see '
            'docs/install.md, "GPU machines")')


# ---------------------------------------------------------------- torchvision kernels
def torchvision_nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float,
                    offset: int = 0) -> torch.Tensor:
    """mmcv's ``ext_module.nms`` through ``torchvision.ops.nms``: kept indices
    (int64) in decreasing score order.

    Boxes are visited in the order mmcv's kernels visit them, ties included:
    mmcv sorts with torch's default (unstable) ``sort(descending=True)``,
    torchvision with a stable sort, so equal scores (common with a freshly
    initialised RPN) could be visited in another order and keep other boxes. The
    boxes are therefore put in mmcv's order first; torchvision's stable sort
    keeps it."""
    import torchvision
    if offset not in (0, 1):
        raise ValueError(f'nms offset must be 0 or 1, got {offset}')
    if offset == 1:  # mmcv's legacy pixel convention: widths are x2 - x1 + 1
        boxes = boxes + boxes.new_tensor([0.0, 0.0, 1.0, 1.0])
    order = scores.sort(0, descending=True)[1]
    keep = torchvision.ops.nms(boxes[order], scores[order].to(boxes.dtype),
                               float(iou_threshold))
    return order[keep]


def _check_avg(pool_mode: int) -> None:
    if pool_mode != 1:
        raise NotImplementedError(
            'RoIAlign with pool_mode="max" has no torchvision kernel; use '
            f'pool_mode="avg" (mmdet\'s default) or {OPS_ENV}=mmcv with an mmcv that '
            'has kernels for this device')


def torchvision_roi_align_forward(input, rois, output, argmax_y, argmax_x, *,
                                  aligned_height: int, aligned_width: int,
                                  spatial_scale: float, sampling_ratio: int,
                                  pool_mode: int, aligned: bool) -> None:
    """mmcv's ``ext_module.roi_align_forward`` (fills ``output``) through
    torchvision's ``roi_align`` kernel."""
    import torchvision  # noqa: F401  (registers torch.ops.torchvision)
    _check_avg(pool_mode)
    out = torch.ops.torchvision.roi_align(
        input, rois.to(input.dtype), float(spatial_scale), int(aligned_height),
        int(aligned_width), int(sampling_ratio), bool(aligned))
    output.copy_(out)


def torchvision_roi_align_backward(grad_output, rois, argmax_y, argmax_x, grad_input,
                                   *, aligned_height: int, aligned_width: int,
                                   spatial_scale: float, sampling_ratio: int,
                                   pool_mode: int, aligned: bool) -> None:
    """mmcv's ``ext_module.roi_align_backward`` (fills ``grad_input``) through
    torchvision's backward kernel."""
    import torchvision  # noqa: F401
    _check_avg(pool_mode)
    n, c, h, w = grad_input.shape
    grad = torch.ops.torchvision._roi_align_backward(
        grad_output, rois.to(grad_output.dtype), float(spatial_scale),
        int(aligned_height), int(aligned_width), n, c, h, w, int(sampling_ratio),
        bool(aligned))
    grad_input.copy_(grad)


class OpsDispatcher:
    """Stands in for an mmcv module's ``ext_module``: nms / roi_align kernels go
    to mmcv or torchvision per call (by the first tensor's device); everything
    else is mmcv's own."""

    _routes = {'nms': torchvision_nms,
               'roi_align_forward': torchvision_roi_align_forward,
               'roi_align_backward': torchvision_roi_align_backward}

    def __init__(self, ext) -> None:
        self.mmcv_ext = ext

    def __getattr__(self, name: str):
        ext = self.__dict__['mmcv_ext']
        if name in CUDA_ONLY_KERNELS:
            return self._cuda_only(ext, name)
        fallback = self._routes.get(name)
        if fallback is None:
            return getattr(ext, name)

        def kernel(first, *args, **kwargs):
            if ops_backend(first.device.type) == 'torchvision':
                return fallback(first, *args, **kwargs)
            return getattr(ext, name)(first, *args, **kwargs)

        kernel.__name__ = name
        return kernel

    @staticmethod
    def _cuda_only(ext, name: str):
        """A kernel compiled mmcv has for CUDA only: mmcv's on a CUDA tensor
        when it was built with CUDA (``FLSL_MM_OPS=mmcv``: always), flsl_mm's
        plain-torch one otherwise (``FLSL_MM_OPS=torchvision``: always)."""
        def kernel(first, *args, **kwargs):
            mode = ops_mode()
            own = mode == 'mmcv' or (mode == 'auto' and first.is_cuda
                                     and mmcv_ops_kind() == 'compiled'
                                     and mmcv_compiled_cuda() is not None)
            if own:
                return getattr(ext, name)(first, *args, **kwargs)
            kernels = importlib.import_module('flsl_mm.compat_kernels')
            return getattr(kernels, name)(first, *args, **kwargs)

        kernel.__name__ = name
        return kernel


def apply() -> bool:
    """Install the ``mmcv._ext`` stand-in's finder, then put the dispatcher in front
    of mmcv's nms / roi_align kernels (idempotent). Validates ``FLSL_MM_OPS``.
    Returns False when mmcv's ops are not importable (nothing to dispatch)."""
    read_ops_mode()
    install_mmcv_ext_standin()
    try:
        modules = [importlib.import_module(name) for name in PATCHED_MODULES]
    except ImportError:
        return False
    for module in modules:
        if not isinstance(module.ext_module, OpsDispatcher):
            module.ext_module = OpsDispatcher(module.ext_module)
    return True
