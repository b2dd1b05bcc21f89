"""The Mask R-CNN demo's first iterations give the same losses whether nms and
RoIAlign run through compiled mmcv's kernels or torchvision's (FLSL_MM_OPS),
through the real tools/train.py; without compiled mmcv, forcing mmcv's kernels is
refused before training."""
import json
import math
import os
import subprocess
import sys

import pytest

from flsl_mm import compat_ops

COMPILED = compat_ops.mmcv_ops_kind() == 'compiled'

CFG = 'configs/det_coco/mask-rcnn_flsl-vit-tiny-p16_fpn_demo.py'
TERMS = ('loss', 'loss_rpn_cls', 'loss_rpn_bbox', 'loss_cls', 'loss_bbox',
         'loss_mask')


def train(repo_root, demo_root, work, ops):
    options = [
        'model.backbone.init_cfg=None', 'randomness.seed=0',
        f'train_dataloader.dataset.data_root={demo_root}',
        'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
        'train_dataloader.dataset.indices=12', 'train_cfg.max_epochs=1',
        'default_hooks.logger.interval=1', 'log_processor.window_size=1',
        'default_hooks.checkpoint.interval=100']
    env = dict(os.environ, FLSL_MM_OPS=ops)
    proc = subprocess.run(
        [sys.executable, 'tools/train.py', CFG, '--work-dir', str(work),
         '--no-validate', '--cfg-options', *options], cwd=repo_root, env=env,
        capture_output=True, text=True, timeout=900)
    return proc


def train_losses(repo_root, demo_root, work, ops):
    proc = train(repo_root, demo_root, work, ops)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    forced = 'cpu -> torchvision (forced' if ops == 'torchvision' else \
        'cpu -> mmcv (forced'
    assert forced in proc.stdout
    scalars = next(work.glob('*/vis_data/scalars.json'))
    rows = [json.loads(line) for line in scalars.read_text().splitlines()]
    return [r for r in rows if 'loss' in r]


@pytest.mark.skipif(not COMPILED, reason='needs compiled mmcv (--mmcv compiled)')
def test_mask_rcnn_losses_match_across_ops_paths(repo_root, demo_root, tmp_path):
    mmcv = train_losses(repo_root, demo_root, tmp_path / 'mmcv', 'mmcv')
    tv = train_losses(repo_root, demo_root, tmp_path / 'tv', 'torchvision')
    assert len(mmcv) == len(tv) == 3
    for it, (a, b) in enumerate(zip(mmcv, tv)):
        for term in TERMS:
            assert math.isfinite(a[term]) and a[term] > 0
            # same proposals (nms visits ties in mmcv's order), RoI features
            # equal to float32 rounding: measured identical to 7 digits; 1e-5
            assert abs(a[term] - b[term]) <= 1e-5 * max(1.0, abs(a[term])), \
                (it, term, a[term], b[term])


@pytest.mark.skipif(COMPILED, reason='compiled mmcv is installed')
def test_forcing_mmcv_kernels_without_them_stops_before_training(repo_root, demo_root,
                                                                 tmp_path):
    proc = train(repo_root, demo_root, tmp_path / 'w', 'mmcv')
    assert proc.returncode != 0
    err = proc.stderr + proc.stdout
    assert 'FLSL_MM_OPS=mmcv, but mmcv is installed without compiled ops' in err
    assert 'bash tools/install.sh --mmcv compiled' in err
    assert 'Epoch(train)' not in err
