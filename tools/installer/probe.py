"""What the target environment (the interpreter running the installer) already
has. Nothing here changes it."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path

from . import pins
from .common import (REPO_ROOT, InstallError, installed_version, last_line,
                     python_output, version_tuple)

TORCH_PROBE = r'''
import json, sys
out = {}
try:
    import torch
except Exception as exc:
    out['error'] = f'{type(exc).__name__}: {exc}'
else:
    ok = torch.cuda.is_available()
    out.update(version=torch.__version__, file=torch.__file__, cuda=torch.version.cuda,
               available=ok, count=torch.cuda.device_count() if ok else 0,
               names=[torch.cuda.get_device_name(i)
                      for i in range(torch.cuda.device_count())] if ok else [],
               capabilities=sorted({'%d.%d' % torch.cuda.get_device_capability(i)
                                    for i in range(torch.cuda.device_count())})
               if ok else [])
    try:
        import torchvision
        out['torchvision'] = torchvision.__version__
    except Exception as exc:
        out['torchvision_error'] = f'{type(exc).__name__}: {exc}'
print(json.dumps(out))
'''


@dataclass
class TorchInfo:
    """The torch (and torchvision) the environment imports; ``version`` None:
    none importable (``error`` says why when one is installed but broken)."""
    version: str | None = None
    file: str | None = None
    cuda: str | None = None
    available: bool = False
    count: int = 0
    names: list = field(default_factory=list)
    capabilities: list = field(default_factory=list)
    torchvision: str | None = None
    torchvision_error: str | None = None
    error: str | None = None

    def describe(self) -> str:
        if self.version is None:
            return 'no torch'
        cuda = f'CUDA {self.cuda}' if self.cuda else 'CPU-only build'
        devices = (f'{self.count} GPU(s): {", ".join(self.names)}' if self.available
                   else 'no GPU visible')
        tv = f'torchvision {self.torchvision}' if self.torchvision else 'no torchvision'
        return f'torch {self.version} ({cuda}, {devices}) + {tv}, {self.file}'


def probe_torch(python: str = sys.executable) -> TorchInfo:
    """Import torch / torchvision in ``python`` and report what they are."""
    rc, out, err = python_output(TORCH_PROBE, python)
    if rc != 0:
        return TorchInfo(error=last_line(err))
    data = json.loads(last_line(out))
    if 'error' in data:
        # a torch that is installed but does not import is reported, absent is not
        installed = installed_version('torch') if python == sys.executable else None
        return TorchInfo(error=data['error'] if installed else None)
    return TorchInfo(**data)


def check_python(version_info=sys.version_info) -> None:
    low, high = pins.SUPPORTED_PYTHON
    if not low <= tuple(version_info[:2]) <= high:
        raise InstallError(
            f'Python {version_info[0]}.{version_info[1]} ({sys.executable}) is not '
            f'supported: the pinned stack has wheels for Python '
            f'{low[0]}.{low[1]}-{high[0]}.{high[1]}. Create the environment with '
            f'one of those (e.g. `python3.11 -m venv venv`) and run bash '
            'tools/install.sh inside it.')


def externally_managed(python: str = sys.executable) -> Path | None:
    """The ``EXTERNALLY-MANAGED`` marker (PEP 668) that makes pip refuse to
    install into this interpreter (a distribution's system Python), or None."""
    if sys.prefix != sys.base_prefix:  # a venv is never externally managed
        return None
    marker = Path(sysconfig.get_paths()['stdlib']) / 'EXTERNALLY-MANAGED'
    return marker if marker.is_file() else None


def check_not_externally_managed() -> None:
    marker = externally_managed()
    if marker is not None:
        raise InstallError(
            f'{sys.executable} is a system Python managed by the distribution '
            f'({marker}): pip may not install into it. Make a virtual environment '
            'that still sees the system\'s packages (its torch included) and run '
            'the installer in it: `python3 -m venv --system-site-packages venv && '
            '. venv/bin/activate && bash tools/install.sh`.')


def opencv_installed() -> list[str]:
    """The OpenCV distributions present (``['opencv-python-headless']``)."""
    return [d for d in pins.OPENCV_DISTS if installed_version(d)]


def protected_versions() -> dict[str, str]:
    """Installed version of every package the installer never changes."""
    return {d: v for d in pins.PROTECTED if (v := installed_version(d))}


def mmcv_installed() -> tuple[str, str] | None:
    """(distribution, version) of the installed mmcv, if any."""
    for dist in pins.MMCV_DISTS:
        version = installed_version(dist)
        if version:
            return dist, version
    return None


MMCV_KIND_PROBE = (
    'import importlib.util as u\n'
    'try:\n'
    '    s = u.find_spec("mmcv._ext")\n'
    'except Exception:\n'
    '    s = None\n'
    'print("compiled" if s is not None else "none")\n')


def mmcv_compiled(python: str = sys.executable) -> bool:
    """Whether ``python``'s mmcv has its own compiled ``mmcv._ext`` (flsl_mm's
    stand-in is not on the path here: flsl_mm is not imported)."""
    rc, out, _ = python_output(MMCV_KIND_PROBE, python)
    return rc == 0 and last_line(out) == 'compiled'


def flsl_mm_installed(repo_root: Path = REPO_ROOT,
                      python: str = sys.executable) -> bool:
    """True when ``flsl_mm`` is installed from *this* checkout (editable), its
    start-up module (``flsl_mm_startup``) included."""
    rc, out, _ = python_output(
        'import importlib.util as u, os\n'
        'for name in ("flsl_mm", "flsl_mm_startup"):\n'
        '    s = u.find_spec(name)\n'
        '    print(os.path.realpath(s.origin) if s and s.origin else "")', python)
    lines = [line for line in out.splitlines() if line.strip()] if rc == 0 else []
    if len(lines) != 2:
        return False
    return all(Path(line).is_relative_to(repo_root.resolve()) for line in lines)


def nvidia_gpu_present() -> bool:
    """Whether the machine has an NVIDIA driver answering (``nvidia-smi -L``)."""
    smi = shutil.which('nvidia-smi')
    if smi is None:
        return False
    try:
        proc = subprocess.run([smi, '-L'], capture_output=True, text=True,
                              timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0 and 'GPU' in proc.stdout


def pip_version(python: str = sys.executable) -> tuple[int, ...] | None:
    rc, out, _ = python_output('import pip; print(pip.__version__)', python)
    return version_tuple(last_line(out)) if rc == 0 else None
