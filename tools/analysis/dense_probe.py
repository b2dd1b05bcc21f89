#!/usr/bin/env python
"""Dense probes of a frozen FLSL backbone: patch k-NN segmentation, linear probe,
k-means + Hungarian clustering, and the bbox-aligned k-NN (see
flsl_mm/analysis/dense_probe.py). One table; --out writes JSON.

    python tools/analysis/dense_probe.py CONFIG CHECKPOINT [--data-root data/flsl_demo]
    python tools/analysis/dense_probe.py CONFIG --random-init
    python tools/analysis/dense_probe.py CONFIG CKPT --train-img-dir ... \
        --train-label-dir ... --val-img-dir ... --val-label-dir ... --num-classes N
"""
import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('config', help='FLSL or DINO pretraining config')
    p.add_argument('checkpoint', nargs='?', help='pretraining checkpoint')
    p.add_argument('--random-init', action='store_true',
                   help='probe the randomly initialised backbone')
    p.add_argument('--student', action='store_true', help='student, not teacher')
    p.add_argument('--block', type=int, default=-1,
                   help='tokens of this block (default: last, after the final norm)')
    p.add_argument('--data-root', default='data/flsl_demo',
                   help='embedded demo data (train/val images, semantic maps, COCO)')
    for split in ('train', 'val'):
        p.add_argument(f'--{split}-img-dir')
        p.add_argument(f'--{split}-label-dir')
        p.add_argument(f'--{split}-ann', help='COCO instances for the bbox probe')
    p.add_argument('--num-classes', type=int, help='with explicit folders')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--device', default='cpu',
                   help='token extraction, k-NN and linear probe here (cpu, cuda, '
                   'cuda:1, ...); clustering runs on the CPU')
    p.add_argument('--out', help='write the results as JSON here')
    return p.parse_args(argv)


def format_table(results: dict) -> str:
    lines = ['| probe | value |', '|---|---|']
    lines += [f'| {k} | {v:.4f} |' for k, v in results.items()]
    return '\n'.join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    import flsl_mm  # noqa: F401
    from flsl_mm.analysis import load_backbone
    from flsl_mm.analysis.probe_runner import ProbeSplit, demo_splits, run_probes
    if args.device.startswith('cuda'):
        import torch
        if not torch.cuda.is_available():
            print(f'error: --device {args.device}: torch sees no GPU here',
                  file=sys.stderr)
            return 2
    if args.checkpoint is None and not args.random_init:
        print('error: give a CHECKPOINT or --random-init', file=sys.stderr)
        return 2
    if args.train_img_dir:
        if args.num_classes is None:
            print('error: --num-classes is needed with explicit folders',
                  file=sys.stderr)
            return 2
        train = ProbeSplit(args.train_img_dir, args.train_label_dir, args.train_ann)
        val = ProbeSplit(args.val_img_dir, args.val_label_dir, args.val_ann)
        num_classes = args.num_classes
    else:
        from flsl_mm.datasets import ensure_demo_data
        ensure_demo_data(args.data_root)
        train, val, num_classes = demo_splits(args.data_root)
    backbone = load_backbone(args.config, args.checkpoint, student=args.student,
                             random_init=args.random_init, seed=args.seed)
    results = run_probes(backbone, train, val, num_classes, block=args.block,
                         seed=args.seed, device=args.device)
    print(format_table(results))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == '__main__':
    sys.exit(main())
