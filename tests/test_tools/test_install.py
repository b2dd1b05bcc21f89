"""The install script's plan: skips everything on a ready machine, decides
build / cached wheel / skip from the environment (no rebuilding here)."""
import importlib.util
import subprocess
import sys

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
    assert [s.action for s in steps] == ['skip'] * 4, steps


def test_second_run_is_a_no_op(repo_root):
    proc = subprocess.run(['bash', 'tools/install.sh', '--check'], cwd=repo_root,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_mmcv_decision(install, monkeypatch, tmp_path):
    monkeypatch.setenv('FLSL_MM_CACHE', str(tmp_path))
    monkeypatch.setattr(install, 'mmcv_ops_ready', lambda *a: False)
    step = install.plan()[1]
    assert step.action == 'build-wheel'
    cache = install.wheel_cache_dir()
    cache.mkdir(parents=True)
    (cache / 'mmcv-2.1.0-cp311-cp311-linux_x86_64.whl').write_bytes(b'')
    # a half-copied wheel is never picked up
    (cache / 'mmcv-2.1.0-cp311-cp311-linux_x86_64.whl.partial').write_bytes(b'')
    step = install.plan()[1]
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
