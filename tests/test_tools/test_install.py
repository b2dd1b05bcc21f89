"""The install script: its plan on a ready machine, the mmcv build environment
(checked for real in throw-away venvs), the wheel checks and the cache, --check and
--dry-run in a fresh venv. Nothing is rebuilt here."""
import importlib.util
import os
import subprocess
import sys
import zipfile

import pytest


def write_fake_torch(site: str, gpu: bool, cuda: str = '13.0',
                     capability=(9, 0)) -> str:
    """A stand-in torch package in ``site``: CUDA build ``cuda``; with ``gpu`` it
    sees one GPU of ``capability`` unless CUDA_VISIBLE_DEVICES is empty (what
    hiding the GPU does to the real torch)."""
    path = os.path.join(site, 'torch')
    os.makedirs(path)
    with open(os.path.join(path, '__init__.py'), 'w') as fh:
        fh.write(
            'import os, types\n'
            '__version__ = "0.0+target-env"\n'
            f'version = types.SimpleNamespace(cuda={cuda!r})\n'
            'def _visible():\n'
            f'    return {gpu!r} and os.environ.get("CUDA_VISIBLE_DEVICES") != ""\n'
            'cuda = types.SimpleNamespace(\n'
            '    is_available=_visible,\n'
            '    device_count=lambda: 1 if _visible() else 0,\n'
            f'    get_device_capability=lambda i=0: {tuple(capability)!r})\n')
    return path


def fake_nvcc(folder, release: str):
    """An nvcc that prints the version banner of CUDA ``release``."""
    bin_dir = folder / 'bin'
    bin_dir.mkdir(parents=True)
    nvcc = bin_dir / 'nvcc'
    nvcc.write_text('#!/bin/sh\necho "nvcc: NVIDIA (R) Cuda compiler driver"\n'
                    f'echo "Cuda compilation tools, release {release}, '
                    f'V{release}.88"\n')
    nvcc.chmod(0o755)
    return nvcc


@pytest.fixture(scope='module')
def install(repo_root):
    spec = importlib.util.spec_from_file_location('flsl_install',
                                                  repo_root / 'tools' / 'install.py')
    mod = importlib.util.module_from_spec(spec)
    sys.modules['flsl_install'] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture()
def no_system_nvcc(install, monkeypatch):
    monkeypatch.setattr(install, 'DEFAULT_NVCC', [])


@pytest.fixture(scope='module')
def cpu_flavour(install):
    return install.BuildFlavour(False, 'test')


def test_ready_environment_skips_every_step(install):
    steps = install.plan()
    assert [s.action for s in steps] == ['skip'] * 5, steps


def test_second_run_is_a_no_op(repo_root):
    proc = subprocess.run(['bash', 'tools/install.sh', '--check'], cwd=repo_root,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # the check says which ops path each device takes
    assert 'flsl_mm ops (FLSL_MM_OPS=auto' in proc.stdout
    assert 'cpu -> mmcv (mmcv has kernels)' in proc.stdout


def test_mmcv_decision(install, monkeypatch, tmp_path):
    monkeypatch.setenv('FLSL_MM_CACHE', str(tmp_path))
    monkeypatch.setattr(install, 'mmcv_ops_ready', lambda *a: False)
    step = install.plan()[2]
    assert step.action == 'build-wheel'
    cache = install.wheel_cache_dir()
    cache.mkdir(parents=True)
    (cache / 'mmcv-2.1.0-cp311-cp311-linux_x86_64.whl').write_bytes(b'')
    # a half-copied wheel is never picked up
    (cache / 'mmcv-2.1.0-cp311-cp311-linux_x86_64.whl.partial').write_bytes(b'')
    step = install.plan()[2]
    assert step.action == 'install-cached-wheel'
    assert step.detail.endswith('.whl')


def test_mmcv_ops_probe_detects_missing_ops(install, tmp_path):
    # a fake interpreter where mmcv lacks its compiled ops
    fake = tmp_path / 'mmcv'
    (fake / 'ops').mkdir(parents=True)
    (fake / '__init__.py').write_text('__version__ = "2.1.0"\n')
    (fake / 'ops' / '__init__.py').write_text('raise ImportError("no _ext")\n')
    script = tmp_path / 'python'
    script.write_text(f'#!/bin/sh\nPYTHONPATH={tmp_path} exec {sys.executable} "$@"\n')
    script.chmod(0o755)
    assert install.mmcv_ops_ready(str(script)) is False
    assert install.mmcv_ops_ready(sys.executable) is True


def test_patch_mmcv_setup(install, tmp_path):
    setup = tmp_path / 'setup.py'
    setup.write_text("args = ['-std=c++17']\nnvcc = ['-std=c++14']\n")
    assert install.patch_mmcv_setup(setup) == 2
    assert setup.read_text().count("'-std=c++20'") == 2
    setup.write_text('nothing here')
    with pytest.raises(install.InstallError, match='no -std'):
        install.patch_mmcv_setup(setup)


PY_TAG = f'cp{sys.version_info.major}{sys.version_info.minor}'


def fake_wheel(path, with_ext=True):
    with zipfile.ZipFile(path, 'w') as zf:
        zf.writestr('mmcv/__init__.py', '__version__ = "2.1.0"\n')
        if with_ext:
            zf.writestr(f'mmcv/_ext.{PY_TAG}-x86_64-linux-gnu.so', b'\0')
    return path


def test_wheel_problems_are_found(install, tmp_path):
    good = fake_wheel(tmp_path / f'mmcv-2.1.0-{PY_TAG}-{PY_TAG}-linux_x86_64.whl')
    assert install.mmcv_wheel_problem(good) is None
    pure = fake_wheel(tmp_path / 'mmcv-2.1.0-py2.py3-none-any.whl', with_ext=False)
    assert 'pure-Python' in install.mmcv_wheel_problem(pure)
    (tmp_path / 'x').mkdir()
    no_ext = fake_wheel(tmp_path / 'x' / good.name, with_ext=False)
    assert 'no compiled mmcv/_ext' in install.mmcv_wheel_problem(no_ext)
    other = fake_wheel(tmp_path / 'mmcv-2.1.0-cp27-cp27mu-linux_x86_64.whl')
    assert 'is for cp27' in install.mmcv_wheel_problem(other)
    broken = tmp_path / 'y' / good.name
    broken.parent.mkdir()
    broken.write_bytes(b'not a zip')
    assert 'not a readable wheel' in install.mmcv_wheel_problem(broken)


def test_pure_python_wheel_is_refused_and_never_cached(install, monkeypatch,
                                                       tmp_path):
    """A bad cached wheel is discarded (not left for the user to delete); a bad
    fresh build fails loudly and leaves the cache empty."""
    monkeypatch.setenv('FLSL_MM_CACHE', str(tmp_path / 'cache'))
    cache = install.wheel_cache_dir()
    cache.mkdir(parents=True)
    stale = fake_wheel(cache / 'mmcv-2.1.0-py2.py3-none-any.whl', with_ext=False)
    built = fake_wheel(tmp_path / 'mmcv-2.1.0-py2.py3-none-any.whl', with_ext=False)
    calls = []
    monkeypatch.setattr(install, 'build_mmcv_wheel',
                        lambda work, constraints, flavour: calls.append(work) or built)
    monkeypatch.setattr(install, 'pip_install', lambda *a: calls.append(a))
    with pytest.raises(install.InstallError, match='pure-Python.*not cached'):
        install.ensure_mmcv(tmp_path / 'constraints.txt', tmp_path)
    assert not stale.exists()  # discarded, and a rebuild was tried
    assert calls == [tmp_path]  # nothing was pip-installed
    assert list(cache.iterdir()) == []


def test_good_build_is_cached_only_after_the_ops_probe(install, monkeypatch, tmp_path):
    monkeypatch.setenv('FLSL_MM_CACHE', str(tmp_path / 'cache'))
    built = fake_wheel(tmp_path / f'mmcv-2.1.0-{PY_TAG}-{PY_TAG}-linux_x86_64.whl')
    monkeypatch.setattr(install, 'build_mmcv_wheel',
                        lambda work, constraints, flavour: built)
    monkeypatch.setattr(install, 'pip_install', lambda *a: None)
    monkeypatch.setattr(install, '_mmcv_ops_error', lambda *a: 'No module named _ext')
    with pytest.raises(install.InstallError, match='_ext.*not cached'):
        install.ensure_mmcv(tmp_path / 'c.txt', tmp_path)
    assert not install.wheel_cache_dir().exists() or \
        list(install.wheel_cache_dir().iterdir()) == []
    monkeypatch.setattr(install, '_mmcv_ops_error', lambda *a: None)
    install.ensure_mmcv(tmp_path / 'c.txt', tmp_path)
    assert (install.wheel_cache_dir() / built.name).is_file()


def make_venv(path, *flags, python=sys.executable):
    subprocess.run([python, '-m', 'venv', *flags, str(path)], check=True,
                   capture_output=True, timeout=120)
    return path / 'bin' / 'python'


def site_packages(python):
    return subprocess.run([str(python), '-c', 'import sysconfig;'
                           'print(sysconfig.get_paths()["purelib"])'],
                          capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture(scope='module')
def overlay(install, tmp_path_factory):
    """The real mmcv build overlay: setuptools<70 and wheel, pip --target."""
    path = tmp_path_factory.mktemp('overlay')
    subprocess.run([sys.executable, '-m', 'pip', 'install', '-q', '--target',
                    str(path), 'setuptools>=60,<70', 'wheel'], check=True,
                   capture_output=True, timeout=300)
    return path


def test_build_env_sees_the_target_envs_torch(install, overlay, cpu_flavour,
                                              tmp_path):
    """The target is a fresh venv whose own site-packages holds a (stand-in)
    torch; the base interpreter's packages must not be what the build sees."""
    target = make_venv(tmp_path / 'target', '--without-pip')
    fake_torch = write_fake_torch(site_packages(target), gpu=True)
    env = install.mmcv_build_env(overlay, cpu_flavour, jobs=2)
    torch_file, st_version = install.verify_build_env(env, cpu_flavour, python=str(target))
    assert torch_file.startswith(fake_torch)
    assert int(st_version.split('.')[0]) < 70
    # the fake torch sees a GPU unless it is hidden: a CPU build that did not hide
    # it would compile CUDA ops (mmcv's setup.py) and is refused before building
    env.pop('CUDA_VISIBLE_DEVICES')
    with pytest.raises(install.InstallError, match='still sees a GPU'):
        install.verify_build_env(env, cpu_flavour, python=str(target))
    # the trap the script avoids: a --system-site-packages venv made from the
    # target venv's python sees the *base* interpreter's packages, not the target's
    trap = make_venv(tmp_path / 'trap', '--without-pip', '--system-site-packages',
                     python=str(target))
    proc = subprocess.run([str(trap), '-c', 'import torch; print(torch.__file__)'],
                          capture_output=True, text=True)
    assert fake_torch not in proc.stdout


def test_build_env_without_torch_fails_loudly(install, overlay, cpu_flavour,
                                              tmp_path):
    target = make_venv(tmp_path / 'bare', '--without-pip')
    env = install.mmcv_build_env(overlay, cpu_flavour, jobs=2)
    with pytest.raises(install.InstallError, match='cannot import torch'):
        install.verify_build_env(env, cpu_flavour, python=str(target))


@pytest.fixture(scope='module')
def fresh_venv(tmp_path_factory):
    """What a newcomer has after `python3 -m venv v`: pip, no packaging."""
    return make_venv(tmp_path_factory.mktemp('fresh') / 'v')


def test_dry_run_and_check_in_a_fresh_venv(fresh_venv, repo_root):
    before = sorted(os.listdir(site_packages(fresh_venv)))
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    dry = subprocess.run([str(fresh_venv), 'tools/install.py', '--dry-run'],
                         cwd=repo_root, capture_output=True, text=True, env=env,
                         timeout=120)
    assert dry.returncode == 0, dry.stdout + dry.stderr
    plan = dry.stdout
    boot = next(line for line in plan.splitlines() if 'bootstrap' in line)
    assert '-> pip' in boot and boot.endswith('packaging')  # a fresh venv has none
    assert 'base packages' in plan and 'torch==2.14.1' in plan
    assert 'build-wheel' in plan or 'install-cached-wheel' in plan
    check = subprocess.run([str(fresh_venv), 'tools/install.py', '--check'],
                           cwd=repo_root, capture_output=True, text=True, env=env,
                           timeout=120)
    assert check.returncode == 1, check.stdout + check.stderr
    assert 'not ready: base packages' in check.stdout
    assert sorted(os.listdir(site_packages(fresh_venv))) == before  # changed nothing


def test_unsupported_python_is_refused_with_the_next_step(install):
    with pytest.raises(install.InstallError, match='python3.11 -m venv'):
        install.check_python((3, 9, 0))
    install.check_python((3, 11, 7))


GPU = dict(available=True, cuda='13.0', capabilities=['9.0'])
NO_GPU = dict(available=False, cuda='13.0', capabilities=[])


def test_flavour_without_gpu_is_cpu(install, no_system_nvcc, tmp_path):
    nvcc = fake_nvcc(tmp_path / 'cuda13', '13.0')
    flavour = install.decide_build_flavour(
        NO_GPU, {'PATH': str(nvcc.parent)})
    assert not flavour.cuda and flavour.reason == 'torch sees no GPU'
    assert flavour.key == 'cpu'


def test_gpu_without_toolkit_builds_cpu_ops_with_the_gpu_hidden(
        install, no_system_nvcc, tmp_path):
    """The hard stop of a pip-torch GPU machine: no nvcc at all."""
    flavour = install.decide_build_flavour(GPU, {'PATH': str(tmp_path)})
    assert not flavour.cuda
    assert 'no nvcc of CUDA 13.x' in flavour.reason and 'nvcc found: none' in \
        flavour.reason
    env = install.mmcv_build_env(tmp_path / 'overlay', flavour, jobs=2)
    assert env['CUDA_VISIBLE_DEVICES'] == '' and env['FORCE_CUDA'] == '0'
    assert env['MMCV_WITH_OPS'] == '1'


def test_gpu_with_another_cuda_major_builds_cpu_ops(install, no_system_nvcc,
                                                    tmp_path):
    nvcc = fake_nvcc(tmp_path / 'cuda12', '12.4')
    flavour = install.decide_build_flavour(GPU, {'CUDA_HOME': str(nvcc.parent.parent),
                                                 'PATH': ''})
    assert not flavour.cuda
    assert f'{nvcc} (CUDA 12.4)' in flavour.reason


def test_gpu_with_matching_nvcc_builds_cuda_ops(install, no_system_nvcc, tmp_path):
    nvcc = fake_nvcc(tmp_path / 'cuda13', '13.0')
    flavour = install.decide_build_flavour(GPU, {'PATH': str(nvcc.parent)})
    assert flavour.cuda and flavour.cuda_version == '13.0'
    assert flavour.cuda_home == str(tmp_path / 'cuda13')
    assert flavour.arch_list == '9.0+PTX'
    assert flavour.key == 'cuda13.0-sm9_0_PTX'
    env = install.mmcv_build_env(tmp_path / 'overlay', flavour, jobs=2)
    assert env['FORCE_CUDA'] == '1' and env['CUDA_HOME'] == flavour.cuda_home
    assert env['TORCH_CUDA_ARCH_LIST'] == '9.0+PTX'
    assert str(tmp_path / 'cuda13' / 'bin') in env['PATH'].split(os.pathsep)[:2]
    assert 'CUDA_VISIBLE_DEVICES' not in env or \
        env['CUDA_VISIBLE_DEVICES'] == os.environ.get('CUDA_VISIBLE_DEVICES')
    # an explicit arch list wins, and is part of the cache key
    other = install.decide_build_flavour(
        GPU, {'PATH': str(nvcc.parent), 'TORCH_CUDA_ARCH_LIST': '8.0;9.0'})
    assert other.arch_list == '8.0;9.0' and other.key != flavour.key


def test_force_cuda_really_overrides(install, no_system_nvcc, tmp_path):
    nvcc = fake_nvcc(tmp_path / 'cuda13', '13.0')
    env = {'PATH': str(nvcc.parent)}
    flavour = install.decide_build_flavour(GPU, dict(env, FORCE_CUDA='0'))
    assert not flavour.cuda and flavour.reason == 'FORCE_CUDA=0'
    # FORCE_CUDA=1 on a GPU-less build node needs the target GPUs named
    with pytest.raises(install.InstallError, match='TORCH_CUDA_ARCH_LIST'):
        install.decide_build_flavour(NO_GPU, dict(env, FORCE_CUDA='1'))
    flavour = install.decide_build_flavour(
        NO_GPU, dict(env, FORCE_CUDA='1', TORCH_CUDA_ARCH_LIST='8.0;9.0'))
    assert flavour.cuda and flavour.arch_list == '8.0;9.0'
    with pytest.raises(install.InstallError, match=r'no nvcc of CUDA 13\.x'):
        install.decide_build_flavour(GPU, {'PATH': '', 'FORCE_CUDA': '1'})
    with pytest.raises(install.InstallError, match='CPU-only build'):
        install.decide_build_flavour(dict(NO_GPU, cuda=None),
                                     dict(env, FORCE_CUDA='1'))
    with pytest.raises(install.InstallError, match="FORCE_CUDA='yes'"):
        install.decide_build_flavour(GPU, dict(env, FORCE_CUDA='yes'))


def test_cache_folders_differ_by_flavour(install, monkeypatch, tmp_path):
    monkeypatch.setenv('FLSL_MM_CACHE', str(tmp_path))
    cpu = install.BuildFlavour(False, 'x')
    a = install.BuildFlavour(True, 'x', '/c', '13.0', '9.0+PTX')
    b = install.BuildFlavour(True, 'x', '/c', '13.0', '8.0;9.0')
    dirs = {install.wheel_cache_dir(f) for f in (cpu, a, b)}
    assert len(dirs) == 3
    assert install.wheel_cache_dir(cpu).name.endswith('-cpu')


def test_probe_reads_what_torch_sees(install, tmp_path):
    """probe_torch_cuda on an interpreter whose torch reports a GPU (sm 9.0),
    and on one where torch is missing."""
    write_fake_torch(str(tmp_path / 'site'), gpu=True)
    python = tmp_path / 'python'
    python.write_text(f'#!/bin/sh\nPYTHONPATH={tmp_path / "site"} '
                      f'exec {sys.executable} "$@"\n')
    python.chmod(0o755)
    info = install.probe_torch_cuda(str(python))
    assert info == dict(available=True, cuda='13.0', capabilities=['9.0'])
    bare = tmp_path / 'bare'
    bare.write_text(f'#!/bin/sh\nexec {sys.executable} -S "$@"\n')
    bare.chmod(0o755)
    assert install.probe_torch_cuda(str(bare))['available'] is False


CUDA_HOME_LOG = """\
running bdist_wheel
  File "/tmp/x/torch/utils/cpp_extension.py", line 2410, in _join_cuda_home
    raise OSError('CUDA_HOME environment variable is not set. '
OSError: CUDA_HOME environment variable is not set. Please set it to your CUDA \
install root.
error: subprocess-exited-with-error
"""


def test_build_failure_names_its_cause(install, tmp_path):
    causes = install.diagnose_build_log(CUDA_HOME_LOG)
    assert len(causes) == 1 and causes[0].startswith('CUDA_HOME is not set')
    assert install.diagnose_build_log('c++: fatal error: Killed signal terminated '
                                      'program cc1plus')[0].startswith(
        'a compiler was killed')
    assert install.diagnose_build_log('all fine') == []
    script = tmp_path / 'build.sh'
    script.write_text(f"cat <<'EOF'\n{CUDA_HOME_LOG}EOF\nexit 1\n")
    with pytest.raises(install.InstallError) as err:
        install._run(['bash', str(script)], 'building mmcv 2.1.0',
                     logfile=tmp_path / 'build.log',
                     diagnose=install.diagnose_build_log)
    message = str(err.value)
    assert 'Cause (from the log): CUDA_HOME is not set' in message
    assert 'FORCE_CUDA=0' in message
