"""tools/slurm_train.sh asks Slurm for one core per loader worker of the config."""
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
    srun.write_text('#!/bin/sh\nfor a in "$@"; do echo "$a"; done\n')
    srun.chmod(0o755)
    return bin_dir


def slurm(repo_root, bin_dir, config, cpus=None):
    env = {k: v for k, v in os.environ.items() if k != 'CPUS_PER_TASK'}
    env.update(PATH=f'{bin_dir}{os.pathsep}{os.environ["PATH"]}',
               PYTHON=sys.executable)
    if cpus is not None:
        env['CPUS_PER_TASK'] = cpus
    return subprocess.run(['bash', 'tools/slurm_train.sh', 'part', 'job', config,
                           'work_dirs/x'], cwd=repo_root, env=env,
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
