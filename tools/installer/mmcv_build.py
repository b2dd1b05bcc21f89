"""Compiled mmcv, the option (``bash tools/install.sh --mmcv compiled`` or
``FLSL_MM_MMCV=compiled``): mmcv 2.1.0 built from source **with its ops**.

The default install needs none of this (``mmcv-lite`` + flsl_mm's stand-in for
``mmcv._ext``). Build it for the ops the stand-in does not have, or to run nms /
RoIAlign through mmcv's own kernels. PyPI only has mmcv's source distribution,
and that source does not build against torch 2.14 as published:

* its ``setup.py`` hard-codes ``-std=c++17`` (``-std=c++14`` for nvcc) while
  torch 2.14's headers need C++20 -> patched to ``-std=c++20``;
* it imports ``pkg_resources`` and needs ``setuptools<70``, while torch 2.14
  requires ``setuptools>=77``.  The build therefore runs with the *target*
  interpreter (so it sees the target environment's torch) and a throw-away
  overlay folder holding ``setuptools<70``, ``wheel`` and ``ninja`` put first on
  ``PYTHONPATH``.  (A ``venv --system-site-packages`` made from a venv's python
  sees the *base* interpreter's packages, not the venv's, and silently builds a
  pure-Python wheel without ops: that is why no build venv is used.)
* ``--no-build-isolation`` (an isolated build does not see torch),
  ``MMCV_WITH_OPS=1``.
* CPU or CUDA ops (:func:`decide_build_flavour`): mmcv's setup.py compiles
  CUDA ops whenever torch sees a GPU, whatever ``FORCE_CUDA`` says, so a CPU
  build runs with the GPU hidden (``CUDA_VISIBLE_DEVICES=``). CUDA ops are
  built where torch sees a GPU and an nvcc of torch's CUDA major version exists
  (or with ``FORCE_CUDA=1``); ``FORCE_CUDA=0`` forces CPU ops. Without CUDA
  ops, flsl_mm runs nms / RoIAlign on the GPU through torchvision.

A wheel is cached (``$FLSL_MM_CACHE``, default ``~/.cache/flsl_mm/wheels``, keyed
by Python, torch and CPU / CUDA version + GPU architectures) only after it passed
every check: a platform tag (not ``none-any``), the compiled ``mmcv/_ext`` inside,
and ``from mmcv.ops import nms, RoIAlign`` in the target environment. A cached
wheel that fails any check later is deleted and rebuilt automatically.
"""
from __future__ import annotations

import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

from .common import (DOCS, PIP_HINT, InstallError, installed_version, log, run,
                     version_tuple)
from .pins import MMCV_VERSION, TORCH_VERSION

# what the mmcv build needs on top of the target environment (the overlay)
MMCV_BUILD_TOOLS = ['setuptools>=60,<70', 'wheel', 'ninja']

MMCV_OPS_PROBE = (
    'import mmcv, sys\n'
    f'assert mmcv.__version__ == "{MMCV_VERSION}", mmcv.__version__\n'
    'from mmcv.ops import nms, RoIAlign\n'
    'import importlib.util as u\n'
    's = u.find_spec("mmcv._ext")\n'
    'assert s is not None and "flsl_mm" not in (s.origin or ""), "no compiled _ext"\n')
# What the mmcv build must see: the target's torch and the overlay's setuptools.
BUILD_ENV_PROBE = (
    'import torch, setuptools, pkg_resources, wheel\n'
    'print(torch.__version__, torch.__file__, setuptools.__version__,\n'
    '      torch.cuda.is_available())\n')


def check_free_space(path: Path, need_gb: float, what: str) -> None:
    path = Path(path)
    while not path.exists():
        path = path.parent
    free_gb = shutil.disk_usage(path).free / 1e9
    if free_gb < need_gb:
        raise InstallError(
            f'{what} needs about {need_gb:.0f} GB free under {path}, only '
            f'{free_gb:.1f} GB are: free some space there (or point TMPDIR / the '
            f'environment elsewhere), then run bash tools/install.sh again.')


def check_compiler() -> None:
    cxx = os.environ.get('CXX') or 'c++'
    if shutil.which(cxx) is None and shutil.which('g++') is None:
        raise InstallError(
            'no C++ compiler found (looked for $CXX, c++ and g++); mmcv\'s ops are '
            'compiled at install time: install one (Debian/Ubuntu: '
            '`apt-get install g++`, conda: `conda install gxx_linux-64`), then run '
            'bash tools/install.sh again.')


def mmcv_ops_ready(python: str = sys.executable) -> bool:
    """True when mmcv has the pinned version and its compiled ops import."""
    return _mmcv_ops_error(python) is None


def _mmcv_ops_error(python: str = sys.executable) -> str | None:
    """None when the ops probe passes in ``python``, else its last error line."""
    proc = subprocess.run([python, '-c', MMCV_OPS_PROBE], capture_output=True,
                          text=True, cwd=tempfile.gettempdir())
    if proc.returncode == 0:
        return None
    lines = (proc.stderr or proc.stdout).strip().splitlines()
    return lines[-1] if lines else f'exit {proc.returncode}'



@dataclass
class BuildFlavour:
    """What the mmcv build compiles: CPU ops only, or CPU + CUDA ops."""
    cuda: bool
    reason: str
    cuda_home: str | None = None
    cuda_version: str | None = None  # nvcc's release, e.g. '13.0'
    arch_list: str | None = None  # TORCH_CUDA_ARCH_LIST, e.g. '9.0+PTX'

    @property
    def key(self) -> str:
        """Part of the wheel cache folder's name: a wheel is reused only for the
        same flavour, CUDA version and GPU architectures."""
        if not self.cuda:
            return 'cpu'
        archs = ''.join(c if c.isalnum() else '_' for c in self.arch_list or '')
        return f'cuda{self.cuda_version}-sm{archs}'

    @property
    def label(self) -> str:
        if not self.cuda:
            return 'CPU ops'
        return (f'CPU + CUDA {self.cuda_version} ops (TORCH_CUDA_ARCH_LIST='
                f'{self.arch_list}, CUDA_HOME={self.cuda_home})')


TORCH_CUDA_PROBE = (
    'import json, torch\n'
    'ok = torch.cuda.is_available()\n'
    'caps = sorted({"%d.%d" % torch.cuda.get_device_capability(i)\n'
    '               for i in range(torch.cuda.device_count())}) if ok else []\n'
    'print(json.dumps(dict(available=ok, cuda=torch.version.cuda, '
    'capabilities=caps)))\n')


def probe_torch_cuda(python: str = sys.executable) -> dict:
    """What ``python``'s torch sees: ``available`` (a usable GPU), ``cuda`` (the
    CUDA version torch was built with, None for a CPU build) and ``capabilities``
    of the visible GPUs (``['9.0']``). Before torch is installed: nothing."""
    proc = subprocess.run([python, '-c', TORCH_CUDA_PROBE], capture_output=True,
                          text=True, cwd=tempfile.gettempdir())
    if proc.returncode != 0:
        return dict(available=False, cuda=None, capabilities=[], missing=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


DEFAULT_NVCC = [Path('/usr/local/cuda/bin/nvcc')]


def nvcc_candidates(environ=None) -> list[Path]:
    """Every nvcc the build could use: $CUDA_HOME/bin, $CUDA_PATH/bin, the PATH,
    /usr/local/cuda/bin (existing files only, each once)."""
    environ = os.environ if environ is None else environ
    found = []
    for var in ('CUDA_HOME', 'CUDA_PATH'):
        if environ.get(var):
            found.append(Path(environ[var]) / 'bin' / 'nvcc')
    which = shutil.which('nvcc', path=environ.get('PATH', ''))
    if which:
        found.append(Path(which))
    found.extend(DEFAULT_NVCC)
    unique = []
    for path in found:
        if path.is_file() and path.resolve() not in [p.resolve() for p in unique]:
            unique.append(path)
    return unique


def nvcc_version(nvcc: Path) -> str | None:
    """``'13.0'`` from ``nvcc --version`` (its ``release X.Y`` line), else None."""
    try:
        proc = subprocess.run([str(nvcc), '--version'], capture_output=True,
                              text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r'release (\d+\.\d+)', proc.stdout)
    return match.group(1) if match else None


def decide_build_flavour(torch_info: dict | None = None,
                         environ=None) -> BuildFlavour:
    """CPU or CUDA ops, and why.

    mmcv's setup.py compiles CUDA ops whenever ``torch.cuda.is_available()``,
    whatever ``FORCE_CUDA`` says, and then needs a CUDA toolkit whose major
    version is torch's. So:

    * ``FORCE_CUDA=0``: CPU ops, the GPU hidden from the build;
    * ``FORCE_CUDA=1``: CUDA ops, with an nvcc of torch's CUDA major version
      (refused with what was found otherwise);
    * unset: CUDA ops where torch sees a GPU *and* such an nvcc exists; CPU ops
      with the GPU hidden otherwise (nms / RoIAlign then run on the GPU through
      torchvision, see docs/compat.md).
    """
    environ = os.environ if environ is None else environ
    info = probe_torch_cuda() if torch_info is None else torch_info
    force = environ.get('FORCE_CUDA', '').strip()
    if force not in ('', '0', '1'):
        raise InstallError(f'FORCE_CUDA={force!r}: use 1 (build CUDA ops), 0 (CPU ops '
                           'only) or leave it unset (decide from the machine)')
    if force == '0':
        return BuildFlavour(False, 'FORCE_CUDA=0')
    torch_cuda = info.get('cuda')
    if not info.get('available') and force != '1':
        why = ('torch is not installed yet' if info.get('missing') else
               'torch sees no GPU')
        return BuildFlavour(False, why)
    if torch_cuda is None:
        if force == '1':
            raise InstallError('FORCE_CUDA=1, but this torch is a CPU-only build: '
                               'CUDA ops need a CUDA build of torch')
        return BuildFlavour(False, 'torch is a CPU-only build')
    major = torch_cuda.split('.')[0]
    seen = [(path, nvcc_version(path)) for path in nvcc_candidates(environ)]
    match = next(((p, v) for p, v in seen if v and v.split('.')[0] == major), None)
    seen_text = ', '.join(f'{p} (CUDA {v or "?"})' for p, v in seen) or 'none'
    if match is None:
        if force == '1':
            raise InstallError(
                f'FORCE_CUDA=1, but no nvcc of CUDA {major}.x (torch is built for '
                f'CUDA {torch_cuda}) was found; nvcc found: {seen_text}. Install '
                f'the CUDA {major} toolkit and set CUDA_HOME to it, or unset '
                'FORCE_CUDA to build CPU ops (detection then uses torchvision\'s '
                'CUDA kernels for nms / RoIAlign)')
        return BuildFlavour(
            False, f'torch sees a GPU, but no nvcc of CUDA {major}.x (torch\'s CUDA '
            f'{torch_cuda}) was found (nvcc found: {seen_text}); the GPU is hidden '
            'from the build, and on the GPU nms / RoIAlign run through '
            'torchvision (FLSL_MM_OPS=auto)')
    nvcc, version = match
    arch_list = environ.get('TORCH_CUDA_ARCH_LIST', '').strip()
    if not arch_list:
        caps = info.get('capabilities') or []
        if not caps:
            raise InstallError(
                'FORCE_CUDA=1 on a machine where torch sees no GPU: set '
                'TORCH_CUDA_ARCH_LIST to the GPUs the wheel is for (e.g. '
                '"8.0;9.0"), the build cannot ask the hardware')
        arch_list = ';'.join(caps) + '+PTX'
    why = 'FORCE_CUDA=1' if force == '1' else 'torch sees a GPU'
    return BuildFlavour(True, f'{why}; nvcc {version} at {nvcc} matches torch\'s '
                        f'CUDA {torch_cuda}', cuda_home=str(nvcc.parent.parent),
                        cuda_version=version, arch_list=arch_list)


def wheel_cache_dir(flavour: BuildFlavour | None = None) -> Path:
    root = os.environ.get('FLSL_MM_CACHE', str(Path.home() / '.cache' / 'flsl_mm'))
    torch_v = installed_version('torch') or TORCH_VERSION
    flavour = flavour or decide_build_flavour()
    py = f'cp{sys.version_info.major}{sys.version_info.minor}'
    return Path(root) / 'wheels' / f'{py}-torch{torch_v}-{flavour.key}'


def cached_mmcv_wheel(cache: Path | None = None) -> Path | None:
    cache = cache or wheel_cache_dir()
    hits = sorted(glob.glob(str(cache / f'mmcv-{MMCV_VERSION}-*.whl')))
    return Path(hits[-1]) if hits else None


def mmcv_wheel_problem(wheel: Path) -> str | None:
    """Why ``wheel`` cannot be an mmcv wheel with compiled ops for this Python
    (None when it can): a ``none-any``/pure-Python tag, another Python's tag, or no
    ``mmcv/_ext`` extension inside."""
    parts = wheel.name[:-len('.whl')].split('-')
    if len(parts) < 5 or not wheel.name.endswith('.whl'):
        return f'{wheel.name} is not a wheel file name'
    py_tag, abi_tag, plat_tag = parts[-3:]
    if plat_tag == 'any':
        return (f'{wheel.name} is a pure-Python wheel ({py_tag}-{abi_tag}-{plat_tag}): '
                'the build did not compile mmcv\'s ops')
    want = f'cp{sys.version_info.major}{sys.version_info.minor}'
    if py_tag != want:
        return f'{wheel.name} is for {py_tag}, this Python is {want}'
    try:
        with zipfile.ZipFile(wheel) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, OSError) as exc:
        return f'{wheel} is not a readable wheel ({exc})'
    if not any(n.startswith('mmcv/_ext') and n.endswith('.so') for n in names):
        return f'{wheel.name} holds no compiled mmcv/_ext*.so'
    return None



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


# (pattern in the build log, the cause and what to do), first match of each wins
BUILD_LOG_CAUSES = [
    ('CUDA_HOME environment variable is not set',
     'CUDA_HOME is not set: the build compiled CUDA ops (torch saw a GPU) without a '
     'CUDA toolkit. Unset FORCE_CUDA (or set FORCE_CUDA=0) to build CPU ops with '
     'the GPU hidden, or install the CUDA toolkit of torch\'s version and set '
     'CUDA_HOME'),
    ('mismatches the version that was used to compile',
     'nvcc\'s CUDA version is not the one torch was built with: point CUDA_HOME at '
     'a toolkit of torch\'s CUDA major version, or build CPU ops (FORCE_CUDA=0)'),
    ('unsupported GNU version',
     'nvcc does not support this g++: set CC/CXX (or NVCC_CCBIN) to a g++ version '
     'the CUDA toolkit supports'),
    ('No space left on device',
     'the disk is full: free space in $TMPDIR and the environment\'s disk'),
    ('Killed signal terminated program',
     'a compiler was killed, usually out of memory: MAX_JOBS=1 bash '
     'tools/install.sh'),
    ('internal compiler error: Killed',
     'a compiler was killed, usually out of memory: MAX_JOBS=1 bash '
     'tools/install.sh'),
    ("unrecognized command-line option '-std=c++20'",
     'the C++ compiler is too old for C++20 (torch 2.14\'s headers): use g++ >= 10 '
     '(CXX=g++-10 ...)'),
    ("invalid value 'c++20'",
     'the C++ compiler is too old for C++20 (torch 2.14\'s headers): use g++ >= 10'),
    ('No module named',
     'the build could not import a module (named in the log line): run the script '
     'with the environment\'s own python'),
]


def diagnose_build_log(text: str) -> list[str]:
    """The causes :data:`BUILD_LOG_CAUSES` recognises in an mmcv build log, each
    with the log line that shows it."""
    causes = []
    for pattern, cause in BUILD_LOG_CAUSES:
        line = next((ln.strip() for ln in text.splitlines() if pattern in ln), None)
        if line is not None and cause not in [c.split(' [log: ')[0] for c in causes]:
            causes.append(f'{cause} [log: {line[:200]}]')
    return causes


def mmcv_compiled_cuda(python: str = sys.executable) -> str | None:
    """The CUDA version ``python``'s mmcv ops were compiled with (None: without)."""
    proc = subprocess.run(
        [python, '-c', 'from mmcv.ops import get_compiling_cuda_version as v; '
         'print(v())'], capture_output=True, text=True, cwd=tempfile.gettempdir())
    out = proc.stdout.strip()
    return None if proc.returncode != 0 or out in ('', 'not available') else out



def build_jobs() -> int:
    """Parallel compile jobs: ``$MAX_JOBS``, else the CPU count."""
    return int(os.environ.get('MAX_JOBS') or os.cpu_count() or 1)


def mmcv_build_env(overlay: Path, flavour: BuildFlavour, jobs: int) -> dict:
    """Environment of the mmcv build: the target interpreter, with ``overlay`` (its
    ``setuptools<70``, ``wheel``, ``ninja``) first on ``PYTHONPATH`` and ``PATH``.

    A CPU build hides every GPU (``CUDA_VISIBLE_DEVICES`` empty): mmcv's setup.py
    compiles CUDA ops whenever torch sees a GPU, whatever ``FORCE_CUDA`` says. A
    CUDA build gets ``CUDA_HOME``, its ``bin`` on the ``PATH`` and an explicit
    ``TORCH_CUDA_ARCH_LIST``."""
    env = dict(os.environ, MMCV_WITH_OPS='1', FORCE_CUDA='1' if flavour.cuda else '0',
               MAX_JOBS=str(jobs))
    if flavour.cuda:
        env['CUDA_HOME'] = flavour.cuda_home
        env['TORCH_CUDA_ARCH_LIST'] = flavour.arch_list
        env['PATH'] = os.pathsep.join([str(Path(flavour.cuda_home) / 'bin'),
                                       env.get('PATH', '')])
    else:
        env['CUDA_VISIBLE_DEVICES'] = ''
    env['PYTHONPATH'] = os.pathsep.join(
        [str(overlay)] + ([env['PYTHONPATH']] if env.get('PYTHONPATH') else []))
    env['PATH'] = os.pathsep.join([str(overlay / 'bin'), env.get('PATH', '')])
    env.pop('PYTHONNOUSERSITE', None)
    return env


def make_mmcv_build_overlay(overlay: Path, constraints: Path,
                            flavour: BuildFlavour) -> dict:
    """Install the build tools into ``overlay`` and check, with the target
    interpreter, that the build will see torch and the old setuptools. Returns the
    build environment."""
    run([sys.executable, '-m', 'pip', 'install', '-q', '--no-warn-conflicts',
          '--target', str(overlay), *MMCV_BUILD_TOOLS, '-c', str(constraints)],
         'installing mmcv build tools (setuptools<70, wheel, ninja) into '
         f'{overlay}', hint=PIP_HINT)
    env = mmcv_build_env(overlay, flavour, build_jobs())
    verify_build_env(env, flavour)
    return env


def verify_build_env(env: dict, flavour: BuildFlavour,
                     python: str = sys.executable) -> tuple[str, str]:
    """Fail loudly unless ``python`` under ``env`` imports torch and a setuptools
    older than 70, and sees a GPU exactly when ``flavour`` builds CUDA ops (mmcv's
    setup.py decides by ``torch.cuda.is_available()``); returns (torch file,
    setuptools version)."""
    proc = subprocess.run([python, '-c', BUILD_ENV_PROBE], env=env,
                          capture_output=True, text=True, cwd=tempfile.gettempdir())
    if proc.returncode != 0:
        err = (proc.stderr.strip().splitlines() or ['?'])[-1]
        raise InstallError(
            f'the mmcv build environment cannot import torch/setuptools/wheel '
            f'({err}); without torch mmcv would build without its ops. Check that '
            f'`{python} -c "import torch"` works, then run bash tools/install.sh '
            'again.')
    torch_v, torch_file, st_v, gpu = proc.stdout.split()
    if not flavour.cuda and gpu == 'True':
        raise InstallError(
            'the mmcv build still sees a GPU with CUDA_VISIBLE_DEVICES empty; mmcv '
            'would then compile CUDA ops and need a CUDA toolkit. Report this with '
            'the output of `python -c "import torch; print(torch.cuda.is_available())"`'
            ' run with CUDA_VISIBLE_DEVICES= .')
    if version_tuple(st_v) >= (70,):
        raise InstallError(
            f'the mmcv build sees setuptools {st_v}, it needs <70 (pkg_resources): '
            'unset PYTHONPATH entries that bring another setuptools, then run bash '
            'tools/install.sh again.')
    log(f'mmcv build sees torch {torch_v} ({torch_file}), setuptools {st_v}, '
        f'GPU visible: {gpu}')
    return torch_file, st_v


def build_mmcv_wheel(out_dir: Path, constraints: Path, flavour: BuildFlavour) -> Path:
    """Download mmcv's sdist, patch it, build a wheel of ``flavour`` into
    ``out_dir`` (not the cache: the caller caches it once it passed every check)."""
    check_compiler()
    jobs = build_jobs()
    tmp = Path(tempfile.mkdtemp(prefix='flsl_mm_mmcv_', dir=out_dir))
    env = make_mmcv_build_overlay(tmp / 'overlay', constraints, flavour)
    run([sys.executable, '-m', 'pip', 'download', '--no-deps', '--no-binary', ':all:',
          '--no-build-isolation', '-d', str(tmp / 'sdist'), f'mmcv=={MMCV_VERSION}'],
         f'downloading the mmcv {MMCV_VERSION} source', env=env, hint=PIP_HINT)
    sdists = list((tmp / 'sdist').glob('mmcv-*.tar.gz'))
    if not sdists:
        raise InstallError('pip download gave no mmcv source archive; run bash '
                           'tools/install.sh again (a partial download is retried)')
    with tarfile.open(sdists[0]) as tar:
        tar.extractall(tmp / 'src', filter='data')
    src = next((tmp / 'src').iterdir())
    n = patch_mmcv_setup(src / 'setup.py')
    log(f'patched {n} C++ standard flag(s) in mmcv setup.py to -std=c++20')
    build_log = Path(tempfile.gettempdir()) / 'flsl_mm_mmcv_build.log'
    estimate = ('~11 min with ninja on 2 cores' if not flavour.cuda else
                'CUDA ops take several times longer than CPU ops')
    log(f'building mmcv {MMCV_VERSION}: {flavour.label}, with {jobs} job(s), '
        f'{estimate}; log: {build_log}')
    start = time.time()
    out = tmp / 'wheel'
    run([sys.executable, '-m', 'pip', 'wheel', '-v', '--no-build-isolation',
          '--no-deps', '-w', str(out), str(src)], f'building mmcv {MMCV_VERSION}',
         env=env,
         logfile=build_log, diagnose=diagnose_build_log,
         hint=f'read the log above ({build_log}) and {DOCS}')
    log(f'mmcv built in {(time.time() - start) / 60:.1f} min')
    wheels = list(out.glob('mmcv-*.whl'))
    if not wheels:
        raise InstallError(f'mmcv build produced no wheel; see {build_log}')
    return wheels[0]


def pip_install(args: list[str], constraints: Path, what: str) -> None:
    run([sys.executable, '-m', 'pip', 'install', '-c', str(constraints), *args], what,
        hint=PIP_HINT)


def pip_uninstall(dist: str, why: str) -> None:
    run([sys.executable, '-m', 'pip', 'uninstall', '-y', '-q', dist],
        f'uninstalling {dist} ({why})')


def cache_wheel(wheel: Path, cache: Path) -> Path:
    """Copy ``wheel`` into ``cache`` under a temporary name, then rename, so an
    interrupted copy never leaves a truncated wheel that a later run would trust."""
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / wheel.name
    partial = cache / (wheel.name + '.partial')
    shutil.copyfile(wheel, partial)
    os.replace(partial, target)
    return target


def install_mmcv_wheel(wheel: Path, constraints: Path,
                       flavour: BuildFlavour | None = None) -> str | None:
    """Install ``wheel`` in place of any mmcv there (``mmcv-lite`` is uninstalled
    first: both own the ``mmcv`` package folder; mmcv's dependencies are those of
    mmcv-lite, installed by the main step); returns None when the ops probe then
    passes (and, for a CUDA ``flavour``, mmcv reports CUDA ops), else what failed."""
    problem = mmcv_wheel_problem(wheel)
    if problem:
        return problem
    if installed_version('mmcv-lite'):
        pip_uninstall('mmcv-lite', 'replaced by compiled mmcv')
    pip_install(['--force-reinstall', '--no-deps', str(wheel)], constraints,
                f'installing {wheel.name}')
    err = _mmcv_ops_error()
    if err is not None:
        return f'`from mmcv.ops import nms, RoIAlign` fails: {err}'
    if flavour is not None and flavour.cuda and mmcv_compiled_cuda() is None:
        return 'the wheel was to have CUDA ops, mmcv reports none'
    return None


def ensure_mmcv(constraints: Path, work: Path) -> None:
    """Install mmcv with ops: from the cache when the cached wheel passes every check
    (a bad one is deleted), else built, checked, installed and only then cached."""
    flavour = decide_build_flavour()
    log(f'mmcv flavour: {flavour.label}; why: {flavour.reason}')
    cache = wheel_cache_dir(flavour)
    wheel = cached_mmcv_wheel(cache)
    if wheel is not None:
        log(f'trying cached mmcv wheel {wheel}')
        problem = install_mmcv_wheel(wheel, constraints, flavour)
        if problem is None:
            return
        log(f'discarding the cached wheel: {problem}; rebuilding')
        wheel.unlink(missing_ok=True)
    check_free_space(work, 3.0, 'building mmcv')
    built = build_mmcv_wheel(work, constraints, flavour)
    problem = install_mmcv_wheel(built, constraints, flavour)
    if problem is not None:
        raise InstallError(
            f'the freshly built mmcv wheel is unusable: {problem}. It was not cached. '
            f'Check the build log ({Path(tempfile.gettempdir())}/'
            f'flsl_mm_mmcv_build.log) and {DOCS}, then run bash tools/install.sh '
            'again.')
    log(f'cached {cache_wheel(built, cache)}')


