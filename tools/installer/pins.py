"""What the installer installs, and which torch it accepts.

Top-level packages are pinned (the stack is tested with exactly these); their
dependencies are resolved by pip (:mod:`.resolve`). mmcv is installed **without
compiled ops** by default (``mmcv-lite``): flsl_mm's stand-in for ``mmcv._ext``
provides nms / RoIAlign (``flsl_mm/compat_ops.py``). ``--mmcv compiled`` builds
mmcv with its ops instead (:mod:`.mmcv_build`).
"""
from __future__ import annotations

from .common import canonical, version_tuple

TORCH_VERSION = '2.14.1'
TORCHVISION_VERSION = '0.29.1'
MMCV_VERSION = '2.1.0'
#: The oldest torch the stack supports: proven by a fresh-venv install with
#: torch 2.11.0 / torchvision 0.26.0, the demo pretraining and the Mask R-CNN demo
#: (docs/install.md "Supported torch").
MIN_TORCH = (2, 11)
#: Python versions torch 2.14 and the pinned stack have wheels for.
SUPPORTED_PYTHON = ((3, 10), (3, 12))
MIN_PIP = (23, 1)

#: Packages whose own dependency lists the installer edits (torch / OpenCV / mmcv
#: are decided here, never by pip's resolver): installed with ``--no-deps``.
TOP_PINS = {
    'mmengine': '0.10.7',
    'mmcv-lite': MMCV_VERSION,
    'mmdet': '3.3.0',
    'mmpretrain': '1.2.0',
    'mmsegmentation': '1.2.2',
    'timm': '1.0.31',
}
#: Everything else flsl_mm, its tools and its tests import; resolved with their
#: dependencies.
EXTRA_REQUIREMENTS = [
    # torch >= 2.12 needs >= 77.0.3; mmengine imports pkg_resources (gone in 81)
    'setuptools>=77.0.3,<81',
    'pycocotools>=2.0.7',
    'scipy>=1.10',
    'safetensors>=0.4',
    'pytest>=7',
    # mmseg 1.2.2 imports these without declaring them
    'ftfy>=6',
    'regex>=2022.1.18',
]
#: Never up- or downgraded when present (the user's build of them is kept).
PROTECTED = ('torch', 'torchvision', 'numpy', 'opencv-python',
             'opencv-python-headless', 'opencv-contrib-python',
             'opencv-contrib-python-headless')
OPENCV_DISTS = PROTECTED[3:]
#: mmcv distributions: the stand-in serves either without compiled ops.
MMCV_DISTS = ('mmcv', 'mmcv-lite', 'mmcv-full')


def torchvision_for(torch_version: str) -> str:
    """The torchvision release series built for ``torch_version``:
    ``'2.14.1'`` -> ``'0.29'`` (torch 2.x pairs with torchvision 0.(x + 15))."""
    major, minor = version_tuple(torch_version)[:2]
    if major != 2:
        raise ValueError(f'no torchvision pairing known for torch {torch_version}')
    return f'0.{minor + 15}'


def torch_supported(torch_version: str) -> bool:
    return version_tuple(torch_version)[:2] >= MIN_TORCH


def min_torch_text() -> str:
    return '.'.join(map(str, MIN_TORCH))


def edit_requirement(req, have_opencv: bool):
    """What becomes of one dependency of a top-level package: ``None`` (dropped:
    torch / torchvision / mmcv are decided by the installer, another top-level
    package is pinned already, OpenCV when one is installed) or the requirement string to resolve (``opencv-python``
    becomes ``opencv-python-headless``: no GUI libraries needed on a server)."""
    name = canonical(req.name)
    if name in ('torch', 'torchvision') or name in MMCV_DISTS or name in TOP_PINS:
        return None
    if name in OPENCV_DISTS:
        if have_opencv:
            return None
        return f'opencv-python-headless{req.specifier}'
    return f'{req.name}{req.specifier}'
