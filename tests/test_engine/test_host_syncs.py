"""A real FLSL ``runner.train()`` makes no host synchronisation between
logging intervals, on both view paths (views made by the loader workers, or
on the training device): counted by :class:`HostSyncHook` over the whole
iteration (preprocessing and views, forwards, loss, backward, clipping,
freezing, the optimiser step, the EMA update, schedules, every hook), raising
at the first one with its stack. Monitors and the non-finite check run at the
logging interval; logs and weights are the same as with every-iteration
monitors."""
import json
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.runner import Runner

from flsl_mm.engine import HostSyncError

REPO = Path(__file__).resolve().parents[2]
CFG = REPO / 'configs/pretrain/flsl_vit-tiny-p16_demo.py'


def make_runner(demo_root, work_dir, config=CFG, **model):
    cfg = Config.fromfile(config)
    cfg.merge_from_dict({
        'train_dataloader.dataset.data_root': str(demo_root),
        'train_dataloader.num_workers': 0,
        'train_dataloader.persistent_workers': False,
        'train_dataloader.pin_memory': True,  # as on a GPU (ignored on the CPU)
        'train_dataloader.batch_size': 4,
        'train_dataloader.dataset.indices': 16,  # 4 iterations per epoch
        'train_cfg.max_epochs': 1,
        'default_hooks.logger.interval': 4,  # logs after the 4th (last) only
        'default_hooks.checkpoint.interval': 100,
        'default_hooks.checkpoint.save_last': False,
        'log_processor.window_size': 2,
        'randomness.seed': 0,
        'custom_hooks': [],
    })
    cfg.model.update(model)
    cfg.work_dir = str(work_dir)
    return cfg


class ReadsTheLoss(Hook):
    """A hook that reads a device value every iteration (a sync)."""

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        float(outputs['loss'])


@pytest.mark.parametrize('views,config,copies', [
    # loader views: 4 view batches + 3 query indices; device views: the
    # images, the plan's two buffers + 3 query indices
    ('loader', CFG, 7),
    ('device', REPO / 'configs/pretrain/flsl_vit-tiny-p16_demo-gpuaug.py', 6),
    ('dino', REPO / 'configs/pretrain/dino_vit-tiny-p16_demo.py', 12)])  # 12 crops
def test_no_host_syncs_between_logging_intervals(demo_root, tmp_path, views, config,
                                                 copies):
    cfg = make_runner(demo_root, tmp_path / 'run', config)
    cfg.custom_hooks = [dict(type='HostSyncHook', raise_on_sync=True)]
    runner = Runner.from_cfg(cfg)
    runner.train()
    assert runner.iter == 4
    summary = json.loads((tmp_path / 'run' / 'host_syncs.json').read_text())
    assert summary['iterations'] == 4 and summary['read_points'] == 1
    assert summary['syncs_outside_read_points'] == 0
    # one pinned, asynchronous copy per input buffer, nothing else
    assert summary['transfers_per_iteration'] == copies
    # the counter sees the logged iteration's reads (the spy works)
    assert summary['syncs_at_read_points'] > 0
    # with the sync injected, the run stops at it, naming where it came from
    cfg = make_runner(demo_root, tmp_path / 'run2', config)
    cfg.custom_hooks = [dict(type='HostSyncHook', raise_on_sync=True)]
    runner = Runner.from_cfg(cfg)
    runner.register_hook(ReadsTheLoss())
    with pytest.raises(HostSyncError, match='training iteration 1') as err:
        runner.train()
    assert 'test_host_syncs.py' in str(err.value) and '__float__' in str(err.value)


def test_a_mid_epoch_checkpoint_is_a_read_point(demo_root, tmp_path):
    """A checkpoint after iteration 2 (ResumableCheckpointHook interval_iters):
    its reads (the losses checked before saving, the RNG states) are allowed
    there; the iterations around it still have none."""
    cfg = make_runner(demo_root, tmp_path / 'run')
    cfg.default_hooks.checkpoint.interval_iters = 2
    cfg.custom_hooks = [dict(type='HostSyncHook', raise_on_sync=True)]
    runner = Runner.from_cfg(cfg)
    runner.train()
    assert (tmp_path / 'run' / 'iter_4.pth').is_file()  # iter_2's is pruned after it
    record = json.loads((tmp_path / 'run' / 'host_syncs.json').read_text())
    points = [r['read_point'] for r in record['per_iteration']]
    assert points == [False, True, False, True]
    assert record['per_iteration'][1]['syncs'] > 0
    assert record['syncs_outside_read_points'] == 0


def scalars(work_dir):
    path = next(Path(work_dir).glob('*/vis_data/scalars.json'))
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return [r for r in rows if 'loss' in r]  # not DenseProbeHook's rows


def test_interval_monitors_leave_training_and_logs_unchanged(demo_root, tmp_path):
    """Monitors every iteration vs at the logging interval: bitwise the same
    weights, the same logged losses and monitors (mon_* log the logged
    iteration's value either way)."""
    runs = {}
    for every in (True, False):
        cfg = make_runner(demo_root, tmp_path / str(every), monitor_every_iter=every)
        runner = Runner.from_cfg(cfg)
        runner.train()
        runs[every] = (runner.model.state_dict(), scalars(tmp_path / str(every)))
    (w_every, log_every), (w_interval, log_interval) = runs[True], runs[False]
    assert all(torch.equal(w_every[k], w_interval[k]) for k in w_every)
    assert len(log_every) == len(log_interval) >= 1
    for a, b in zip(log_every, log_interval):
        for key in a:
            if key.startswith(('loss', 'mon_')):
                assert a[key] == b[key], key


def test_deferred_runtime_info_logs_what_mmengine_logs(demo_root, tmp_path):
    """DeferredRuntimeInfoHook vs mmengine's RuntimeInfoHook (window 2, so the
    window means see the buffered values too): every logged loss and monitor
    equal, weights bitwise equal."""
    runs = {}
    for name, hook in (('deferred', 'DeferredRuntimeInfoHook'),
                       ('mmengine', 'RuntimeInfoHook')):
        cfg = make_runner(demo_root, tmp_path / name)
        cfg.default_hooks.runtime_info = dict(type=hook)
        cfg.default_hooks.logger.interval = 2  # lines after iterations 2 and 4
        runner = Runner.from_cfg(cfg)
        runner.train()
        runs[name] = (runner.model.state_dict(), scalars(tmp_path / name))
    (w_a, log_a), (w_b, log_b) = runs['deferred'], runs['mmengine']
    assert all(torch.equal(w_a[k], w_b[k]) for k in w_a)
    assert len(log_a) == len(log_b) == 2
    for a, b in zip(log_a, log_b):
        keys = [k for k in b if k.startswith(('loss', 'mon_'))]
        assert keys and all(a[k] == b[k] for k in keys), (a, b)
