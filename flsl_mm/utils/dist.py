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


def describe_nodes() -> list[str]:
    """One line per node on which this job's processes run: the node, its ranks
    and local ranks, the world size, the rendezvous address and the backend (for
    the log of a multi-node run; docs/pretraining.md, "Multi-node"). A
    collective: every rank must call it. Empty when not distributed."""
    import os
    import socket
    if not is_distributed():
        return []
    mine = (socket.gethostname(), dist.get_rank(), int(os.environ.get('LOCAL_RANK', -1)))
    everyone = [None] * dist.get_world_size()
    dist.all_gather_object(everyone, mine)
    nodes: dict[str, list] = {}
    for host, rank, local in everyone:
        nodes.setdefault(host, []).append((rank, local))
    rendezvous = f'{os.environ.get("MASTER_ADDR")}:{os.environ.get("MASTER_PORT")}'
    return [f'node {host}: ranks {[r for r, _ in ranks]}, local ranks '
            f'{[lr for _, lr in ranks]} of world size {len(everyone)}; rendezvous '
            f'{rendezvous}, backend {dist.get_backend()}'
            for host, ranks in nodes.items()]


def log_nodes() -> None:
    """Print :func:`describe_nodes`' line of this node, once per node (by its
    local rank 0), so that every node's log shows where its processes are."""
    import os
    import socket
    lines = describe_nodes()
    if os.environ.get('LOCAL_RANK', '0') != '0':
        return
    host = socket.gethostname()
    for line in lines:
        if line.startswith(f'node {host}:'):
            print(f'flsl_mm distributed: {line}', flush=True)
