"""flsl_mm's stand-in for mmcv's compiled extension ``mmcv._ext``.

mmcv 2.1.0 without compiled ops (PyPI's ``mmcv-lite``, or mmcv built with
``MMCV_WITH_OPS=0``) has no ``mmcv._ext``, so ``import mmcv.ops`` -- and with it
``mmdet.models``, ``mmseg.models``, ``mmpretrain.models`` -- fails. This file is
executed *as* ``mmcv._ext`` by the finder of :mod:`flsl_mm.compat_ops` (installed
by ``import flsl_mm``) or of the interpreter start-up hook ``flsl_mm_startup``
(installed by ``tools/install.sh``) when, and only when, no compiled
``mmcv._ext`` is found (a compiled one always comes first).

It implements the kernels our detection runs call, through torchvision's kernels
with mmcv's semantics (``docs/compat.md``): ``nms``, ``roi_align_forward``,
``roi_align_backward`` on every device torchvision has kernels for; and in plain
torch (:mod:`flsl_mm.compat_kernels`) the focal losses, soft-NMS, ``nms_match`` and
the multi-scale deformable attention that mmdet's and mmseg's models reach on a
GPU. Any other of
mmcv's ~110 kernels exists as a name (``mmcv.ops`` checks them all at import) and
raises :class:`flsl_mm.compat_ops.MissingCompiledOpError` naming the op and how to
get compiled mmcv, when called. See ``docs/install.md``.
"""
from __future__ import annotations

import importlib

# by its module name, not through the flsl_mm package: loaded by the start-up
# hook (flsl_mm_startup.py) the package is not imported (nor needed)
_compat_ops = importlib.import_module('flsl_mm.compat_ops')
_kernels = importlib.import_module('flsl_mm.compat_kernels')

#: What :func:`flsl_mm.compat_ops.mmcv_ops_kind` looks for.
FLSL_MM_STANDIN = True
#: The kernels this stand-in implements (docs/compat.md has the table).
IMPLEMENTED = ('nms', 'roi_align_forward', 'roi_align_backward',
               'get_compiler_version', 'get_compiling_cuda_version',
               *_kernels.KERNELS)
globals().update({name: getattr(_kernels, name) for name in _kernels.KERNELS})


def nms(boxes, scores, iou_threshold, offset=0):
    """mmcv's ``nms`` kernel: kept indices, decreasing score, mmcv's tie order."""
    return _compat_ops.torchvision_nms(boxes, scores, iou_threshold, offset)


def roi_align_forward(input, rois, output, argmax_y, argmax_x, **kwargs):
    """mmcv's ``roi_align_forward`` kernel (fills ``output``); avg pooling only."""
    _compat_ops.torchvision_roi_align_forward(input, rois, output, argmax_y,
                                              argmax_x, **kwargs)


def roi_align_backward(grad_output, rois, argmax_y, argmax_x, grad_input,
                       **kwargs):
    """mmcv's ``roi_align_backward`` kernel (fills ``grad_input``)."""
    _compat_ops.torchvision_roi_align_backward(grad_output, rois, argmax_y,
                                               argmax_x, grad_input, **kwargs)


def get_compiler_version() -> str:
    return 'none (flsl_mm stand-in for mmcv._ext: no compiled ops)'


def get_compiling_cuda_version() -> str:
    return 'not available'


def __getattr__(name: str):
    """Every other kernel: present (``mmcv.ops`` asserts each name at import),
    refused with a clear message when called."""
    if name.startswith('_'):
        raise AttributeError(name)

    def missing(*args, **kwargs):
        raise _compat_ops.MissingCompiledOpError(name)

    missing.__name__ = missing.__qualname__ = name
    return missing
