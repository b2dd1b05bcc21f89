"""The installer's command line, plan and steps (``bash tools/install.sh``).

Default (online, this machine), each step skipped when already done:

1. bootstrap: a pip >= 23.1 (``ensurepip`` when there is none);
2. torch: the environment's own torch (>= :data:`.pins.MIN_TORCH`) with its
   matching torchvision is **kept**, never up- or downgraded; where there is none,
   torch 2.14.1 / torchvision 0.29.1 are installed; anything else is refused;
3. the stack: the exact wheels :func:`.resolve.resolve` lists (mmengine, mmcv-lite,
   mmdet, mmpretrain, mmsegmentation, timm and their dependencies), installed with
   ``--no-deps --only-binary=:all:`` in one pip call: nothing is compiled, and
   torch, numpy and OpenCV already present are never changed;
4. mmcv: without compiled ops (``mmcv-lite``; flsl_mm's stand-in for ``mmcv._ext``
   serves nms / RoIAlign through torchvision), or ``--mmcv compiled``
   (:mod:`.mmcv_build`); a compiled mmcv already installed is kept;
5. flsl_mm itself, editable;
6. a check that everything imports, and the ops line (compiled mmcv or stand-in).

``--download DIR`` / ``--offline DIR``: :mod:`.bundle`. ``--dry-run`` prints the
plan, ``--check`` exits 0 when nothing is left to do; neither changes anything.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from . import bundle, mmcv_build, pins, probe
from .common import (DOCS, PIP_HINT, REPO_ROOT, InstallError, canonical,
                     installed_version, last_line, log, python_output, run)
from .resolve import DEFAULT_PLATFORMS, Resolution, Target, resolve
from .startup_hook import PTH_NAME, install_startup_hook, startup_hook_installed

# the torch wheel unpacks ~5.5 GB of CUDA libraries; pip needs room to unpack it.
TORCH_FREE_GB = 10.0
MMCV_MODE_ENV = 'FLSL_MM_MMCV'

# without flsl_mm: the start-up hook serves mmcv._ext (mmcv without compiled ops)
PLAIN_APIS = 'from mmcv.ops import nms; import mmdet.apis, mmseg.apis, mmpretrain.apis'
VERIFY = r'''
import flsl_mm  # first: its stand-in serves mmcv._ext where mmcv has no compiled ops
import mmcv, mmdet, mmdet.models, mmengine, mmpretrain, mmpretrain.models
import mmseg, mmseg.models, pycocotools, timm, torch, torchvision
from mmcv.ops import nms, RoIAlign
from flsl_mm.compat_ops import describe_ops
print('torch', torch.__version__, 'torchvision', torchvision.__version__,
      'mmengine', mmengine.__version__, 'mmcv', mmcv.__version__,
      'mmdet', mmdet.__version__, 'mmpretrain', mmpretrain.__version__,
      'mmseg', mmseg.__version__, 'timm', timm.__version__)
print(describe_ops())
'''


# ---------------------------------------------------------------------- decisions
@dataclass
class TorchDecision:
    action: str  # 'keep' | 'install'
    info: probe.TorchInfo

    def describe(self) -> str:
        if self.action == 'keep':
            return f'kept: {self.info.describe()}'
        return (f'none importable: install torch {pins.TORCH_VERSION} / torchvision '
                f'{pins.TORCHVISION_VERSION}')


def decide_torch(info: probe.TorchInfo) -> TorchDecision:
    """Keep the environment's torch when supported, install the pinned pair when
    there is none, refuse everything else (with what to do)."""
    keep_note = ('The installer never replaces an installed torch (a site\'s own '
                 'build would be lost)')
    if info.error:
        raise InstallError(
            f'torch is installed but does not import ({info.error}). {keep_note}: '
            'repair it, or run the installer in a fresh environment (it then '
            f'installs torch {pins.TORCH_VERSION}).')
    if info.version is None:
        return TorchDecision('install', info)
    if not pins.torch_supported(info.version):
        raise InstallError(
            f'torch {info.version} ({info.file}) is older than the oldest supported, '
            f'{pins.min_torch_text()}. {keep_note}: upgrade it yourself to '
            f'{pins.min_torch_text()} or newer with its torchvision, or run the '
            f'installer in a fresh environment (it then installs torch '
            f'{pins.TORCH_VERSION}); see {DOCS} "Supported torch".')
    want = pins.torchvision_for(info.version)
    if info.torchvision is None:
        why = f' ({info.torchvision_error})' if info.torchvision_error else ''
        raise InstallError(
            f'torch {info.version} is installed, torchvision is not{why}. Install '
            f'the torchvision {want}.x built for this torch from where the torch came '
            f'from (for PyPI\'s torch: pip install "torchvision=={want}.*"), then run '
            f'bash tools/install.sh again. {keep_note}, and pip would replace it '
            'to install a torchvision of its own choice.')
    if '.'.join(info.torchvision.split('.')[:2]) != want:
        raise InstallError(
            f'torchvision {info.torchvision} does not belong to torch {info.version} '
            f'(that is torchvision {want}.x): install the matching torchvision, '
            'then run bash tools/install.sh again.')
    return TorchDecision('keep', info)


@dataclass
class MmcvDecision:
    mode: str  # 'lite' | 'compiled'
    install_dist: str | None  # 'mmcv-lite' to install, None: keep / build
    build: bool  # compiled mmcv still to be built / installed
    detail: str


def decide_mmcv(mode: str) -> MmcvDecision:
    """What happens to mmcv: kept when the installed one serves the mode."""
    have = probe.mmcv_installed()
    if have is not None and have[1] != pins.MMCV_VERSION:
        dist, version = have
        if dist != 'mmcv-lite':
            raise InstallError(
                f'{dist} {version} is installed; the stack needs mmcv '
                f'{pins.MMCV_VERSION} (mmdet 3.3 accepts < 2.2). Uninstall it '
                f'(pip uninstall {dist}), then run bash tools/install.sh again.')
        have = None  # mmcv-lite of another version: replaced
    compiled = have is not None and have[0] != 'mmcv-lite' and probe.mmcv_compiled()
    if compiled:
        return MmcvDecision(mode, None, False,
                            f'compiled mmcv {pins.MMCV_VERSION} installed: kept')
    if mode == 'compiled':
        return MmcvDecision(mode, None, True,
                            'compiled mmcv: built from source or from the wheel cache')
    if have is not None:
        return MmcvDecision(mode, None, False,
                            f'{have[0]} {have[1]} (no compiled ops): kept, flsl_mm\'s '
                            'stand-in serves mmcv._ext')
    return MmcvDecision(mode, 'mmcv-lite', False,
                        f'mmcv-lite {pins.MMCV_VERSION} (no compiled ops; flsl_mm\'s '
                        'stand-in serves nms / RoIAlign through torchvision)')


def mmcv_mode(arg: str | None) -> str:
    mode = (arg or os.environ.get(MMCV_MODE_ENV) or 'lite').strip().lower()
    if mode not in ('lite', 'compiled'):
        raise InstallError(f'mmcv mode {mode!r}: use lite (default, nothing compiled) '
                           f'or compiled (--mmcv compiled / {MMCV_MODE_ENV}=compiled)')
    return mode


# ---------------------------------------------------------------------- steps
def bootstrap() -> None:
    """A pip new enough for ``--report`` and ``--dry-run``."""
    version = probe.pip_version()
    if version is None:
        proc = subprocess.run([sys.executable, '-m', 'ensurepip', '--upgrade'])
        if proc.returncode != 0:
            raise InstallError(
                f'{sys.executable} has no pip and `-m ensurepip` failed: on Debian/'
                'Ubuntu install python3-venv (or python3-pip) and recreate the '
                'environment, then run bash tools/install.sh again.')
        version = probe.pip_version()
    if version is None or version < pins.MIN_PIP:
        want = '.'.join(map(str, pins.MIN_PIP))
        run([sys.executable, '-m', 'pip', 'install', '-q', '--upgrade', f'pip>={want}'],
            f'upgrading pip to >= {want}', hint=PIP_HINT)


def check_free_space(path: Path, need_gb: float, what: str) -> None:
    mmcv_build.check_free_space(path, need_gb, what)


def site_packages() -> Path:
    import sysconfig
    return Path(sysconfig.get_paths()['purelib'])


def pip_install_pins(resolution: Resolution) -> None:
    if not resolution.pins:
        log('stack: everything already installed')
        return
    if any(p.key == 'torch' for p in resolution.pins):
        check_free_space(site_packages(), TORCH_FREE_GB, 'installing torch')
    log(f'installing {len(resolution.pins)} pinned wheel(s): '
        + ' '.join(p.spec for p in resolution.pins))
    run([sys.executable, '-m', 'pip', 'install', '--no-deps', '--only-binary=:all:',
         '--disable-pip-version-check', *[p.spec for p in resolution.pins]],
        'installing the stack', hint=PIP_HINT, quiet=True)


def install_flsl_mm(offline: bool) -> None:
    """flsl_mm editable, built with the environment's setuptools (no isolated
    build environment to download), and its interpreter start-up hook."""
    if not probe.flsl_mm_installed():
        run([sys.executable, '-m', 'pip', 'install', '-q', '--no-deps',
             '--no-build-isolation', *(['--no-index'] if offline else []),
             '--disable-pip-version-check', '-e', str(REPO_ROOT)],
            'installing flsl_mm (editable)', hint=PIP_HINT)
    install_startup_hook()


def verify() -> str:
    """Everything imports (flsl_mm first); returns the ops line."""
    rc, out, err = python_output(VERIFY)
    if rc != 0:
        raise InstallError(
            f'the final import check failed: {last_line(err)}\n{err[-3000:]}\nNext: '
            f'run bash tools/install.sh again; if it fails the same way, see {DOCS}')
    lines = out.strip().splitlines()
    log(lines[0])
    rc, _, err = python_output(PLAIN_APIS)
    if rc != 0:
        raise InstallError(
            f'mmcv / mmdet / mmseg / mmpretrain do not import without flsl_mm: '
            f'{last_line(err)} (the start-up hook {PTH_NAME} is missing or '
            f'broken?)\n{err[-2000:]}\nNext: run bash tools/install.sh again; see {DOCS}')
    log(f'{PLAIN_APIS}: ok without importing flsl_mm (start-up hook {PTH_NAME})')
    return lines[-1]


def warn_if_gpu_unseen(torch_decision: TorchDecision) -> None:
    """After installing the pinned (CUDA 13) torch on a machine with an NVIDIA
    driver, say so if torch does not see the GPU (a driver too old for CUDA 13)."""
    if torch_decision.action != 'install' or not probe.nvidia_gpu_present():
        return
    info = probe.probe_torch()
    if not info.available:
        log(f'WARNING: this machine has an NVIDIA GPU (nvidia-smi), but torch '
            f'{info.version} (CUDA {info.cuda}) does not see it: the driver is '
            'probably too old for that CUDA. Install the torch build for your '
            'driver\'s CUDA (pip install torch torchvision --index-url '
            'https://download.pytorch.org/whl/cu126, say; torch >= '
            f'{pins.min_torch_text()}), then run bash tools/install.sh again: it '
            f'keeps that torch. See {DOCS} "GPU machines".')


def constraints_file(folder: Path) -> Path:
    path = folder / 'constraints.txt'
    path.write_text(''.join(f'{n}=={v}\n' for n, v in probe.protected_versions().items()))
    return path


# ---------------------------------------------------------------------- plan
@dataclass
class Step:
    name: str
    action: str  # 'skip' | 'pip' | 'keep' | 'build' | ...
    detail: str = ''


def stack_missing() -> list[str]:
    """Top-level pins and extra requirements not installed as pinned."""
    from .common import requirement_class
    req_cls = requirement_class()
    missing = [f'{n}=={v}' for n, v in pins.TOP_PINS.items()
               if n != 'mmcv-lite' and installed_version(n) != v]
    for text in pins.EXTRA_REQUIREMENTS:
        req = req_cls(text)
        have = installed_version(req.name)
        if have is None or not req.specifier.contains(have, prereleases=True):
            missing.append(text)
    return missing


def plan(mode: str) -> list[Step]:
    """What each step would do, without changing anything (no index needed)."""
    steps = []
    pip_v = probe.pip_version()
    steps.append(Step('bootstrap (pip)', 'skip' if pip_v and pip_v >= pins.MIN_PIP
                      else 'pip', '' if pip_v else 'ensurepip'))
    try:
        torch_decision = decide_torch(probe.probe_torch())
        steps.append(Step('torch', torch_decision.action, torch_decision.describe()))
    except InstallError as exc:
        steps.append(Step('torch', 'refuse', str(exc)))
    missing = stack_missing()
    steps.append(Step('stack', 'pip' if missing else 'skip', ' '.join(missing)))
    try:
        mm = decide_mmcv(mode)
        action = 'build' if mm.build else ('pip' if mm.install_dist else 'skip')
        steps.append(Step(f'mmcv {pins.MMCV_VERSION} ({mode})', action, mm.detail))
    except InstallError as exc:
        steps.append(Step(f'mmcv {pins.MMCV_VERSION} ({mode})', 'refuse', str(exc)))
    steps.append(Step('flsl_mm (editable)',
                      'skip' if probe.flsl_mm_installed() else 'pip', str(REPO_ROOT)))
    steps.append(Step('start-up hook', 'skip' if startup_hook_installed() else 'write',
                      PTH_NAME))
    return steps


def show_plan(steps: list[Step]) -> None:
    for step in steps:
        detail = f'  {step.detail}' if step.detail else ''
        log(f'{step.name:<22} -> {step.action}{detail}')


# ---------------------------------------------------------------------- modes
def decisions(mode: str, bundle_torch: str | None = None
              ) -> tuple[TorchDecision, MmcvDecision]:
    """The torch and mmcv decisions for this environment, logged (``bundle_torch``:
    a bundle's ``target.torch``, checked against an environment without torch)."""
    torch_decision = decide_torch(probe.probe_torch())
    if torch_decision.action == 'install' and bundle_torch not in (None, 'included'):
        raise InstallError(
            'this environment has no torch and the bundle was made without torch '
            f'(--no-torch): install your torch (>= {pins.min_torch_text()}) first, '
            'or make the bundle with torch')
    log(f'torch: {torch_decision.describe()}')
    mm = decide_mmcv(mode)
    log(f'mmcv: {mm.detail}')
    return torch_decision, mm


class StepTimes:
    """``with times('stack'): ...`` records how long each step took."""

    def __init__(self) -> None:
        self.times: list[tuple[str, float]] = []

    @contextlib.contextmanager
    def __call__(self, name: str):
        start = time.time()
        yield
        self.times.append((name, time.time() - start))


def install(mode: str) -> int:
    """Online install into this interpreter's environment."""
    times = StepTimes()
    with times('checks'):
        probe.check_python()
        probe.check_not_externally_managed()
        bootstrap()
        torch_decision, mm = decisions(mode)
    with times('resolve'):
        resolution = resolve(
            Target(), install_torch=torch_decision.action == 'install',
            keep=probe.protected_versions(),
            have_opencv=bool(probe.opencv_installed()), skip_installed=True,
            mmcv_dist=mm.install_dist)
    with times('stack'):
        pip_install_pins(resolution)
    with times('mmcv'):
        if mm.build:
            with tempfile.TemporaryDirectory(prefix='flsl_mm_install_') as tmp:
                mmcv_build.ensure_mmcv(constraints_file(Path(tmp)), Path(tmp))
    with times('flsl_mm'):
        install_flsl_mm(offline=False)
    finish(torch_decision, times)
    return 0


def install_offline(folder: Path, mode: str) -> int:
    """Install from a bundle made by ``--download``; no index is contacted."""
    times = StepTimes()
    with times('checks'):
        probe.check_python()
        probe.check_not_externally_managed()
        if mode == 'compiled':
            raise InstallError('--offline installs mmcv without compiled ops; compiled '
                               'mmcv needs its source and a compiler (--mmcv compiled, '
                               f'online): see {DOCS}')
        manifest = bundle.read_manifest(folder)
        log(f'bundle {folder}: {bundle.summary(manifest)}')
        entries = bundle.check_bundle(folder, manifest)
        torch_decision, mm = decisions(mode, manifest['target']['torch'])
        chosen, skipped = bundle.offline_selection(
            entries, keep_torch=torch_decision.action == 'keep',
            protected=probe.protected_versions(), mmcv_keep=mm.install_dist is None,
            installed=installed_version)
        for why in skipped:
            log(f'not installed: {why}')
    with times('stack'):
        if chosen:
            if any(canonical(e.name) == 'torch' for e in chosen):
                check_free_space(site_packages(), TORCH_FREE_GB, 'installing torch')
            run([sys.executable, '-m', 'pip', 'install', '--no-index', '--no-deps',
                 '--disable-pip-version-check', *[str(folder / e.file) for e in chosen]],
                f'installing {len(chosen)} wheel(s) from {folder}',
                hint=f'the bundle is checked (sha256); see {DOCS} "Offline"', quiet=True)
    with times('flsl_mm'):
        install_flsl_mm(offline=True)
    finish(torch_decision, times)
    return 0


def finish(torch_decision: TorchDecision, times: StepTimes) -> None:
    ops = verify()
    info = probe.probe_torch()
    log(f'torch in use: {info.describe()}')
    warn_if_gpu_unseen(torch_decision)
    log(ops)
    log('time per step: ' + ', '.join(f'{n} {s:.0f} s' for n, s in times.times))
    log(f'environment ready: {sys.executable}')


def read_have(path: str | None) -> dict[str, str]:
    """``name==version`` lines of a ``pip freeze`` / ``pip list --format=freeze``
    of the target machine (other lines ignored)."""
    if not path:
        return {}
    have = {}
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise InstallError(f'--have {path}: {exc}') from None
    for line in text.splitlines():
        line = line.split('#')[0].strip()
        if '==' in line and ' @ ' not in line and not line.startswith('-'):
            name, version = line.split('==', 1)
            have[canonical(name.strip())] = version.strip()
    return have


def download(args) -> int:
    target = Target(python=args.python, platforms=tuple(args.platform or ()))
    have = read_have(args.have)
    with_torch = not args.no_torch
    if with_torch and 'torch' in have:
        log(f'--have lists torch {have["torch"]}: the bundle leaves torch out')
        with_torch = False
    if target.cross and not target.platforms:
        log(f'platforms: {DEFAULT_PLATFORMS[0]} ... {DEFAULT_PLATFORMS[-1]} '
            '(--platform to choose)')
    have_opencv = any(n in have for n in pins.OPENCV_DISTS)
    resolution = resolve(target, install_torch=with_torch, keep={},
                         have_opencv=have_opencv, skip_installed=False,
                         mmcv_dist='mmcv-lite', extra_constraints={
                             n: v for n, v in have.items()
                             if n not in ('torch', 'torchvision')})
    resolution.pins = [p for p in resolution.pins if p.key not in have]
    out = Path(args.download)
    manifest = bundle.download(resolution, target, out, with_torch)
    log(f'bundle ready: {out} ({bundle.summary(manifest)}); manifest '
        f'{out / bundle.MANIFEST}')
    log(f'on the target, from a checkout of flsl_mm: bash tools/install.sh --offline '
        f'{out}')
    return 0


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog='bash tools/install.sh',
        description='Install flsl_mm and its OpenMMLab stack into the active Python '
                    f'environment (nothing compiled by default). See {DOCS}.')
    what = parser.add_mutually_exclusive_group()
    what.add_argument('--dry-run', action='store_true',
                      help='print the plan only (changes nothing)')
    what.add_argument('--check', action='store_true',
                      help='exit 0 when nothing is left to install, else 1')
    what.add_argument('--download', metavar='DIR',
                      help='write every wheel the target needs and a manifest to DIR '
                           '(nothing is installed)')
    what.add_argument('--offline', metavar='DIR',
                      help='install from a bundle made by --download, no index')
    parser.add_argument('--mmcv', choices=('lite', 'compiled'),
                        help='mmcv without compiled ops (lite, default) or built from '
                             f'source with them (compiled); also {MMCV_MODE_ENV}')
    group = parser.add_argument_group('--download targets')
    group.add_argument('--python', metavar='X.Y',
                       help='the target\'s Python (default: this one)')
    group.add_argument('--platform', action='append', metavar='TAG',
                       help='a wheel platform tag of the target (repeatable; default '
                            'with --python: manylinux_2_28 ... manylinux2014, x86_64)')
    group.add_argument('--no-torch', action='store_true',
                       help='leave torch out: the target has its own')
    group.add_argument('--have', metavar='FREEZE',
                       help='the target\'s `pip freeze`: what it has is pinned and '
                            'left out of the bundle')
    args = parser.parse_args(argv)
    if not args.download and (args.python or args.platform or args.no_torch
                              or args.have):
        parser.error('--python, --platform, --no-torch and --have go with --download')
    if args.python and (len(args.python.split('.')) != 2
                        or not all(p.isdigit() for p in args.python.split('.'))):
        parser.error(f'--python {args.python}: give X.Y, e.g. 3.12')
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    start = time.time()
    try:
        mode = mmcv_mode(args.mmcv)
        if args.download:
            return download(args)
        if args.offline:
            rc = install_offline(Path(args.offline), mode)
        elif args.check or args.dry_run:
            probe.check_python()
            steps = plan(mode)
            show_plan(steps)
            todo = [s for s in steps if s.action not in ('skip', 'keep')]
            if args.dry_run:
                return 0
            if not todo:
                log(f'ready: {sys.executable}')
                rc, out, _ = python_output(
                    'import flsl_mm.compat_ops as c; print(c.describe_ops())')
                if rc == 0:
                    log(last_line(out))
            return 1 if todo else 0
        else:
            rc = install(mode)
    except InstallError as exc:
        log(f'FAILED: {exc}')
        return 1
    log(f'done in {time.time() - start:.0f} s')
    return rc

