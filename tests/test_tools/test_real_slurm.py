"""The demo pretraining submitted to a real Slurm (22.05, one node on localhost:
munge, slurmctld, slurmd, started here) through ``tools/slurm_train.sh`` with
``sbatch --requeue``, stopped by (a) ``scancel --signal=USR1`` (what ``srun
--signal=USR1@N`` sends before a time limit) and (c) ``scancel`` (SIGTERM): the
job checkpoints, requeues itself, resumes on its own (``--resume`` added by the
script) and ends bitwise equal to the uninterrupted run.

Slurm comes from Debian's ``slurm-wlm``; ``.ci/run`` installs it where missing, so
in CI (``CI`` set) a missing Slurm fails these tests instead of skipping them."""
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from flsl_mm.checkpoints import load_checkpoint_file

DEMO = 'configs/pretrain/flsl_vit-tiny-p16_demo.py'
TOOLS = ('munged', 'mungekey', 'slurmctld', 'slurmd', 'sbatch', 'squeue', 'scontrol',
         'scancel', 'sinfo')


def options(data_root, epochs=3):
    return ['--cfg-options', f'train_dataloader.dataset.data_root={data_root}',
            'train_dataloader.batch_size=2', 'train_dataloader.num_workers=2',
            'train_dataloader.persistent_workers=True', f'train_cfg.max_epochs={epochs}',
            'default_hooks.checkpoint.interval=1', 'default_hooks.logger.interval=1',
            'custom_hooks=[]']


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def find(tool):
    return shutil.which(tool) or next(
        (p for p in (f'/usr/sbin/{tool}', f'/usr/bin/{tool}') if os.path.exists(p)),
        None)


class Slurm:
    """A one-node Slurm in ``root``; ``run`` calls its client commands."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.env = dict(os.environ, SLURM_CONF=str(root / 'slurm.conf'))
        self.daemons = []

    def run(self, *cmd, check=True):
        proc = subprocess.run([find(cmd[0]), *cmd[1:]], env=self.env,
                              capture_output=True, text=True, timeout=60)
        if check and proc.returncode != 0:
            raise AssertionError(f'{" ".join(cmd)}: {proc.stderr}{self.logs()}')
        return proc.stdout.strip()

    def logs(self) -> str:
        out = ''
        for name in ('slurmctld.log', 'slurmd.log', 'munged.log'):
            path = self.root / 'log' / name
            if path.exists():
                out += f'\n--- {name}\n' + '\n'.join(
                    path.read_text(errors='replace').splitlines()[-15:])
        return out

    def start(self) -> None:
        root = self.root
        for sub in ('state', 'spool', 'log'):
            (root / sub).mkdir(parents=True)
        key, sock = root / 'munge.key', root / 'munge.sock'
        subprocess.run([find('mungekey'), '-c', '-f', '-k', str(key)], check=True)
        subprocess.run([find('munged'), f'--key-file={key}', f'--socket={sock}',
                        f'--pid-file={root}/munged.pid', f'--seed-file={root}/seed',
                        f'--log-file={root}/log/munged.log', '--force'], check=True)
        self.daemons.append(root / 'munged.pid')
        cpus = os.cpu_count() or 1
        (root / 'slurm.conf').write_text(f'''\
ClusterName=flsltest
SlurmctldHost=localhost
SlurmctldPort={free_port()}
SlurmdPort={free_port()}
AuthType=auth/munge
AuthInfo=socket={sock}
CredType=cred/munge
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd.log
SlurmUser=root
SlurmdUser=root
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
JobRequeue=1
MpiDefault=none
KillWait=30
NodeName=localhost CPUs={cpus} RealMemory=4000 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
''')
        subprocess.run([find('slurmctld'), '-i'], env=self.env, check=True)
        self.daemons.append(root / 'slurmctld.pid')
        subprocess.run([find('slurmd'), '-N', 'localhost'], env=self.env, check=True)
        self.daemons.append(root / 'slurmd.pid')
        end = time.monotonic() + 60
        while 'idle' not in self.run('sinfo', '-h', '-o', '%t', check=False):
            assert time.monotonic() < end, 'Slurm did not come up' + self.logs()
            time.sleep(0.5)

    def stop(self) -> None:
        if (self.root / 'slurm.conf').exists():  # no job left running on its own
            self.run('scancel', '--partition=debug', check=False)
            time.sleep(1)
        for pid_file in reversed(self.daemons):
            try:
                os.kill(int(pid_file.read_text().strip()), signal.SIGTERM)
            except (OSError, ValueError):
                pass

    def state(self, job: str) -> str:
        out = self.run('scontrol', 'show', 'job', job)
        return next(w.split('=', 1)[1] for w in out.split() if w.startswith('JobState='))

    def wait(self, job: str, states, timeout=600) -> str:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            state = self.state(job)
            if state in states:
                return state
            time.sleep(0.5)
        raise AssertionError(f'job {job} never reached {states}' + self.logs())


@pytest.fixture(scope='module')
def slurm(tmp_path_factory):
    missing = [t for t in TOOLS if find(t) is None]
    if missing:
        message = (f'Slurm is not installed ({", ".join(missing)} missing): '
                   'apt-get install slurm-wlm munge (.ci/run does)')
        if os.environ.get('CI'):
            pytest.fail(message)
        pytest.skip(message)
    cluster = Slurm(tmp_path_factory.mktemp('slurm'))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


def train_reference(repo_root, demo_root, work, epochs):
    proc = subprocess.run([sys.executable, 'tools/train.py', DEMO, '--work-dir',
                           str(work), *options(demo_root, epochs)], cwd=repo_root,
                          capture_output=True, text=True, timeout=900,
                          env=dict(os.environ, OMP_NUM_THREADS='1'))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return work


@pytest.fixture(scope='module')
def reference(repo_root, demo_root, tmp_path_factory):
    return train_reference(repo_root, demo_root,
                           tmp_path_factory.mktemp('slurm_ref') / 'reference', 3)


def submit(slurm, repo_root, work, data_root, epochs=3, lead=None,
           sbatch=()) -> tuple[str, Path]:
    log = work.parent / f'{work.name}.slurm.log'
    script = work.parent / f'{work.name}.sbatch'
    args = ' '.join(['debug', 'flsl_demo', DEMO, str(work),
                     *options(data_root, epochs)])
    script.write_text(
        '#!/bin/bash\n'
        f'cd {repo_root}\n'
        f'export OMP_NUM_THREADS=1 PYTHON={sys.executable} GPUS=1 GPUS_PER_NODE=0 '
        f'CPUS_PER_TASK=1{f" SIGNAL_LEAD={lead}" if lead else ""}\n'
        f'bash tools/slurm_train.sh {args}\n')
    job = slurm.run('sbatch', '--parsable', '--requeue', f'--output={log}',
                    '--open-mode=append', *sbatch, str(script))
    return job.split(';')[0], log


def finish_requeued(slurm, job, log, work, reference, signal_name, epochs):
    """The stopped job checkpointed and requeued itself; Slurm starts it again once
    its hold is over (BeginTime, about 2 minutes: the previous run's credential must
    expire first -- releasing it earlier gets it killed, 'Job credential revoked'),
    and it resumes and ends as the reference."""
    slurm.wait(job, ('PENDING',))
    text = log.read_text()
    # mid-epoch, or at an epoch's end when the signal came in its last iteration
    stop = re.search(rf'training stopped by {signal_name} (after iteration (\d+) '
                     r'\(epoch \d+\)|at the end of epoch \d+ \(iteration (\d+)\)); '
                     r'checkpoint (\S+); ', text)
    assert stop, text[-3000:]
    assert f'Slurm job {job} requeued' in text
    step, mid_epoch = int(stop.group(2) or stop.group(3)), stop.group(2) is not None
    saved = Path(stop.group(4))
    assert saved.parent == work and saved.name.startswith('iter_' if mid_epoch
                                                          else 'epoch_'), saved
    assert load_checkpoint_file(saved)['meta']['iter'] == step
    assert len(list(work.glob('iter_*.pth'))) == mid_epoch
    assert slurm.wait(job, ('COMPLETED', 'FAILED', 'CANCELLED', 'TIMEOUT'),
                      timeout=900) == \
        'COMPLETED', log.read_text()[-3000:] + slurm.logs()
    text = log.read_text()
    # the resume, by the script, from the checkpoint written on the signal
    assert re.search(rf'resumed epoch: \d+, iter: {step}\b', text), text[-3000:]
    assert ('batches skipped at the sampler' in text) == mid_epoch
    assert 'Restarts=1' in slurm.run('scontrol', 'show', 'job', job)
    a = load_checkpoint_file(reference / f'epoch_{epochs}.pth')['state_dict']
    b = load_checkpoint_file(work / f'epoch_{epochs}.pth')['state_dict']
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize('how', ['scancel --signal=USR1', 'scancel'])
def test_slurm_stops_requeues_and_resumes_the_job_exactly(how, slurm, reference,
                                                          repo_root, demo_root,
                                                          tmp_path):
    work = tmp_path / 'work'
    job, log = submit(slurm, repo_root, work, demo_root)
    wait_for_training(slurm, job, log)
    slurm.run(*how.split(), job)
    finish_requeued(slurm, job, log, work, reference,
                    'SIGUSR1' if 'USR1' in how else 'SIGTERM', 3)


def wait_for_training(slurm, job, log, timeout=600):
    end = time.monotonic() + timeout
    while '[1][3/8]' not in (log.read_text() if log.exists() else ''):
        assert slurm.state(job) in ('PENDING', 'RUNNING'), log.read_text()[-3000:]
        assert time.monotonic() < end, 'the job never trained' + slurm.logs()
        time.sleep(0.2)


def test_the_time_limit_signal_lead_stops_requeues_and_resumes(
        slurm, repo_root, demo_root, tmp_path):
    """(b) ``sbatch --time=2 --signal=USR1@40`` (inside a batch job a step's own
    ``srun --signal`` is not honoured: ``tools/slurm_train.sh`` says so): Slurm
    sends SIGUSR1 to the job's steps when fewer than 40 s are left -- its checks
    run every 30 s and may send it up to 60 s early, so between 20 and 110 s
    after the start -- while the (longer) run trains; the requeued job gets a
    longer limit to finish."""
    epochs = 80
    reference = train_reference(repo_root, demo_root, tmp_path / 'reference', epochs)
    work = tmp_path / 'work'
    job, log = submit(slurm, repo_root, work, demo_root, epochs=epochs, lead=40,
                      sbatch=('--time=2', '--signal=USR1@40'))
    wait_for_training(slurm, job, log)
    slurm.wait(job, ('PENDING',), timeout=240)  # stopped by the signal, requeued
    assert 'inside the batch job ' in log.read_text()  # the script's advice
    slurm.run('scontrol', 'update', f'JobId={job}', 'TimeLimit=30')
    finish_requeued(slurm, job, log, work, reference, 'SIGUSR1', epochs)
