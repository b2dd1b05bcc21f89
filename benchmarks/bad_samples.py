#!/usr/bin/env python
"""What the bad-sample policy costs (docs/pretraining.md, "Bad samples").

1. ``tools/misc/check_dataset.py`` throughput on the demo pretraining folder
   (images/s per worker, 1 and 2 workers).
2. The loader's per-image cost with the policy on (``on_bad_sample='replace'``)
   vs off (``'raise'``): the demo FLSL pipeline (decode + views) through
   ``SampleSeededDataset``, interleaved rounds, median per image.
3. The checks of ``LoadImageLikeImageFolder`` on JPEGs (frame header, size
   limits, end-of-image marker, file-changed test) vs the bare decode they wrap.

    python benchmarks/bad_samples.py [--images 256] [--rounds 5] [--out FILE]
"""
from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
CONFIG = 'configs/pretrain/flsl_vit-tiny-p16_demo.py'


def scan(root: Path, workers: int) -> dict:
    out = Path(tempfile.mkdtemp()) / 'bad.jsonl'
    proc = subprocess.run(
        [sys.executable, 'tools/misc/check_dataset.py', CONFIG, '--workers',
         str(workers), '--out', str(out), '--cfg-options',
         f'train_dataloader.dataset.data_root={root}'],
        cwd=REPO, capture_output=True, text=True)
    line = next(x for x in proc.stdout.splitlines() if x.startswith('{"samples"'))
    return json.loads(line)


def loader_cost(root: Path, rounds: int) -> dict:
    from mmengine.config import Config
    from mmengine.registry import DATASETS, init_default_scope

    import flsl_mm  # noqa: F401
    from flsl_mm.datasets.sample_seeding import SampleSeededDataset
    cfg = Config.fromfile(str(REPO / CONFIG))
    init_default_scope(cfg.default_scope)
    dataset = DATASETS.build(dict(cfg.train_dataloader.dataset, data_root=str(root)))
    on, off = SampleSeededDataset(dataset, 'replace'), SampleSeededDataset(dataset, 'raise')
    times = {'replace': [], 'raise': []}
    for r in range(rounds):
        for name, wrapped in (('replace', on), ('raise', off)) if r % 2 == 0 else \
                (('raise', off), ('replace', on)):
            start = time.perf_counter()
            for i in range(len(dataset)):
                wrapped[(i, 1000 * r + i)]
            times[name].append((time.perf_counter() - start) / len(dataset) * 1e3)
    out = {f'{k}_ms_per_image': round(statistics.median(v), 3) for k, v in times.items()}
    # the noise: the spread of one setting's rounds around its median
    out['round_spread_pct'] = round(100 * statistics.pstdev(times['raise'])
                                    / statistics.median(times['raise']), 2)
    return out


def check_cost(root: Path, rounds: int) -> dict:
    import torch
    from PIL import Image
    from torchvision.io import ImageReadMode, decode_jpeg

    from flsl_mm.datasets.transforms.loading import LoadImageLikeImageFolder
    jpegs = Path(tempfile.mkdtemp())
    for png in sorted((root / 'train' / 'images').glob('*.png')):
        Image.open(png).convert('RGB').save(jpegs / (png.stem + '.jpg'), quality=90)
    paths = sorted(str(p) for p in jpegs.glob('*.jpg'))
    load = LoadImageLikeImageFolder(to_tensor=True)

    def checked():
        for p in paths:
            load(dict(img_path=p))

    def bare():
        for p in paths:
            with open(p, 'rb') as f:
                data = bytearray(os.fstat(f.fileno()).st_size)
                f.readinto(data)
            decode_jpeg(torch.frombuffer(data, dtype=torch.uint8), mode=ImageReadMode.RGB)

    times = {'checked': [], 'bare': []}
    for r in range(rounds * 4):
        for name, fn in (('checked', checked), ('bare', bare)) if r % 2 == 0 else \
                (('bare', bare), ('checked', checked)):
            start = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - start) / len(paths) * 1e6)
    return {f'load_{k}_us_per_jpeg': round(statistics.median(v), 1)
            for k, v in times.items()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--images', type=int, default=256)
    p.add_argument('--rounds', type=int, default=5)
    p.add_argument('--out')
    args = p.parse_args(argv)
    from flsl_mm.datasets import make_demo_data
    root = make_demo_data(Path(tempfile.mkdtemp()) / 'demo', num_train=args.images,
                          num_val=4, seed=0)
    result = dict(images=args.images, machine=f'{os.cpu_count()} CPUs')
    for workers in (1, 2):
        s = scan(root, workers)
        result[f'scan_{workers}w_images_per_s'] = s['images_per_s']
        result[f'scan_{workers}w_images_per_s_per_worker'] = s['images_per_s_per_worker']
    result.update(loader_cost(root, args.rounds))
    result.update(check_cost(root, args.rounds))
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        Path(args.out).write_text(text + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
