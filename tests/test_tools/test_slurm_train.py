"""tools/slurm_train.sh asks Slurm for one core per loader worker of the config,
and for preemption: SIGUSR1 before the time limit, requeue, automatic --resume."""
import os
import subprocess
import sys

import pytest


@pytest.fixture()
def fake_srun(tmp_path):
    """An srun that prints its arguments, one per line, and runs nothing."""
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    srun = bin_dir / 'srun'
    srun.write_text('#!/bin/sh\necho "FLSL_MM_REQUEUE=$FLSL_MM_REQUEUE"\n'
                    'for a in "$@"; do echo "$a"; done\n')
    srun.chmod(0o755)
    return bin_dir


def slurm(repo_root, bin_dir, config, cpus=None, extra=(), **variables):
    env = {k: v for k, v in os.environ.items()
           if k not in ('CPUS_PER_TASK', 'REQUEUE', 'SIGNAL_LEAD')}
    env.update(variables)
    env.update(PATH=f'{bin_dir}{os.pathsep}{os.environ["PATH"]}',
               PYTHON=sys.executable)
    if cpus is not None:
        env['CPUS_PER_TASK'] = cpus
    return subprocess.run(['bash', 'tools/slurm_train.sh', 'part', 'job', config,
                           'work_dirs/x', *extra], cwd=repo_root, env=env,
                          capture_output=True, text=True, timeout=120)


def test_cpus_per_task_follow_the_loader_workers(repo_root, fake_srun):
    proc = slurm(repo_root, fake_srun,
                 'configs/pretrain/flsl_vit-small-p16_8xb64-300e_in1k.py')
    assert proc.returncode == 0, proc.stderr
    args = proc.stdout.splitlines()
    assert '--cpus-per-task=10' in args  # the published 10 loader workers
    assert '--launcher=slurm' in args and '--gres=gpu:8' in args
    proc = slurm(repo_root, fake_srun,
                 'configs/det_coco/mask-rcnn_flsl-vit-small-p16_fpn_1x_coco.py')
    assert '--cpus-per-task=2' in proc.stdout.splitlines()
    proc = slurm(repo_root, fake_srun,
                 'configs/pretrain/flsl_vit-small-p16_8xb64-300e_in1k.py',
                 cpus='6')
    assert '--cpus-per-task=6' in proc.stdout.splitlines()


def test_unreadable_config_is_named(repo_root, fake_srun):
    proc = slurm(repo_root, fake_srun, 'configs/missing.py')
    assert proc.returncode == 2
    assert 'configs/missing.py; set CPUS_PER_TASK' in proc.stderr


PRETRAIN = 'configs/pretrain/flsl_vit-small-p16_8xb64-300e_in1k.py'


def test_preemption_settings_by_default_and_off_with_requeue_0(repo_root, fake_srun):
    args = slurm(repo_root, fake_srun, PRETRAIN).stdout.splitlines()
    assert args[0] == 'FLSL_MM_REQUEUE=1'  # the checkpoint hook requeues the job
    assert '--signal=USR1@120' in args
    assert args[-1] == '--resume' and args.count('--resume') == 1
    args = slurm(repo_root, fake_srun, PRETRAIN, SIGNAL_LEAD='300',
                 extra=('--resume', 'ckpt.pth')).stdout.splitlines()
    assert '--signal=USR1@300' in args and args.count('--resume') == 1
    assert args[-2:] == ['--resume', 'ckpt.pth']
    args = slurm(repo_root, fake_srun, PRETRAIN, REQUEUE='0').stdout.splitlines()
    assert args[0] == 'FLSL_MM_REQUEUE=0'
    assert '--resume' not in args and not any(a.startswith('--signal') for a in args)
    proc = slurm(repo_root, fake_srun, PRETRAIN, REQUEUE='yes')
    assert proc.returncode == 2 and 'REQUEUE must be 1 or 0' in proc.stderr


def test_nodes_without_gpus_ask_for_no_gres(repo_root, fake_srun):
    args = slurm(repo_root, fake_srun, PRETRAIN, GPUS='2',
                 GPUS_PER_NODE='0').stdout.splitlines()
    assert not any(a.startswith('--gres') for a in args)
    assert '--ntasks=2' in args and '--ntasks-per-node=2' in args
    args = slurm(repo_root, fake_srun, PRETRAIN, GPUS='16',
                 GPUS_PER_NODE='8').stdout.splitlines()
    assert '--gres=gpu:8' in args and '--ntasks-per-node=8' in args


def test_the_slurm_launcher_works_without_cuda(repo_root, demo_root, tmp_path):
    """``--launcher slurm`` as srun starts it (SLURM_* variables; scontrol names
    the first host), on a machine without a GPU: gloo, one epoch, status 0."""
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    (bin_dir / 'scontrol').write_text('#!/bin/sh\necho 127.0.0.1\n')
    (bin_dir / 'scontrol').chmod(0o755)
    import socket
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    env = dict(os.environ, SLURM_PROCID='0', SLURM_NTASKS='1', SLURM_LOCALID='0',
               SLURM_NODELIST='node01', MASTER_PORT=str(port),
               PATH=f'{bin_dir}{os.pathsep}{os.environ["PATH"]}')
    env.pop('MASTER_ADDR', None)
    proc = subprocess.run(
        [sys.executable, 'tools/train.py', 'configs/pretrain/flsl_vit-tiny-p16_demo.py',
         '--launcher', 'slurm', '--work-dir', str(tmp_path / 'w'), '--cfg-options',
         f'train_dataloader.dataset.data_root={demo_root}',
         'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
         'train_dataloader.batch_size=8', 'train_cfg.max_epochs=1', 'custom_hooks=[]'],
        cwd=repo_root, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (tmp_path / 'w' / 'epoch_1.pth').is_file()
    assert 'Distributed launcher: slurm' in proc.stdout + proc.stderr
