#!/usr/bin/env python
"""What a DenseProbeHook probe costs (docs/probes.md): the published ADE20K probe
(500 train / 200 val images, short side 224, k-NN + k-means + Hungarian) on a
generated ADE20K-layout set of 512 x 683 JPEGs with 150-class label PNGs, with the
backbone of a pretraining config (random init: the cost does not depend on the
weights). Reports the one-off read-and-check of the set and each stage of one probe.

``--ranks N``: also the hook's distributed split: each of the N parts of the set
(what one rank reads and embeds) is embedded here, one after the other, and
timed; on N devices they run at once, so the token stage takes the slowest part
(reported with the megabytes each rank sends to rank 0). The merged parts are
scored and must give the one-process values.

    python benchmarks/probe_cost.py [--config CONFIG] [--device cuda] [--amp]
        [--max-train 500 --max-val 200] [--probes knn cluster linear] [--ranks 8]
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
    p.add_argument('--ranks', type=int, default=1,
                   help='also time the parts of the set N ranks embed')
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
        split = _split_over_ranks(probe_set, backbone, args, dtype, values) \
            if args.ranks > 1 else None
    tokens = sum(len(x) for x in train.patch_labels), sum(len(x) for x in val.patch_labels)
    report = dict(config=Path(args.config).name, device=args.device, amp=str(dtype),
                  images=[len(train.images), len(val.images)],
                  tokens=list(tokens), read_and_check_s=round(load_s, 2),
                  probe_s=round(probe_s, 2),
                  stages_s={k: round(v, 2) for k, v in timings.items()},
                  values={k: round(v, 4) for k, v in values.items()})
    if split is not None:
        report['split_over_ranks'] = split
    print(json.dumps(report, indent=1))
    return 0


def _split_over_ranks(probe_set, backbone, args, dtype, values: dict) -> dict:
    """Each rank's part embedded and timed in turn; merged and scored."""
    import torch

    from flsl_mm.analysis.probe_runner import collect, merge, score
    seconds, megabytes, parts = [], [], []
    backbone.to(args.device)
    for rank in range(args.ranks):
        splits = probe_set.load(backbone.patch_size, (rank, args.ranks))
        start = time.perf_counter()
        part = [collect(backbone, s, autocast_dtype=dtype) for s in splits]
        if args.device.startswith('cuda'):
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - start)
        megabytes.append(sum(p['tokens'].nbytes for p in part) / 2**20)
        parts.append(part)
    merged = score(merge([p[0] for p in parts]), merge([p[1] for p in parts]),
                   probe_set.num_classes, device=args.device,
                   probes=tuple(args.probes))
    if merged != values:
        raise SystemExit(f'the merged parts score {merged}, one process {values}')
    return dict(ranks=args.ranks, tokens_per_rank_s=[round(x, 2) for x in seconds],
                tokens_on_that_many_devices_s=round(max(seconds), 2),
                sent_to_rank_0_mb=[round(x, 1) for x in megabytes],
                same_values_as_one_process=True)


if __name__ == '__main__':
    sys.exit(main())
