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


#: ``tools/train.py``'s exit status when training stopped on a stop signal (after
#: writing its checkpoint): not finished, to be resumed. 75 is ``EX_TEMPFAIL``
#: (sysexits.h, "try again later"); 0 means training reached its end.
EXIT_PREEMPTED = 75


class TrainingPreempted(Exception):
    """Training stopped on a stop signal after a checkpoint was written;
    ``tools/train.py`` ends the run with :data:`EXIT_PREEMPTED`."""

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


_early: StopSignals | None = None
_early_numbers: list[int] = []  # what the loaders' workers ignore


def install_early(signals: Sequence[str]) -> StopSignals:
    """Record the stop signals from now on, before the Runner builds its loaders
    (``tools/train.py``): loader workers forked meanwhile (an iteration-based loop
    starts its workers when it is built) inherit this recording handler instead
    of dying of the signal, and a signal received during start-up is not lost:
    :class:`~flsl_mm.engine.hooks.ResumableCheckpointHook` takes it over
    (:func:`take_early`)."""
    global _early, _early_numbers
    take_early()
    _early = StopSignals(signals)
    _early_numbers = list(_early.numbers)
    _early.install()
    _loaders_ignore_stop_signals()
    return _early


def _loaders_ignore_stop_signals() -> None:
    """Every loader the Runner builds from now on (train, val, test) gets
    :class:`IgnoreStopSignals` as its workers' init function: torch sets a SIGTERM
    handler of its own in every worker, so an inherited one does not protect it,
    and an iteration-based loop starts its workers as soon as it is built."""
    from mmengine.runner import Runner
    from torch.utils.data import DataLoader
    original = Runner.build_dataloader
    if getattr(original, '_flsl_mm_stop_signals', False):
        return

    def build_dataloader(dataloader, seed=None, diff_rank_seed=False):
        loader = original(dataloader, seed=seed, diff_rank_seed=diff_rank_seed)
        if _early_numbers and isinstance(loader, DataLoader) and \
                loader.num_workers > 0 and \
                not isinstance(loader.worker_init_fn, IgnoreStopSignals):
            loader.worker_init_fn = IgnoreStopSignals(_early_numbers,
                                                      loader.worker_init_fn)
        return loader

    build_dataloader._flsl_mm_stop_signals = True
    Runner.build_dataloader = staticmethod(build_dataloader)


def take_early() -> StopSignals | None:
    """The handler :func:`install_early` put in place, uninstalled (None: none)."""
    global _early
    early, _early = _early, None
    if early is not None:
        early.uninstall()
    return early


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
    default one is NCCL. Every rank must make the same calls in the same order.

    :meth:`max` blocks; :meth:`exchange` is the per-iteration form: it starts an
    asynchronous all-reduce of this iteration's flags and returns the *previous*
    call's result, complete by then (an iteration is long, the reduction a few
    microseconds of network), so a training iteration never waits for it. A
    signal is then acted on one iteration later, on every rank alike."""

    def __init__(self) -> None:
        self.group = None
        self._pending = None  # (work handle, tensor) of the last exchange
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            self.group = (dist.group.WORLD if dist.get_backend() == 'gloo'
                          else dist.new_group(backend='gloo'))

    @property
    def distributed(self) -> bool:
        return self.group is not None

    def max(self, flags: Sequence[int]) -> list[int]:
        """Blocking: the maximum over ranks of ``flags`` and of a pending
        :meth:`exchange` (which is completed first)."""
        if self.group is None:
            return list(flags)
        pending = self._collect()
        tensor = torch.tensor(list(flags), dtype=torch.int64)
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX, group=self.group)
        out = tensor.tolist()
        return [max(a, b) for a, b in zip(out, pending)] if pending else out

    def exchange(self, flags: Sequence[int]) -> list[int]:
        """Start reducing ``flags``; return the reduction started by the previous
        call (zeros at the first). One process: ``flags`` at once."""
        if self.group is None:
            return list(flags)
        previous = self._collect() or [0] * len(flags)
        tensor = torch.tensor(list(flags), dtype=torch.int64)
        work = dist.all_reduce(tensor, op=dist.ReduceOp.MAX, group=self.group,
                               async_op=True)
        self._pending = (work, tensor)
        return previous

    def _collect(self) -> list[int] | None:
        if self._pending is None:
            return None
        work, tensor = self._pending
        self._pending = None
        work.wait()
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


__all__ = ['EXIT_PREEMPTED', 'TrainingPreempted', 'StopSignals', 'IgnoreStopSignals',
           'FlagAgreement', 'kill_loader_workers', 'install_early', 'take_early',
           'signal_numbers', 'slurm_job_id', 'requeue_slurm_job']
