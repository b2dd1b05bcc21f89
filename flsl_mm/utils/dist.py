"""Distributed helpers that the FLSL loss needs."""
from __future__ import annotations

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_reduce_mean_identity_grad(x: torch.Tensor) -> torch.Tensor:
    """Mean of ``x`` over all processes; the backward pass is the identity.

    Forward: ``all_reduce(x) / world_size``. Backward: ``d out / d x = I`` (the
    reference's behaviour for the VMR batch mean: each process back-propagates its
    own contribution as if it were the global mean).
    """
    if not is_distributed():
        return x
    reduced = x.detach().clone()
    dist.all_reduce(reduced)
    reduced /= dist.get_world_size()
    return x + (reduced - x.detach())


def all_reduce_mean(x: torch.Tensor) -> torch.Tensor:
    """Mean over all processes, no gradient (for EMA statistics)."""
    if not is_distributed():
        return x
    reduced = x.detach().clone()
    dist.all_reduce(reduced)
    return reduced / dist.get_world_size()


def shutdown_distributed() -> None:
    """End a distributed run cleanly: every rank waits for the others (rank 0 may
    still be writing a checkpoint), then the process group is destroyed.

    Without it a rank that finishes first can tear its gloo process group down
    while the others still use it; the process then aborts at exit ("terminate
    called without an active exception") and torchrun reports the job as failed.
    """
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        _everyone_left_the_barrier()
        dist.destroy_process_group()


def _everyone_left_the_barrier(timeout_s: float = 60.0) -> None:
    """Wait until every rank has *returned* from the last collective, through
    the rendezvous store (not the process group): a rank's barrier can return
    while its last message is still on its way to a slower rank, and tearing the
    group down then kills that rank's read (seen under heavy load as the abort
    above). Best effort: without a store, or after ``timeout_s``, it returns."""
    import time
    try:
        store = dist.distributed_c10d._get_default_store()
    except (AttributeError, RuntimeError, ValueError):
        return
    key, world = 'flsl_mm/left_last_collective', dist.get_world_size()
    try:
        store.add(key, 1)
        deadline = time.monotonic() + timeout_s
        while store.add(key, 0) < world and time.monotonic() < deadline:
            time.sleep(0.01)
    except RuntimeError:  # the store went away: the others are gone already
        return
