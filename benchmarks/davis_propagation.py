#!/usr/bin/env python
"""Speed and memory of DAVIS label propagation at the published protocol (480p
frames -> 480 x 832, top-5, 7 context frames, radius 12): a ViT-S backbone (random
weights: speed does not depend on them) on synthetic 854 x 480 frames.

    python benchmarks/davis_propagation.py --patch 16 --frames 10 [--device cuda]
"""
import argparse
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--patch', type=int, default=16, choices=[8, 16])
    p.add_argument('--frames', type=int, default=10)
    p.add_argument('--device', default='cpu')
    p.add_argument('--query-chunk', type=int, default=1024)
    args = p.parse_args(argv)
    import numpy as np
    import torch

    from flsl_mm.analysis.label_propagation import (PropagationConfig,
                                                    backbone_features,
                                                    propagate_video)
    from flsl_mm.models import FLSLViT
    torch.manual_seed(0)
    backbone = FLSLViT(arch='small', patch_size=args.patch).eval().to(args.device)
    rng = np.random.RandomState(0)
    frames = [rng.randint(0, 256, (480, 854, 3)).astype(np.uint8)
              for _ in range(args.frames)]
    first = np.zeros((480, 854), np.uint8)
    first[100:300, 200:500] = 1
    first[300:420, 600:800] = 2
    cfg = PropagationConfig(query_chunk=args.query_chunk)
    times = []

    def tick(t, ids):
        times.append(time.time())

    if args.device.startswith('cuda'):
        torch.cuda.reset_peak_memory_stats()
    start = time.time()
    with torch.no_grad():
        propagate_video(frames, first, backbone_features(backbone), args.patch, cfg,
                        device=args.device, on_frame=tick)
    total = time.time() - start
    # steady state: frames once the context is full (frame 0 + 7)
    steady = np.diff(times[cfg.n_last_frames - 1:]) if len(times) > 8 else np.diff(times)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    line = (f'ViT-S/{args.patch} on {args.device}: {args.frames - 1} frames in '
            f'{total:.1f} s ({(args.frames - 1) / total:.2f} frames/s overall, '
            f'{1 / steady.mean():.2f} frames/s with a full context), '
            f'peak RSS {rss:.0f} MiB')
    if args.device.startswith('cuda'):
        line += f', peak GPU memory {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB'
    print(line)
    return 0


if __name__ == '__main__':
    sys.exit(main())
