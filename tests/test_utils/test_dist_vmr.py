"""VMR across 2 gloo processes equals the single-process value on all queries."""
import os

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from flsl_mm.models import vmr_loss
from flsl_mm.utils.dist import all_reduce_mean_identity_grad, shutdown_distributed


def _worker(rank, world, init_file, logits, out_dir):
    dist.init_process_group('gloo', init_method=f'file://{init_file}', rank=rank,
                            world_size=world)
    try:
        chunk = logits.chunk(world)[rank].clone().requires_grad_(True)
        probs = torch.softmax(chunk / 0.1, -1)
        pbar = all_reduce_mean_identity_grad(probs.mean(0))
        loss = vmr_loss(chunk, 0.1)
        loss.backward()
        torch.save(dict(pbar=pbar.detach(), loss=loss.detach(), grad=chunk.grad),
                   os.path.join(out_dir, f'rank{rank}.pt'))
        shutdown_distributed()  # barrier first: a rank leaving early aborts the other
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def test_vmr_two_processes(tmp_path):
    torch.manual_seed(0)
    logits = torch.randn(8, 6)
    mp.spawn(_worker, args=(2, str(tmp_path / 'init'), logits, str(tmp_path)),
             nprocs=2, join=True)
    results = [torch.load(tmp_path / f'rank{r}.pt') for r in range(2)]

    full = logits.clone().requires_grad_(True)
    ref_loss = vmr_loss(full, 0.1)
    ref_loss.backward()
    ref_pbar = torch.softmax(logits / 0.1, -1).mean(0)
    for r, res in enumerate(results):
        torch.testing.assert_close(res['pbar'], ref_pbar)
        torch.testing.assert_close(res['loss'], ref_loss.detach())
        # identity backward: each rank's gradient is that of the global loss with
        # its own half weighted as if it were the whole batch (2 x single-process);
        # DDP's gradient averaging then gives the single-process gradient.
        torch.testing.assert_close(res['grad'], 2 * full.grad.chunk(2)[r])
