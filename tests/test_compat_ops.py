"""nms / RoIAlign through torchvision (flsl_mm.compat_ops) against mmcv's CPU
kernels: same kept indices, same values and gradients, on random data with the
awkward cases (boxes over the border, sub-pixel boxes, legacy offset, score
threshold, max_num, class offsets); the switch and its refusals."""
import importlib
import os
import subprocess
import sys

import pytest
import torch
from mmcv import ops as mmcv_ops

from flsl_mm import compat_ops

# the modules (mmcv.ops also exports functions of the same names)
nms_module = importlib.import_module('mmcv.ops.nms')
roi_align_module = importlib.import_module('mmcv.ops.roi_align')


@pytest.fixture()
def mode():
    """Set the ops mode for one test; the process default is restored after."""
    yield compat_ops.set_ops_mode
    compat_ops.set_ops_mode(None)


@pytest.fixture()
def torchvision_calls(monkeypatch):
    """Counts the calls that really went to torchvision's kernels (so that a
    comparison cannot pass by running mmcv twice)."""
    calls = []
    for name in ('nms', 'roi_align_forward', 'roi_align_backward'):
        original = compat_ops.OpsDispatcher._routes[name]

        def spy(*args, _original=original, _name=name, **kwargs):
            calls.append(_name)
            return _original(*args, **kwargs)
        monkeypatch.setitem(compat_ops.OpsDispatcher._routes, name, spy)
    return calls


def random_boxes(n, size=100.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * size
    wh = torch.rand(n, 2, generator=g) * size / 3 + 0.5
    # distinct scores here; ties: test_tied_scores_keep_the_same_boxes
    scores = torch.randperm(n, generator=g).float() / n + 0.01
    return torch.cat([xy, xy + wh], dim=1), scores


def test_the_kernels_are_dispatched():
    assert isinstance(nms_module.ext_module, compat_ops.OpsDispatcher)
    assert isinstance(roi_align_module.ext_module, compat_ops.OpsDispatcher)
    # everything else of the extension is mmcv's own
    assert nms_module.ext_module.softnms is nms_module.ext_module.mmcv_ext.softnms


@pytest.mark.parametrize('iou', [0.3, 0.5, 0.7])
@pytest.mark.parametrize('offset', [0, 1])
def test_nms_keeps_the_same_indices(mode, torchvision_calls, iou, offset):
    boxes, scores = random_boxes(400, seed=int(iou * 10) + offset)
    mode('mmcv')
    keep_mmcv = nms_module.ext_module.nms(boxes, scores, iou_threshold=iou,
                                          offset=offset)
    mode('torchvision')
    keep_tv = nms_module.ext_module.nms(boxes, scores, iou_threshold=iou,
                                        offset=offset)
    assert torchvision_calls == ['nms']
    assert keep_tv.dtype == keep_mmcv.dtype == torch.int64
    assert torch.equal(keep_tv, keep_mmcv)
    assert 20 < len(keep_mmcv) < 400  # something was suppressed, something kept


def test_tied_scores_keep_the_same_boxes(mode):
    """Many equal scores (a freshly initialised RPN): torchvision visits the boxes
    in mmcv's order, so the same boxes survive."""
    boxes, _ = random_boxes(500, seed=7)
    scores = torch.randint(0, 5, (500,),
                           generator=torch.Generator().manual_seed(0)).float()
    keeps = []
    for backend in ('mmcv', 'torchvision'):
        mode(backend)
        keeps.append(mmcv_ops.nms(boxes, scores, 0.5)[1])
    assert torch.equal(keeps[0], keeps[1])


def test_iou_equal_to_the_threshold_is_kept(mode):
    """``IoU > thr`` suppresses, ``IoU == thr`` does not (both paths)."""
    boxes = torch.tensor([[0., 0., 10., 10.], [0., 0., 10., 5.]])  # IoU = 0.5
    scores = torch.tensor([0.9, 0.8])
    for backend in ('mmcv', 'torchvision'):
        mode(backend)
        assert len(mmcv_ops.nms(boxes, scores, 0.5)[1]) == 2
        assert len(mmcv_ops.nms(boxes, scores, 0.49)[1]) == 1


def test_nms_wrappers_agree(mode, torchvision_calls):
    """mmcv's Python side (score threshold, max_num, dets, batched_nms with class
    offsets and its per-class loop above split_thr) over either kernel."""
    boxes, scores = random_boxes(600, seed=3)
    labels = torch.randint(0, 5, (600,), generator=torch.Generator().manual_seed(1))
    cfg = dict(type='nms', iou_threshold=0.5)
    results = {}
    for backend in ('mmcv', 'torchvision'):
        mode(backend)
        results[backend] = (
            mmcv_ops.nms(boxes, scores, 0.5, score_threshold=0.3, max_num=50),
            mmcv_ops.batched_nms(boxes, scores, labels, cfg),
            mmcv_ops.batched_nms(boxes, scores, labels, dict(cfg, split_thr=100)),
            mmcv_ops.batched_nms(boxes, scores, labels, cfg, class_agnostic=True))
    assert len(torchvision_calls) == 3 + 5  # the per-class loop: one per class
    for got, want in zip(results['torchvision'], results['mmcv']):
        assert torch.equal(got[1], want[1])
        assert torch.equal(got[0], want[0])
    dets, keep = results['mmcv'][0]
    assert dets.shape == (len(keep), 5) and len(keep) <= 50
    assert (scores[keep] > 0.3).all()


def test_nms_of_no_boxes(mode):
    for backend in ('mmcv', 'torchvision'):
        mode(backend)
        dets, keep = mmcv_ops.nms(torch.zeros(0, 4), torch.zeros(0), 0.5)
        assert dets.shape == (0, 5) and keep.shape == (0,)


def rois_with_awkward_boxes(feat_hw, stride, seed=0):
    """Random RoIs in image coordinates for features of ``feat_hw`` at
    ``stride``, plus boxes over the border, sub-pixel ones and a degenerate one."""
    h, w = feat_hw[0] * stride, feat_hw[1] * stride
    g = torch.Generator().manual_seed(seed)
    n = 40
    xy = torch.rand(n, 2, generator=g) * torch.tensor([w, h])
    wh = torch.rand(n, 2, generator=g) * torch.tensor([w, h]) / 2 + 1
    boxes = torch.cat([xy, xy + wh], 1)
    special = torch.tensor([
        [-20., -15., 30., 25.],             # over the top-left border
        [w - 10, h - 12, w + 40, h + 30],   # over the bottom-right border
        [-200., -200., -150., -150.],       # entirely outside
        [12.3, 7.7, 12.6, 8.1],             # sub-pixel
        [5., 5., 5., 5.],                   # zero size
        [0., 0., w, h],                     # the whole image
    ])
    boxes = torch.cat([boxes, special])
    batch = torch.randint(0, 2, (len(boxes), 1), generator=g).float()
    return torch.cat([batch, boxes], 1)


@pytest.mark.parametrize('aligned', [True, False])
@pytest.mark.parametrize('sampling_ratio', [0, 2])
@pytest.mark.parametrize('stride', [4, 16])
def test_roi_align_values_and_gradients(mode, torchvision_calls, aligned,
                                        sampling_ratio, stride):
    feat_hw = (96 // stride + 3, 128 // stride + 1)
    g = torch.Generator().manual_seed(stride + sampling_ratio)
    feats = torch.randn(2, 8, *feat_hw, generator=g)
    rois = rois_with_awkward_boxes(feat_hw, stride, seed=stride)
    grad_out = torch.randn(len(rois), 8, 7, 7, generator=g)
    out, grad = {}, {}
    for backend in ('mmcv', 'torchvision'):
        mode(backend)
        x = feats.clone().requires_grad_(True)
        y = mmcv_ops.roi_align(x, rois, (7, 7), 1.0 / stride, sampling_ratio,
                               'avg', aligned)
        (y * grad_out).sum().backward()
        out[backend], grad[backend] = y.detach(), x.grad
    assert torchvision_calls == ['roi_align_forward', 'roi_align_backward']
    assert out['mmcv'].shape == (len(rois), 8, 7, 7)
    assert out['mmcv'].abs().sum() > 0 and grad['mmcv'].abs().sum() > 0
    torch.testing.assert_close(out['torchvision'], out['mmcv'], rtol=1e-5,
                               atol=1e-5)
    torch.testing.assert_close(grad['torchvision'], grad['mmcv'], rtol=1e-5,
                               atol=1e-5)
    # the box entirely outside pools zeros on both paths
    assert out['torchvision'][-4].abs().max() == 0


def test_roi_align_module_as_mmdet_builds_it(mode, torchvision_calls):
    """``RoIAlign`` (what mmdet's RoI extractors resolve from mmcv.ops by name)
    with mmdet's settings: output_size 7, sampling_ratio 0, aligned."""
    feats = torch.randn(1, 16, 20, 24, generator=torch.Generator().manual_seed(2))
    rois = rois_with_awkward_boxes((20, 24), 8)
    rois[:, 0] = 0
    layer = mmcv_ops.RoIAlign(7, spatial_scale=1 / 8, sampling_ratio=0)
    mode('mmcv')
    want = layer(feats, rois)
    mode('torchvision')
    got = layer(feats, rois)
    assert torchvision_calls == ['roi_align_forward']
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_max_pooling_is_refused_on_torchvision(mode):
    mode('torchvision')
    with pytest.raises(NotImplementedError, match='pool_mode="max"'):
        mmcv_ops.roi_align(torch.randn(1, 2, 8, 8), torch.tensor([[0., 1, 1, 5, 5]]),
                           (2, 2), 1.0, 0, 'max', True)


def test_auto_follows_what_mmcv_was_built_with(monkeypatch):
    compat_ops._kernel_cache.clear()
    monkeypatch.setattr(compat_ops, 'mmcv_compiled_cuda', lambda: None)
    assert compat_ops.ops_backend('cpu', 'auto') == 'mmcv'
    assert compat_ops.ops_backend('cuda', 'auto') == 'torchvision'
    line = compat_ops.describe_ops(['cpu', 'cuda'], 'auto')
    assert 'cpu -> mmcv (mmcv has kernels)' in line
    assert 'cuda -> torchvision (mmcv has no kernels for it)' in line
    assert 'built without CUDA' in line
    compat_ops._kernel_cache.clear()
    monkeypatch.setattr(compat_ops, 'mmcv_compiled_cuda', lambda: '13.0')
    assert compat_ops.ops_backend('cuda', 'auto') == 'mmcv'
    assert compat_ops.ops_backend('cuda', 'torchvision') == 'torchvision'
    assert compat_ops.ops_backend('cpu', 'torchvision') == 'torchvision'
    compat_ops._kernel_cache.clear()


def test_this_machines_mmcv_has_no_cuda_kernels():
    """What the CPU install builds: the GPU path would go to torchvision."""
    assert compat_ops.mmcv_compiled_cuda() is None
    assert compat_ops.mmcv_has_kernels('cpu') is True
    assert compat_ops.mmcv_has_kernels('cuda') is False


def test_forcing_mmcv_without_kernels_is_refused_before_training(mode):
    mode('mmcv')
    with pytest.raises(RuntimeError, match='FLSL_MM_OPS=mmcv, but mmcv has no cuda'):
        compat_ops.check_ops_for_device('cuda')
    compat_ops.check_ops_for_device('cpu')
    mode('auto')
    compat_ops.check_ops_for_device('cuda')


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
