import math
from types import SimpleNamespace

import pytest
import torch

from flsl_mm.engine import (FLSLScheduleHook, FreezeLastLayerHook,
                            NonFiniteLossHook, PerParamGradClipHook)
from flsl_mm.engine.hooks.flsl_schedule_hook import cosine_value
from flsl_mm.engine.hooks.grad_hooks import clip_grad_per_param
from flsl_mm.models import FLSLHead, FLSLLoss
from flsl_mm.models.losses.flsl_loss import teacher_temp_at


def test_teacher_temp_warmup_is_linspace_then_constant():
    import numpy as np
    ref = np.concatenate([np.linspace(0.04, 0.07, 30), np.full(270, 0.07)])
    for e in (0, 1, 15, 29, 30, 299):
        assert teacher_temp_at(e, 0.04, 0.07, 30) == pytest.approx(ref[e])


def test_cosine_schedule_endpoints_and_midpoint():
    assert cosine_value(0.5, 0.03, 0, 100) == pytest.approx(0.5)
    assert cosine_value(0.5, 0.03, 50, 100) == pytest.approx((0.5 + 0.03) / 2)
    assert cosine_value(0.5, 0.03, 100, 100) == pytest.approx(0.03)


class _Hub:
    def __init__(self):
        self.scalars = {}

    def update_scalar(self, k, v):
        self.scalars[k] = v


def test_schedule_hook_sets_model_attributes():
    # tau_t's schedule is the loss's own (one place): 0.04 -> 0.07 over 3 epochs
    loss = FLSLLoss(out_dim=4, upsilon=0.03, teacher_temp=0.07,
                    warmup_teacher_temp=0.04, warmup_teacher_temp_epochs=3)
    served = []
    model = SimpleNamespace(loss_module=loss, beta_sa=0.1, beta_ca=0.2,
                            schedule_applied=lambda: served.append(1),
                            monitor_every_iter=False)
    runner = SimpleNamespace(model=model, iter=0, max_iters=10, epoch=0,
                             message_hub=_Hub(), hooks=[])
    hook = FLSLScheduleHook(start_intraview=1.0, start_beta_ca=0.4)
    hook.before_train(runner)
    hook.before_train_iter(runner, 0)
    assert loss.upsilon == pytest.approx(1.0) and model.beta_ca == pytest.approx(0.4)
    assert model.beta_sa == 0.1 and loss.current_teacher_temp == pytest.approx(0.04)
    assert runner.message_hub.scalars['train/teacher_temp'] == pytest.approx(0.04)
    runner.iter, runner.epoch = 5, 1
    hook.before_train_iter(runner, 0)
    assert loss.upsilon == pytest.approx((1.0 + 0.03) / 2)
    assert model.beta_ca == pytest.approx(0.3)
    assert loss.current_teacher_temp == pytest.approx(0.055)
    runner.epoch = 7
    hook.before_train_iter(runner, 0)
    assert loss.current_teacher_temp == pytest.approx(0.07) and len(served) == 3
    assert model.monitors_due is False  # no logger: nothing logs, no monitors
    model.monitor_every_iter = True
    hook.before_train_iter(runner, 0)
    assert model.monitors_due is True


def test_dino_schedule_hook_moves_tau_t_per_epoch_only():
    from flsl_mm.engine import DINOScheduleHook
    from flsl_mm.models import DINOLoss
    loss = DINOLoss(out_dim=4, teacher_temp=0.07, warmup_teacher_temp=0.04,
                    warmup_teacher_temp_epochs=3)
    served = []
    model = SimpleNamespace(loss_module=loss, schedule_applied=lambda: served.append(1),
                            monitor_every_iter=False)
    runner = SimpleNamespace(model=model, iter=0, max_iters=10, epoch=0,
                             message_hub=_Hub(), hooks=[])
    hook = DINOScheduleHook()
    hook.before_train(runner)
    for epoch, temp in ((0, 0.04), (1, 0.055), (2, 0.07), (9, 0.07)):
        runner.epoch = epoch
        hook.before_train_iter(runner, 0)
        assert loss.current_teacher_temp == pytest.approx(temp)
        assert runner.message_hub.scalars['train/teacher_temp'] == pytest.approx(temp)
    assert len(served) == 4 and 'train/upsilon' not in runner.message_hub.scalars
    # FLSL's cosine schedules have nothing to act on in DINO: refused, not ignored
    for kw in (dict(start_intraview=1.0), dict(start_beta_sa=0.1)):
        with pytest.raises(ValueError, match='has no (upsilon|beta_sa) to schedule'):
            FLSLScheduleHook(**kw).before_train(runner)


def test_schedule_hook_takes_no_teacher_temperature():
    # it used to overwrite the loss's teacher_temp with its own argument
    with pytest.raises(TypeError):
        FLSLScheduleHook(teacher_temp=0.04)


def test_per_param_clip():
    a = torch.nn.Parameter(torch.zeros(2))
    b = torch.nn.Parameter(torch.zeros(2))
    a.grad = torch.tensor([3.0, 4.0])  # norm 5 -> clipped to 3
    b.grad = torch.tensor([0.3, 0.4])  # norm .5 -> untouched
    norms = clip_grad_per_param([a, b], 3.0)
    torch.testing.assert_close(norms, torch.tensor([5.0, 0.5]))
    assert a.grad.norm().item() == pytest.approx(3.0, rel=1e-5)
    torch.testing.assert_close(b.grad, torch.tensor([0.3, 0.4]))


def _reference_clip(grads, max_norm):
    """The reference's per-parameter loop (one host sync per parameter)."""
    for g in grads:
        norm = g.norm(2)
        coef = max_norm / (norm + 1e-6)
        if coef < 1:
            g.mul_(coef)


def no_host_sync(monkeypatch):
    """From here on, any tensor -> Python scalar conversion (a device-to-host sync
    on a GPU) raises, until ``monkeypatch.undo()``."""
    def refuse(*_a, **_k):
        raise AssertionError('host sync')
    for name in ('item', 'tolist', '__float__', '__int__', '__bool__'):
        monkeypatch.setattr(torch.Tensor, name, refuse)


def test_per_param_clip_equals_reference_without_host_syncs(monkeypatch):
    gen = torch.Generator().manual_seed(0)
    shapes = [(384, 384), (384,), (1152, 384), (2048,), (3,), (4096, 256)]
    params = [torch.nn.Parameter(torch.zeros(s)) for s in shapes]
    for i, p in enumerate(params):  # some above, some below the threshold
        p.grad = torch.randn(p.shape, generator=gen) * (0.002 if i % 2 else 0.3)
    ref = [p.grad.clone() for p in params]
    _reference_clip(ref, 3.0)
    no_host_sync(monkeypatch)
    clip_grad_per_param(params, 3.0)
    monkeypatch.undo()
    for r, p in zip(ref, params):
        assert torch.equal(r, p.grad)  # bitwise
    clipped = [p.grad.norm() < 3.0 + 1e-3 for p in params]
    assert all(clipped)


def _amp_runner(monkeypatch, init_scale=1024.0, **wrapper_kwargs):
    """A real mmengine AmpOptimWrapper (its CUDA check bypassed) with torch's CPU
    GradScaler around a fused SGD (lr 1: the update is minus the gradient)."""
    import mmengine.optim.optimizer.amp_optimizer_wrapper as amp_mod
    monkeypatch.setattr(amp_mod, 'is_cuda_available', lambda: True)
    model = torch.nn.Module()
    model.p = torch.nn.Parameter(torch.zeros(4))
    model.q = torch.nn.Parameter(torch.zeros(4))
    opt = torch.optim.SGD(model.parameters(), lr=1.0, fused=True)
    assert opt._step_supports_amp_scaling  # the scaler leaves unscaling to it
    wrapper = amp_mod.AmpOptimWrapper(optimizer=opt, **wrapper_kwargs)
    wrapper.loss_scaler = torch.amp.GradScaler('cpu', init_scale=init_scale)
    return SimpleNamespace(model=model, optim_wrapper=wrapper)


def test_clipping_sees_unscaled_gradients_under_amp_with_a_fused_optimizer(
        monkeypatch):
    runner = _amp_runner(monkeypatch)
    model, wrapper = runner.model, runner.optim_wrapper
    hook = PerParamGradClipHook(max_norm=3.0)
    hook.before_train(runner)
    gp = torch.tensor([0.3, 0.0, 0.4, 0.0])   # norm 0.5: kept
    gq = torch.tensor([6.0, 8.0, 0.0, 0.0])   # norm 10: clipped to 3
    wrapper.update_params((model.p * gp).sum() + (model.q * gq).sum())
    torch.testing.assert_close(model.p.detach(), -gp)
    torch.testing.assert_close(model.q.detach(), -gq * 3.0 / (10.0 + 1e-6))
    hook.after_train(runner)
    assert 'step' not in vars(wrapper)  # the wrapper's own step again


def test_mmengine_clip_grad_beside_per_param_clipping_is_refused(monkeypatch):
    runner = _amp_runner(monkeypatch, clip_grad=dict(max_norm=1.0))
    with pytest.raises(ValueError, match='would clip again'):
        PerParamGradClipHook().before_train(runner)


def _runner_with_optimizer(model, epoch=0):
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad],
                            lr=0.1, weight_decay=0.5)
    return SimpleNamespace(model=model, optim_wrapper=SimpleNamespace(optimizer=opt),
                           epoch=epoch), opt


def test_freeze_last_layer_drops_grads_in_first_epoch_only():
    model = torch.nn.Module()
    model.head = FLSLHead(in_channels=4, out_channels=3, hidden_channels=5,
                          bottleneck_channels=2, norm_last_layer=False)
    runner, opt = _runner_with_optimizer(model)
    hook = FreezeLastLayerHook(freeze_last_layer=1)
    hook.before_train(runner)
    v = model.head.last_layer.parametrizations.weight.original1
    before = v.detach().clone()
    model.head(torch.randn(2, 4)).sum().backward()
    opt.step()
    torch.testing.assert_close(v.detach(), before)  # neither moved nor decayed
    assert model.head.mlp[0].weight.grad is not None
    runner.epoch = 1
    opt.zero_grad()
    model.head(torch.randn(2, 4)).sum().backward()
    opt.step()
    assert not torch.equal(v.detach(), before)
    hook.after_train(runner)


def test_grad_clip_hook_runs_before_step():
    model = torch.nn.Linear(2, 1, bias=False)
    runner, opt = _runner_with_optimizer(model)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    runner.optim_wrapper.optimizer = opt
    hook = PerParamGradClipHook(max_norm=1.0)
    hook.before_train(runner)
    w0 = model.weight.detach().clone()
    model.weight.grad = torch.tensor([[30.0, 40.0]])
    opt.step()
    torch.testing.assert_close(model.weight.detach(), w0 - torch.tensor([[0.6, 0.8]]),
                               rtol=1e-4, atol=1e-5)
    hook.after_train(runner)


def test_non_finite_loss_names_terms():
    hook = NonFiniteLossHook(every_iter=True)
    runner = SimpleNamespace(iter=6, epoch=0)
    outputs = dict(loss=torch.tensor(math.nan), loss_meanshift=torch.tensor(0.1),
                   loss_kmeans=torch.tensor(math.nan), loss_vmr=torch.tensor(0.2))
    with pytest.raises(FloatingPointError) as err:
        hook.after_train_iter(runner, 0, outputs=outputs)
    msg = str(err.value)
    assert 'iteration 7' in msg
    for name in ('loss_meanshift=0.1', 'loss_kmeans=nan', 'loss_vmr=0.2'):
        assert name in msg
    hook.after_train_iter(runner, 0, outputs=dict(loss=torch.tensor(1.0)))


def test_non_finite_loss_on_one_rank_is_named_on_every_rank(monkeypatch):
    """The hook all-reduces the count of ranks with a bad loss; a healthy rank
    raises too (simulated world of 2 where the other rank is bad)."""
    import flsl_mm.engine.hooks.non_finite_loss_hook as mod
    monkeypatch.setattr(mod, 'get_world_size', lambda: 2)
    monkeypatch.setattr(mod, 'all_reduce', lambda t: t.add_(1))  # other rank: 1
    with pytest.raises(FloatingPointError, match='another process'):
        NonFiniteLossHook(every_iter=True).after_train_iter(
            SimpleNamespace(iter=0, epoch=0), 0, outputs=dict(loss=torch.tensor(1.0)))
    monkeypatch.setattr(mod, 'all_reduce', lambda t: None)  # nobody bad
    NonFiniteLossHook(every_iter=True).after_train_iter(
        SimpleNamespace(iter=0, epoch=0), 0, outputs=dict(loss=torch.tensor(1.0)))


def test_non_finite_loss_is_read_at_host_read_points_only(monkeypatch):
    """Between host-read points the hook only buffers (no host read); at the next
    point it raises for the first bad iteration, naming its terms."""
    import flsl_mm.engine.hooks.non_finite_loss_hook as mod
    due = {'now': False}
    monkeypatch.setattr(mod, 'host_read_due', lambda runner, idx: due['now'])
    hook = NonFiniteLossHook()
    no_host_sync(monkeypatch)
    for it, value in enumerate([1.0, math.inf, math.nan]):
        hook.after_train_iter(SimpleNamespace(iter=10 + it, epoch=2), it, outputs=dict(
            loss=torch.tensor(value), loss_vmr=torch.tensor(value + 1)))
    monkeypatch.undo()
    monkeypatch.setattr(mod, 'host_read_due', lambda runner, idx: True)
    with pytest.raises(FloatingPointError,
                       match=r'loss inf: loss_vmr=inf at iteration 12 \(epoch 3\)'):
        hook.after_train_iter(SimpleNamespace(iter=13, epoch=2), 3,
                              outputs=dict(loss=torch.tensor(2.0)))
    hook.check()  # the buffer was emptied by the check that raised


def test_rng_states_of_another_world_size_are_not_restored_with_a_warning():
    from flsl_mm.engine.hooks.rng_state_hook import RNGStateHook, get_rng_state
    warnings = []
    runner = SimpleNamespace(logger=SimpleNamespace(
        warning=lambda msg, *a: warnings.append(msg % a)), iter=4)
    hook = RNGStateHook()
    hook.after_load_checkpoint(runner, dict(rng_states=[get_rng_state()] * 2))
    assert hook._pending is None
    assert 'RNG states of 2 process(es), this run has 1' in warnings[0]
    hook.after_load_checkpoint(runner, dict(rng_states=[get_rng_state()]))
    assert hook._pending is not None and len(warnings) == 1


class FakeCUDA:
    """torch.cuda as seen by a rank on device ``current`` of ``visible`` GPUs."""

    def __init__(self, monkeypatch, visible: int, current: int) -> None:
        self.visible, self.current, self.restored = visible, current, []
        for name in ('is_available', 'is_initialized'):
            monkeypatch.setattr(torch.cuda, name, lambda: True)
        monkeypatch.setattr(torch.cuda, 'current_device', lambda: self.current)
        monkeypatch.setattr(torch.cuda, 'get_rng_state',
                            lambda device='cuda': torch.tensor([self.current]))
        monkeypatch.setattr(
            torch.cuda, 'get_rng_state_all',
            lambda: [torch.tensor([i]) for i in range(self.visible)])
        monkeypatch.setattr(torch.cuda, 'set_rng_state',
                            lambda state, device='cuda': self.restored.append(
                                int(state[0])))

        def set_all(states):
            if len(states) > self.visible:
                raise IndexError('list index out of range')
            self.restored.extend(int(s[0]) for s in states)
        monkeypatch.setattr(torch.cuda, 'set_rng_state_all', set_all)


def test_cuda_rng_state_is_the_current_devices(monkeypatch):
    """Saved on device 3 of 8 visible GPUs, resumed where 1 GPU is visible (it is
    device 0 there): no IndexError, the saved generator state is restored."""
    from flsl_mm.engine.hooks.rng_state_hook import get_rng_state, set_rng_state
    FakeCUDA(monkeypatch, visible=8, current=3)
    state = get_rng_state()
    assert int(state['cuda'][0]) == 3  # one state, not eight
    resumed = FakeCUDA(monkeypatch, visible=1, current=0)
    assert set_rng_state(state) is True
    assert resumed.restored == [3]


def test_cuda_rng_states_of_older_checkpoints(monkeypatch):
    """Checkpoints of the earlier rule hold every visible GPU's state: the current
    device's one is restored; one that does not exist is reported, not raised."""
    from flsl_mm.engine.hooks.rng_state_hook import (RNGStateHook, get_rng_state,
                                                     set_rng_state)
    FakeCUDA(monkeypatch, visible=8, current=0)
    old = dict(get_rng_state(), cuda=[torch.tensor([10 + i]) for i in range(8)])
    fake = FakeCUDA(monkeypatch, visible=8, current=5)
    assert set_rng_state(old) is True and fake.restored == [15]
    short = dict(old, cuda=[torch.tensor([10])])
    fake = FakeCUDA(monkeypatch, visible=2, current=1)
    assert set_rng_state(short) is False and fake.restored == []
    warnings = []
    runner = SimpleNamespace(logger=SimpleNamespace(
        warning=lambda msg, *a: warnings.append(msg % a)), iter=4)
    hook = RNGStateHook()
    hook.after_load_checkpoint(runner, dict(rng_states=[short]))
    hook.before_train(runner)
    assert 'CUDA generator is re-seeded' in warnings[0]


def test_rng_states_are_gathered_before_the_checkpoint_hook_saves():
    """The gather (a collective) happens in after_train_epoch on every rank, at a
    priority above CheckpointHook's; rank 0's save then only reads the result."""
    from mmengine.hooks import CheckpointHook
    from mmengine.runner import get_priority

    from flsl_mm.engine.hooks.rng_state_hook import RNGStateHook
    assert get_priority(RNGStateHook.priority) < get_priority(CheckpointHook.priority)
    hook = RNGStateHook()
    runner = SimpleNamespace(iter=8, hooks=[], logger=None)
    hook.after_train_epoch(runner)
    ckpt = {}
    hook.before_save_checkpoint(runner, ckpt)
    assert ckpt['rng_states'] is hook._gathered[1] and len(ckpt['rng_states']) == 1
