"""flsl_mm: FLSL (Feature-Level Self-supervised Learning) for OpenMMLab 2.x.

``import flsl_mm`` (or ``custom_imports=dict(imports=['flsl_mm'])`` in a config)
applies the compatibility fixes of :mod:`flsl_mm.compat` and registers every
component in mmengine's root registries, from where mmpretrain- and mmdet-scoped
configs both resolve them (see ``docs/registry.md``).
"""
from . import compat, compat_ops  # noqa: F401  (compat_ops: also a package attribute
# when the start-up hook loaded it first, flsl_mm_startup.py)

compat.apply()

from . import datasets, engine, evaluation, models  # noqa: E402,F401

__version__ = '0.1.0'
