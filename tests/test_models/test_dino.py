"""The DINO algorithm: which crops the teacher sees, the loss path, the EMA
teacher, the class token, the hooks it needs (docs/dino.md)."""
import copy

import pytest
import torch
from mmengine.logging import MessageHub

from flsl_mm.models import DINO, DINOLoss

TINY = dict(
    backbone=dict(type='FLSLViT', arch=dict(embed_dims=32, num_layers=2, num_heads=2),
                  patch_size=16, drop_path_rate=0.1, with_cls_token=True,
                  pos_embed_type='learnable', out_type='cls_token'),
    head=dict(type='FLSLHead', in_channels=32, out_channels=16, hidden_channels=24,
              bottleneck_channels=8),
)


def build(**kw):
    torch.manual_seed(0)
    return DINO(**copy.deepcopy(TINY), **kw)


def crops(b=2, g=64, loc=32, num_local=3):
    torch.manual_seed(1)
    return [torch.randn(b, 3, g, g) for _ in range(2)] + \
        [torch.randn(b, 3, loc, loc) for _ in range(num_local)]


def test_teacher_is_a_copy_with_class_token_and_no_drop_path():
    model = build()
    t = model.teacher.module
    torch.testing.assert_close(t.backbone.cls_token, model.backbone.cls_token)
    torch.testing.assert_close(t.backbone.pos_embed, model.backbone.pos_embed)
    assert model.backbone.pos_embed.shape == (1, 1 + 14 * 14, 32)
    assert isinstance(model.backbone.pos_embed, torch.nn.Parameter)
    assert all(isinstance(b.drop_path1, torch.nn.Identity) for b in t.backbone.blocks)
    assert not any(p.requires_grad for p in model.teacher.parameters())
    assert isinstance(model.loss_module, DINOLoss)
    assert model.loss_module.out_dim == 16


def test_teacher_sees_only_the_global_crops_student_sees_all(monkeypatch):
    model = build().eval()
    seen = {'teacher': [], 'student': []}
    for who, bb in (('teacher', model.teacher.module.backbone),
                    ('student', model.backbone)):
        fwd = bb.forward

        def record(x, _fwd=fwd, _who=who):
            seen[_who].append(tuple(x.shape))
            return _fwd(x)
        monkeypatch.setattr(bb, 'forward', record)
    model.loss(crops(), None)
    # one teacher forward of the 2 x B global crops; the student forwards each
    # resolution group once (globals together, locals together)
    assert seen['teacher'] == [(4, 3, 64, 64)]
    assert seen['student'] == [(4, 3, 64, 64), (6, 3, 32, 32)]


def test_loss_equals_manual_path():
    model = build().eval()
    x = crops()
    losses = model.loss(x, None)
    assert {k for k in losses if k.startswith('loss')} == {'loss_dino'}
    for key in ('mon_target_entropy', 'mon_coverage', 'mon_prototypes_used',
                'mon_agreement'):
        assert key in losses
    t = model.teacher.module
    g_t = torch.cat([t.head(t.backbone(v)) for v in x[:2]])
    g_s = torch.cat([model.head(model.backbone(v)) for v in x])
    ref = DINOLoss(out_dim=16)  # centre 0 as the model's was before the step
    want = ref(g_s, g_t)['loss_dino']
    torch.testing.assert_close(losses['loss_dino'], want, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(model.loss_module.center, ref.center)
    assert model.loss_module.center.abs().sum() > 0  # it moved


def test_gradients_reach_the_student_only_class_token_included():
    model = build().train()
    model.schedule_applied()
    model.loss(crops(), None)['loss_dino'].backward()
    assert model.backbone.cls_token.grad is not None
    assert model.backbone.pos_embed.grad is not None
    assert model.backbone.blocks[0].attn.qkv.weight.grad is not None
    assert all(p.grad is None for p in model.teacher.parameters())


def test_ema_moves_learned_embeddings_too():
    MessageHub.get_current_instance().update_info('max_iters', 10)
    model = build()
    with torch.no_grad():
        model.backbone.cls_token.add_(1.0)
        model.backbone.pos_embed.add_(1.0)
    before = model.teacher.module.backbone.cls_token.clone()
    model.update_teacher()
    # m = 0.004 at step 0: teacher += 0.004 * (student - teacher)
    torch.testing.assert_close(model.teacher.module.backbone.cls_token,
                               before + 0.004, rtol=0, atol=1e-6)


def test_training_refuses_to_run_without_its_hooks():
    MessageHub.get_current_instance().update_info('max_iters', 10)
    model = build().train()
    model.schedule_applied()
    model.loss(crops(), None)
    model.schedule_applied()
    with pytest.raises(RuntimeError, match='FLSLTeacherUpdateHook'):
        model.loss(crops(), None)
    model.update_teacher()
    model.loss(crops(), None)  # both served since the first step
    model.update_teacher()     # ... and now only the teacher update
    with pytest.raises(RuntimeError, match='DINOScheduleHook'):
        model.loss(crops(), None)


def test_needs_the_class_token_and_two_kinds_of_crop():
    bad = copy.deepcopy(TINY)
    bad['backbone']['out_type'] = 'tokens'
    with pytest.raises(ValueError, match="out_type='cls_token'"):
        DINO(**bad)
    with pytest.raises(ValueError, match='DINOMultiCrop'):
        build().eval().loss(crops()[:2], None)
