"""flsl_mm's stand-in for ``mmcv._ext`` (mmcv without compiled ops): a real module
with a spec that mmengine's checks accept, found only when no compiled extension
is, with a clear error for the kernels it does not have. Its numbers are checked
against compiled mmcv's in ``test_compat_ops.py``."""
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from flsl_mm import compat_ops

STANDIN = compat_ops.mmcv_ops_kind() == 'stand-in'
requires_standin = pytest.mark.skipif(
    not STANDIN, reason='compiled mmcv is installed: the stand-in is not in use')


@requires_standin
def test_the_stand_in_is_a_module_with_a_spec():
    import importlib.util
    import pkgutil

    from mmengine.utils.dl_utils import mmcv_full_available
    spec = importlib.util.find_spec('mmcv._ext')
    assert spec.origin == compat_ops.STANDIN_FILE and spec.name == 'mmcv._ext'
    import mmcv._ext as ext
    assert ext.__spec__ is not None and ext.FLSL_MM_STANDIN
    assert pkgutil.find_loader('mmcv._ext') is not None
    assert mmcv_full_available()  # mmengine's check (Runner.wrap_model uses it)


@requires_standin
def test_a_kernel_it_does_not_have_names_the_op_and_the_way_out():
    from mmcv.ops import RoIPool
    rois = torch.tensor([[0., 0., 0., 4., 4.]])
    with pytest.raises(compat_ops.MissingCompiledOpError) as err:
        RoIPool((2, 2), 1.0)(torch.ones(1, 1, 8, 8), rois)
    message = str(err.value)
    assert "mmcv op 'roi_pool_forward'" in message
    assert 'bash tools/install.sh --mmcv compiled' in message
    assert 'nms, roi_align_forward and roi_align_backward' in message
    import mmcv._ext as ext
    with pytest.raises(AttributeError):
        ext.__path__  # not a package: import machinery must see that


@requires_standin
def test_the_ops_line_says_stand_in_never_compiled(mode_reset):
    line = compat_ops.describe_ops(['cpu', 'cuda'], 'auto')
    assert 'flsl_mm stand-in for mmcv._ext' in line
    assert 'cpu -> torchvision (stand-in, torchvision kernels)' in line
    assert 'cuda -> torchvision (stand-in, torchvision kernels)' in line
    assert 'compiled mmcv' not in line and 'mmcv has kernels' not in line
    from mmcv.ops import get_compiler_version, get_compiling_cuda_version
    assert get_compiling_cuda_version() == 'not available'
    assert 'stand-in' in get_compiler_version()


@pytest.fixture()
def mode_reset():
    yield
    compat_ops.set_ops_mode(None)


FAKE_COMPILED = '''
FAKE_COMPILED = True
def get_compiling_cuda_version():
    return 'not available'
def get_compiler_version():
    return 'fake'
def __getattr__(name):
    if name.startswith('_'):
        raise AttributeError(name)
    return lambda *a, **k: None
'''


def test_a_compiled_extension_is_found_before_the_stand_in(tmp_path, repo_root):
    """An ``_ext`` on mmcv's own path (here a fake one, put there before flsl_mm
    is imported) is what mmcv.ops loads: the stand-in's finder comes last."""
    (tmp_path / '_ext.py').write_text(FAKE_COMPILED)
    code = textwrap.dedent(f'''
        import mmcv
        mmcv.__path__.append({str(tmp_path)!r})
        import flsl_mm
        from flsl_mm import compat_ops
        import mmcv._ext as ext
        from mmcv.ops import nms
        print(compat_ops.mmcv_ops_kind(), getattr(ext, 'FAKE_COMPILED', False)
              or ext.__file__)
        ''')
    env = dict(os.environ, PYTHONPATH=str(repo_root))
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True,
                          text=True, env=env, cwd=repo_root, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    kind, which = proc.stdout.split()[-2:]
    assert kind == 'compiled'
    if STANDIN:
        assert which == 'True'  # the fake, not the stand-in
    else:
        assert which.endswith('.so')  # a real compiled mmcv wins over both
