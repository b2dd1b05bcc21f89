#!/usr/bin/env python3
"""Set up everything flsl_mm needs in the *active* Python environment.

Run it as ``bash tools/install.sh`` (a thin wrapper) or ``python tools/install.py``.

Steps (each one is skipped when what it would install is already there, so a second
run finishes in seconds):

1. torch / torchvision (pinned, the versions this machine serves from local disk),
   mmengine, timm, pycocotools and small build helpers.
2. mmcv 2.1.0 **with compiled ops**.  PyPI only has its source distribution, and
   that source does not build against torch 2.14 as published:

   * its ``setup.py`` hard-codes ``-std=c++17`` (``-std=c++14`` for nvcc) while
     torch 2.14's headers need C++20 -> patched to ``-std=c++20``;
   * it imports ``pkg_resources`` -> built inside a throw-away virtual environment
     (``--system-site-packages``, so it sees our torch) that has ``setuptools<70``;
     torch 2.14 itself requires ``setuptools>=77`` so this cannot live in the user's
     environment;
   * ``--no-build-isolation`` (an isolated build does not see torch and silently
     skips the ops), ``MMCV_WITH_OPS=1``, ``FORCE_CUDA=1`` only when a GPU and nvcc
     are present.

   The wheel is kept in ``$FLSL_MM_CACHE`` (default ``~/.cache/flsl_mm/wheels``),
   keyed by Python, torch and CPU/CUDA, so a reinstall reuses it.
3. mmdet 3.3.0 and mmpretrain 1.2.0.
4. flsl_mm itself, editable (``pip install -e``).

Options: ``--dry-run`` prints the plan and exits; ``--check`` exits 0 when nothing is
left to do, 1 otherwise.
"""
from __future__ import annotations

import argparse
import glob
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

TORCH_VERSION = '2.14.1'
TORCHVISION_VERSION = '0.29.1'
MMCV_VERSION = '2.1.0'

# name -> pip requirement. The version each must satisfy is checked with
# ``_satisfied`` before pip is called at all (pip's own no-op takes ~10 s a call).
BASE_REQUIREMENTS = {
    'torch': f'torch=={TORCH_VERSION}',
    'torchvision': f'torchvision=={TORCHVISION_VERSION}',
    # torch 2.14 needs >=77.0.3; mmengine still imports pkg_resources (gone in 81).
    'setuptools': 'setuptools>=77.0.3,<81',
    'mmengine': 'mmengine==0.10.7',
    'timm': 'timm==1.0.31',
    'pycocotools': 'pycocotools>=2.0.7',
    'scipy': 'scipy>=1.10',
    'pytest': 'pytest>=7',
}
OPENMMLAB_REQUIREMENTS = {
    'mmdet': 'mmdet==3.3.0',
    'mmpretrain': 'mmpretrain==1.2.0',
}

MMCV_OPS_PROBE = (
    'import mmcv, sys\n'
    f'assert mmcv.__version__ == "{MMCV_VERSION}", mmcv.__version__\n'
    'from mmcv.ops import nms, RoIAlign\n')


def log(msg: str) -> None:
    print(f'[flsl_mm install] {msg}', flush=True)


class InstallError(RuntimeError):
    """A step failed; the message says which and what to look at."""


# --------------------------------------------------------------------------- checks
def _installed_version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _satisfied(requirement: str) -> bool:
    """Whether ``requirement`` (``name==v``, ``name>=a,<b``) is met right now."""
    from packaging.requirements import Requirement  # shipped with pip/setuptools
    req = Requirement(requirement)
    version = _installed_version(req.name)
    if version is None:
        return False
    return req.specifier.contains(version, prereleases=True)


def mmcv_ops_ready(python: str = sys.executable) -> bool:
    """True when mmcv has the pinned version and its compiled ops import."""
    proc = subprocess.run([python, '-c', MMCV_OPS_PROBE],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return proc.returncode == 0


def flsl_mm_installed(repo_root: Path = REPO_ROOT,
                      python: str = sys.executable) -> bool:
    """True when ``import flsl_mm`` resolves to *this* checkout (editable)."""
    proc = subprocess.run(
        [python, '-c', 'import flsl_mm, os; print(os.path.realpath(flsl_mm.__file__))'],
        capture_output=True, text=True, cwd=tempfile.gettempdir())
    if proc.returncode != 0:
        return False
    return Path(proc.stdout.strip()).is_relative_to(repo_root.resolve())


def cuda_build_wanted() -> bool:
    """Build CUDA ops only where nvcc and a visible GPU are both present."""
    if os.environ.get('FORCE_CUDA') is not None:
        return os.environ['FORCE_CUDA'] == '1'
    if shutil.which('nvcc') is None:
        return False
    proc = subprocess.run([sys.executable, '-c',
                           'import torch; print(torch.cuda.is_available())'],
                          capture_output=True, text=True)
    return proc.stdout.strip() == 'True'


def wheel_cache_dir() -> Path:
    root = os.environ.get('FLSL_MM_CACHE', str(Path.home() / '.cache' / 'flsl_mm'))
    torch_v = _installed_version('torch') or TORCH_VERSION
    flavour = 'cuda' if cuda_build_wanted() else 'cpu'
    py = f'cp{sys.version_info.major}{sys.version_info.minor}'
    return Path(root) / 'wheels' / f'{py}-torch{torch_v}-{flavour}'


def cached_mmcv_wheel(cache: Path | None = None) -> Path | None:
    cache = cache or wheel_cache_dir()
    hits = sorted(glob.glob(str(cache / f'mmcv-{MMCV_VERSION}-*.whl')))
    return Path(hits[-1]) if hits else None


# --------------------------------------------------------------------------- plan
@dataclass
class Step:
    name: str
    action: str  # 'skip' | 'pip' | 'install-cached-wheel' | 'build-wheel'
    detail: str = ''


def plan() -> list[Step]:
    """Decide what each step has to do, without changing anything."""
    steps = []
    missing = [r for r in BASE_REQUIREMENTS.values() if not _satisfied(r)]
    steps.append(Step('base packages', 'pip' if missing else 'skip', ' '.join(missing)))
    if mmcv_ops_ready():
        steps.append(Step(f'mmcv {MMCV_VERSION} with ops', 'skip'))
    else:
        wheel = cached_mmcv_wheel()
        if wheel is not None:
            steps.append(Step(f'mmcv {MMCV_VERSION} with ops', 'install-cached-wheel',
                              str(wheel)))
        else:
            steps.append(Step(f'mmcv {MMCV_VERSION} with ops', 'build-wheel',
                              str(wheel_cache_dir())))
    missing = [r for r in OPENMMLAB_REQUIREMENTS.values() if not _satisfied(r)]
    steps.append(Step('mmdet / mmpretrain', 'pip' if missing else 'skip',
                      ' '.join(missing)))
    steps.append(Step('flsl_mm (editable)',
                      'skip' if flsl_mm_installed() else 'pip', str(REPO_ROOT)))
    return steps


# --------------------------------------------------------------------------- actions
def _run(cmd: list[str], what: str, env: dict | None = None,
         logfile: Path | None = None, cwd: str | None = None,
         heartbeat_s: float = 60.0) -> None:
    """Run ``cmd``; with ``logfile``, send its output there and print a progress
    line (elapsed minutes, last log line) every ``heartbeat_s`` seconds."""
    log('$ ' + ' '.join(cmd))
    if logfile is None:
        proc = subprocess.run(cmd, env=env, cwd=cwd)
    else:
        start = time.time()
        with open(logfile, 'w') as fh:
            proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=fh,
                                    stderr=subprocess.STDOUT)
            while True:
                try:
                    proc.wait(timeout=heartbeat_s)
                    break
                except subprocess.TimeoutExpired:
                    lines = logfile.read_text(errors='replace').splitlines()
                    last = lines[-1].strip()[:100] if lines else ''
                    log(f'  ... {what}: {(time.time() - start) / 60:.0f} min, '
                        f'{last}')
    if proc.returncode != 0:
        tail = ''
        if logfile is not None and logfile.exists():
            tail = '\n'.join(logfile.read_text(errors='replace').splitlines()[-40:])
            tail = f'\n--- last lines of {logfile} ---\n{tail}'
        raise InstallError(f'{what} failed (exit {proc.returncode}){tail}')


def _constraints_file(tmp: Path) -> Path:
    """Keep every pip call from replacing the torch this machine provides."""
    path = tmp / 'constraints.txt'
    path.write_text(f'torch=={TORCH_VERSION}\ntorchvision=={TORCHVISION_VERSION}\n')
    return path


def pip_install(args: list[str], constraints: Path, what: str) -> None:
    _run([sys.executable, '-m', 'pip', 'install', '-c', str(constraints), *args], what)


def patch_mmcv_setup(setup_py: Path) -> int:
    """Switch mmcv's hard-coded C++ standard to C++20; returns replacements made."""
    text = setup_py.read_text()
    count = text.count("'-std=c++17'") + text.count("'-std=c++14'")
    if count == 0:
        raise InstallError(f'{setup_py}: no -std=c++17/c++14 flag found to patch; '
                           'is this the mmcv 2.1.0 source?')
    text = text.replace("'-std=c++17'", "'-std=c++20'")
    text = text.replace("'-std=c++14'", "'-std=c++20'")
    setup_py.write_text(text)
    return count


def build_mmcv_wheel(cache: Path) -> Path:
    """Download mmcv's sdist, patch it, build a wheel into ``cache``."""
    cuda = cuda_build_wanted()
    jobs = os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix='flsl_mm_mmcv_') as tmpdir:
        tmp = Path(tmpdir)
        venv = tmp / 'buildenv'
        log('creating a throw-away build environment (setuptools<70 for mmcv)')
        _run([sys.executable, '-m', 'venv', '--system-site-packages', str(venv)],
             'creating the mmcv build venv')
        vpy = str(venv / 'bin' / 'python')
        _run([vpy, '-m', 'pip', 'install', '-q', 'setuptools<70', 'wheel', 'ninja',
              '-c', str(_constraints_file(tmp))], 'installing mmcv build tools')
        _run([vpy, '-m', 'pip', 'download', '--no-deps', '--no-binary', ':all:',
              '--no-build-isolation', '-d', str(tmp / 'sdist'), f'mmcv=={MMCV_VERSION}'],
             f'downloading the mmcv {MMCV_VERSION} source')
        sdists = list((tmp / 'sdist').glob('mmcv-*.tar.gz'))
        if not sdists:
            raise InstallError('pip download gave no mmcv source archive')
        with tarfile.open(sdists[0]) as tar:
            tar.extractall(tmp / 'src', filter='data')
        src = next((tmp / 'src').iterdir())
        n = patch_mmcv_setup(src / 'setup.py')
        log(f'patched {n} C++ standard flag(s) in mmcv setup.py to -std=c++20')
        env = dict(os.environ, MMCV_WITH_OPS='1', FORCE_CUDA='1' if cuda else '0',
                   MAX_JOBS=str(jobs))
        build_log = Path(tempfile.gettempdir()) / 'flsl_mm_mmcv_build.log'
        estimate = ('~11 min with ninja, ~25-30 min without, on 2 cores' if not cuda
                    else 'long (CUDA ops)')
        log(f'building mmcv {MMCV_VERSION} {"CUDA" if cuda else "CPU"} ops with '
            f'{jobs} job(s), {estimate}; log: {build_log}')
        start = time.time()
        out = tmp / 'wheel'
        _run([vpy, '-m', 'pip', 'wheel', '--no-build-isolation', '--no-deps', '-w',
              str(out), str(src)], f'building mmcv {MMCV_VERSION}', env=env,
             logfile=build_log)
        log(f'mmcv built in {(time.time() - start) / 60:.1f} min')
        wheels = list(out.glob('mmcv-*.whl'))
        if not wheels:
            raise InstallError(f'mmcv build produced no wheel; see {build_log}')
        cache.mkdir(parents=True, exist_ok=True)
        # Copy under a temporary name then rename, so an interrupted copy never
        # leaves a truncated wheel that a later run would trust.
        target = cache / wheels[0].name
        partial = cache / (wheels[0].name + '.partial')
        shutil.copyfile(wheels[0], partial)
        os.replace(partial, target)
        return target


def install(dry_run: bool = False) -> int:
    steps = plan()
    for step in steps:
        log(f'{step.name:<24} -> {step.action}{"  " + step.detail if step.detail else ""}')
    if dry_run:
        return 0
    with tempfile.TemporaryDirectory(prefix='flsl_mm_install_') as tmpdir:
        constraints = _constraints_file(Path(tmpdir))
        base, mmcv, openmmlab, own = steps
        if base.action == 'pip':
            pip_install(list(BASE_REQUIREMENTS.values()) + ['ninja', 'wheel'],
                        constraints, 'installing torch, mmengine, timm, pycocotools')
        if mmcv.action != 'skip':
            wheel = cached_mmcv_wheel()
            if wheel is None:
                wheel = build_mmcv_wheel(wheel_cache_dir())
            else:
                log(f'reusing cached mmcv wheel {wheel}')
            pip_install([str(wheel)], constraints, f'installing {wheel.name}')
            if not mmcv_ops_ready():
                raise InstallError('mmcv installed but `from mmcv.ops import nms, '
                                   'RoIAlign` fails; delete the cached wheel '
                                   f'{wheel} and run again')
        if openmmlab.action == 'pip':
            pip_install(list(OPENMMLAB_REQUIREMENTS.values()), constraints,
                        'installing mmdet and mmpretrain')
        if own.action == 'pip':
            pip_install(['--no-deps', '-e', str(REPO_ROOT)], constraints,
                        'installing flsl_mm (editable)')
    log('verifying imports')
    _run([sys.executable, '-c',
          'import torch, mmengine, mmcv, mmdet, mmpretrain, timm, pycocotools, flsl_mm;'
          'from mmcv.ops import nms, RoIAlign;'
          'print("torch", torch.__version__, "mmengine", mmengine.__version__,'
          '"mmcv", mmcv.__version__, "mmdet", mmdet.__version__,'
          '"mmpretrain", mmpretrain.__version__, "timm", timm.__version__)'],
         'the final import check', cwd=tempfile.gettempdir())
    log('environment ready')
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--dry-run', action='store_true', help='print the plan only')
    parser.add_argument('--check', action='store_true',
                        help='exit 0 when nothing is left to install, else 1')
    args = parser.parse_args(argv)
    if args.check:
        todo = [s for s in plan() if s.action != 'skip']
        for s in todo:
            log(f'not ready: {s.name} ({s.action})')
        return 1 if todo else 0
    start = time.time()
    try:
        rc = install(dry_run=args.dry_run)
    except InstallError as exc:
        log(f'FAILED: {exc}')
        return 1
    log(f'done in {time.time() - start:.0f} s')
    return rc


if __name__ == '__main__':
    sys.exit(main())
