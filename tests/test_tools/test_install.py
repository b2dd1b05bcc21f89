"""The installer (tools/installer): its plan on a ready machine, the torch and mmcv
decisions, --check and --dry-run in a fresh venv; the optional compiled-mmcv
build: its environment (checked for real in throw-away venvs), the wheel checks
and the cache. Nothing is rebuilt here; installs from a bundle:
test_install_bundle.py."""
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
def installer(repo_root):
    """The ``tools/installer`` package, imported as tools/install.py does."""
    sys.path.insert(0, str(repo_root / 'tools'))
    try:
        import installer
        from installer import cli, mmcv_build, pins, probe  # noqa: F401
    finally:
        sys.path.remove(str(repo_root / 'tools'))
    return installer


@pytest.fixture(scope='module')
def install(installer):
    """The compiled-mmcv build module (the old install script's build steps)."""
    return installer.mmcv_build


@pytest.fixture()
def no_pip_changes(install, monkeypatch):
    """ensure_mmcv without touching this environment: pip calls are recorded."""
    calls = []
    monkeypatch.setattr(install, 'pip_install', lambda *a: calls.append(a))
    monkeypatch.setattr(install, 'pip_uninstall', lambda *a: calls.append(a))
    return calls


@pytest.fixture()
def no_system_nvcc(install, monkeypatch):
    monkeypatch.setattr(install, 'DEFAULT_NVCC', [])


@pytest.fixture(scope='module')
def cpu_flavour(install):
    return install.BuildFlavour(False, 'test')


def test_ready_environment_skips_every_step(installer):
    steps = installer.cli.plan('lite')
    actions = {s.name.split(' ')[0]: s.action for s in steps}
    assert actions == {'bootstrap': 'skip', 'torch': 'keep', 'stack': 'skip',
                       'mmcv': 'skip', 'flsl_mm': 'skip', 'start-up': 'skip'}, steps


def test_second_run_is_a_no_op(repo_root):
    proc = subprocess.run(['bash', 'tools/install.sh', '--check'], cwd=repo_root,
                          capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, PYTHON=sys.executable))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert 'torch                  -> keep  kept: torch ' in proc.stdout
    # the check says which ops path each device takes, and from which mmcv
    from flsl_mm import compat_ops
    assert compat_ops.describe_ops() in proc.stdout
    if compat_ops.mmcv_ops_kind() == 'stand-in':
        assert 'flsl_mm stand-in for mmcv._ext' in proc.stdout
        assert 'mmcv has kernels' not in proc.stdout


def test_cached_compiled_wheel_is_found(install, monkeypatch, tmp_path):
    monkeypatch.setenv('FLSL_MM_CACHE', str(tmp_path))
    flavour = install.BuildFlavour(False, 'test')
    cache = install.wheel_cache_dir(flavour)
    assert install.cached_mmcv_wheel(cache) is None
    cache.mkdir(parents=True)
    (cache / 'mmcv-2.1.0-cp311-cp311-linux_x86_64.whl').write_bytes(b'')
    # a half-copied wheel is never picked up
    (cache / 'mmcv-2.1.0-cp311-cp311-linux_x86_64.whl.partial').write_bytes(b'')
    assert install.cached_mmcv_wheel(cache).name.endswith('linux_x86_64.whl')


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
    # this environment: true only with compiled mmcv (never for the stand-in)
    from flsl_mm import compat_ops
    assert install.mmcv_ops_ready(sys.executable) is (
        compat_ops.mmcv_ops_kind() == 'compiled')


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
                                                       tmp_path, no_pip_changes):
    """A bad cached wheel is discarded (not left for the user to delete); a bad
    fresh build fails loudly and leaves the cache empty."""
    monkeypatch.setenv('FLSL_MM_CACHE', str(tmp_path / 'cache'))
    cache = install.wheel_cache_dir()
    cache.mkdir(parents=True)
    stale = fake_wheel(cache / 'mmcv-2.1.0-py2.py3-none-any.whl', with_ext=False)
    built = fake_wheel(tmp_path / 'mmcv-2.1.0-py2.py3-none-any.whl', with_ext=False)
    calls = no_pip_changes
    monkeypatch.setattr(install, 'build_mmcv_wheel',
                        lambda work, constraints, flavour: calls.append(work) or built)
    with pytest.raises(install.InstallError, match='pure-Python.*not cached'):
        install.ensure_mmcv(tmp_path / 'constraints.txt', tmp_path)
    assert not stale.exists()  # discarded, and a rebuild was tried
    assert calls == [tmp_path]  # nothing was pip-installed
    assert list(cache.iterdir()) == []


def test_good_build_is_cached_only_after_the_ops_probe(install, monkeypatch, tmp_path,
                                                       no_pip_changes):
    monkeypatch.setenv('FLSL_MM_CACHE', str(tmp_path / 'cache'))
    built = fake_wheel(tmp_path / f'mmcv-2.1.0-{PY_TAG}-{PY_TAG}-linux_x86_64.whl')
    monkeypatch.setattr(install, 'build_mmcv_wheel',
                        lambda work, constraints, flavour: built)
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
    plan = {line.split('->')[0].split(']')[1].strip().split(' ')[0]: line
            for line in dry.stdout.splitlines() if '->' in line}
    assert '-> install  none importable: install torch 2.14.1' in plan['torch']
    assert '-> pip' in plan['stack'] and 'mmdet==3.3.0' in plan['stack']
    assert '-> pip  mmcv-lite 2.1.0 (no compiled ops' in plan['mmcv']
    assert '-> pip' in plan['flsl_mm']
    assert '-> write  flsl_mm_mmcv_ext.pth' in plan['start-up']
    compiled = subprocess.run(
        [str(fresh_venv), 'tools/install.py', '--dry-run', '--mmcv', 'compiled'],
        cwd=repo_root, capture_output=True, text=True, env=env, timeout=120)
    assert compiled.returncode == 0, compiled.stdout + compiled.stderr
    assert 'mmcv 2.1.0 (compiled)  -> build  compiled mmcv: built from source' in \
        compiled.stdout
    check = subprocess.run([str(fresh_venv), 'tools/install.py', '--check'],
                           cwd=repo_root, capture_output=True, text=True, env=env,
                           timeout=120)
    assert check.returncode == 1, check.stdout + check.stderr
    assert 'stack                  -> pip' in check.stdout
    assert sorted(os.listdir(site_packages(fresh_venv))) == before  # changed nothing


def test_unsupported_python_is_refused_with_the_next_step(installer):
    with pytest.raises(installer.common.InstallError, match='python3.11 -m venv'):
        installer.probe.check_python((3, 9, 0))
    installer.probe.check_python((3, 11, 7))


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
        install.run(['bash', str(script)], 'building mmcv 2.1.0',
                     logfile=tmp_path / 'build.log',
                     diagnose=install.diagnose_build_log)
    message = str(err.value)
    assert 'Cause (from the log): CUDA_HOME is not set' in message
    assert 'FORCE_CUDA=0' in message


# ------------------------------------------------------------ torch, mmcv, pins
def torch_info(installer, **kw):
    base = dict(version='2.14.1+cu130', file='/x/torch/__init__.py', cuda='13.0',
                torchvision='0.29.1+cu130')
    base.update(kw)
    return installer.probe.TorchInfo(**base)


def test_the_environments_torch_is_kept_or_refused(installer):
    decide = installer.cli.decide_torch
    error = installer.common.InstallError
    assert decide(installer.probe.TorchInfo()).action == 'install'
    kept = decide(torch_info(installer, version='2.11.0+cu128',
                             torchvision='0.26.0+cu128'))
    assert kept.action == 'keep' and 'kept: torch 2.11.0+cu128' in kept.describe()
    assert decide(torch_info(installer)).action == 'keep'
    with pytest.raises(error, match=r'torch 2\.10\.1 .* older than the oldest '
                                    r'supported, 2\.11.*never replaces'):
        decide(torch_info(installer, version='2.10.1', torchvision='0.25.1'))
    with pytest.raises(error, match=r'torchvision is not.*torchvision==0\.29\.\*'):
        decide(torch_info(installer, torchvision=None))
    with pytest.raises(error, match=r'torchvision 0\.28\.0 does not belong to torch '
                                    r'2\.14\.1.*0\.29\.x'):
        decide(torch_info(installer, torchvision='0.28.0'))
    with pytest.raises(error, match='does not import'):
        decide(installer.probe.TorchInfo(error='ImportError: libcudart.so.12'))


def test_pins(installer):
    pins = installer.pins
    assert pins.torchvision_for('2.14.1') == '0.29'
    assert pins.torchvision_for('2.11.0+cu128') == '0.26'
    assert pins.torch_supported('2.11.0') and not pins.torch_supported('2.10.9')
    assert installer.common.version_tuple('2.11.0a0+git1234') == (2, 11, 0)
    req = installer.common.requirement_class()
    edit = pins.edit_requirement
    assert edit(req('opencv-python>=3'), have_opencv=False) == \
        'opencv-python-headless>=3'
    assert edit(req('opencv-python >=3'), have_opencv=True) is None
    for dropped in ('torch', 'torchvision>=0.8', 'mmcv<2.2.0', 'mmengine>=0.3.0'):
        assert edit(req(dropped), have_opencv=False) is None
    assert edit(req('numpy'), have_opencv=False) == 'numpy'


def test_mmcv_decision(installer, monkeypatch):
    cli, probe = installer.cli, installer.probe
    monkeypatch.setattr(probe, 'mmcv_installed', lambda: None)
    lite = cli.decide_mmcv('lite')
    assert lite.install_dist == 'mmcv-lite' and not lite.build
    assert cli.decide_mmcv('compiled').build
    monkeypatch.setattr(probe, 'mmcv_installed', lambda: ('mmcv-lite', '2.1.0'))
    monkeypatch.setattr(probe, 'mmcv_compiled', lambda *a: False)
    kept = cli.decide_mmcv('lite')
    assert kept.install_dist is None and not kept.build and 'kept' in kept.detail
    assert cli.decide_mmcv('compiled').build  # lite is replaced by a build
    monkeypatch.setattr(probe, 'mmcv_installed', lambda: ('mmcv', '2.1.0'))
    monkeypatch.setattr(probe, 'mmcv_compiled', lambda *a: True)
    for mode in ('lite', 'compiled'):  # a compiled mmcv is kept either way
        d = cli.decide_mmcv(mode)
        assert d.install_dist is None and not d.build and 'compiled' in d.detail
    monkeypatch.setattr(probe, 'mmcv_installed', lambda: ('mmcv', '2.2.0'))
    with pytest.raises(installer.common.InstallError, match='pip uninstall mmcv'):
        cli.decide_mmcv('lite')
    monkeypatch.setattr(probe, 'mmcv_installed', lambda: ('mmcv-lite', '2.0.1'))
    assert cli.decide_mmcv('lite').install_dist == 'mmcv-lite'
    with pytest.raises(installer.common.InstallError, match='lite .* or compiled'):
        cli.mmcv_mode('fast')


def test_have_file_is_read_as_pins(installer, tmp_path):
    freeze = tmp_path / 'freeze.txt'
    freeze.write_text('numpy==1.26.4\nOpenCV_Python_Headless==4.10.0.84\n'
                      '-e git+https://x/y#egg=z\nfoo @ file:///tmp/foo.whl\n'
                      '# comment\ntorch==2.11.0+cu128\n')
    assert installer.cli.read_have(str(freeze)) == {
        'numpy': '1.26.4', 'opencv-python-headless': '4.10.0.84',
        'torch': '2.11.0+cu128'}
    with pytest.raises(installer.common.InstallError, match='--have'):
        installer.cli.read_have(str(tmp_path / 'missing.txt'))


def test_bundle_checks_name_the_file(installer, tmp_path):
    bundle = installer.bundle
    error = installer.common.InstallError
    with pytest.raises(error, match='no such folder'):
        bundle.read_manifest(tmp_path / 'nope')
    with pytest.raises(error, match='has no flsl_mm_bundle.json'):
        bundle.read_manifest(tmp_path)
    wheel = tmp_path / 'a-1.0-py3-none-any.whl'
    wheel.write_bytes(b'wheel bytes')
    py = f'{sys.version_info.major}.{sys.version_info.minor}'
    entry = dict(name='a', version='1.0', file=wheel.name,
                 sha256=bundle.sha256_of(wheel), size=11, role='stack')
    manifest = dict(format=1, target=dict(python=py, torch='excluded'),
                    packages=[entry], total_size=11)
    assert [e.name for e in bundle.check_bundle(tmp_path, manifest)] == ['a']
    wheel.write_bytes(b'wheel byte')  # truncated copy
    with pytest.raises(error, match=f'{wheel.name}: sha256 .*(truncated or altered copy)'):
        bundle.check_bundle(tmp_path, manifest)
    wheel.unlink()
    with pytest.raises(error, match='missing: copy the whole folder'):
        bundle.check_bundle(tmp_path, manifest)
    with pytest.raises(error, match='made for Python 3.99'):
        bundle.check_bundle(tmp_path, dict(manifest, target=dict(python='3.99')))
    (tmp_path / 'flsl_mm_bundle.json').write_text('{"format": 0}')
    with pytest.raises(error, match='format 0'):
        bundle.read_manifest(tmp_path)


def test_offline_selection_keeps_torch_numpy_opencv(installer):
    entry = installer.bundle.Entry
    entries = [entry('torch', '2.14.1', 't.whl', 'x', 1, 'torch'),
               entry('nvidia-nccl-cu13', '2.30.7', 'n.whl', 'x', 1, 'torch'),
               entry('numpy', '2.4.6', 'np.whl', 'x', 1, 'stack'),
               entry('opencv-python-headless', '5.1.0.95', 'cv.whl', 'x', 1, 'stack'),
               entry('mmcv-lite', '2.1.0', 'm.whl', 'x', 1, 'stack'),
               entry('mmdet', '3.3.0', 'd.whl', 'x', 1, 'stack'),
               entry('six', '1.17.0', 's.whl', 'x', 1, 'stack')]
    installed = {'six': '1.17.0'}.get
    chosen, skipped = installer.bundle.offline_selection(
        entries, keep_torch=True, protected={'numpy': '1.26.4',
                                             'opencv-python': '4.10.0.84'},
        mmcv_keep=False, installed=installed)
    assert [e.name for e in chosen] == ['mmcv-lite', 'mmdet']
    assert any('numpy (installed 1.26.4 is kept)' in s for s in skipped)
    # one OpenCV installed: no second one (both own cv2/)
    assert any('opencv-python-headless (installed opencv-python 4.10.0.84 is kept)'
               in s for s in skipped)
    assert sum('torch is kept' in s for s in skipped) == 2
    chosen, _ = installer.bundle.offline_selection(
        entries, keep_torch=False, protected={}, mmcv_keep=True, installed=installed)
    assert [e.name for e in chosen] == ['torch', 'nvidia-nccl-cu13', 'numpy',
                                        'opencv-python-headless', 'mmdet']
