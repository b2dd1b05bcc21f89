#!/usr/bin/env python
"""What a DenseProbeHook probe costs (docs/probes.md): the published ADE20K probe
(500 train / 200 val images, short side 224, k-NN + k-means + Hungarian) on a
generated ADE20K-layout set of 512 x 683 JPEGs with 150-class label PNGs, with the
backbone of a pretraining config (random init: the cost does not depend on the
weights). Reports the one-off read-and-check of the set and each stage of one probe.

    python benchmarks/probe_cost.py [--config CONFIG] [--device cuda] [--amp]
        [--max-train 500 --max-val 200] [--probes knn cluster linear]
"""
import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

CONFIG = 'configs/pretrain/flsl_vit-small-p16_8xb64-300e_in1k.py'


def write_ade20k(root: Path, n_train: int, n_val: int, size=(512, 683)) -> None:
    """An ADE20K-layout set: smooth random colour fields and blocky labels 0..150."""
    from PIL import Image
    rng = np.random.RandomState(0)
    h, w = size
    for split, n in (('training', n_train), ('validation', n_val)):
        (root / 'images' / split).mkdir(parents=True)
        (root / 'annotations' / split).mkdir(parents=True)
        for i in range(n):
            small = rng.randint(0, 255, (h // 32 + 1, w // 32 + 1, 3), dtype=np.uint8)
            img = np.kron(small, np.ones((32, 32, 1), np.uint8))[:h, :w]
            labels = rng.randint(0, 151, (h // 64 + 1, w // 64 + 1), dtype=np.uint8)
            label = np.kron(labels, np.ones((64, 64), np.uint8))[:h, :w]
            Image.fromarray(img).save(root / 'images' / split / f'{i:05d}.jpg',
                                      quality=90)
            Image.fromarray(label).save(root / 'annotations' / split / f'{i:05d}.png')


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--config', default=CONFIG)
    p.add_argument('--device', default='cpu')
    p.add_argument('--amp', action='store_true', help='fp16 autocast (bf16 on cpu)')
    p.add_argument('--max-train', type=int, default=500)
    p.add_argument('--max-val', type=int, default=200)
    p.add_argument('--short-side', type=int, default=224)
    p.add_argument('--probes', nargs='+', default=['knn', 'cluster'])
    args = p.parse_args(argv)
    import torch
    from mmengine.config import Config

    import flsl_mm  # noqa: F401
    from flsl_mm.analysis.probe_runner import run_probes
    from flsl_mm.analysis.probe_sets import build_probe_set
    from flsl_mm.analysis.tokens import build_dense_backbone
    torch.manual_seed(0)
    backbone = build_dense_backbone(Config.fromfile(args.config), args.config)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / 'ADEChallengeData2016'
        print(f'writing {args.max_train} + {args.max_val} images ...', flush=True)
        write_ade20k(root, args.max_train, args.max_val)
        start = time.perf_counter()
        probe_set = build_probe_set(dict(type='ade20k', data_root=str(root),
                                         max_train=args.max_train,
                                         max_val=args.max_val,
                                         short_side=args.short_side))
        train, val = probe_set.load(backbone.patch_size)
        load_s = time.perf_counter() - start
        dtype = None
        if args.amp:
            dtype = torch.float16 if args.device.startswith('cuda') else torch.bfloat16
        timings: dict = {}
        start = time.perf_counter()
        values = run_probes(backbone, train, val, probe_set.num_classes,
                            device=args.device, probes=tuple(args.probes),
                            autocast_dtype=dtype, progress=False, timings=timings)
        probe_s = time.perf_counter() - start
    tokens = sum(len(x) for x in train.patch_labels), sum(len(x) for x in val.patch_labels)
    report = dict(config=Path(args.config).name, device=args.device, amp=str(dtype),
                  images=[len(train.images), len(val.images)],
                  tokens=list(tokens), read_and_check_s=round(load_s, 2),
                  probe_s=round(probe_s, 2),
                  stages_s={k: round(v, 2) for k, v in timings.items()},
                  values={k: round(v, 4) for k, v in values.items()})
    print(json.dumps(report, indent=1))
    return 0


if __name__ == '__main__':
    sys.exit(main())
