"""Demo detection chain: pretraining checkpoint -> converter -> tools/train.py ->
tools/test.py; COCO bbox / segm metrics come back finite from pycocotools."""
import json
import math
import re
import subprocess
import sys

import torch

from flsl_mm.models import FLSL

CFG = 'configs/det_coco/mask-rcnn_flsl-vit-tiny-p16_fpn_demo.py'


def run(cmd, cwd):
    proc = subprocess.run([sys.executable, *cmd], cwd=cwd, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def test_demo_detection_train_and_test(repo_root, demo_root, tmp_path):
    model = FLSL(backbone=dict(type='FLSLViT', arch='tiny'),
                 head=dict(type='FLSLHead', in_channels=192, out_channels=64))
    torch.save(dict(state_dict=model.state_dict(), meta=dict(epoch=1)),
               tmp_path / 'pretrain.pth')
    backbone = tmp_path / 'backbone.pth'
    run(['tools/model_converters/flsl_to_mmdet.py', str(tmp_path / 'pretrain.pth'),
         str(backbone), '--arch', 'tiny'], repo_root)
    data = [f'train_dataloader.dataset.data_root={demo_root}',
            f'val_dataloader.dataset.data_root={demo_root}',
            f'test_dataloader.dataset.data_root={demo_root}',
            f'val_evaluator.ann_file={demo_root}/annotations/instances_val.json',
            f'test_evaluator.ann_file={demo_root}/annotations/instances_val.json',
            'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
            'val_dataloader.num_workers=0', 'val_dataloader.persistent_workers=False',
            'test_dataloader.num_workers=0', 'test_dataloader.persistent_workers=False',
            'train_dataloader.dataset.indices=8', 'val_dataloader.dataset.indices=4',
            'test_dataloader.dataset.indices=4']
    work = tmp_path / 'work'
    log = run(['tools/train.py', CFG, '--work-dir', str(work), '--cfg-options',
               f'model.backbone.init_cfg.checkpoint={backbone}',
               'train_cfg.max_epochs=1', 'train_cfg.val_interval=1', *data],
              repo_root)
    assert f'load backbone. in model from: {backbone}' in log
    assert 'coco/bbox_mAP' in log and 'coco/segm_mAP' in log
    ckpt = work / 'epoch_1.pth'
    assert ckpt.is_file()
    out = run(['tools/test.py', CFG, str(ckpt), '--work-dir', str(tmp_path / 'test'),
               '--out', str(tmp_path / 'preds.pkl'), '--cfg-options', *data],
              repo_root)
    metrics = json.loads(re.findall(r'^\{"coco/.*\}$', out, re.M)[-1])
    for key in ('coco/bbox_mAP', 'coco/bbox_mAP_50', 'coco/segm_mAP'):
        assert math.isfinite(metrics[key]) and 0.0 <= metrics[key] <= 1.0
    assert (tmp_path / 'preds.pkl').is_file()
