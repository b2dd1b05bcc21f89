"""The interpreter start-up hook (``flsl_mm_mmcv_ext.pth``): mmcv without
compiled ops works in every Python of the environment, flsl_mm imported or not
(``flsl_mm_startup.py``; docs/install.md).

A ``.pth`` file in site-packages is Python's own way to run a line at start-up.
pip's editable install of flsl_mm cannot carry one, so the installer writes it
next to flsl_mm's installed metadata and lists it in that distribution's
``RECORD``: ``pip uninstall flsl_mm`` removes it with the rest.
"""
from __future__ import annotations

import base64
import hashlib
import importlib
from importlib import metadata
from pathlib import Path

from .common import InstallError, log

PTH_NAME = 'flsl_mm_mmcv_ext.pth'
# one line (a .pth line run at start-up must begin with "import"): the hook, and
# nothing (no error at every start) if the checkout is gone
PTH_TEXT = ('import sys; exec("try:\\n import flsl_mm_startup\\n'
            'except ImportError:\\n pass")\n')


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=')
    return f'{name},sha256={digest.decode()},{len(data)}'


def _distribution():
    importlib.invalidate_caches()  # pip installed it in another process just now
    try:
        return metadata.distribution('flsl_mm')
    except metadata.PackageNotFoundError:
        raise InstallError('the start-up hook needs flsl_mm installed first '
                           '(pip install -e .)') from None


def install_startup_hook() -> Path:
    """Write the ``.pth`` into the site-packages of the installed flsl_mm and list
    it in its ``RECORD`` (idempotent); returns its path."""
    dist = _distribution()
    info = Path(dist._path)  # the .dist-info folder
    site = info.parent
    pth = site / PTH_NAME
    data = PTH_TEXT.encode()
    if not pth.is_file() or pth.read_bytes() != data:
        pth.write_bytes(data)
    record = info / 'RECORD'
    lines = record.read_text().splitlines() if record.is_file() else []
    wanted = _record_line(PTH_NAME, data)
    kept = [line for line in lines if not line.startswith(PTH_NAME + ',')]
    if wanted not in lines or len(kept) != len(lines) - 1:
        record.write_text('\n'.join(kept + [wanted]) + '\n')
    log(f'start-up hook: {pth} (mmcv._ext without importing flsl_mm)')
    return pth


def startup_hook_installed() -> bool:
    """Whether the hook is in place for the installed flsl_mm."""
    try:
        dist = metadata.distribution('flsl_mm')
    except metadata.PackageNotFoundError:
        return False
    pth = Path(dist._path).parent / PTH_NAME
    return pth.is_file() and pth.read_text() == PTH_TEXT


__all__ = ['PTH_NAME', 'PTH_TEXT', 'install_startup_hook', 'startup_hook_installed']
