"""``--download`` then ``--offline`` as on an air-gapped node: a bundle for this
Python without torch, installed into a fresh venv that already has a torch (this
environment's, linked in), with every package index disabled and every C/C++
compiler replaced by a program that records the call and fails. torch's files
stay byte-identical; mmdet / mmseg / mmpretrain / flsl_mm import from the venv."""
import hashlib
import json
import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

COMPILERS = ('cc', 'gcc', 'c++', 'g++', 'clang', 'clang++', 'x86_64-linux-gnu-gcc',
             'x86_64-linux-gnu-g++', 'nvcc')


def requirement_closure(roots):
    """Distributions ``roots`` need in this environment (markers evaluated, no
    extras), themselves included."""
    from packaging.requirements import Requirement
    seen, todo = {}, list(roots)
    while todo:
        name = todo.pop()
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        key = dist.metadata['Name'].lower().replace('_', '-')
        if key in seen:
            continue
        seen[key] = dist
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({'extra': ''}):
                todo.append(req.name)
    return seen


def link_torch_into(site: Path) -> list[str]:
    """Symlink torch, torchvision and everything they need from this environment
    into ``site``: a venv that "already has torch" without copying 5 GB."""
    linked = []
    for key, dist in requirement_closure(['torch', 'torchvision']).items():
        tops = {Path(str(f)).parts[0] for f in dist.files or []
                if not str(f).startswith('..')}
        for top in tops:
            src = Path(dist.locate_file(top))
            if src.exists() and not (site / top).exists():
                (site / top).symlink_to(src)
        linked.append(key)
    return linked


def tree_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob('*') if p.is_file()
                       and '__pycache__' not in p.parts):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def no_network_env(tmp_path: Path, marker: Path) -> dict:
    """pip with every index off (config file ignored, an index URL nobody answers)
    and compilers that leave ``marker`` and fail."""
    fake = tmp_path / 'fake_compilers'
    fake.mkdir()
    for name in COMPILERS:
        tool = fake / name
        tool.write_text(f'#!/bin/sh\necho "$0 $*" >> {marker}\nexit 1\n')
        tool.chmod(0o755)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith('PIP_') and k not in ('PYTHONPATH', 'VIRTUAL_ENV')}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_NO_INDEX='1',
               PIP_INDEX_URL='http://127.0.0.1:9/simple', PIP_NO_CACHE_DIR='1',
               CC='false', CXX='false',
               PATH=os.pathsep.join([str(fake), os.environ.get('PATH', '')]))
    return env


@pytest.fixture(scope='module')
def bundle(repo_root, tmp_path_factory):
    """A bundle for this Python, without torch (the index is used here only)."""
    out = tmp_path_factory.mktemp('bundle') / 'wheels'
    proc = subprocess.run(
        [sys.executable, 'tools/install.py', '--download', str(out), '--no-torch'],
        cwd=repo_root, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out, proc.stdout


def test_the_bundle_and_its_manifest(bundle):
    out, log = bundle
    manifest = json.loads((out / 'flsl_mm_bundle.json').read_text())
    py = f'{sys.version_info.major}.{sys.version_info.minor}'
    assert manifest['target'] == dict(python=py, platforms=['this machine'],
                                      torch='excluded')
    names = {p['name'].lower().replace('_', '-'): p for p in manifest['packages']}
    for pinned in ('mmengine', 'mmcv-lite', 'mmdet', 'mmpretrain', 'mmsegmentation',
                   'timm', 'pycocotools', 'opencv-python-headless', 'setuptools'):
        assert pinned in names, pinned
    # no torch, nothing only torch needs, no GUI OpenCV, no compiled mmcv
    for absent in ('torch', 'torchvision', 'triton', 'opencv-python', 'mmcv'):
        assert absent not in names, absent
    assert not any(n.startswith('nvidia-') for n in names)
    files = sorted(p.name for p in out.glob('*.whl'))
    assert files == sorted(p['file'] for p in manifest['packages'])
    total = 0
    for p in manifest['packages']:
        data = (out / p['file']).read_bytes()
        assert hashlib.sha256(data).hexdigest() == p['sha256'] and len(data) == p['size']
        total += p['size']
    assert manifest['total_size'] == total
    assert f'bundle ready: {out}' in log and 'torch excluded' in log


def test_offline_install_keeps_torch_and_compiles_nothing(bundle, repo_root, tmp_path):
    out, _ = bundle
    subprocess.run([sys.executable, '-m', 'venv', str(tmp_path / 'v')], check=True,
                   timeout=300)
    python = tmp_path / 'v' / 'bin' / 'python'
    site = Path(subprocess.run(
        [str(python), '-c', 'import sysconfig; print(sysconfig.get_paths()["purelib"])'],
        capture_output=True, text=True, check=True).stdout.strip())
    linked = link_torch_into(site)
    assert 'torch' in linked and 'torchvision' in linked
    import torch
    torch_dir = Path(torch.__file__).parent
    before = tree_digest(torch_dir)
    marker = tmp_path / 'compiler_calls.txt'
    env = no_network_env(tmp_path, marker)
    proc = subprocess.run(
        [str(python), 'tools/install.py', '--offline', str(out)], cwd=repo_root,
        env=env, capture_output=True, text=True, timeout=1200)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-5000:]
    assert not marker.exists(), marker.read_text()  # no compiler was ever run
    assert f'torch: kept: torch {torch.__version__}' in log
    assert 'torch (the environment' not in log  # the bundle had no torch to skip
    assert 'flsl_mm stand-in for mmcv._ext' in log
    assert re.search(r'not installed: numpy \(installed [\d.]+ is kept\)', log)
    # torch untouched: the same version, the same bytes, still this environment's
    assert (site / 'torch').is_symlink()
    assert tree_digest(torch_dir) == before
    code = ('import flsl_mm, mmdet.models, mmseg.models, mmpretrain.models, torch\n'
            'from mmcv.ops import nms\n'
            'import mmdet, mmseg, mmpretrain, mmcv\n'
            'print(torch.__version__)\n'
            'for m in (flsl_mm, mmdet, mmseg, mmpretrain, mmcv):\n'
            '    print(m.__file__)\n')
    check = subprocess.run([str(python), '-c', code], env=env, capture_output=True,
                           text=True, timeout=300, cwd=tmp_path)
    assert check.returncode == 0, check.stderr[-3000:]
    lines = check.stdout.split()
    assert lines[0] == torch.__version__
    assert lines[1].startswith(str(repo_root))  # flsl_mm: editable, this checkout
    for path in lines[2:]:
        assert path.startswith(str(site)), path
    # a second run has nothing to do, offline as well
    again = subprocess.run([str(python), 'tools/install.py', '--check'],
                           cwd=repo_root, env=env, capture_output=True, text=True,
                           timeout=600)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    # the offline install put the start-up hook in place too (its final check
    # imported mmdet / mmseg / mmpretrain without flsl_mm); pip uninstall
    # flsl_mm removes it with flsl_mm
    assert 'ok without importing flsl_mm (start-up hook' in log
    hook = site / 'flsl_mm_mmcv_ext.pth'
    assert hook.is_file()
    gone = subprocess.run([str(python), '-m', 'pip', 'uninstall', '-y', 'flsl_mm'],
                          env=env, capture_output=True, text=True, timeout=300)
    assert gone.returncode == 0, gone.stderr[-3000:]
    assert not hook.exists() and not list(site.glob('*flsl_mm*'))
