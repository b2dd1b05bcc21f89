"""flsl_mm's plain-torch kernels for mmcv ops without compiled mmcv
(flsl_mm/compat_kernels.py), through mmcv's own Python ops: soft-NMS and
nms_match against outputs recorded from compiled mmcv 2.1.0's CPU kernels; the
focal losses and the multi-scale deformable attention -- whose compiled
kernels are CUDA-only -- through the branch a GPU takes, against the
pure-PyTorch definitions mmdet and mmcv use on the CPU (values and gradients)."""
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from mmcv import ops as mmcv_ops

from flsl_mm import compat_kernels, compat_ops

sys.path.insert(0, str(Path(__file__).resolve().parent / 'data' / 'mmcv_kernels'))
from record_mmcv_kernels import load_record  # noqa: E402

RECORD = load_record()
STANDIN = compat_ops.mmcv_ops_kind() == 'stand-in'


def test_the_stand_in_serves_the_kernels():
    import mmcv._ext as ext
    if not STANDIN:
        pytest.skip('compiled mmcv: its own kernels run')
    for name in compat_kernels.KERNELS:
        assert getattr(ext, name) is getattr(compat_kernels, name)
        assert name in ext.IMPLEMENTED


@pytest.mark.parametrize('case', range(len(RECORD['soft_nms'])))
def test_soft_nms_matches_compiled_mmcv(case):
    c = RECORD['soft_nms'][case]
    dets, keep = mmcv_ops.soft_nms(c['boxes'], c['scores'], c['iou'], c['sigma'],
                                   c['min_score'], str(c['method']), int(c['offset']))
    assert torch.equal(keep, c['keep'])
    torch.testing.assert_close(dets, c['dets'], rtol=1e-5, atol=1e-5)


def test_batched_soft_nms_matches_compiled_mmcv():
    c = RECORD['soft_nms_batched']
    dets, keep = mmcv_ops.batched_nms(c['boxes'], c['scores'], c['labels'], dict(
        type='soft_nms', iou_threshold=0.5, min_score=0.05))
    assert torch.equal(keep, c['keep'])
    torch.testing.assert_close(dets, c['dets'], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('case', range(len(RECORD['nms_match'])))
def test_nms_match_groups_as_compiled_mmcv(case):
    c = RECORD['nms_match'][case]
    groups = mmcv_ops.nms_match(c['dets'], c['iou'])
    assert len(groups) == len(c['groups'])
    for ours, theirs in zip(groups, c['groups']):
        assert ours.tolist() == theirs.tolist()


def _logits_and_targets(n=64, classes=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    pred = torch.randn(n, classes, generator=g) * 3
    target = torch.randint(0, classes + 1, (n,), generator=g)  # classes: background
    return pred, target


@pytest.mark.parametrize('reduction', ['mean', 'sum', 'none'])
def test_sigmoid_focal_loss_cuda_branch_equals_the_cpu_branch(reduction):
    """mmdet's FocalLoss: mmcv's sigmoid_focal_loss (its CUDA branch, here on
    the CPU through the stand-in's kernels) and py_sigmoid_focal_loss (its
    CPU branch) give the same loss and gradients, sample weights and the
    average factor included."""
    from mmdet.models.losses.focal_loss import (py_sigmoid_focal_loss,
                                                sigmoid_focal_loss)
    pred, target = _logits_and_targets()
    weight = torch.rand(len(pred), generator=torch.Generator().manual_seed(3))
    a = pred.clone().requires_grad_(True)
    cuda_branch = sigmoid_focal_loss(a, target, weight, gamma=2.0, alpha=0.25,
                                     reduction=reduction, avg_factor=None)
    b = pred.clone().requires_grad_(True)
    one_hot = F.one_hot(target, pred.shape[1] + 1)[:, :pred.shape[1]]
    cpu_branch = py_sigmoid_focal_loss(b, one_hot, weight, gamma=2.0, alpha=0.25,
                                       reduction=reduction, avg_factor=None)
    # 1e-4 relative: mmcv's kernel takes log(1 - sigmoid(x)) where mmdet's CPU
    # branch has the stable binary cross-entropy with logits (large logits)
    torch.testing.assert_close(cuda_branch, cpu_branch, rtol=1e-4, atol=1e-6)
    (cuda_branch.sum()).backward()
    (cpu_branch.sum()).backward()
    torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-6)


def _value_and_grad(loss_fn, pred):
    x = pred.clone().requires_grad_(True)
    loss = loss_fn(x)
    loss.sum().backward()
    return loss, x.grad


def _sigmoid_formula(x, target, gamma, alpha, class_w):
    p = torch.sigmoid(x)
    pos = F.one_hot(target, x.shape[1]).float()
    return ((-pos * alpha * (1 - p) ** gamma * torch.log(p)
             - (1 - pos) * (1 - alpha) * p ** gamma * torch.log(1 - p))
            * class_w[target][:, None]).sum()


def _softmax_formula(x, target, gamma, alpha, class_w):
    pt = torch.softmax(x, 1).gather(1, target[:, None]).squeeze(1)
    return (-alpha * (1 - pt) ** gamma * torch.log(pt) * class_w[target]).mean()


@pytest.mark.parametrize('op,formula,reduction,gamma,alpha', [
    (mmcv_ops.sigmoid_focal_loss, _sigmoid_formula, 'sum', 1.5, 0.3),
    (mmcv_ops.softmax_focal_loss, _softmax_formula, 'mean', 2.0, 0.25)])
def test_focal_losses_with_class_weights_against_their_formulas(op, formula,
                                                                reduction, gamma,
                                                                alpha):
    """mmcv's ops with class weights (the kernels' ``weight[target]``) against
    their formulas by autograd: values and gradients."""
    pred, target = _logits_and_targets(seed=1)
    target = target.clamp(max=pred.shape[1] - 1)
    class_w = torch.tensor([0.5, 1.0, 2.0, 1.5, 0.1])
    ours = _value_and_grad(lambda x: op(x, target, gamma, alpha, class_w, reduction),
                           pred)
    ref = _value_and_grad(lambda x: formula(x, target, gamma, alpha, class_w), pred)
    torch.testing.assert_close(ours[0], ref[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours[1], ref[1], rtol=1e-4, atol=1e-5)


def test_deformable_attention_cuda_branch_equals_the_pytorch_path():
    """MultiScaleDeformableAttention's CUDA branch (MultiScaleDeformableAttnFunction:
    the compiled kernels' forward and backward) against mmcv's pure-PyTorch
    function, which its CPU branch runs."""
    from mmcv.ops.multi_scale_deform_attn import (
        MultiScaleDeformableAttnFunction, multi_scale_deformable_attn_pytorch)
    g = torch.Generator().manual_seed(0)
    shapes = torch.tensor([[8, 10], [4, 5]])
    starts = torch.cat([shapes.new_zeros(1), (shapes[:, 0] * shapes[:, 1]).cumsum(0)[:-1]])
    bs, heads, dims, queries, points = 2, 2, 4, 6, 3
    keys = int((shapes[:, 0] * shapes[:, 1]).sum())
    value = torch.randn(bs, keys, heads, dims, generator=g)
    loc = torch.rand(bs, queries, heads, len(shapes), points, 2, generator=g)
    attn = torch.rand(bs, queries, heads, len(shapes), points, generator=g)
    attn = attn / attn.sum((-1, -2), keepdim=True)
    a = [t.clone().requires_grad_(True) for t in (value, loc, attn)]
    out = MultiScaleDeformableAttnFunction.apply(a[0], shapes, starts, a[1], a[2], 64)
    b = [t.clone().requires_grad_(True) for t in (value, loc, attn)]
    ref = multi_scale_deformable_attn_pytorch(b[0], shapes, b[1], b[2])
    torch.testing.assert_close(out, ref)
    grad = torch.randn(out.shape, generator=g)
    (out * grad).sum().backward()
    (ref * grad).sum().backward()
    for x, y in zip(a, b):
        torch.testing.assert_close(x.grad, y.grad)


def test_retinanet_uavdt_demo_trains_through_the_cuda_branch(repo_root, tmp_path):
    """The RetinaNet UAVDT demo config (our backbone), 2 iterations, its focal
    loss on the branch a GPU takes (mmcv's op; the stand-in's kernels without
    compiled mmcv): finite losses."""
    import json
    import os
    import subprocess
    plugins = repo_root / 'tests' / 'data' / 'plugins'
    env = dict(os.environ, PYTHONPATH=f'{plugins}{os.pathsep}{repo_root}',
               FLSL_MM_CACHE=str(tmp_path / 'cache'))
    root = tmp_path / 'uavdt_demo'
    opts = [f'train_dataloader.dataset.data_root={root}',
            'train_dataloader.dataset.demo_kwargs.num_frames=4',
            'train_dataloader.batch_size=2', 'train_dataloader.num_workers=0',
            'train_dataloader.persistent_workers=False',
            'model.backbone.init_cfg=None', 'train_cfg.max_epochs=1',
            'train_cfg.val_interval=100', 'val_dataloader=None', 'val_cfg=None',
            'val_evaluator=None', 'default_hooks.logger.interval=1',
            'log_processor.window_size=1',
            'model.bbox_head.loss_cls.type=FocalLossOnTheCUDABranch']
    config = tmp_path / 'retinanet_cuda_branch.py'
    config.write_text(
        f"_base_ = ['{repo_root}/configs/uavdt/retinanet_flsl-vit-tiny-p16_fpn_uavdt-"
        "demo.py']\ncustom_imports = dict(imports=['flsl_mm', 'cuda_branch_focal_loss'],"
        " allow_failed_imports=False)\n")
    proc = subprocess.run(
        [sys.executable, 'tools/train.py', str(config), '--work-dir',
         str(tmp_path / 'work'), '--cfg-options', *opts], cwd=repo_root, env=env,
        capture_output=True, text=True, timeout=900)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    assert 'FocalLossOnTheCUDABranch: mmcv sigmoid_focal_loss' in log
    scalars = next((tmp_path / 'work').glob('*/vis_data/scalars.json'))
    rows = [json.loads(line) for line in scalars.read_text().splitlines()]
    losses = [r['loss_cls'] for r in rows if 'loss_cls' in r]
    assert len(losses) >= 2 and all(0 < x < 1e3 for x in losses)
