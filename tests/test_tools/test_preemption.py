"""Preemption as a cluster does it, on the demo pretraining with loader workers:
kill -9 at random moments (some during a checkpoint write), SIGTERM / SIGUSR1 in
the middle of an epoch (one rank of two is enough), Slurm requeue, broken latest
checkpoints. Every resumed run ends bitwise equal to the run that never stopped."""
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from flsl_mm.checkpoints import load_checkpoint_file
from flsl_mm.engine.checkpoint_io import checkpoint_problem
from flsl_mm.engine.preemption import EXIT_PREEMPTED

DEMO = 'configs/pretrain/flsl_vit-tiny-p16_demo.py'
EPOCHS = 3  # 16 images / batch 2 = 8 iterations an epoch


def options(data_root, workers=2, batch=2):
    return ['--cfg-options', f'train_dataloader.dataset.data_root={data_root}',
            f'train_dataloader.batch_size={batch}',
            f'train_dataloader.num_workers={workers}',
            f'train_dataloader.persistent_workers={workers > 0}',
            f'train_cfg.max_epochs={EPOCHS}', 'default_hooks.checkpoint.interval=1',
            'default_hooks.logger.interval=1']


def launch(repo_root, work, data_root, *extra, env=None, log_name=None):
    """tools/train.py in its own process group (a scheduler signals or kills the
    whole job, loader workers included); output to a log file."""
    log = work.parent / (log_name or f'{work.name}_{time.monotonic_ns()}.log')
    cmd = [sys.executable, 'tools/train.py', DEMO, '--work-dir', str(work), *extra,
           *options(data_root)]
    with open(log, 'w') as out:
        proc = subprocess.Popen(cmd, cwd=repo_root, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True,
                                env=dict(env or os.environ, OMP_NUM_THREADS='1'))
    return proc, log


def finish(proc, log, timeout=600):
    rc = proc.wait(timeout=timeout)
    return rc, log.read_text()


def wait_for(condition, proc, timeout=180, poll=0.002):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(poll)
    raise AssertionError('timed out waiting')


def assert_same_weights(a, b):
    wa = load_checkpoint_file(a)['state_dict']
    wb = load_checkpoint_file(b)['state_dict']
    assert wa.keys() == wb.keys() and any(k.startswith('teacher.') for k in wa)
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k


@pytest.fixture(scope='module')
def reference(repo_root, demo_root, tmp_path_factory):
    """The uninterrupted run (2 loader workers, no mid-epoch checkpoints)."""
    work = tmp_path_factory.mktemp('preempt') / 'reference'
    rc, text = finish(*launch(repo_root, work, demo_root))
    assert rc == 0, text[-3000:]
    return work


def test_kill_9_at_random_moments_then_resume_equals_the_uninterrupted_run(
        reference, repo_root, demo_root, tmp_path):
    """Ten kill -9 of the whole job (every third while a checkpoint file is
    being written), each followed by --resume; checkpoints every iteration."""
    work = tmp_path / 'work'
    rng = random.Random(2026)
    kills = 0
    stale = []  # after each kill: the unfinished checkpoint file it left, if any
    while kills < 10:
        had_checkpoint = (work / 'last_checkpoint').is_file()
        proc, log = launch(repo_root, work, demo_root, '--resume',
                           '--checkpoint-iters', '1')
        if kills % 3 == 2:  # as soon as a checkpoint file is being written
            # (after the start-up, which deletes the .tmp of an earlier kill)
            wait_for(lambda: 'ResumableCheckpointHook:' in log.read_text(), proc)
            wait_for(lambda: any(work.glob('*.pth.tmp')), proc)
        else:  # after the first iteration of this launch, at a random moment
            wait_for(lambda: 'Epoch(train)' in log.read_text(), proc)
            time.sleep(rng.uniform(0.0, 1.0))
        assert proc.poll() is None, 'the run ended before it could be killed'
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        kills += 1
        text = log.read_text()
        if stale:  # the previous kill's unfinished file: removed, never used
            assert f'removed 1 unfinished checkpoint file(s) of an interrupted save ' \
                f'in {work}: {stale[-1]}' in text, text[-3000:]
        if had_checkpoint:  # never a fresh start once a checkpoint exists
            assert 'resumed epoch' in text and 'starting from scratch' not in text, \
                text[-3000:]
        last = work / 'last_checkpoint'
        if last.is_file():  # it always names a complete checkpoint
            assert checkpoint_problem(last.read_text()) is None
        left = sorted(p.name for p in work.glob('*.pth.tmp'))
        if kills % 3 == 0 and not left and last.is_file():
            # the kill missed the write (a race the clock decides): leave what a
            # kill in the middle of a write leaves, a checkpoint cut short
            named = Path(last.read_text())
            cut = work / f'iter_{10**6 + kills}.pth.tmp'
            cut.write_bytes(named.read_bytes()[:named.stat().st_size // 2])
            left = [cut.name]
        stale = left
    rc, text = finish(*launch(repo_root, work, demo_root, '--resume',
                              '--checkpoint-iters', '1'))
    assert rc == 0, text[-3000:]
    if stale:
        assert f'removed 1 unfinished checkpoint file(s) of an interrupted save in ' \
            f'{work}: {stale[-1]}' in text
    assert not list(work.glob('*.tmp'))
    assert_same_weights(reference / f'epoch_{EPOCHS}.pth', work / f'epoch_{EPOCHS}.pth')


def stop_mid_epoch(repo_root, work, demo_root, sig, env=None):
    proc, log = launch(repo_root, work, demo_root, env=env)
    wait_for(lambda: '[1][3/8]' in log.read_text(), proc)
    os.killpg(proc.pid, sig)  # the whole job: the loader workers ignore it
    rc, text = finish(proc, log)
    assert rc == EXIT_PREEMPTED, text[-3000:]  # stopped, not finished
    name = signal.Signals(sig).name
    assert f'training stopped by {name} after iteration' in text
    saved = sorted(work.glob('iter_*.pth'))
    assert len(saved) == 1 and not list(work.glob('epoch_*.pth'))
    step = int(saved[0].stem.split('_')[1])
    assert 3 <= step < 8  # in the middle of epoch 1
    assert (work / 'last_checkpoint').read_text() == str(saved[0])
    return step, text


def resume_and_compare(reference, repo_root, work, demo_root, step):
    rc, text = finish(*launch(repo_root, work, demo_root, '--resume'))
    assert rc == 0, text[-3000:]
    assert f'resuming epoch 1 at batch {step + 1} of 8: {step} batches skipped' in text
    assert_same_weights(reference / f'epoch_{EPOCHS}.pth', work / f'epoch_{EPOCHS}.pth')


def test_sigterm_mid_epoch_checkpoints_and_exits_cleanly(reference, repo_root,
                                                         demo_root, tmp_path):
    work = tmp_path / 'work'
    step, text = stop_mid_epoch(repo_root, work, demo_root, signal.SIGTERM)
    assert 'requeue' not in text.lower().split('stop signals:')[-1].split('\n')[0]
    resume_and_compare(reference, repo_root, work, demo_root, step)


def test_sigusr1_under_slurm_requeues_the_job(reference, repo_root, demo_root,
                                              tmp_path):
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    calls = tmp_path / 'scontrol_calls'
    (bin_dir / 'scontrol').write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    (bin_dir / 'scontrol').chmod(0o755)
    env = dict(os.environ, SLURM_JOB_ID='4242', FLSL_MM_REQUEUE='1',
               PATH=f'{bin_dir}{os.pathsep}{os.environ["PATH"]}')
    work = tmp_path / 'work'
    step, text = stop_mid_epoch(repo_root, work, demo_root, signal.SIGUSR1, env=env)
    assert calls.read_text() == 'requeue 4242\n'
    assert 'Slurm job 4242 requeued' in text
    # the requeued job: the same command with --resume (tools/slurm_train.sh)
    resume_and_compare(reference, repo_root, work, demo_root, step)


def test_truncated_latest_checkpoint_falls_back_to_the_newest_good_one(
        reference, repo_root, demo_root, tmp_path):
    work = tmp_path / 'work'
    shutil.copytree(reference, work)
    latest = work / f'epoch_{EPOCHS}.pth'
    assert (work / 'last_checkpoint').read_text() == str(reference / latest.name)
    (work / 'last_checkpoint').write_text(str(latest))
    latest.write_bytes(latest.read_bytes()[:4096])
    rc, text = finish(*launch(repo_root, work, demo_root, '--resume'))
    assert rc == 0, text[-3000:]
    assert f'WARNING: cannot resume from {latest}: truncated' in text
    good = work / f'epoch_{EPOCHS - 1}.pth'
    assert f'resuming from {good}, the newest good checkpoint, instead' in text
    assert f'resumed epoch: {EPOCHS - 1}' in text
    assert_same_weights(reference / latest.name, latest)  # rewritten, exact
    for path in work.glob('*.pth'):
        path.write_bytes(b'')
    rc, text = finish(*launch(repo_root, work, demo_root, '--resume'))
    assert rc != 0 and 'not starting from scratch' in text
    assert all(p.stat().st_size == 0 for p in work.glob('*.pth'))  # nothing trained


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def launch_dist(repo_root, work, data_root, *extra):
    """tools/dist_train.sh CONFIG 2 (torchrun, gloo), 4 images a batch over 2
    ranks: 4 iterations an epoch; one loader worker per rank."""
    log = work.parent / f'{work.name}_{time.monotonic_ns()}.log'
    env = dict(os.environ, PYTHON=sys.executable, PORT=str(free_port()),
               OMP_NUM_THREADS='1')
    cmd = ['bash', 'tools/dist_train.sh', DEMO, '2', '--work-dir', str(work), *extra,
           *options(data_root, workers=1)]
    with open(log, 'w') as out:
        proc = subprocess.Popen(cmd, cwd=repo_root, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, env=env)
    return proc, log


def rank_pid(root: int, rank: int) -> int:
    """The training process of ``rank`` under process ``root``: a descendant
    whose environment says RANK and whose parent is torchrun (torchrun starts
    each rank in a session of its own; loader workers share the rank's
    environment but their parent is the rank)."""
    def read(pid, name):
        with open(f'/proc/{pid}/{name}', 'rb') as f:
            return f.read()

    def parent(pid):
        return int(read(pid, 'stat').rsplit(b')', 1)[1].split()[1])

    children = {}
    for pid in (int(p) for p in os.listdir('/proc') if p.isdigit()):
        try:
            children.setdefault(parent(pid), []).append(pid)
        except OSError:
            continue
    todo, found = [root], []
    while todo:
        pid = todo.pop()
        todo += children.get(pid, [])
        try:
            if f'RANK={rank}'.encode() in read(pid, 'environ').split(b'\0') and \
                    b'torch.distributed.run' in read(parent(pid), 'cmdline'):
                found.append(pid)
        except OSError:
            continue
    assert len(found) == 1, f'rank {rank} processes under {root}: {found}'
    return found[0]


def test_two_processes_stop_together_when_only_one_rank_is_signalled(
        repo_root, demo_root, tmp_path):
    full, work = tmp_path / 'full', tmp_path / 'work'
    rc, text = finish(*launch_dist(repo_root, full, demo_root))
    assert rc == 0, text[-3000:]
    proc, log = launch_dist(repo_root, work, demo_root)
    wait_for(lambda: '[1][2/4]' in log.read_text(), proc)
    os.kill(rank_pid(proc.pid, 1), signal.SIGUSR1)  # rank 1 alone
    rc, text = finish(proc, log)
    assert rc != 0, text[-3000:]  # torchrun: a rank exited with EXIT_PREEMPTED
    assert re.search(rf'exitcode\s*:\s*{EXIT_PREEMPTED}\b', text), text[-3000:]
    assert 'training stopped by a stop signal on another process after iteration' \
        in text  # rank 0 agreed with rank 1
    saved = list(work.glob('iter_*.pth'))
    assert len(saved) == 1 and len(load_checkpoint_file(saved[0])['rng_states']) == 2
    rc, text = finish(*launch_dist(repo_root, work, demo_root, '--resume'))
    assert rc == 0, text[-3000:]
    assert 'batches skipped at the sampler' in text
    assert_same_weights(full / f'epoch_{EPOCHS}.pth', work / f'epoch_{EPOCHS}.pth')
