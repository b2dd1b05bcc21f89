"""nms / RoIAlign as flsl_mm runs them -- through flsl_mm's stand-in for
``mmcv._ext`` (mmcv without compiled ops, the default install) or dispatched to
torchvision by device (compiled mmcv) -- against outputs recorded once from mmcv
2.1.0's *compiled* CPU kernels (``tests/data/mmcv_kernels``, written by its
``record_mmcv_kernels.py``): same kept indices, same values and gradients, on
random data with the awkward cases (ties, legacy offset, IoU equal to the
threshold, boxes over the border, sub-pixel and empty RoIs, score threshold,
max_num, class offsets). With compiled mmcv installed, both paths are compared
with the record and with each other live."""
import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mmcv import ops as mmcv_ops

from flsl_mm import compat_ops

# the modules (mmcv.ops also exports functions of the same names)
nms_module = importlib.import_module('mmcv.ops.nms')
roi_align_module = importlib.import_module('mmcv.ops.roi_align')

sys.path.insert(0, str(Path(__file__).resolve().parent / 'data' / 'mmcv_kernels'))
from record_mmcv_kernels import load_record  # noqa: E402

RECORD = load_record()
COMPILED = compat_ops.mmcv_ops_kind() == 'compiled'
requires_compiled = pytest.mark.skipif(
    not COMPILED, reason='needs compiled mmcv (bash tools/install.sh --mmcv compiled)')
# the paths this environment can take: the stand-in's torchvision kernels, or
# with compiled mmcv its own kernels and the dispatch to torchvision
BACKENDS = ['mmcv', 'torchvision'] if COMPILED else ['auto']


@pytest.fixture()
def mode():
    """Set the ops mode for one test; the process default is restored after."""
    yield compat_ops.set_ops_mode
    compat_ops.set_ops_mode(None)


@pytest.fixture()
def torchvision_calls(monkeypatch):
    """Counts the calls that really went to torchvision's kernels (so that a
    comparison cannot pass by running mmcv against its own record)."""
    calls = []
    for name in ('nms', 'roi_align_forward', 'roi_align_backward'):
        original = compat_ops.OpsDispatcher._routes[name]

        def spy(*args, _original=original, _name=name, **kwargs):
            calls.append(_name)
            return _original(*args, **kwargs)
        monkeypatch.setitem(compat_ops.OpsDispatcher._routes, name, spy)
    return calls


def uses_torchvision(backend):
    return backend != 'mmcv'


def test_the_record_is_from_compiled_mmcv():
    assert RECORD['mmcv'] == '2.1.0'
    assert RECORD['ext'].startswith('_ext') and RECORD['ext'].endswith('.so')
    assert len(RECORD['nms']) == 63 and len(RECORD['roi_align']) == 8


def test_the_kernels_are_dispatched():
    assert isinstance(nms_module.ext_module, compat_ops.OpsDispatcher)
    assert isinstance(roi_align_module.ext_module, compat_ops.OpsDispatcher)
    # everything else of the extension is mmcv's own (or the stand-in's)
    assert nms_module.ext_module.softnms.__name__ == 'softnms'


@pytest.mark.parametrize('backend', BACKENDS)
def test_nms_keeps_what_compiled_mmcv_kept(mode, torchvision_calls, backend):
    mode(backend)
    suppressed = 0
    for i, case in enumerate(RECORD['nms']):
        dets, keep = mmcv_ops.nms(case['boxes'], case['scores'], case['iou'],
                                  offset=case['offset'])
        assert keep.dtype == torch.int64
        assert torch.equal(keep, case['keep']), i
        assert torch.equal(dets, case['dets']), i
        suppressed += len(case['boxes']) - len(keep)
    assert suppressed > 1000  # the cases do suppress boxes
    # every case ran on torchvision's kernel (none on mmcv's own)
    assert torchvision_calls.count('nms') == (len(RECORD['nms'])
                                              if uses_torchvision(backend) else 0)


@pytest.mark.parametrize('backend', BACKENDS)
def test_nms_wrappers_match_compiled_mmcv(mode, torchvision_calls, backend):
    """mmcv's Python side (score threshold, max_num, dets, batched_nms with class
    offsets and its per-class loop above split_thr) over the kernel in use."""
    mode(backend)
    rec = RECORD['nms_wrappers']
    boxes, scores, labels = rec['boxes'], rec['scores'], rec['labels']
    cfg = dict(type='nms', iou_threshold=0.5)
    got = dict(
        nms_thr_max=mmcv_ops.nms(boxes, scores, 0.5, score_threshold=0.3, max_num=50),
        batched=mmcv_ops.batched_nms(boxes, scores, labels, cfg),
        batched_split=mmcv_ops.batched_nms(boxes, scores, labels,
                                           dict(cfg, split_thr=100)),
        batched_agnostic=mmcv_ops.batched_nms(boxes, scores, labels, cfg,
                                              class_agnostic=True))
    for key, (dets, keep) in got.items():
        assert torch.equal(keep, rec[key][1]), key
        assert torch.equal(dets, rec[key][0]), key
    if uses_torchvision(backend):
        assert len(torchvision_calls) == 3 + 5  # the per-class loop: one per class
    dets, keep = rec['nms_thr_max']
    assert dets.shape == (len(keep), 5) and 0 < len(keep) <= 50


@pytest.mark.parametrize('backend', BACKENDS)
def test_roi_align_values_and_gradients_match_compiled_mmcv(mode, torchvision_calls,
                                                           backend):
    mode(backend)
    for case in RECORD['roi_align']:
        x = case['feats'].clone().requires_grad_(True)
        y = mmcv_ops.roi_align(x, case['rois'], (7, 7), 1.0 / case['stride'],
                               case['sampling_ratio'], 'avg', case['aligned'])
        (y * case['grad_out']).sum().backward()
        what = {k: case[k] for k in ('aligned', 'sampling_ratio', 'stride')}
        torch.testing.assert_close(y.detach(), case['out'], rtol=1e-5, atol=1e-5,
                                   msg=lambda m: f'{what}: {m}')
        torch.testing.assert_close(x.grad, case['grad'], rtol=1e-5, atol=1e-5,
                                   msg=lambda m: f'{what}: {m}')
        assert case['out'].abs().sum() > 0 and case['grad'].abs().sum() > 0
        # the RoI entirely outside pools zeros
        assert y[-4].abs().max() == 0
    if uses_torchvision(backend):
        assert torchvision_calls == ['roi_align_forward', 'roi_align_backward'] * 8


@pytest.mark.parametrize('backend', BACKENDS)
def test_roi_align_module_as_mmdet_builds_it(mode, torchvision_calls, backend):
    """``RoIAlign`` (what mmdet's RoI extractors resolve from mmcv.ops by name)
    with mmdet's settings: output_size 7, sampling_ratio 0, aligned."""
    mode(backend)
    rec = RECORD['roi_align_module']
    layer = mmcv_ops.RoIAlign(7, spatial_scale=1 / 8, sampling_ratio=0)
    torch.testing.assert_close(layer(rec['feats'], rec['rois']), rec['out'],
                               rtol=1e-5, atol=1e-5)
    if uses_torchvision(backend):
        assert torchvision_calls == ['roi_align_forward']


@requires_compiled
def test_tied_scores_keep_the_same_boxes_live(mode):
    """Live, on compiled mmcv: many equal scores, both paths keep the same boxes."""
    g = torch.Generator().manual_seed(7)
    xy = torch.rand(500, 2, generator=g) * 100
    boxes = torch.cat([xy, xy + torch.rand(500, 2, generator=g) * 30 + 0.5], 1)
    scores = torch.randint(0, 5, (500,), generator=g).float()
    keeps = []
    for backend in ('mmcv', 'torchvision'):
        mode(backend)
        keeps.append(mmcv_ops.nms(boxes, scores, 0.5)[1])
    assert torch.equal(keeps[0], keeps[1])


def test_max_pooling_is_refused_on_torchvision(mode):
    mode('torchvision')
    with pytest.raises(NotImplementedError, match='pool_mode="max"'):
        mmcv_ops.roi_align(torch.randn(1, 2, 8, 8), torch.tensor([[0., 1, 1, 5, 5]]),
                           (2, 2), 1.0, 0, 'max', True)


def test_auto_follows_what_mmcv_was_built_with(monkeypatch):
    compat_ops._kernel_cache.clear()
    monkeypatch.setattr(compat_ops, 'mmcv_ops_kind', lambda: 'compiled')
    monkeypatch.setattr(compat_ops, 'mmcv_compiled_cuda', lambda: None)
    assert compat_ops.ops_backend('cpu', 'auto') == 'mmcv'
    assert compat_ops.ops_backend('cuda', 'auto') == 'torchvision'
    line = compat_ops.describe_ops(['cpu', 'cuda'], 'auto')
    assert 'cpu -> mmcv (compiled mmcv has kernels)' in line
    assert 'cuda -> torchvision (compiled mmcv has no kernels for it)' in line
    assert 'compiled mmcv ops, built without CUDA' in line
    compat_ops._kernel_cache.clear()
    monkeypatch.setattr(compat_ops, 'mmcv_compiled_cuda', lambda: '13.0')
    assert compat_ops.ops_backend('cuda', 'auto') == 'mmcv'
    assert compat_ops.ops_backend('cuda', 'torchvision') == 'torchvision'
    assert compat_ops.ops_backend('cpu', 'torchvision') == 'torchvision'
    compat_ops._kernel_cache.clear()


def test_this_machines_mmcv_has_no_cuda_kernels():
    """Neither the stand-in nor a CPU build of mmcv: the GPU path would go to
    torchvision; CPU kernels only with compiled mmcv."""
    compat_ops._kernel_cache.clear()
    assert compat_ops.mmcv_compiled_cuda() is None
    assert compat_ops.mmcv_has_kernels('cpu') is COMPILED
    assert compat_ops.mmcv_has_kernels('cuda') is False
    assert compat_ops.ops_backend('cpu', 'auto') == ('mmcv' if COMPILED else
                                                     'torchvision')


def test_forcing_mmcv_without_kernels_is_refused_before_training(mode):
    mode('mmcv')
    with pytest.raises(RuntimeError, match='FLSL_MM_OPS=mmcv, but mmcv '):
        compat_ops.check_ops_for_device('cuda')
    if COMPILED:
        compat_ops.check_ops_for_device('cpu')
    else:
        with pytest.raises(RuntimeError, match='installed without compiled ops'):
            compat_ops.check_ops_for_device('cpu')
    mode('auto')
    compat_ops.check_ops_for_device('cuda')
    compat_ops.check_ops_for_device('cpu')


def test_a_bad_switch_value_is_refused(repo_root):
    with pytest.raises(ValueError, match='not one of auto, mmcv, torchvision'):
        compat_ops.read_ops_mode({'FLSL_MM_OPS': 'cuda'})
    assert compat_ops.read_ops_mode({'FLSL_MM_OPS': ' TorchVision '}) == 'torchvision'
    assert compat_ops.read_ops_mode({}) == 'auto'
    env = dict(os.environ, FLSL_MM_OPS='fast', PYTHONPATH=str(repo_root))
    proc = subprocess.run([sys.executable, '-c', 'import flsl_mm'], env=env,
                          capture_output=True, text=True, cwd=repo_root, timeout=120)
    assert proc.returncode != 0
    assert "FLSL_MM_OPS='fast' is not one of auto, mmcv, torchvision" in proc.stderr
