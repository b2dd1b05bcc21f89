"""ResumableEpochBasedTrainLoop + ResumableCheckpointHook on a toy model, in
process: a run stopped after a mid-epoch checkpoint and resumed equals the run
that never stopped, without loading the batches already done; stop signals;
pruning and file names; a changed batch size is refused; mmengine's own loops
(fine-tuning) stop on a signal and resume as documented."""
import os
import random
import signal

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from mmengine.registry import DATASETS, HOOKS, MODELS
from mmengine.runner import Runner
from torch.utils.data import Dataset

from flsl_mm.engine.preemption import TrainingPreempted
from flsl_mm.checkpoints import load_checkpoint_file

LOADS = []
NUM = 24  # samples; batch 4 -> 6 iterations an epoch


@DATASETS.register_module(force=True)
class ResumeToyDataset(Dataset):
    """Draws its 'augmentation' from Python, numpy and torch, like the views."""
    metainfo = dict()

    def __len__(self):
        return NUM

    def __getitem__(self, index):
        LOADS.append(index)
        aug = [random.random(), float(np.random.rand()), float(torch.rand(()))]
        return dict(inputs=torch.tensor([index / NUM] + aug))


@MODELS.register_module(force=True)
class ResumeToyModel(BaseModel):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(4, 1)

    def forward(self, inputs, mode='loss'):
        x = F.dropout(inputs, 0.3, self.training)  # main-process stream (drop path)
        return dict(loss=self.lin(x).pow(2).mean())


@HOOKS.register_module(force=True)
class StopAfterIter(Hook):
    """Stands for a kill: ends the process's training right after iteration
    ``at`` (after every other hook, the checkpoint written)."""
    priority = 'LOWEST'

    def __init__(self, at):
        self.at = at

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if runner.iter + 1 == self.at:
            raise KeyboardInterrupt


@HOOKS.register_module(force=True)
class SignalAt(Hook):
    """Sends this process ``sig`` in iteration ``at``, and again while the
    checkpoint is being saved."""

    def __init__(self, at, sig='SIGUSR1'):
        self.at, self.sig = at, getattr(signal, sig)

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if runner.iter + 1 == self.at:
            os.kill(os.getpid(), self.sig)

    def before_save_checkpoint(self, runner, checkpoint):
        os.kill(os.getpid(), self.sig)


RUNS = [0]


def runner(work_dir, *, epochs=2, batch=4, hooks=(), resume_from=None,
           loop='ResumableEpochBasedTrainLoop', **ckpt):
    RUNS[0] += 1
    ckpt.setdefault('interval', 1)
    train_cfg = dict(type=loop, max_epochs=epochs)
    sampler = dict(type='DefaultSampler', shuffle=True)
    if loop == 'IterBasedTrainLoop':  # as the segmentation configs
        train_cfg = dict(type=loop, max_iters=epochs * NUM // batch)
        sampler = dict(type='InfiniteSampler', shuffle=True)
        ckpt.update(by_epoch=False, interval=train_cfg['max_iters'])
    return Runner(
        model=dict(type='ResumeToyModel'), work_dir=str(work_dir),
        experiment_name=f'resume_toy_{RUNS[0]}', default_scope='mmengine',
        train_dataloader=dict(dataset=dict(type='ResumeToyDataset'),
                              sampler=sampler,
                              batch_size=batch, num_workers=0,
                              collate_fn=dict(type='default_collate')),
        train_cfg=train_cfg,
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.05, momentum=0.9)),
        default_hooks=dict(checkpoint=dict(type='ResumableCheckpointHook', **ckpt),
                           logger=dict(type='LoggerHook', interval=1)),
        custom_hooks=[dict(type='RNGStateHook'), *hooks],
        randomness=dict(seed=0), resume=resume_from is not None,
        load_from=resume_from)


def state(path):
    ckpt = load_checkpoint_file(path)
    return ckpt['state_dict'], ckpt['optimizer']['state']


def assert_same_run(a, b):
    (wa, oa), (wb, ob) = state(a), state(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    for i in oa:
        assert torch.equal(oa[i]['momentum_buffer'], ob[i]['momentum_buffer'])


@pytest.fixture(scope='module')
def uninterrupted(tmp_path_factory):
    work = tmp_path_factory.mktemp('toy_full')
    runner(work).train()
    return work


def test_mid_epoch_resume_is_exact_and_loads_only_the_rest(uninterrupted, tmp_path):
    with pytest.raises(KeyboardInterrupt):
        runner(tmp_path, interval_iters=4,
               hooks=[dict(type='StopAfterIter', at=8)]).train()
    assert (tmp_path / 'iter_8.pth').is_file()  # epoch 2, batch 2 of 6
    assert (tmp_path / 'last_checkpoint').read_text() == str(tmp_path / 'iter_8.pth')
    del LOADS[:]
    runner(tmp_path, resume_from=str(tmp_path / 'iter_8.pth')).train()
    assert len(LOADS) == NUM * 2 - 8 * 4  # the 8 batches done were not loaded
    assert_same_run(uninterrupted / 'epoch_2.pth', tmp_path / 'epoch_2.pth')


def test_stop_signal_saves_once_at_the_iteration_end_and_resumes_exactly(
        uninterrupted, tmp_path):
    previous = signal.getsignal(signal.SIGUSR1)
    run = runner(tmp_path, hooks=[dict(type='SignalAt', at=3)])
    with pytest.raises(TrainingPreempted, match='stopped by SIGUSR1 after iteration 3'):
        run.train()
    run.call_hook('after_run')
    assert signal.getsignal(signal.SIGUSR1) == previous  # handler put back
    names = sorted(p.name for p in tmp_path.glob('*.pth'))
    assert names == ['iter_3.pth']  # one checkpoint, the second signal changed nothing
    assert load_checkpoint_file(tmp_path / 'iter_3.pth')['meta']['iter'] == 3
    runner(tmp_path, resume_from=str(tmp_path / 'iter_3.pth')).train()
    assert_same_run(uninterrupted / 'epoch_2.pth', tmp_path / 'epoch_2.pth')


@pytest.mark.parametrize('loop', ['EpochBasedTrainLoop', 'IterBasedTrainLoop'])
def test_fine_tuning_loops_stop_on_a_signal_and_resume_as_documented(loop, tmp_path):
    """mmengine's loops (detection: by epoch, segmentation: by iteration) get the
    signal checkpoint and the clean stop; a resume repeats data exactly as
    docs/pretraining.md says (the epoch loop restarts the epoch's data, the
    iteration loop replays the loader up to the checkpoint)."""
    run = runner(tmp_path, loop=loop, hooks=[dict(type='SignalAt', at=3)])
    with pytest.raises(TrainingPreempted, match='stopped by SIGUSR1 after iteration 3'):
        run.train()
    run.call_hook('after_run')
    assert sorted(p.name for p in tmp_path.glob('*.pth')) == ['iter_3.pth']
    assert (tmp_path / 'last_checkpoint').read_text() == str(tmp_path / 'iter_3.pth')
    del LOADS[:]
    resumed = runner(tmp_path, loop=loop, resume_from=str(tmp_path / 'iter_3.pth'))
    resumed.train()
    if loop == 'EpochBasedTrainLoop':  # the 3 batches again, the run 3 iterations longer
        assert resumed.iter == 2 * NUM // 4 + 3 and len(LOADS) == 2 * NUM
        assert (tmp_path / 'epoch_2.pth').is_file()
    else:  # the same 12 iterations; the 3 done are loaded again to be skipped
        assert resumed.iter == 2 * NUM // 4 and len(LOADS) == 2 * NUM
        assert (tmp_path / 'iter_12.pth').is_file()


@HOOKS.register_module(force=True)
class RecordFiles(Hook):
    priority = 'LOWEST'
    seen = []

    def _record(self, runner):
        names = sorted(p for p in os.listdir(runner.work_dir) if p.endswith('.pth'))
        last = open(os.path.join(runner.work_dir, 'last_checkpoint')).read()
        assert os.path.isfile(last), last  # what last_checkpoint names exists
        RecordFiles.seen.append((runner.iter, names))

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if os.path.exists(os.path.join(runner.work_dir, 'last_checkpoint')):
            self._record(runner)


def test_names_and_pruning(tmp_path):
    RecordFiles.seen = []
    runner(tmp_path, epochs=3, interval_iters=3, max_keep_mid_ckpts=1,
           max_keep_ckpts=1, hooks=[dict(type='RecordFiles')]).train()
    seen = dict(RecordFiles.seen)
    assert seen[2] == ['iter_3.pth']            # after iteration 3
    assert seen[5] == ['iter_3.pth']            # 6 ends epoch 1: no iter_6, but
    assert seen[6] == ['epoch_1.pth']           # epoch_1 (iter_3 superseded)
    assert seen[8] == ['epoch_1.pth', 'iter_9.pth']
    assert seen[12] == ['epoch_2.pth']          # epoch_1 and iter_9 pruned
    assert sorted(p.name for p in tmp_path.glob('*.pth')) == ['epoch_3.pth']
    assert not list(tmp_path.glob('*.tmp'))


def test_wall_clock_interval_saves_mid_epoch(tmp_path):
    RecordFiles.seen = []
    runner(tmp_path, epochs=1, interval_minutes=1e-9, max_keep_mid_ckpts=2,
           hooks=[dict(type='RecordFiles')]).train()
    seen = dict(RecordFiles.seen)
    assert seen[0] == ['iter_1.pth'] and seen[4] == ['iter_4.pth', 'iter_5.pth']
    assert sorted(p.name for p in tmp_path.glob('*.pth')) == ['epoch_1.pth']


def test_mid_epoch_resume_with_another_batch_size_is_refused(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        runner(tmp_path, interval_iters=2,
               hooks=[dict(type='StopAfterIter', at=2)]).train()
    with pytest.raises(RuntimeError, match='after 2 batches of 4 samples .batch size x '
                       'processes., this run takes 3 per iteration'):
        runner(tmp_path, batch=3, resume_from=str(tmp_path / 'iter_2.pth')).train()


def test_another_batch_size_with_the_same_batch_count_is_refused_too(tmp_path):
    """24 samples in batches of 6 or of 7: 4 batches an epoch either way; the
    batch count alone would let the resume continue at the wrong sample."""
    with pytest.raises(KeyboardInterrupt):
        runner(tmp_path, batch=6, interval_iters=2,
               hooks=[dict(type='StopAfterIter', at=2)]).train()
    with pytest.raises(RuntimeError, match='after 2 batches of 6 samples'):
        runner(tmp_path, batch=7, resume_from=str(tmp_path / 'iter_2.pth')).train()


def test_a_sampler_seed_drawn_at_launch_is_kept_by_the_resume(tmp_path, monkeypatch):
    """diff_rank_seed: the sampler's seed is drawn anew at each launch (mmengine's
    sync_random_seed); the resumed run keeps the interrupted one's, so the epoch
    still visits every sample exactly once."""
    import mmengine.dataset.sampler as sampler_module
    seeds = iter([123, 456, 789, 1011])
    monkeypatch.setattr(sampler_module, 'sync_random_seed', lambda: next(seeds))

    def seeded_runner(**kw):
        r = runner(tmp_path, **kw)
        r._randomness_cfg['diff_rank_seed'] = True
        return r
    del LOADS[:]
    with pytest.raises(KeyboardInterrupt):
        seeded_runner(epochs=1, interval_iters=2,
                      hooks=[dict(type='StopAfterIter', at=2)]).train()
    first = LOADS[:8]  # the 2 batches done
    del LOADS[:]
    seeded_runner(epochs=1, resume_from=str(tmp_path / 'iter_2.pth')).train()
    assert sorted(first + LOADS) == list(range(NUM))  # each sample once


def test_hook_arguments_are_checked():
    from flsl_mm.engine import ResumableCheckpointHook
    with pytest.raises(ValueError, match='unknown signal'):
        ResumableCheckpointHook(signals=('SIGNOPE', ))
    with pytest.raises(ValueError, match='max_keep_mid_ckpts'):
        ResumableCheckpointHook(max_keep_mid_ckpts=0)
    with pytest.raises(ValueError, match='>= 0'):
        ResumableCheckpointHook(interval_iters=-1)
