import subprocess
import sys

import pytest
import torch

from flsl_mm.models import FLSL, FLSLViT
from flsl_mm.models.utils.convert import (CheckpointFormatError,
                                          convert_for_detection, detect_format)

ARCH = 'tiny'


def _without_final_norm(state):
    return {k: v for k, v in state.items() if not k.startswith('norm.')}


def _dense(state=None, patch=16):
    model = FLSLViT(arch=ARCH, patch_size=patch, out_type='featmap',
                    final_norm=False).eval()
    if state is not None:
        missing, unexpected = model.load_state_dict(state, strict=False)
        assert not missing and not unexpected, (missing, unexpected)
    return model


def _flsl_checkpoint():
    torch.manual_seed(0)
    model = FLSL(backbone=dict(type='FLSLViT', arch=ARCH),
                 head=dict(type='FLSLHead', in_channels=192, out_channels=32,
                           hidden_channels=16, bottleneck_channels=8))
    with torch.no_grad():  # make teacher and student differ
        for p in model.teacher.module.parameters():
            p.add_(0.01 * torch.randn_like(p))
    return model, dict(state_dict=model.state_dict(), meta=dict(epoch=1))


def _features(model, x):
    with torch.no_grad():
        return model(x)


def test_flsl_mm_checkpoint_teacher_and_student():
    model, ckpt = _flsl_checkpoint()
    assert detect_format(ckpt) == 'flsl_mm'
    x = torch.randn(1, 3, 64, 96)
    for student, source in ((False, model.teacher.module.backbone),
                            (True, model.backbone)):
        out, _ = convert_for_detection(ckpt, ARCH, 16, student=student)
        state = {k[len('backbone.'):]: v for k, v in out['state_dict'].items()}
        dense = _dense(state)
        ref = FLSLViT(arch=ARCH, out_type='featmap', final_norm=False)
        ref.load_state_dict(_without_final_norm(source.state_dict()))
        for a, b in zip(_features(dense, x), _features(ref.eval(), x)):
            torch.testing.assert_close(a, b)


def test_authors_format_synthetic():
    torch.manual_seed(1)
    src = FLSLViT(arch=ARCH).eval()
    teacher = {'backbone.' + k: v for k, v in src.state_dict().items()}
    teacher['head.mlp.0.weight'] = torch.randn(4, 4)
    teacher['head.last_layer.weight_g'] = torch.ones(4, 1)
    student = {'module.backbone.' + k: v + 1 for k, v in src.state_dict().items()}
    ckpt = dict(teacher=teacher, student=student, epoch=300)
    assert detect_format(ckpt) == 'authors'
    out, conv = convert_for_detection(ckpt, ARCH, 16)
    assert 'head.mlp.0.weight' in conv.dropped
    assert not any(k.startswith('backbone.head') for k in out['state_dict'])
    dense = _dense({k[9:]: v for k, v in out['state_dict'].items()})
    ref = FLSLViT(arch=ARCH, out_type='featmap', final_norm=False).eval()
    ref.load_state_dict(_without_final_norm(src.state_dict()))
    x = torch.randn(2, 3, 48, 80)
    for a, b in zip(_features(dense, x), _features(ref, x)):
        torch.testing.assert_close(a, b)
    out_s, _ = convert_for_detection(ckpt, ARCH, 16, student=True)
    torch.testing.assert_close(out_s['state_dict']['backbone.blocks.0.attn.qkv.weight'],
                               src.state_dict()['blocks.0.attn.qkv.weight'] + 1)


def test_plain_vit_with_class_token():
    src = FLSLViT(arch=ARCH).state_dict()
    vit = dict(src)
    vit['cls_token'] = torch.zeros(1, 1, 192)
    vit['pos_embed'] = torch.cat([torch.full((1, 1, 192), 7.0), src['pos_embed']], 1)
    vit['head.weight'] = torch.zeros(1000, 192)
    out, conv = convert_for_detection(dict(model=vit), ARCH, 16)
    assert conv.source_format == 'vit'
    torch.testing.assert_close(out['state_dict']['backbone.pos_embed'],
                               src['pos_embed'])
    assert 'cls_token' in conv.dropped and 'head.weight' in conv.dropped


def test_wrong_arch_and_unknown_format():
    _, ckpt = _flsl_checkpoint()
    with pytest.raises(CheckpointFormatError, match='arch mismatch.*width 192.*'
                       'vit-small/16 needs width 384'):
        convert_for_detection(ckpt, 'small', 16)
    with pytest.raises(CheckpointFormatError, match='patch 16.*needs.*patch 8'):
        convert_for_detection(ckpt, ARCH, 8)
    with pytest.raises(CheckpointFormatError, match='unrecognised'):
        convert_for_detection(dict(foo=1), ARCH, 16)


def test_cli_writes_checkpoint_mmdet_loads_without_warnings(tmp_path, repo_root):
    _, ckpt = _flsl_checkpoint()
    src = tmp_path / 'pre.pth'
    torch.save(ckpt, src)
    dst = tmp_path / 'out' / 'backbone.pth'
    proc = subprocess.run([sys.executable, 'tools/model_converters/flsl_to_mmdet.py',
                           str(src), str(dst), '--arch', ARCH], cwd=repo_root,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert 'flsl_mm format' in out
    assert 'kept: teacher backbone, 147 tensors (vit-tiny/16) -> backbone.*' in out
    # what was left out comes as groups, never as a list of student key names
    assert 'left out: student backbone (149), student head (' in out
    assert 'loss state (1)' in out and 'final norm (unused by dense backbones) (2)' in out
    assert 'backbone.pos_embed' not in out
    # through mmengine's Pretrained init, as the detection configs load it
    from mmengine.logging import MMLogger
    model = FLSLViT(arch=ARCH, out_type='featmap', final_norm=False,
                    init_cfg=dict(type='Pretrained', checkpoint=str(dst),
                                  prefix='backbone.'))
    logger = MMLogger.get_current_instance()
    records = []
    handler = type('H', (__import__('logging').Handler,),
                   {'emit': lambda self, r: records.append(r.getMessage())})()
    logger.addHandler(handler)
    try:
        model.init_weights()
    finally:
        logger.removeHandler(handler)
    assert not any('missing keys' in r or 'unexpected key' in r for r in records), \
        records
    # wrong arch and corrupt file: clear errors, nothing written
    bad = subprocess.run([sys.executable, 'tools/model_converters/flsl_to_mmdet.py',
                          str(src), str(tmp_path / 'x.pth'), '--arch', 'base'],
                         cwd=repo_root, capture_output=True, text=True)
    assert bad.returncode == 2 and 'arch mismatch' in bad.stderr
    assert not (tmp_path / 'x.pth').exists()
    corrupt = tmp_path / 'corrupt.pth'
    corrupt.write_bytes(b'not a checkpoint')
    bad = subprocess.run([sys.executable, 'tools/model_converters/flsl_to_mmdet.py',
                          str(corrupt), str(tmp_path / 'y.pth')], cwd=repo_root,
                         capture_output=True, text=True)
    assert bad.returncode == 2 and 'cannot be read' in bad.stderr
    assert list(tmp_path.glob('*.partial')) == []


def test_raw_pretraining_checkpoint_through_init_cfg(tmp_path):
    model, ckpt = _flsl_checkpoint()
    path = tmp_path / 'epoch_1.pth'
    torch.save(ckpt, path)
    dense = FLSLViT(arch=ARCH, out_type='featmap', final_norm=False,
                    init_cfg=dict(type='Pretrained', checkpoint=str(path),
                                  prefix='teacher.module.backbone.'))
    dense.init_weights()
    torch.testing.assert_close(dense.blocks[3].attn.qkv.weight,
                               model.teacher.module.backbone.blocks[3].attn.qkv.weight)


def test_dropped_keys_are_summarised_by_group():
    from flsl_mm.models.utils.convert import summarise_dropped
    model, ckpt = _flsl_checkpoint()
    out, conv = convert_for_detection(ckpt, ARCH, 16)
    groups = summarise_dropped(conv.dropped, conv.source_format)
    n_backbone = len(model.backbone.state_dict())
    assert len(out['state_dict']) == n_backbone - 2  # the final norm's weight, bias
    assert groups['student backbone'] == n_backbone
    assert groups['student head'] == len(model.head.state_dict())
    assert groups['teacher head'] == len(model.teacher.module.head.state_dict())
    assert groups['loss state'] == 1  # loss_module.center
    assert groups['final norm (unused by dense backbones)'] == 2
    assert 'other' not in groups
    _, conv = convert_for_detection(ckpt, ARCH, 16, student=True)
    groups = summarise_dropped(conv.dropped, conv.source_format, student=True)
    assert groups['teacher backbone'] == n_backbone


def _dino_checkpoint():
    from flsl_mm.models import DINO
    torch.manual_seed(0)
    model = DINO(backbone=dict(type='FLSLViT', arch=ARCH, with_cls_token=True,
                               pos_embed_type='learnable', out_type='cls_token'),
                 head=dict(type='FLSLHead', in_channels=192, out_channels=32,
                           hidden_channels=16, bottleneck_channels=8))
    with torch.no_grad():
        for p in model.teacher.module.parameters():
            p.add_(0.01 * torch.randn_like(p))
    return model, dict(state_dict=model.state_dict(), meta=dict(epoch=1))


def test_dino_checkpoint_class_token_dropped_patch_path_kept():
    """A DINO pretraining checkpoint converts like an FLSL one: the teacher's
    backbone, its class token and the token's position slot dropped; the dense
    backbone computes the teacher's blocks on the patch tokens with the learned
    patch position embedding."""
    from flsl_mm.models import resize_pos_embed
    model, ckpt = _dino_checkpoint()
    assert detect_format(ckpt) == 'flsl_mm'
    out, conv = convert_for_detection(ckpt, ARCH, 16)
    state = {k[len('backbone.'):]: v for k, v in out['state_dict'].items()}
    assert 'cls_token' not in state
    teacher = model.teacher.module.backbone
    torch.testing.assert_close(state['pos_embed'], teacher.pos_embed[:, 1:])
    assert 'cls_token' in conv.dropped
    assert 'pos_embed[:, 0] (class token slot)' in conv.dropped
    dense = _dense(state)  # the detection backbone: fixed buffer, no class token
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        tokens = teacher.patch_embed(x) + resize_pos_embed(teacher.pos_embed[:, 1:],
                                                           14, (4, 6))
        maps = {}
        for i, blk in enumerate(teacher.blocks):
            tokens = blk(tokens)
            maps[i] = tokens.transpose(1, 2).reshape(1, 192, 4, 6)
    for i, got in zip(dense.out_indices, _features(dense, x)):
        torch.testing.assert_close(got, maps[i])
    from flsl_mm.models.utils.convert import summarise_dropped
    groups = summarise_dropped(conv.dropped, conv.source_format)
    assert groups['class token'] == 1 and groups['class-token position slot'] == 1
