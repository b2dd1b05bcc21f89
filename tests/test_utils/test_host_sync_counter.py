"""HostSyncCounter: each kind of host synchronisation a GPU would make is caught
on the CPU, with its stack; what does not sync is not counted."""
import numpy as np
import pytest
import torch

from flsl_mm.utils.host_syncs import HostSyncCounter


def count(fn, *host, pinned=()):
    counter = HostSyncCounter()
    counter.mark_host(list(host))
    counter.mark_host(list(pinned), pinned=True)
    counter.counting = True
    with counter:
        fn()
    return counter


DEVICE = torch.arange(6.0)  # a parameter, a buffer, an output: the device
HOST = torch.arange(3)


@pytest.mark.parametrize('what,fn', [
    ('read: item', lambda: DEVICE[0].item()),
    ('read: __bool__', lambda: bool(DEVICE[1] > 0)),
    ('read: __float__', lambda: float(DEVICE.sum())),
    ('read: __int__', lambda: int(DEVICE[2])),
    ('read: __index__', lambda: [0, 1, 2][DEVICE[1].long()]),
    ('read: tolist', lambda: DEVICE.tolist()),
    ('read: numpy', lambda: DEVICE.numpy()),
    ('read: cpu', lambda: DEVICE.cpu()),
    ('read: format', lambda: f'{DEVICE[0]:.3f}'),
    ('read: equal', lambda: torch.equal(DEVICE, DEVICE)),
    ('data-dependent shape: nonzero', lambda: DEVICE.nonzero()),
    ('data-dependent shape: unique', lambda: DEVICE.unique()),
    ('data-dependent shape: where(cond)', lambda: torch.where(DEVICE > 2)),
    ('data-dependent shape: boolean mask', lambda: DEVICE[DEVICE > 2]),
    ('data-dependent shape: boolean mask assignment',
     lambda: DEVICE.clone().__setitem__(DEVICE > 2, 0.0)),
    ('data-dependent shape: repeat_interleave',
     lambda: DEVICE.repeat_interleave(DEVICE.long())),
    ('host tensor: list index', lambda: DEVICE[[0, 2]]),
    ('host tensor: host index', lambda: DEVICE[HOST]),
    ('host tensor: host operand', lambda: DEVICE[:3] + HOST),
    ('blocking copy: torch.tensor(device=)',
     lambda: torch.tensor([1.0, 2.0], device=DEVICE.device)),
    ('blocking copy: as_tensor(numpy, device=)',
     lambda: torch.as_tensor(np.arange(3), device=DEVICE.device)),
    ('blocking copy: to(device)', lambda: HOST.to(DEVICE.device)),
    ('blocking copy: not pinned', lambda: HOST.to(DEVICE.device, non_blocking=True)),
    ('blocking copy: new host data to the device',
     lambda: torch.from_numpy(np.arange(3)).to(DEVICE.device, non_blocking=True)),
])
def test_each_kind_of_sync_is_counted_with_its_stack(what, fn):
    counter = count(fn, HOST)
    assert len(counter.events) == 1, [str(e) for e in counter.events]
    event = counter.events[0]
    assert event.kind == what.split(':')[0]
    assert 'test_host_sync_counter.py' in ''.join(event.stack)  # where it came from


def test_what_does_not_sync_is_not_counted():
    pinned = torch.arange(4)

    def work():
        x = DEVICE * 2 + 1  # device work
        torch.full((), 0.5, device=DEVICE.device).mul_(x.sum())  # a fill, no copy
        DEVICE.clone().fill_(3.0)
        y = pinned.to(DEVICE.device, non_blocking=True)  # the loader's buffer
        DEVICE[:4].clone().index_copy_(0, y, x[:4])  # a device index
        DEVICE[torch.arange(2, device=DEVICE.device)]
        h = torch.tensor([1, 2, 3])  # host work stays on the host
        int(h.sum()), h.tolist(), h[h > 1], torch.as_tensor(np.arange(2)).numpy()
        DEVICE * torch.tensor(2.0)  # a host scalar (0-dim) as an operand
        x.shape, len(x), x.dtype
    counter = count(work, pinned=[pinned])
    assert counter.events == [], [str(e) for e in counter.events]
    assert [t.shape for t in counter.transfers] == [(4,)]


def test_host_tensors_are_followed_through_their_operations():
    def work():
        h = torch.from_numpy(np.arange(4.0))  # host
        h2 = (h * 2)[1:].reshape(3, 1)  # still host: no sync reading it
        float(h2.sum())
        d = h2.to(DEVICE.device)  # the blocking copy: now a device tensor
        float(d.sum())  # reading it is a sync
    counter = count(work)
    assert [e.kind for e in counter.events] == ['blocking copy', 'read']


def test_optimizer_host_step_counts_are_host_memory():
    """PyTorch keeps AdamW's step counts on the host (unfused): reading them is
    no sync; a fused AdamW keeps them on the device (and reads none)."""
    for fused, events in ((False, 0), (True, 0)):
        p = torch.nn.Parameter(torch.ones(3))
        opt = torch.optim.AdamW([p], lr=0.1, fused=fused)
        p.grad = torch.ones(3)
        opt.step()  # the state, made before counting (a resumed run's)
        counter = HostSyncCounter()
        counter.mark_optimizer_state(opt)
        counter.counting = True
        with counter:
            opt.step()
        assert len(counter.events) == events, [str(e) for e in counter.events]


def test_fp16_loss_scaling_reads_nothing_with_the_fused_optimizer():
    """The published fp16 configs' AdamW is fused: the loss scaler hands it the
    inf check on the device. Unfused, the scaler reads it on the host every
    step (one sync per iteration)."""
    from mmengine.config import Config
    cfg = Config.fromfile('configs/pretrain/flsl_vit-small-p16_8xb64-300e_in1k.py')
    assert cfg.optim_wrapper.optimizer.fused is True
    for fused, syncs in ((True, 0), (False, 1)):
        p = torch.nn.Parameter(torch.ones(3))
        opt = torch.optim.AdamW([p], lr=0.1, fused=fused)
        scaler = torch.amp.GradScaler('cpu', init_scale=2.0**8)

        def step():
            scaler.scale((p * 2).sum()).backward()
            scaler.unscale_(opt)  # PerParamGradClipHook's, before clipping
            scaler.step(opt)
            scaler.update()
            opt.zero_grad(set_to_none=True)
        step()
        counter = HostSyncCounter()
        counter.mark_optimizer_state(opt)
        counter.counting = True
        with counter:
            step()
        assert len(counter.events) == syncs, [str(e) for e in counter.events]


def test_from_numpy_is_restored_after_counting():
    original = torch.from_numpy
    count(lambda: torch.from_numpy(np.zeros(2)))
    assert torch.from_numpy is original
