"""Two-node training on a real Slurm (22.05): two nodes on this machine, each in
its own network namespace with its own hostname and slurmd
(tests/slurm/two_node_cluster.py), 4 gloo processes, 2 per node, launched as a
user does: ``GPUS_PER_NODE=0 TASKS_PER_NODE=2 GPUS=4 tools/slurm_train.sh``
inside ``sbatch --requeue -N2``.

- the demo pretraining on 2 nodes equals a 4-process run on one node bitwise;
  each node logs its ranks and the rendezvous (the first node); checkpoints are
  written once, into the shared work dir;
- ``scancel --signal=USR1`` to the whole job, the time limit's signal, and a
  node lost (its training processes SIGKILLed): the job checkpoints (signals)
  or keeps its last good checkpoint (crash), requeues itself and ends bitwise
  equal to the uninterrupted run; after the crash no process of the other node
  is left behind;
- the demo Mask R-CNN fine-tuned on 2 nodes with validation: the COCO AP
  gathered across the nodes equals the AP of tools/test.py on one process.

Needs root, iproute2 and Debian's slurm-wlm and munge: ``.ci/run`` installs them;
in CI (``CI`` set) their absence fails these tests instead of skipping them."""
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from flsl_mm.checkpoints import load_checkpoint_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'slurm'))
from two_node_cluster import TwoNodeCluster, missing_tools  # noqa: E402

DEMO = 'configs/pretrain/flsl_vit-tiny-p16_demo.py'
DET = 'configs/det_coco/mask-rcnn_flsl-vit-tiny-p16_fpn_demo.py'
EPOCHS = 40  # 16 images / (4 processes x 2) = 2 iterations an epoch
FINAL = f'epoch_{EPOCHS}.pth'
TERMINAL = ('COMPLETED', 'FAILED', 'CANCELLED', 'TIMEOUT', 'NODE_FAIL')


def pretrain_options(data_root):
    return ['--cfg-options', f'train_dataloader.dataset.data_root={data_root}',
            'train_dataloader.batch_size=2', 'train_dataloader.num_workers=0',
            'train_dataloader.persistent_workers=False', f'train_cfg.max_epochs={EPOCHS}',
            'default_hooks.checkpoint.interval=1', 'default_hooks.logger.interval=1',
            'custom_hooks=[]', 'env_cfg.dist_cfg.timeout=60']


@pytest.fixture(scope='module')
def cluster(tmp_path_factory):
    problem = None
    if os.geteuid() != 0:
        problem = 'the two-node cluster needs root (network namespaces, slurmd)'
    elif missing_tools():
        problem = (f'{", ".join(missing_tools())} missing: apt-get install slurm-wlm '
                   'munge iproute2 (.ci/run does)')
    if problem:
        if os.environ.get('CI'):
            pytest.fail(problem)
        pytest.skip(problem)
    two = TwoNodeCluster(tmp_path_factory.mktemp('slurm2n'))
    try:
        two.up()
        yield two
    finally:
        two.down()


def submit(cluster, repo_root, work, config=DEMO, options=(), sbatch=(),
           name='flsl2n'):
    log = work.parent / f'{work.name}.slurm.log'
    script = work.parent / f'{work.name}.sbatch'
    args = ' '.join(["'" + a + "'" for a in ['debug', name, config, str(work),
                                            *options]])
    script.write_text(
        '#!/bin/bash\n'
        f'cd {repo_root}\n'
        f'export OMP_NUM_THREADS=1 PYTHON={sys.executable} GPUS=4 GPUS_PER_NODE=0 '
        'TASKS_PER_NODE=2 CPUS_PER_TASK=1 GLOO_SOCKET_IFNAME=flsl0 '
        f'MASTER_PORT={random.randint(20000, 40000)}\n'
        f'bash tools/slurm_train.sh {args}\n')
    job = cluster.run('sbatch', '--parsable', '--requeue', '-N2', '--ntasks=4',
                      '--ntasks-per-node=2', '--cpus-per-task=1', f'--output={log}',
                      '--open-mode=append', *sbatch, str(script))
    return job.split(';')[0], log


def state(cluster, job):
    out = cluster.run('scontrol', 'show', 'job', job)
    return next(w.split('=', 1)[1] for w in out.split() if w.startswith('JobState='))


def wait_state(cluster, job, states, log, timeout=300):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        now = state(cluster, job)
        if now in states:
            return now
        time.sleep(0.3)
    raise AssertionError(f'job {job} never reached {states}:\n' +
                         log.read_text()[-3000:] + cluster.logs())


def wait_log(cluster, job, log, text, timeout=300):
    end = time.monotonic() + timeout
    while text not in (log.read_text() if log.exists() else ''):
        assert state(cluster, job) in ('PENDING', 'RUNNING', 'CONFIGURING'), \
            log.read_text()[-3000:]
        assert time.monotonic() < end, f'{text!r} never logged' + cluster.logs()
        time.sleep(0.2)


def assert_same_weights(a, b):
    wa, wb = load_checkpoint_file(a)['state_dict'], load_checkpoint_file(b)['state_dict']
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key


@pytest.fixture(scope='module')
def two_node_run(cluster, repo_root, demo_root, tmp_path_factory):
    """The uninterrupted 2-node demo pretraining (the reference of the faults)."""
    work = tmp_path_factory.mktemp('clean') / 'work'
    start = time.monotonic()
    job, log = submit(cluster, repo_root, work, options=pretrain_options(demo_root))
    assert wait_state(cluster, job, TERMINAL, log) == 'COMPLETED', \
        log.read_text()[-3000:] + cluster.logs()
    return work, log.read_text(), time.monotonic() - start


def test_two_nodes_equal_one_node_and_write_checkpoints_once(
        two_node_run, repo_root, demo_root, tmp_path):
    work, text, _ = two_node_run
    # each node says where its processes are; the rendezvous is the first node
    nodes = re.findall(r'flsl_mm distributed: node (\w+): ranks \[(.*?)\], local '
                       r'ranks \[(.*?)\] of world size 4; rendezvous (\w+):\d+, '
                       r'backend gloo', text)
    assert sorted(nodes) == [('nodea', '0, 1', '0, 1', 'nodea'),
                             ('nodeb', '2, 3', '0, 1', 'nodea')]
    for epoch in range(1, EPOCHS + 1):  # one writer, into the shared work dir
        assert text.count(f'checkpoint {work}/epoch_{epoch}.pth written') == 1
    assert not list(work.glob('*.tmp'))
    # the same 4 processes on one node (torchrun), the same global batch and seed
    one = tmp_path / 'one_node'
    env = dict(os.environ, PYTHON=sys.executable, OMP_NUM_THREADS='1',
               PORT=str(random.randint(40001, 60000)))
    proc = subprocess.run(['bash', 'tools/dist_train.sh', DEMO, '4', '--work-dir',
                           str(one), *pretrain_options(demo_root)], cwd=repo_root,
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert_same_weights(one / FINAL, work / FINAL)


def finish_requeued(cluster, job, log, work, two_node_run, stopped_by):
    """The job requeued itself; it runs again, resumes and ends as the
    uninterrupted run."""
    wait_state(cluster, job, ('PENDING',), log)
    text = log.read_text()
    assert stopped_by in text, text[-3000:]
    assert wait_state(cluster, job, TERMINAL, log) == 'COMPLETED', \
        log.read_text()[-3000:] + cluster.logs()
    text = log.read_text()
    assert re.search(r'resumed epoch: \d+, iter: \d+', text), text[-3000:]
    assert 'Restarts=1' in cluster.run('scontrol', 'show', 'job', job)
    assert_same_weights(two_node_run[0] / FINAL, work / FINAL)
    return text


def test_usr1_to_the_whole_job_checkpoints_requeues_and_resumes(
        cluster, two_node_run, repo_root, demo_root, tmp_path):
    work = tmp_path / 'work'
    job, log = submit(cluster, repo_root, work, options=pretrain_options(demo_root))
    wait_log(cluster, job, log, 'Epoch(train)  [2][1/2]')
    cluster.run('scancel', '--signal=USR1', job)
    text = finish_requeued(cluster, job, log, work, two_node_run,
                           'training stopped by SIGUSR1')
    assert f'Slurm job {job} requeued' in text


def test_the_time_limit_signal_checkpoints_requeues_and_resumes(
        cluster, two_node_run, repo_root, demo_root, tmp_path):
    """``--signal=USR1@100``: once training runs, the job's time limit is cut to
    one minute, so fewer than 100 s are left and Slurm's next check (every 30 s)
    sends the job's steps SIGUSR1, as it does before any time limit; the
    requeued job gets a longer limit to finish. (Cut from the start, the signal
    would come before the tasks' handlers exist and end them: nothing to save.)"""
    work = tmp_path / 'work'
    job, log = submit(cluster, repo_root, work, options=pretrain_options(demo_root),
                      sbatch=('--time=30', '--signal=USR1@100'))
    wait_log(cluster, job, log, 'Epoch(train)  [1][2/2]')
    cluster.run('scontrol', 'update', f'JobId={job}', 'TimeLimit=1')
    wait_state(cluster, job, ('PENDING',), log, timeout=120)  # signalled, requeued
    cluster.run('scontrol', 'update', f'JobId={job}', 'TimeLimit=30')
    finish_requeued(cluster, job, log, work, two_node_run,
                    'training stopped by SIGUSR1')


def train_pids(cluster, node):
    pids = []
    for pid in cluster.node_pids(node):
        try:
            cmd = Path(f'/proc/{pid}/cmdline').read_bytes().split(b'\0')
        except OSError:
            continue
        if any(part.endswith(b'tools/train.py') for part in cmd):
            pids.append(pid)
    return pids


def test_a_node_lost_resumes_from_the_last_good_checkpoint(
        cluster, two_node_run, repo_root, demo_root, tmp_path):
    work = tmp_path / 'work'
    job, log = submit(cluster, repo_root, work, options=pretrain_options(demo_root))
    wait_log(cluster, job, log, 'Epoch(train)  [3][1/2]')  # epoch_2.pth is there
    victims = train_pids(cluster, 'nodeb')
    assert len(victims) == 2
    killed = time.monotonic()
    for pid in victims:  # as a node crash: no signal handler, no checkpoint
        os.kill(pid, signal.SIGKILL)
    while train_pids(cluster, 'nodea'):  # the other node's end: no rank hangs
        assert time.monotonic() - killed < 60, 'node A\'s processes outlived node B'
        time.sleep(0.2)
    ended_s = time.monotonic() - killed
    text = finish_requeued(cluster, job, log, work, two_node_run,
                           'slurm_train.sh: the training step failed (exit status')
    status = int(re.search(r'step failed \(exit status (\d+)\)', text).group(1))
    assert status not in (0, 75)  # failed, not preempted
    assert 'requeueing job' in text and 'to resume from the last good checkpoint' in text
    print(f'node A\'s processes ended {ended_s:.1f} s after node B\'s were killed')


def test_mask_rcnn_on_two_nodes_validates_as_one_process(
        cluster, repo_root, demo_root, tmp_path):
    data = [f'train_dataloader.dataset.data_root={demo_root}',
            f'val_dataloader.dataset.data_root={demo_root}',
            f'test_dataloader.dataset.data_root={demo_root}',
            f'val_evaluator.ann_file={demo_root}/annotations/instances_val.json',
            f'test_evaluator.ann_file={demo_root}/annotations/instances_val.json',
            'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
            'val_dataloader.num_workers=0', 'val_dataloader.persistent_workers=False',
            'test_dataloader.num_workers=0', 'test_dataloader.persistent_workers=False',
            'train_dataloader.dataset.indices=8', 'val_dataloader.dataset.indices=6',
            'test_dataloader.dataset.indices=6', 'model.backbone.init_cfg=None',
            'env_cfg.dist_cfg.timeout=60']
    work = tmp_path / 'work'
    job, log = submit(cluster, repo_root, work, config=DET,
                      options=['--cfg-options', 'train_cfg.max_epochs=1',
                               'train_cfg.val_interval=1', 'train_dataloader.batch_size=1',
                               *data])
    assert wait_state(cluster, job, TERMINAL, log, timeout=600) == 'COMPLETED', \
        log.read_text()[-3000:] + cluster.logs()
    text = log.read_text()
    two = re.search(r'bbox_mAP: (-?[\d.]+)\s+coco/bbox_mAP_50: (-?[\d.]+).*?'
                    r'segm_mAP: (-?[\d.]+)', text)
    assert two, text[-3000:]
    assert text.count('flsl_mm distributed: node ') == 2
    proc = subprocess.run([sys.executable, 'tools/test.py', DET, str(work / 'epoch_1.pth'),
                           '--work-dir', str(tmp_path / 'test'), '--cfg-options', *data],
                          cwd=repo_root, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    one = re.search(r'bbox_mAP: (-?[\d.]+)\s+coco/bbox_mAP_50: (-?[\d.]+).*?'
                    r'segm_mAP: (-?[\d.]+)', proc.stdout + proc.stderr)
    assert one and one.groups() == two.groups()
