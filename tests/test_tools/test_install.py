"""The install script: its plan on a ready machine, the mmcv build environment
(checked for real in throw-away venvs), the wheel checks and the cache, --check and
--dry-run in a fresh venv. Nothing is rebuilt here."""
import importlib.util
import os
import subprocess
import sys
import zipfile

import pytest


@pytest.fixture(scope='module')
def install(repo_root):
    spec = importlib.util.spec_from_file_location('flsl_install',
                                                  repo_root / 'tools' / 'install.py')
    mod = importlib.util.module_from_spec(spec)
    sys.modules['flsl_install'] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def test_ready_environment_skips_every_step(install):
    steps = install.plan()
    assert [s.action for s in steps] == ['skip'] * 5, steps


def test_second_run_is_a_no_op(repo_root):
    proc = subprocess.run(['bash', 'tools/install.sh', '--check'], cwd=repo_root,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


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
                        lambda work, constraints: calls.append(work) or built)
    monkeypatch.setattr(install, 'pip_install', lambda *a: calls.append(a))
    with pytest.raises(install.InstallError, match='pure-Python.*not cached'):
        install.ensure_mmcv(tmp_path / 'constraints.txt', tmp_path)
    assert not stale.exists()  # discarded, and a rebuild was tried
    assert calls == [tmp_path]  # nothing was pip-installed
    assert list(cache.iterdir()) == []


def test_good_build_is_cached_only_after_the_ops_probe(install, monkeypatch, tmp_path):
    monkeypatch.setenv('FLSL_MM_CACHE', str(tmp_path / 'cache'))
    built = fake_wheel(tmp_path / f'mmcv-2.1.0-{PY_TAG}-{PY_TAG}-linux_x86_64.whl')
    monkeypatch.setattr(install, 'build_mmcv_wheel', lambda work, constraints: built)
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


def test_build_env_sees_the_target_envs_torch(install, overlay, tmp_path):
    """The target is a fresh venv whose own site-packages holds a (stand-in)
    torch; the base interpreter's packages must not be what the build sees."""
    target = make_venv(tmp_path / 'target', '--without-pip')
    fake_torch = os.path.join(site_packages(target), 'torch')
    os.makedirs(fake_torch)
    with open(os.path.join(fake_torch, '__init__.py'), 'w') as fh:
        fh.write('__version__ = "0.0+target-env"\n')
    env = install.mmcv_build_env(overlay, cuda=False, jobs=2)
    torch_file, st_version = install.verify_build_env(env, python=str(target))
    assert torch_file.startswith(fake_torch)
    assert int(st_version.split('.')[0]) < 70
    # the trap the script avoids: a --system-site-packages venv made from the
    # target venv's python sees the *base* interpreter's packages, not the target's
    trap = make_venv(tmp_path / 'trap', '--without-pip', '--system-site-packages',
                     python=str(target))
    proc = subprocess.run([str(trap), '-c', 'import torch; print(torch.__file__)'],
                          capture_output=True, text=True)
    assert fake_torch not in proc.stdout


def test_build_env_without_torch_fails_loudly(install, overlay, tmp_path):
    target = make_venv(tmp_path / 'bare', '--without-pip')
    env = install.mmcv_build_env(overlay, cuda=False, jobs=2)
    with pytest.raises(install.InstallError, match='cannot import torch'):
        install.verify_build_env(env, python=str(target))


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
