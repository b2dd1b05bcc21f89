"""DINO end to end on the demo data: 2 training iterations with tools/train.py,
then the checkpoint through the converter, every dense demo config (Mask R-CNN,
UAVDT Faster R-CNN, Semantic FPN), a Mask R-CNN demo run and the DAVIS demo."""
import json
import math
import re
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope
from flsl_mm.checkpoints import load_checkpoint_file

DEMO = 'configs/pretrain/dino_vit-tiny-p16_demo.py'
DET = 'configs/det_coco/mask-rcnn_flsl-vit-tiny-p16_fpn_demo.py'
DENSE = {'mmdet': [DET, 'configs/uavdt/faster-rcnn_flsl-vit-tiny-p16_fpn_uavdt-demo.py'],
         'mmseg': ['configs/seg_ade20k/semfpn_flsl-vit-tiny-p16_demo.py']}


def run(cmd, cwd):
    proc = subprocess.run([sys.executable, *map(str, cmd)], cwd=cwd,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


@pytest.fixture(scope='module')
def dino_run(repo_root, demo_root, tmp_path_factory):
    work = tmp_path_factory.mktemp('dino')
    log = run(['tools/train.py', DEMO, '--work-dir', work, '--cfg-options',
               f'train_dataloader.dataset.data_root={demo_root}',
               'train_dataloader.batch_size=8', 'train_dataloader.num_workers=0',
               'train_dataloader.persistent_workers=False', 'train_cfg.max_epochs=1',
               'default_hooks.checkpoint.interval=1'], repo_root)
    backbone = work / 'backbone.pth'
    conv = run(['tools/model_converters/flsl_to_mmdet.py', work / 'epoch_1.pth',
                backbone, '--arch', 'tiny'], repo_root)
    return work, log, backbone, conv


def test_two_iterations_train_the_student_and_move_the_teacher(dino_run):
    work, log, _, _ = dino_run
    assert re.search(r'Epoch\(train\) \[1\]\[2/2\]', log)  # 16 images / 8
    for name in ('loss_dino', 'teacher_temp: 0.0400', 'mon_target_entropy',
                 'mon_coverage', 'mon_prototypes_used', 'mon_agreement',
                 'mon_teacher_student_dist', 'mon_teacher_init_weight'):
        assert name in log, name
    losses = [float(v) for v in re.findall(r'loss_dino: ([0-9.]+)', log)]
    assert len(losses) == 2 and all(math.isfinite(v) for v in losses)
    sd = load_checkpoint_file(work / 'epoch_1.pth')['state_dict']
    assert sd['teacher.module.backbone.cls_token'].shape == (1, 1, 192)
    assert sd['loss_module.center'].abs().sum() > 0
    # epoch 1: the student's last layer is frozen, so the EMA of two equal
    # tensors leaves the teacher's equal to it (to rounding, 1e-8); everything
    # else the student trained has moved ~1e-5 from the teacher (2 AdamW steps at
    # the warm-up's lr, 7.8e-6 for the second)
    def gap(k):
        return (sd[k] - sd['teacher.module.' + k]).abs().max().item()
    assert gap('head.last_layer.parametrizations.weight.original1') < 1e-7
    for k in ('backbone.cls_token', 'backbone.pos_embed',
              'backbone.blocks.0.attn.qkv.weight', 'head.mlp.0.weight'):
        assert gap(k) > 5e-6, k


def test_converter_drops_the_class_token(dino_run):
    _, _, backbone, conv = dino_run
    assert 'class token (1)' in conv and 'class-token position slot (1)' in conv
    state = load_checkpoint_file(backbone)['state_dict']
    assert 'backbone.cls_token' not in state
    assert state['backbone.pos_embed'].shape == (1, 196, 192)


def _build(scope, path, checkpoint):
    if scope == 'mmdet':
        from mmdet.registry import MODELS
        from mmdet.utils import register_all_modules
    else:
        from mmseg.registry import MODELS
        from mmseg.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    cfg = Config.fromfile(path)
    cfg.model.backbone.init_cfg.checkpoint = str(checkpoint)
    with DefaultScope.overwrite_default_scope(scope):
        return MODELS.build(cfg.model)


@pytest.mark.parametrize('scope,path', [(s, p) for s, ps in DENSE.items() for p in ps])
def test_every_dense_demo_config_loads_the_dino_teacher(dino_run, repo_root, scope,
                                                        path, mmlogger_messages):
    work, _, backbone, _ = dino_run
    model = _build(scope, repo_root / path, backbone)
    model.init_weights()
    text = '\n'.join(mmlogger_messages)
    assert 'load backbone. in model from' in text
    assert 'missing keys' not in text and 'unexpected key' not in text, text
    sd = load_checkpoint_file(work / 'epoch_1.pth')['state_dict']
    teacher = {k[len('teacher.module.backbone.'):]: v for k, v in sd.items()
               if k.startswith('teacher.module.backbone.')}
    for k, v in model.backbone.state_dict().items():
        want = teacher[k][:, 1:] if k == 'pos_embed' else teacher[k]
        torch.testing.assert_close(v, want, msg=k)


def test_mask_rcnn_demo_trains_and_tests_from_the_dino_teacher(dino_run, repo_root,
                                                               demo_root, tmp_path):
    _, _, backbone, _ = dino_run
    data = [f'{split}_dataloader.{key}' for split in ('train', 'val', 'test')
            for key in ('num_workers=0', 'persistent_workers=False')]
    data += [f'{split}_dataloader.dataset.data_root={demo_root}'
             for split in ('train', 'val', 'test')]
    data += [f'{split}_evaluator.ann_file={demo_root}/annotations/instances_val.json'
             for split in ('val', 'test')]
    data += ['train_dataloader.dataset.indices=8', 'val_dataloader.dataset.indices=4',
             'test_dataloader.dataset.indices=4']
    log = run(['tools/train.py', DET, '--work-dir', tmp_path, '--cfg-options',
               f'model.backbone.init_cfg.checkpoint={backbone}',
               'train_cfg.max_epochs=1', 'train_cfg.val_interval=1', *data], repo_root)
    assert f'load backbone. in model from: {backbone}' in log
    found = re.findall(r'coco/bbox_mAP: ([0-9.-]+)', log)
    assert found and 0.0 <= float(found[-1]) <= 1.0, log[-2000:]
    assert (tmp_path / 'epoch_1.pth').is_file()


def test_davis_demo_runs_from_the_dino_checkpoint(dino_run, repo_root, tmp_path):
    """The pretraining checkpoint (class token dropped at load) and the converter's
    output (class token dropped by the converter, final norm kept) give the same
    J&F to the last digit: both paths compute the teacher's patch tokens."""
    work, _, _, _ = dino_run
    tok = tmp_path / 'tok.pth'
    run(['tools/model_converters/flsl_to_mmdet.py', work / 'epoch_1.pth', tok,
         '--arch', 'tiny', '--keep-final-norm'], repo_root)
    scores = {}
    for name, ckpt in (('raw', work / 'epoch_1.pth'), ('converted', tok)):
        out = run(['tools/analysis/davis_label_propagation.py', DEMO, ckpt, '--demo',
                   '--data-root', tmp_path / 'davis_demo', '--out-dir',
                   tmp_path / name], repo_root)
        assert 'propagating 3 sequences, 21 frames' in out
        head, values = re.findall(r'^(J&F-Mean.*)\n(.*)$', out, re.M)[-1]
        scores[name] = dict(zip([h.strip() for h in head.split('|')],
                                [float(v) for v in values.split('|')]))
    assert 0.0 < scores['raw']['J&F-Mean'] <= 1.0
    assert scores['raw'] == scores['converted']
    assert (tmp_path / 'raw' / 'global_results-val.csv').read_text() == \
        (tmp_path / 'converted' / 'global_results-val.csv').read_text()
