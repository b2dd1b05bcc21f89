"""Semantic FPN (MMSegmentation) on the FLSL backbone: the published ADE20K recipe,
a forward/backward, the converted checkpoint loading cleanly, one training iteration
of the published config on an ADEChallengeData2016-layout folder, and the CPU demo
trained and evaluated (mIoU) through tools/train.py and tools/test.py."""
import json
import math
import re
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope

PUBLISHED = 'configs/seg_ade20k/semfpn_flsl-vit-small-p16_8xb4-40k_ade20k-512x512.py'
ADAPTER = ('configs/seg_ade20k/'
           'semfpn_flsl-vit-small-p16-adapter_8xb4-40k_ade20k-512x512.py')
DEMO = 'configs/seg_ade20k/semfpn_flsl-vit-tiny-p16_demo.py'


def run(cmd, cwd):
    proc = subprocess.run([sys.executable, *cmd], cwd=cwd, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def build(cfg):
    from mmseg.registry import MODELS
    from mmseg.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    with DefaultScope.overwrite_default_scope('mmseg'):
        return MODELS.build(cfg.model)


def test_published_recipe_values(repo_root):
    cfg = Config.fromfile(str(repo_root / PUBLISHED))
    bb, neck, head = cfg.model.backbone, cfg.model.neck, cfg.model.decode_head
    assert (bb.type, bb.arch, bb.patch_size) == ('FLSLViT', 'small', 16)
    assert tuple(bb.out_indices) == (2, 5, 8, 11) and bb.final_norm is False
    assert bb.drop_path_rate == 0.1 and bb.out_type == 'featmap'
    assert (neck.type, neck.in_channels, neck.out_channels, neck.num_outs) == \
        ('FPN', [384] * 4, 256, 4)
    assert head.type == 'FPNHead' and head.channels == 128
    assert head.dropout_ratio == 0.1 and head.num_classes == 150
    assert head.feature_strides == [4, 8, 16, 32] and head.norm_cfg.type == 'SyncBN'
    assert head.loss_decode.type == 'CrossEntropyLoss'
    assert cfg.model.test_cfg.mode == 'whole'
    opt = cfg.optim_wrapper
    assert opt.optimizer.type == 'AdamW' and opt.optimizer.lr == 6e-5
    assert tuple(opt.optimizer.betas) == (0.9, 0.999)
    assert opt.optimizer.weight_decay == 0.01
    assert opt.paramwise_cfg.custom_keys == {'norm': {'decay_mult': 0.0}}
    warm, poly = cfg.param_scheduler
    assert (warm.type, warm.start_factor, warm.end) == ('LinearLR', 1e-6, 1500)
    assert (poly.type, poly.power, poly.eta_min, poly.begin, poly.end) == \
        ('PolyLR', 1.0, 0.0, 1500, 40000)
    assert cfg.train_cfg.max_iters == 40000 and cfg.train_cfg.val_interval == 4000
    assert cfg.train_dataloader.batch_size == 4
    assert cfg.auto_scale_lr.base_batch_size == 32
    ds = cfg.train_dataloader.dataset
    assert ds.type == 'ADE20KDataset' and ds.reduce_zero_label is True
    steps = {t.type: t for t in ds.pipeline}
    assert tuple(steps['RandomResize'].scale) == (2048, 512)
    assert tuple(steps['RandomResize'].ratio_range) == (0.5, 2.0)
    assert tuple(steps['RandomCrop'].crop_size) == (512, 512)
    assert steps['RandomCrop'].cat_max_ratio == 0.75
    assert 'PhotoMetricDistortion' in steps and 'RandomFlip' in steps
    assert cfg.val_evaluator.iou_metrics == ['mIoU']


@pytest.mark.parametrize('path', [PUBLISHED, ADAPTER])
def test_forward_backward(repo_root, path):
    cfg = Config.fromfile(str(repo_root / path))
    cfg.model.backbone.init_cfg = None
    cfg.model.backbone.arch = 'tiny'  # small input, small model; same wiring
    if isinstance(cfg.model.neck, list):
        cfg.model.neck[0].in_channels = 192
        cfg.model.neck[0].norm_cfg = dict(type='BN')
        cfg.model.neck[1].in_channels = [192] * 4
    else:
        cfg.model.neck.in_channels = [192] * 4
    cfg.model.decode_head.norm_cfg = dict(type='BN')
    model = build(cfg).train()
    x = torch.randn(2, 3, 64, 96)
    feats = model.extract_feat(x)
    strides = [64 // f.shape[-2] for f in feats]
    assert strides == ([16] * 4 if path == PUBLISHED else [4, 8, 16, 32])
    logits = model._forward(x)  # the decode head's output at the first map
    assert logits.shape == (2, 150) + feats[0].shape[-2:]
    labels = torch.randint(0, 150, (2, 1) + logits.shape[-2:])
    loss = torch.nn.functional.cross_entropy(logits, labels[:, 0])
    loss.backward()
    assert model.backbone.blocks[0].attn.qkv.weight.grad.abs().sum() > 0
    assert model.decode_head.conv_seg.weight.grad.abs().sum() > 0


def test_converted_checkpoint_loads_without_missing_or_unexpected_keys(
        repo_root, tmp_path, mmlogger_messages):
    from flsl_mm.models import FLSL
    pre = FLSL(backbone=dict(type='FLSLViT', arch='tiny'),
               head=dict(type='FLSLHead', in_channels=192, out_channels=32))
    torch.save(dict(state_dict=pre.state_dict()), tmp_path / 'pre.pth')
    run(['tools/model_converters/flsl_to_mmdet.py', str(tmp_path / 'pre.pth'),
         str(tmp_path / 'bb.pth'), '--arch', 'tiny'], repo_root)
    cfg = Config.fromfile(str(repo_root / DEMO))
    cfg.model.backbone.init_cfg.checkpoint = str(tmp_path / 'bb.pth')
    model = build(cfg)
    model.init_weights()
    text = '\n'.join(mmlogger_messages)
    assert 'load backbone. in model from' in text
    assert 'missing keys' not in text and 'unexpected key' not in text, text
    teacher = {k[len('teacher.module.backbone.'):]: v for k, v in
               pre.state_dict().items() if k.startswith('teacher.module.backbone.')}
    for k, v in model.backbone.state_dict().items():
        torch.testing.assert_close(v, teacher[k], msg=k)


def write_ade(root, n=2, size=(96, 128)):
    """A tiny ADEChallengeData2016 layout: jpg images, png labels 0..150."""
    rng = np.random.RandomState(0)
    for split in ('training', 'validation'):
        (root / 'images' / split).mkdir(parents=True)
        (root / 'annotations' / split).mkdir(parents=True)
        for i in range(n):
            name = f'ADE_{split[:5]}_{i:08d}'
            cv2.imwrite(str(root / 'images' / split / f'{name}.jpg'),
                        rng.randint(0, 255, size + (3,)).astype(np.uint8))
            label = np.zeros(size, np.uint8)
            label[:, size[1] // 2:] = 7 + i  # class 7 / 8 -> 6 / 7 once reduced
            cv2.imwrite(str(root / 'annotations' / split / f'{name}.png'), label)
    return root


def test_published_config_trains_one_iteration_on_ade_layout(repo_root, tmp_path):
    root = write_ade(tmp_path / 'ADEChallengeData2016')
    work = tmp_path / 'work'
    log = run(['tools/train.py', PUBLISHED, '--work-dir', str(work), '--cfg-options',
               f'train_dataloader.dataset.data_root={root}',
               f'val_dataloader.dataset.data_root={root}',
               'model.backbone.init_cfg=None', 'train_dataloader.batch_size=1',
               'train_dataloader.num_workers=0',
               'train_dataloader.persistent_workers=False',
               'val_dataloader.num_workers=0', 'val_dataloader.persistent_workers=False',
               'train_cfg.max_iters=1', 'train_cfg.val_interval=1',
               'default_hooks.logger.interval=1', 'default_hooks.checkpoint.interval=1'],
              repo_root)
    assert 'Iter(train) [1/1]' in log and 'decode.loss_ce' in log
    miou = re.findall(r'mIoU: ([0-9.]+)', log)
    assert miou and math.isfinite(float(miou[-1]))
    assert (work / 'iter_1.pth').is_file()


def test_demo_trains_and_tests_miou(repo_root, demo_root, tmp_path):
    data = [f'train_dataloader.dataset.data_root={demo_root}',
            f'val_dataloader.dataset.data_root={demo_root}',
            f'test_dataloader.dataset.data_root={demo_root}',
            'model.backbone.init_cfg=None',
            'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
            'val_dataloader.num_workers=0', 'val_dataloader.persistent_workers=False',
            'test_dataloader.num_workers=0', 'test_dataloader.persistent_workers=False']
    work = tmp_path / 'work'
    log = run(['tools/train.py', DEMO, '--work-dir', str(work), '--cfg-options',
               'train_cfg.max_iters=6', 'train_cfg.val_interval=6',
               'default_hooks.checkpoint.interval=6', 'param_scheduler.0.end=2',
               'param_scheduler.1.begin=2', 'param_scheduler.1.end=6',
               'default_hooks.logger.interval=1', *data],
              repo_root)
    assert 'Iter(train) [6/6]' in log
    out = run(['tools/test.py', DEMO, str(work / 'iter_6.pth'), '--work-dir',
               str(tmp_path / 'test'), '--cfg-options', *data], repo_root)
    metrics = json.loads(re.findall(r'^\{"aAcc.*\}$', out, re.M)[-1])
    assert math.isfinite(metrics['mIoU']) and 0 <= metrics['mIoU'] <= 100
    assert 'sky' in out and 'triangle' in out  # the per-class table
