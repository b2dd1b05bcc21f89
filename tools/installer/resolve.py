"""pip's resolver turned into the exact list of wheels to install.

Two reports of ``pip install --dry-run --report`` (fast: metadata only):

A. the top-level pins (:data:`.pins.TOP_PINS`) with ``--no-deps``, to read their
   declared dependencies, which are then edited (:func:`.pins.edit_requirement`):
   torch / torchvision / mmcv are the installer's decision, ``opencv-python``
   becomes ``opencv-python-headless`` or is dropped when an OpenCV is installed;
B. those dependencies plus :data:`.pins.EXTRA_REQUIREMENTS`, resolved fully, with
   every protected package already installed (torch, torchvision, numpy, OpenCV)
   constrained to its installed version, so that pip can never change it;
T. only when torch is to be installed: the pinned torch pair, constrained to B's
   versions; what T adds is marked ``role='torch'`` (a bundle can leave it out).

Everything is then installed with ``--no-deps``: nothing but this list is
installed, so no resolver can pull in a second torch or OpenCV.
"""
from __future__ import annotations

import json
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import pins
from .common import (PIP_HINT, InstallError, canonical, installed_version, log,
                     requirement_class, run)

DEFAULT_PLATFORMS = tuple(
    [f'manylinux_2_{n}_x86_64' for n in range(28, 16, -1)]
    + ['manylinux2014_x86_64', 'manylinux1_x86_64'])


@dataclass
class Target:
    """The interpreter the wheels are for: this one (``python`` None) or another
    (``--python 3.12 --platform manylinux_2_28_x86_64 ...``)."""
    python: str | None = None
    platforms: tuple = ()

    @property
    def cross(self) -> bool:
        return self.python is not None or bool(self.platforms)

    @property
    def python_tag(self) -> str:
        if self.python is None:
            return f'{sys.version_info.major}.{sys.version_info.minor}'
        return self.python

    def pip_args(self, scratch: Path | None = None) -> list[str]:
        """pip's options for this target (``scratch``: the ``--target`` folder
        that ``pip install --dry-run`` wants with them; None for ``pip
        download``)."""
        if not self.cross:
            return []
        args = ['--only-binary=:all:', '--implementation', 'cp',
                '--python-version', self.python_tag]
        for platform in self.platforms or DEFAULT_PLATFORMS:
            args += ['--platform', platform]
        if scratch is not None:
            args += ['--target', str(scratch / 'unused-target')]
        return args

    def marker_environment(self, reported: dict) -> dict:
        env = dict(reported)
        if self.python is not None:
            env.update(python_version=self.python, python_full_version=self.python + '.0',
                       implementation_version=self.python + '.0')
        if any('aarch64' in p for p in self.platforms):
            env['platform_machine'] = 'aarch64'
        env['extra'] = ''
        return env


@dataclass
class Pin:
    """One wheel to install: ``name==version`` (``url`` / ``sha256`` as pip's
    report gave them)."""
    name: str
    version: str
    url: str | None = None
    sha256: str | None = None
    role: str = 'stack'  # 'stack' | 'torch'

    @property
    def spec(self) -> str:
        return f'{self.name}=={self.version}'

    @property
    def key(self) -> str:
        return canonical(self.name)


@dataclass
class Resolution:
    pins: list = field(default_factory=list)
    #: the edited dependency list of the top-level packages (for the log / tests)
    requirements: list = field(default_factory=list)

    def names(self) -> list[str]:
        return [p.key for p in self.pins]

    def to_json(self) -> list[dict]:
        return [asdict(p) for p in self.pins]


def pip_report(requirements: list[str], target: Target, *, no_deps: bool = False,
               ignore_installed: bool = True, constraints: dict | None = None,
               what: str = 'resolving') -> dict:
    """``pip install --dry-run --report`` of ``requirements`` for ``target``."""
    with tempfile.TemporaryDirectory(prefix='flsl_mm_resolve_') as tmp:
        tmp = Path(tmp)
        cmd = [sys.executable, '-m', 'pip', 'install', '--dry-run', '--quiet',
               '--disable-pip-version-check', '--report', str(tmp / 'report.json'),
               *target.pip_args(tmp)]
        if no_deps:
            cmd.append('--no-deps')
        if ignore_installed or target.cross:
            cmd.append('--ignore-installed')
        if constraints:
            path = tmp / 'constraints.txt'
            path.write_text(''.join(f'{n}=={v}\n' for n, v in sorted(constraints.items())))
            cmd += ['-c', str(path)]
        run(cmd + list(requirements), what, hint=PIP_HINT, quiet=True)
        return json.loads((tmp / 'report.json').read_text())


def _pins_of(report: dict, role: str = 'stack') -> list[Pin]:
    out = []
    for item in report.get('install', []):
        meta = item['metadata']
        info = item.get('download_info', {})
        hashes = info.get('archive_info', {}).get('hashes', {})
        out.append(Pin(meta['name'], meta['version'], info.get('url'),
                       hashes.get('sha256'), role))
    return out


def edited_dependencies(report_a: dict, target: Target, have_opencv: bool) -> list[str]:
    """The top-level packages' own dependencies, markers evaluated for ``target``
    (no extras), edited by :func:`.pins.edit_requirement`."""
    req_cls = requirement_class()
    env = target.marker_environment(report_a.get('environment', {}))
    deps = []
    for item in report_a.get('install', []):
        for text in item['metadata'].get('requires_dist') or []:
            req = req_cls(text)
            if req.marker is not None and not req.marker.evaluate(env):
                continue
            edited = pins.edit_requirement(req, have_opencv)
            if edited is not None and edited not in deps:
                deps.append(edited)
    return deps


def resolve(target: Target, *, install_torch: bool, keep: dict[str, str],
            have_opencv: bool, skip_installed: bool, mmcv_dist: str | None = 'mmcv-lite',
            extra_constraints: dict | None = None) -> Resolution:
    """The wheels to install.

    ``keep``: installed versions of protected packages (constraints);
    ``skip_installed``: leave out what is already installed at the resolved
    version (a local install; a bundle keeps everything); ``mmcv_dist``: the mmcv
    distribution to install (None: the one installed is kept / built).
    ``extra_constraints``: pins of packages the target already has (``--have``).
    """
    top = [f'{n}=={v}' for n, v in pins.TOP_PINS.items()]
    log('resolving the stack (pip --dry-run --report)')
    report_a = pip_report(top, target, no_deps=True,
                          what='reading the pinned packages\' metadata')
    deps = edited_dependencies(report_a, target, have_opencv)
    constraints = dict(extra_constraints or {})
    constraints.update(keep)
    requirements = deps + [r for r in pins.EXTRA_REQUIREMENTS if r not in deps]
    report_b = pip_report(requirements, target, ignore_installed=not skip_installed,
                          constraints=constraints,
                          what='resolving the dependencies')
    resolved = [p for p in _pins_of(report_a)
                if p.key != 'mmcv-lite' or mmcv_dist == 'mmcv-lite']
    resolved += _pins_of(report_b)
    unexpected = [p.spec for p in _pins_of(report_b)
                  if p.key in pins.PROTECTED and p.key in keep]
    if unexpected:
        raise InstallError(f'pip wanted to change {", ".join(unexpected)}, which the '
                           'installer keeps as installed: report this')
    pulled = [p.spec for p in _pins_of(report_b) if p.key in ('torch', 'torchvision')]
    if pulled:
        raise InstallError(f'a dependency pulled in {", ".join(pulled)}; torch is the '
                           'installer\'s decision: report this')
    if install_torch:
        torch_pair = [f'torch=={pins.TORCH_VERSION}',
                      f'torchvision=={pins.TORCHVISION_VERSION}']
        known = {p.key: p.version for p in resolved}
        known.update(constraints)
        if skip_installed:
            # keep what is installed (the resolver then leaves it alone)
            known = {k: v for k, v in known.items() if k not in ('torch', 'torchvision')}
        report_t = pip_report(torch_pair, target, ignore_installed=not skip_installed,
                              constraints=known, what='resolving torch')
        have = {p.key for p in resolved}
        resolved += [p for p in _pins_of(report_t, role='torch') if p.key not in have]
    if skip_installed:
        resolved = [p for p in resolved if installed_version(p.name) != p.version]
    return Resolution(pins=resolved, requirements=requirements)
