"""tools/train.py + tools/test.py on the UAVDT demo config: COCO-style and UAVDT
AP@0.7 metrics are both printed."""
import json
import math
import os
import re
import subprocess
import sys

CFG = 'configs/uavdt/faster-rcnn_flsl-vit-tiny-p16_fpn_uavdt-demo.py'


def run(cmd, cwd, env):
    proc = subprocess.run([sys.executable, *cmd], cwd=cwd, capture_output=True,
                          text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def test_uavdt_demo_train_and_test(repo_root, tmp_path):
    env = dict(os.environ, FLSL_MM_CACHE=str(tmp_path / 'cache'))
    root = tmp_path / 'uavdt_demo'
    opts = [f'train_dataloader.dataset.data_root={root}',
            f'val_dataloader.dataset.data_root={root}',
            f'test_dataloader.dataset.data_root={root}',
            'train_dataloader.dataset.demo_kwargs.num_frames=4',
            'val_dataloader.dataset.demo_kwargs.num_frames=4',
            'test_dataloader.dataset.demo_kwargs.num_frames=4',
            'model.backbone.init_cfg=None', 'model.test_cfg.rcnn.score_thr=0.0',
            'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
            'val_dataloader.num_workers=0', 'val_dataloader.persistent_workers=False',
            'test_dataloader.num_workers=0', 'test_dataloader.persistent_workers=False']
    work = tmp_path / 'work'
    log = run(['tools/train.py', CFG, '--work-dir', str(work), '--cfg-options',
               'train_cfg.max_epochs=1', 'train_cfg.val_interval=1', *opts],
              repo_root, env)
    assert 'no ground truth and are skipped: M0901' in log
    assert (root / 'UAV-benchmark-M').is_dir()  # generated on first use
    out = run(['tools/test.py', CFG, str(work / 'epoch_1.pth'), '--work-dir',
               str(tmp_path / 'test'), '--cfg-options', *opts], repo_root, env)
    metrics = json.loads(re.findall(r'^\{"coco/.*\}$', out, re.M)[-1])
    for key in ('coco/bbox_mAP', 'coco/bbox_mAP_50', 'coco/bbox_mAP_75',
                'coco/bbox_mAP_s', 'uavdt/AP70_car', 'uavdt/AP70_overall',
                'uavdt/mAP70'):
        assert key in metrics
    for key in ('coco/bbox_mAP', 'uavdt/AP70_overall'):
        assert math.isfinite(metrics[key]) and 0 <= metrics[key] <= 1
