#!/usr/bin/env python
"""Time per FLSL training iteration and peak memory, ViT-S/16, published views.

Views per image: 1 teacher crop 224, 1 student global crop 224, 2 local crops 96
(16 + 9 + 9 queries); K = 4096; AdamW step and teacher EMA update included.
Runs on the CPU, and on the GPU too when one is present (fp16 autocast there).

    python benchmarks/pretrain_step.py [--batch 8] [--iters 5] [--arch small]
"""
import argparse
import resource
import time
import sys
from pathlib import Path

# Use the flsl_mm of this checkout even when another one is installed.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

import flsl_mm  # noqa: F401
from flsl_mm.datasets import query_mask
from flsl_mm.models import FLSL
from mmengine.logging import MessageHub
from mmpretrain.structures import DataSample


def make_batch(batch, device):
    inputs = [torch.randn(batch, 3, 224, 224, device=device),
              torch.randn(batch, 3, 224, 224, device=device),
              torch.randn(batch, 3, 96, 96, device=device),
              torch.randn(batch, 3, 96, 96, device=device)]
    samples = []
    for _ in range(batch):
        s = DataSample()
        s.set_field([query_mask(14, 3), query_mask(6, 2), query_mask(6, 2)],
                    'query_masks')
        samples.append(s)
    return inputs, samples


def bench(device, arch, batch, iters, warmup=2, monitors=True):
    torch.manual_seed(0)
    width = dict(tiny=192, small=384, base=768)[arch]
    model = FLSL(backbone=dict(type='FLSLViT', arch=arch, drop_path_rate=0.1),
                 head=dict(type='FLSLHead', in_channels=width,
                           out_channels=4096), monitors=monitors).to(device)
    MessageHub.get_current_instance().update_info('max_iters', 1000)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad],
                            lr=1e-4)
    scaler = torch.amp.GradScaler('cuda') if device == 'cuda' else None
    inputs, samples = make_batch(batch, device)
    if device == 'cuda':
        torch.cuda.reset_peak_memory_stats()
    times = []
    for i in range(warmup + iters):
        if device == 'cuda':
            torch.cuda.synchronize()
        start = time.perf_counter()
        model.schedule_applied()  # constant schedules here (FLSLScheduleHook's job)
        with torch.autocast(device, dtype=torch.float16, enabled=device == 'cuda'):
            loss = sum(v for k, v in model.loss(inputs, samples).items()
                       if 'loss' in k)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            opt.step()
        opt.zero_grad(set_to_none=True)
        model.update_teacher()
        if device == 'cuda':
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    if device == 'cuda':
        peak = torch.cuda.max_memory_allocated() / 2**20
        mem = f'{peak:.0f} MiB (GPU, allocated)'
    else:
        mem = f'{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB (process max RSS)'
    return sum(times) / len(times), min(times), mem


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--batch', type=int, default=8)
    p.add_argument('--iters', type=int, default=5)
    p.add_argument('--arch', default='small', choices=['tiny', 'small', 'base'])
    p.add_argument('--no-monitors', action='store_true',
                   help='without the health monitors (to measure their cost)')
    args = p.parse_args()
    devices = ['cpu'] + (['cuda'] if torch.cuda.is_available() else [])
    rows = []
    for dev in devices:
        print(f'running {args.iters} timed iterations on {dev} ...', flush=True)
        mean, best, mem = bench(dev, args.arch, args.batch, args.iters,
                                monitors=not args.no_monitors)
        rows.append((dev, mean, best, mem))
    print(f'\nFLSL ViT-{args.arch[0].upper()}/16, batch {args.batch}, views '
          '224 + 224 + 2 x 96, K = 4096, monitors '
          f'{"off" if args.no_monitors else "on"}, torch ' + torch.__version__)
    print('| device | s / iter (mean) | s / iter (best) | peak memory |')
    print('|---|---|---|---|')
    for dev, mean, best, mem in rows:
        print(f'| {dev} ({torch.get_num_threads()} threads) | {mean:.3f} | '
              f'{best:.3f} | {mem} |' if dev == 'cpu' else
              f'| {dev} ({torch.cuda.get_device_name()}) | {mean:.3f} | {best:.3f} '
              f'| {mem} |')


if __name__ == '__main__':
    main()
