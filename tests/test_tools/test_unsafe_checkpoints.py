"""A checkpoint whose pickle would run a shell command, given to every entry point
that reads checkpoints: refused with the message (file, refused global, the way
on), the command never runs, the tool exits non-zero and writes nothing. And the
weights users bring -- the authors' release layout, a plain ViT state dict, a
timm ViT in safetensors -- convert and load in a detection config without missing
or unexpected keys, with no pickle run."""
import os
import subprocess
import sys

import pytest
import torch

from flsl_mm.checkpoints import load_checkpoint_file
from flsl_mm.models import FLSL, FLSLViT

PRETRAIN = 'configs/pretrain/flsl_vit-tiny-p16_demo.py'
DET = 'configs/det_coco/mask-rcnn_flsl-vit-tiny-p16_fpn_demo.py'


class Payload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f'touch {self.marker}',)


def det_data(root):
    return [f'train_dataloader.dataset.data_root={root}',
            f'val_dataloader.dataset.data_root={root}',
            f'test_dataloader.dataset.data_root={root}',
            f'val_evaluator.ann_file={root}/annotations/instances_val.json',
            f'test_evaluator.ann_file={root}/annotations/instances_val.json',
            'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
            'val_dataloader.num_workers=0', 'val_dataloader.persistent_workers=False',
            'test_dataloader.num_workers=0', 'test_dataloader.persistent_workers=False',
            'train_dataloader.dataset.indices=2', 'test_dataloader.dataset.indices=2',
            'train_cfg.max_epochs=1']


ENTRY_POINTS = {
    'train --resume': lambda e, d, w: [
        'tools/train.py', PRETRAIN, '--work-dir', w, '--resume', e],
    'train load_from': lambda e, d, w: [
        'tools/train.py', PRETRAIN, '--work-dir', w, '--cfg-options', f'load_from={e}',
        f'train_dataloader.dataset.data_root={d}', 'train_dataloader.num_workers=0',
        'train_dataloader.persistent_workers=False', 'custom_hooks=[]'],
    'detection Pretrained init': lambda e, d, w: [
        'tools/train.py', DET, '--work-dir', w, '--cfg-options',
        f'model.backbone.init_cfg.checkpoint={e}', *det_data(d)],
    'test': lambda e, d, w: [
        'tools/test.py', DET, e, '--work-dir', w, '--cfg-options',
        'model.backbone.init_cfg=None', *det_data(d)],
    'converter': lambda e, d, w: [
        'tools/model_converters/flsl_to_mmdet.py', e, f'{w}/backbone.pth',
        '--arch', 'tiny'],
    'dense probe': lambda e, d, w: [
        'tools/analysis/dense_probe.py', PRETRAIN, e, '--data-root', d,
        '--out', f'{w}/probe.json'],
    'DAVIS': lambda e, d, w: [
        'tools/analysis/davis_label_propagation.py', PRETRAIN, e, '--demo',
        '--data-root', f'{w}/davis', '--out-dir', f'{w}/davis_out'],
    'visualize': lambda e, d, w: [
        'tools/analysis/visualize_flsl.py', PRETRAIN, e,
        f'{d}/val/images/val_00000.png', '--out-dir', f'{w}/vis'],
}


@pytest.mark.parametrize('entry', list(ENTRY_POINTS))
def test_a_payload_is_refused_by_every_entry_point(entry, repo_root, demo_root,
                                                   tmp_path):
    marker = tmp_path / 'pwned'
    model = FLSL(backbone=dict(type='FLSLViT', arch='tiny'),
                 head=dict(type='FLSLHead', in_channels=192, out_channels=64))
    evil = tmp_path / 'evil.pth'
    torch.save(dict(state_dict=model.state_dict(),
                    meta=dict(epoch=1, iter=2, note=Payload(marker))), evil)
    work = tmp_path / 'work'
    work.mkdir()
    cmd = ENTRY_POINTS[entry](str(evil), str(demo_root), str(work))
    proc = subprocess.run([sys.executable, *cmd], cwd=repo_root, capture_output=True,
                          text=True, timeout=900)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-3000:]
    assert not marker.exists(), f'{entry}: the payload ran'
    assert f'{evil}: refused to load: its pickle needs posix.system' in out, out[-3000:]
    assert f'--trust-checkpoint {evil}' in out
    assert 'Traceback' not in out, out[-3000:]  # a message, not a crash
    written = [p.name for p in work.rglob('*') if p.suffix in ('.pth', '.json', '.png')
               and 'davis' not in p.relative_to(work).parts]  # (the DAVIS input)
    assert written == [], written


def vit_state(seed=0):
    """A timm/DINO-style ViT-Tiny/16 state dict (class token, head)."""
    import timm
    torch.manual_seed(seed)
    vit = timm.create_model('vit_tiny_patch16_224', pretrained=False, num_classes=10)
    return {k: v.clone().contiguous() for k, v in vit.state_dict().items()}


@pytest.mark.parametrize('source', ['authors', 'vit', 'safetensors'])
def test_foreign_weights_convert_and_load_into_a_detection_backbone(
        source, repo_root, tmp_path, mmlogger_messages):
    state = vit_state()
    if source == 'authors':  # the FLSL release: teacher / student, no pickle needed
        src = tmp_path / 'flsl_release.pth'
        body = {k: v for k, v in state.items() if not k.startswith('head.')}
        head = {'head.last_layer.weight': torch.randn(64, 192)}
        torch.save({'teacher': {**{f'backbone.{k}': v for k, v in body.items()}, **head},
                    'student': {f'module.backbone.{k}': v for k, v in body.items()},
                    'epoch': 300}, src)
    elif source == 'vit':
        src = tmp_path / 'vit.pth'
        torch.save({'model': state}, src)
    else:
        from safetensors.torch import save_file
        src = tmp_path / 'model.safetensors'  # as timm models come from the hub
        save_file(state, str(src))
    assert source == 'safetensors' or \
        torch.serialization.get_unsafe_globals_in_checkpoint(str(src)) == []
    for out_name in ('backbone.pth', 'backbone.safetensors'):
        dst = tmp_path / out_name
        proc = subprocess.run(
            [sys.executable, 'tools/model_converters/flsl_to_mmdet.py', str(src),
             str(dst), '--arch', 'tiny'], cwd=repo_root, capture_output=True,
            text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        converted = load_checkpoint_file(dst)
        converted = converted.get('state_dict', converted)
        assert torch.equal(converted['backbone.blocks.3.attn.qkv.weight'],
                           state['blocks.3.attn.qkv.weight'])
        model = FLSLViT(arch='tiny', out_type='featmap', final_norm=False,
                        init_cfg=dict(type='Pretrained', checkpoint=str(dst),
                                      prefix='backbone.'))
        del mmlogger_messages[:]
        model.init_weights()
        assert not any('missing keys' in m or 'unexpected key' in m
                       for m in mmlogger_messages), mmlogger_messages
        assert torch.equal(model.blocks[3].attn.qkv.weight,
                           state['blocks.3.attn.qkv.weight'])
