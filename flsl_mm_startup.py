"""flsl_mm's interpreter start-up hook: mmcv without compiled ops works in every
Python of the environment, flsl_mm imported or not (docs/install.md, "mmcv's
ops without compiling").

``tools/install.sh`` puts ``flsl_mm_mmcv_ext.pth`` (one line: ``import
flsl_mm_startup``) into site-packages and lists it in flsl_mm's installed
files, so ``pip uninstall flsl_mm`` removes it. At every interpreter start this
module only appends a finder to the end of ``sys.meta_path`` -- it imports
nothing else (measured: ``benchmarks/startup_hook.py``). The finder answers one
name, ``mmcv._ext``, and only when no other finder found it: a compiled
extension on mmcv's path always comes first. Then, and only then, it loads
flsl_mm's stand-in (``flsl_mm/mmcv_ext_standin.py``) with the kernel modules it
needs (``flsl_mm/compat_ops.py``, ``compat_kernels.py``), without importing the
``flsl_mm`` package
(whose import registers every component and imports mmdet, mmpretrain, ...,
which import ``mmcv.ops`` themselves). So ``from mmdet.apis import
DetInferencer`` or ``import mmseg.apis`` in a plain ``python -c`` finds
``mmcv._ext``.
"""
import sys

EXT_NAME = 'mmcv._ext'
#: the stand-in's own modules, loaded by file under their names
KERNELS = ('flsl_mm.compat_ops', 'flsl_mm.compat_kernels')


class MmcvExtStandinFinder:
    """Finds ``mmcv._ext`` as flsl_mm's stand-in; the last finder consulted."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != EXT_NAME:
            return None
        import importlib.util
        import os
        package = importlib.util.find_spec('flsl_mm')  # finds, imports nothing
        if package is None or not package.submodule_search_locations:
            return None
        root = list(package.submodule_search_locations)[0]
        for name in KERNELS:
            if name in sys.modules:  # shared with flsl_mm, imported later or before
                continue
            spec = importlib.util.spec_from_file_location(
                name, os.path.join(root, name.split('.')[1] + '.py'))
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            try:
                spec.loader.exec_module(module)
            except BaseException:
                del sys.modules[name]
                raise
        return importlib.util.spec_from_file_location(
            EXT_NAME, os.path.join(root, 'mmcv_ext_standin.py'))

    def invalidate_caches(self):
        pass


def install() -> None:
    """Append the finder (once)."""
    if not any(type(f).__name__ == 'MmcvExtStandinFinder' for f in sys.meta_path):
        sys.meta_path.append(MmcvExtStandinFinder())


install()
