"""Stop signals of cluster schedulers (docs/pretraining.md, "Preemption and
resume"): catch them, agree on them across ranks, requeue a Slurm job.

Slurm sends SIGTERM before it kills a job (``scancel``, preemption, the time
limit: ``KillWait`` seconds later comes SIGKILL) and, with ``--signal=USR1@N``,
SIGUSR1 ``N`` seconds before the time limit. The handler only records the signal;
the checkpoint hook acts on it at the next iteration boundary.
"""
from __future__ import annotations

import atexit
import multiprocessing
import os
import signal
import subprocess
from typing import Sequence

import torch
import torch.distributed as dist


class TrainingPreempted(Exception):
    """Training stopped on a stop signal after a checkpoint was written;
    ``tools/train.py`` ends the run cleanly (exit status 0)."""

    def __init__(self, message: str, checkpoint: str | None) -> None:
        super().__init__(message)
        self.checkpoint = checkpoint


def signal_numbers(names: Sequence[str]) -> list[int]:
    """``['SIGTERM', 'USR1']`` -> signal numbers; unknown names are refused."""
    numbers = []
    for name in names:
        full = name if name.upper().startswith('SIG') else f'SIG{name}'
        number = getattr(signal, full.upper(), None)
        if not isinstance(number, signal.Signals):
            raise ValueError(f'unknown signal {name!r} (e.g. SIGTERM, SIGUSR1)')
        numbers.append(int(number))
    return numbers


class StopSignals:
    """Records the first of ``signals`` this process receives (installed on the
    main thread; the previous handlers are put back by :meth:`uninstall`). Later
    signals, also one that arrives while the checkpoint is written, change
    nothing."""

    def __init__(self, signals: Sequence[str]) -> None:
        self.numbers = signal_numbers(signals)
        self.received: str | None = None
        self._previous: dict[int, object] = {}

    @property
    def names(self) -> list[str]:
        return [signal.Signals(n).name for n in self.numbers]

    def _handle(self, signum, frame) -> None:
        if self.received is None:
            self.received = signal.Signals(signum).name

    def install(self) -> None:
        for number in self.numbers:
            self._previous[number] = signal.signal(number, self._handle)

    def uninstall(self) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous = {}


class IgnoreStopSignals:
    """A loader ``worker_init_fn`` that first makes the worker ignore the stop
    signals (a scheduler signals every process of the job: a worker that died of
    SIGTERM would fail the main process before it can save), then calls the
    original ``worker_init_fn``. Picklable (for the spawn start method).

    multiprocessing ends the daemonic workers still alive at interpreter exit
    with SIGTERM, which they now ignore: :func:`kill_loader_workers` runs first
    (registered at exit when this is made) and ends them with SIGKILL."""

    def __init__(self, numbers: Sequence[int], inner=None) -> None:
        self.numbers, self.inner = list(numbers), inner
        global _KILL_AT_EXIT
        if not _KILL_AT_EXIT:  # after multiprocessing's own handler: runs before it
            atexit.register(kill_loader_workers)
            _KILL_AT_EXIT = True

    def __call__(self, worker_id: int) -> None:
        for number in self.numbers:
            signal.signal(number, signal.SIG_IGN)
        if self.inner is not None:
            self.inner(worker_id)


_KILL_AT_EXIT = False


def kill_loader_workers(timeout: float = 5.0) -> int:
    """At interpreter exit: SIGKILL the daemonic child processes still alive (in
    a training process: data-loader workers, which keep no state and ignore the
    SIGTERM that multiprocessing's own exit handler would send them, so that
    handler would wait for them forever); returns how many were ended."""
    children = [p for p in multiprocessing.active_children() if p.daemon]
    if children:  # torch's SIGCHLD handler would report each killed worker
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    for child in children:
        child.kill()
    for child in children:
        child.join(timeout)
    return len(children)


class FlagAgreement:
    """Element-wise maximum of small integer flags over all ranks, on the CPU
    (gloo), so that no GPU stream is synchronised: a separate gloo group when the
    default one is NCCL. Every rank must call :meth:`max` at the same points."""

    def __init__(self) -> None:
        self.group = None
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            self.group = (dist.group.WORLD if dist.get_backend() == 'gloo'
                          else dist.new_group(backend='gloo'))

    @property
    def distributed(self) -> bool:
        return self.group is not None

    def max(self, flags: Sequence[int]) -> list[int]:
        if self.group is None:
            return list(flags)
        tensor = torch.tensor(list(flags), dtype=torch.int64)
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX, group=self.group)
        return tensor.tolist()


def slurm_job_id() -> str | None:
    """The id ``scontrol requeue`` takes (array jobs: ``ARRAYID_TASKID``)."""
    array, task = os.environ.get('SLURM_ARRAY_JOB_ID'), os.environ.get(
        'SLURM_ARRAY_TASK_ID')
    if array and task:
        return f'{array}_{task}'
    return os.environ.get('SLURM_JOB_ID')


def requeue_slurm_job() -> tuple[bool, str]:
    """``scontrol requeue`` this Slurm job; returns (done, what happened)."""
    job = slurm_job_id()
    if job is None:
        return False, 'not a Slurm job (SLURM_JOB_ID unset): not requeued'
    try:
        proc = subprocess.run(['scontrol', 'requeue', job], capture_output=True,
                              text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f'scontrol requeue {job} failed: {exc}'
    if proc.returncode != 0:
        return False, (f'scontrol requeue {job} failed (exit {proc.returncode}): '
                       f'{(proc.stderr or proc.stdout).strip()}')
    return True, f'Slurm job {job} requeued (scontrol requeue {job})'


__all__ = ['TrainingPreempted', 'StopSignals', 'IgnoreStopSignals', 'FlagAgreement',
           'kill_loader_workers',
           'signal_numbers', 'slurm_job_id', 'requeue_slurm_job']
