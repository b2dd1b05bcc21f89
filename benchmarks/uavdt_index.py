#!/usr/bin/env python
"""How long UAVDTDataset takes to index a full-size UAVDT tree (~40k frames).

Writes a synthetic tree in UAVDT layout 1 with tiny JPEGs (the index reads only the
first image of each sequence) and realistic annotation volume, then times the
first (parsing) and second (cached) construction of the dataset.

    python benchmarks/uavdt_index.py [--sequences 50] [--frames 814] [--objects 20]
"""
import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def write_tree(root: Path, sequences: int, frames: int, objects: int) -> None:
    import cv2
    import numpy as np
    jpeg = cv2.imencode('.jpg', np.zeros((540, 1024, 3), np.uint8))[1].tobytes()
    rng = np.random.RandomState(0)
    for s in range(sequences):
        seq = root / 'UAV-benchmark-M' / f'M{1001 + s:04d}'
        (seq / 'img1').mkdir(parents=True)
        (seq / 'gt').mkdir()
        for f in range(1, frames + 1):
            (seq / 'img1' / f'img{f:06d}.jpg').write_bytes(jpeg)
        rows = []
        for f in range(1, frames + 1):
            for o in range(objects):
                x, y = rng.randint(0, 900), rng.randint(0, 450)
                rows.append(f'{f},{o},{x},{y},40,20,1,1,{1 + o % 3}')
        (seq / 'gt' / 'gt_whole.txt').write_text('\n'.join(rows) + '\n')
        (seq / 'gt' / 'gt_ignore.txt').write_text(
            '\n'.join(f'{f},-1,0,0,100,50,-1,-1,-1' for f in range(1, frames + 1)))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--sequences', type=int, default=50)
    p.add_argument('--frames', type=int, default=814)
    p.add_argument('--objects', type=int, default=20)
    args = p.parse_args()
    import flsl_mm  # noqa: F401
    from flsl_mm.datasets.uavdt import UAVDTDataset
    tmp = Path(tempfile.mkdtemp(prefix='uavdt_bench_'))
    os.environ['FLSL_MM_CACHE'] = str(tmp / 'cache')
    try:
        start = time.time()
        write_tree(tmp / 'UAVDT', args.sequences, args.frames, args.objects)
        print(f'wrote {args.sequences * args.frames} frames in '
              f'{time.time() - start:.0f} s')
        for run in ('first (parse + cache)', 'second (cached)'):
            start = time.time()
            ds = UAVDTDataset(data_root=str(tmp / 'UAVDT'), split='all', pipeline=[],
                              test_mode=True)
            print(f'{run}: {len(ds)} frames indexed in {time.time() - start:.2f} s')
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
