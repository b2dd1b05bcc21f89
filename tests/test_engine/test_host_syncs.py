"""A real FLSL ``runner.train()`` reads nothing on the host between logging
intervals: no ``item`` / ``float`` / ``int`` / ``bool`` / ``tolist`` / ``numpy`` /
``cpu`` of a tensor in the iterations that are not logged (on a GPU each would
stall the device until its queue drains). Monitors and the non-finite check run
at the logging interval; logs and weights are the same as with every-iteration
monitors."""
import json
import traceback
from pathlib import Path

import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.runner import Runner

REPO = Path(__file__).resolve().parents[2]
CFG = REPO / 'configs/pretrain/flsl_vit-tiny-p16_demo.py'
READS = ('item', 'tolist', 'numpy', 'cpu', '__float__', '__int__', '__bool__')
HOST_BY_DESIGN = '/torch/optim/'


class HostReads:
    """Counts host reads of tensors while ``on`` (with where they came from)."""

    def __init__(self, monkeypatch) -> None:
        self.on, self.calls = False, []
        for name in READS:
            original = getattr(torch.Tensor, name)

            def spy(tensor, *args, _name=name, _original=original, **kwargs):
                if self.on:
                    where = traceback.extract_stack(limit=4)[-2]
                    # PyTorch's AdamW keeps its step counts on the CPU (unless
                    # capturable / fused), with a GPU too: host values by design
                    if HOST_BY_DESIGN not in where.filename.replace('\\', '/'):
                        self.calls.append(
                            f'{_name} at {where.filename}:{where.lineno}')
                return _original(tensor, *args, **kwargs)
            monkeypatch.setattr(torch.Tensor, name, spy)


class CountFrom(Hook):
    priority = 'HIGHEST'  # before every other hook of the iteration

    def __init__(self, reads, iters) -> None:
        self.reads, self.iters = reads, iters

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        self.reads.on = runner.iter in self.iters


class CountTo(Hook):
    priority = 'LOWEST'  # after every other hook of the iteration

    def __init__(self, reads) -> None:
        self.reads = reads

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self.reads.on = False


def make_runner(demo_root, work_dir, **model):
    cfg = Config.fromfile(CFG)
    cfg.merge_from_dict({
        'train_dataloader.dataset.data_root': str(demo_root),
        'train_dataloader.num_workers': 0,
        'train_dataloader.persistent_workers': False,
        'train_dataloader.batch_size': 4,
        'train_dataloader.dataset.indices': 16,  # 4 iterations per epoch
        'train_cfg.max_epochs': 1,
        'default_hooks.logger.interval': 4,  # logs after the 4th (last) only
        'default_hooks.checkpoint.interval': 100,
        'default_hooks.checkpoint.save_last': False,
        'log_processor.window_size': 2,
        'randomness.seed': 0,
    })
    cfg.model.update(model)
    cfg.work_dir = str(work_dir)
    return cfg


def test_no_host_reads_between_logging_intervals(demo_root, tmp_path, monkeypatch):
    reads = HostReads(monkeypatch)
    cfg = make_runner(demo_root, tmp_path / 'run')
    # iterations 1 and 2 (0-based): neither logged, nor an epoch end or a save
    runner = Runner.from_cfg(cfg)
    runner.register_hook(CountFrom(reads, iters=(1, 2)))
    runner.register_hook(CountTo(reads))
    runner.train()
    assert runner.iter == 4
    assert reads.calls == [], '\n'.join(reads.calls)
    # the spy works: the logged iteration (0-based 3) does read on the host
    cfg.work_dir = str(tmp_path / 'run2')
    runner = Runner.from_cfg(cfg)
    runner.register_hook(CountFrom(reads, iters=(3,)))
    runner.register_hook(CountTo(reads))
    runner.train()
    assert reads.calls, 'no host read counted at the logged iteration'


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
