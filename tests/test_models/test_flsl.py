import copy

import pytest
import torch
from mmengine.logging import MessageHub
from mmpretrain.structures import DataSample

from flsl_mm.datasets import query_mask
from flsl_mm.models import FLSL, mean_shift

TINY = dict(
    backbone=dict(type='FLSLViT', arch=dict(embed_dims=32, num_layers=2, num_heads=2),
                  patch_size=16, drop_path_rate=0.1),
    head=dict(type='FLSLHead', in_channels=32, out_channels=16, hidden_channels=24,
              bottleneck_channels=8),
)


def make_batch(b=2, g=64, loc=32):
    torch.manual_seed(1)
    inputs = [torch.randn(b, 3, g, g), torch.randn(b, 3, g, g),
              torch.randn(b, 3, loc, loc), torch.randn(b, 3, loc, loc)]
    samples = []
    for _ in range(b):
        s = DataSample()
        s.set_field([query_mask(4, 2), query_mask(2, 2), query_mask(2, 2)],
                    'query_masks')
        samples.append(s)
    return inputs, samples


def build():
    torch.manual_seed(0)
    return FLSL(**copy.deepcopy(TINY))


def test_teacher_starts_as_student_copy_without_drop_path():
    model = build()
    for (n, p), (_, t) in zip(model._student().named_parameters(),
                              model.teacher.module.named_parameters()):
        torch.testing.assert_close(p, t, msg=n)
    assert all(isinstance(b.drop_path1, torch.nn.Identity)
               for b in model.teacher.module.backbone.blocks)
    assert not isinstance(model.backbone.blocks[1].drop_path1, torch.nn.Identity)
    assert not any(p.requires_grad for p in model.teacher.parameters())


def test_loss_matches_manual_computation():
    model = build().eval()  # eval: no drop path, so the manual path matches
    inputs, samples = make_batch()
    losses = model.loss(inputs, samples)
    assert {k for k in losses if 'loss' in k} == \
        {'loss_meanshift', 'loss_kmeans', 'loss_vmr'}
    # manual: per view, queries at the mask, SA within the view, CA to teacher
    zt = model.teacher.module.backbone(inputs[0])
    qs, sas, cas = [], [], []
    for v, x in enumerate(inputs[1:]):
        z = model.backbone(x)
        for b in range(x.shape[0]):
            mask = torch.as_tensor(samples[b].query_masks[v])
            q = z[b][mask]
            qs.append(q)
            sas.append(mean_shift(q, z[b], model.beta_sa))
            cas.append(mean_shift(q, zt[b], model.beta_ca))
    # order differs (ours groups views), losses are means so compare sums
    q, sa, ca = torch.cat(qs), torch.cat(sas), torch.cat(cas)
    expected = model.loss_module(q, sa, model.head(sa), model.teacher.module.head(ca))
    for k in expected:
        assert losses[k].item() == pytest.approx(expected[k].item(), rel=1e-5)


def test_gradients_reach_student_only():
    model = build()
    inputs, samples = make_batch()
    sum(model.loss(inputs, samples).values()).backward()
    assert model.backbone.patch_embed.proj.weight.grad is not None
    assert model.head.mlp[0].weight.grad is not None
    assert all(p.grad is None for p in model.teacher.parameters())


def test_teacher_moves_only_by_scheduled_ema():
    model = build()
    hub = MessageHub.get_current_instance()
    hub.update_info('max_iters', 10)
    teacher0 = {k: v.clone() for k, v in model.teacher.module.named_parameters()}
    with torch.no_grad():
        for p in model.backbone.parameters():
            p.add_(1.0)
    model.update_teacher()  # iteration 0: student weight m = 0.004
    for k, p in model.teacher.module.named_parameters():
        src = dict(model._student().named_parameters())[k]
        torch.testing.assert_close(p, 0.996 * teacher0[k] + 0.004 * src)
    # iteration 5 of 10: m = 0.004 * (1 + cos(pi/2)) / 2 = 0.002
    # (the step count as a resume restores it: the buffer from the checkpoint,
    # the host's copy that the update reads from it)
    state = model.teacher.state_dict()
    state['steps'] = torch.tensor(5)
    model.teacher.load_state_dict(state)
    assert model.teacher.host_steps == 5
    before = {k: v.clone() for k, v in model.teacher.module.named_parameters()}
    model.update_teacher()
    for k, p in model.teacher.module.named_parameters():
        src = dict(model._student().named_parameters())[k]
        torch.testing.assert_close(p, 0.998 * before[k] + 0.002 * src)
    assert model.teacher.host_steps == 6 and int(model.teacher.steps) == 6


def test_teacher_initial_weight():
    """prod (1 - m_i): the weight the teacher's initial parameters keep."""
    ema = build().teacher
    assert ema.initial_weight(0, 10) == 1.0
    # m_0 = 0.004, m_1 = 0.004 * (1 + cos(pi / 4)) / 2 over 4 iterations
    m1 = 0.004 * (1 + 0.5 ** 0.5) / 2
    assert ema.initial_weight(2, 4) == pytest.approx(0.996 * (1 - m1), rel=1e-12)
    # with a teacher of all-zero initial parameters and a constant student of ones,
    # the EMA moves the teacher to exactly 1 - initial_weight
    model = build()
    MessageHub.get_current_instance().update_info('max_iters', 80)
    with torch.no_grad():
        for p in model.teacher.module.parameters():
            p.zero_()
        for p in model._student().parameters():
            p.fill_(1.0)
    for _ in range(80):
        model.update_teacher()
    w = model.teacher.initial_weight(80, 80)
    assert w == pytest.approx(0.8502, abs=1e-4)  # the short-run case of the docs
    p = next(model.teacher.module.parameters())
    torch.testing.assert_close(p, torch.full_like(p, 1 - w))


def test_mask_size_mismatch_is_explained():
    model = build()
    inputs, samples = make_batch()
    samples[0].query_masks[0] = query_mask(5, 2)
    with pytest.raises(ValueError, match='view 0: query masks of different lengths'):
        model.loss(inputs, samples)
    for s in samples:  # the whole batch: against the view's token grid
        s.query_masks[0] = query_mask(5, 2)
    with pytest.raises(ValueError, match='query mask of student view 0 has 25 '
                       'entries but the view has 16 tokens'):
        model.loss(inputs, samples)


def test_foreach_ema_equals_per_tensor_update_without_host_syncs(monkeypatch):
    model = build()
    MessageHub.get_current_instance().update_info('max_iters', 10)
    with torch.no_grad():
        for p in model.backbone.parameters():
            p.add_(torch.randn_like(p))
    model.teacher.steps.fill_(3)
    model.teacher.host_steps = 3  # what loading a checkpoint with steps=3 sets
    # the former per-tensor path: avg_func on every floating-point tensor
    ref = copy.deepcopy(model.teacher)
    src = model._student().state_dict()
    for key, avg in ref.avg_parameters.items():
        if avg.dtype.is_floating_point:
            ref.avg_func(avg.data, src[key].data, 3)

    def refuse(*_a, **_k):
        raise AssertionError('host sync')
    monkeypatch.setattr(torch.Tensor, 'item', refuse)
    monkeypatch.setattr(torch.Tensor, '__bool__', refuse)
    monkeypatch.setattr(torch.Tensor, '__float__', refuse)
    monkeypatch.setattr(torch.Tensor, '__int__', refuse)  # the step count
    model.update_teacher()
    monkeypatch.undo()
    for (k, a), (_, b) in zip(model.teacher.module.state_dict().items(),
                              ref.module.state_dict().items()):
        assert torch.equal(a, b), k  # bitwise
    assert int(model.teacher.steps) == 4


def test_training_refuses_to_run_without_the_correctness_hooks():
    model = build().train()
    MessageHub.get_current_instance().update_info('max_iters', 10)
    inputs, samples = make_batch()
    # both hooks serving: any number of steps
    for _ in range(3):
        model.schedule_applied()
        model.loss(inputs, samples)
        model.update_teacher()
    # the teacher update hook dropped: the next step says so
    model.schedule_applied()
    model.loss(inputs, samples)
    model.schedule_applied()
    with pytest.raises(RuntimeError, match='FLSLTeacherUpdateHook'):
        model.loss(inputs, samples)
    model = build().train()
    model.loss(inputs, samples)  # first step: nothing to check yet
    model.update_teacher()
    with pytest.raises(RuntimeError, match='FLSLScheduleHook'):
        model.loss(inputs, samples)
    # outside training (eval / analysis) nothing is checked
    model.eval()
    model.loss(inputs, samples)
    model.loss(inputs, samples)


def test_loss_terms_are_float32_under_bf16_autocast():
    """Under bf16 autocast (``optim_wrapper.dtype='bfloat16'``; here CPU autocast)
    the backbone runs in bf16 while every loss term is computed in float32 and
    stays within 1e-2 (relative) of the float32 loss (measured: <= 1.4e-3)."""
    MessageHub.get_current_instance().update_info('max_iters', 10)
    model = build().eval()  # no drop path: both passes see the same network
    inputs, samples = make_batch()
    ref = model.loss(inputs, samples)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        amp = model.loss(inputs, samples)
    terms = ('loss_meanshift', 'loss_kmeans', 'loss_vmr')
    for key in terms:
        assert amp[key].dtype == torch.float32, key
        rel = (amp[key] - ref[key]).abs() / ref[key].abs()
        assert rel < 1e-2, (key, float(rel))
    assert any(amp[k] != ref[k] for k in terms)  # bf16 really ran
    sum(amp[k] for k in terms).backward()
    assert model.backbone.patch_embed.proj.weight.grad.dtype == torch.float32
