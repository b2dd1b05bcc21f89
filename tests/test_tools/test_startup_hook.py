"""The interpreter start-up hook of the install (flsl_mm_mmcv_ext.pth ->
flsl_mm_startup): mmcv without compiled ops works in a plain interpreter,
flsl_mm not imported; a compiled extension still wins."""
import subprocess
import sys
import tempfile
import textwrap
from importlib import metadata
from pathlib import Path

from flsl_mm import compat_ops

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tools.installer.startup_hook import PTH_NAME, PTH_TEXT  # noqa: E402


def plain(code: str, env=None) -> subprocess.CompletedProcess:
    """``code`` in a new interpreter of this environment, outside the checkout
    (nothing of flsl_mm on sys.path but what the install put there)."""
    return subprocess.run([sys.executable, '-c', textwrap.dedent(code)],
                          capture_output=True, text=True, timeout=600,
                          cwd=tempfile.gettempdir(), env=env)


def test_the_install_put_the_hook_in_site_packages_and_its_record():
    dist = metadata.distribution('flsl_mm')
    pth = Path(dist._path).parent / PTH_NAME
    assert pth.is_file(), f'{pth} missing: install with bash tools/install.sh'
    assert pth.read_text() == PTH_TEXT
    assert any(str(f) == PTH_NAME for f in dist.files)  # pip uninstall removes it


def test_openmmlab_apis_import_without_flsl_mm():
    proc = plain('''
        import sys
        from mmcv.ops import nms
        from mmdet.apis import DetInferencer
        import mmseg.apis, mmpretrain.apis
        import mmcv._ext as ext
        print('flsl_mm' in sys.modules, getattr(ext, 'FLSL_MM_STANDIN', False))
        ''')
    assert proc.returncode == 0, proc.stderr[-3000:]
    package_imported, standin = proc.stdout.split()[-2:]
    assert package_imported == 'False'  # only the stand-in and its kernels
    assert standin == str(compat_ops.mmcv_ops_kind() == 'stand-in')


def test_flsl_mm_imported_afterwards_shares_the_kernels_module():
    proc = plain('''
        import sys
        from mmcv.ops import nms
        import flsl_mm
        from mmengine.registry import MODELS
        assert flsl_mm.compat_ops is sys.modules['flsl_mm.compat_ops']
        assert MODELS.get('FLSL') is not None
        print('ok')
        ''')
    assert proc.returncode == 0 and proc.stdout.split()[-1] == 'ok', proc.stderr[-3000:]


def test_a_compiled_extension_still_wins(tmp_path):
    (tmp_path / '_ext.py').write_text('FAKE_COMPILED = True\n')
    proc = plain(f'''
        import mmcv
        mmcv.__path__.append({str(tmp_path)!r})
        import mmcv._ext as ext
        print(getattr(ext, 'FAKE_COMPILED', False))
        ''')
    assert proc.returncode == 0, proc.stderr[-2000:]
    if compat_ops.mmcv_ops_kind() == 'stand-in':
        assert proc.stdout.split()[-1] == 'True'


# pip uninstall flsl_mm removing it: tests/test_tools/test_install_bundle.py (a fresh
# venv, offline install, uninstall)
