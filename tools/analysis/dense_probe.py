#!/usr/bin/env python
"""Dense probes of a frozen FLSL backbone: patch k-NN segmentation, linear probe,
k-means + Hungarian clustering, and the bbox-aligned k-NN (see
flsl_mm/analysis/dense_probe.py). One table; --out writes JSON.

    python tools/analysis/dense_probe.py CONFIG CHECKPOINT [--data-root data/flsl_demo]
    python tools/analysis/dense_probe.py CONFIG --random-init
    python tools/analysis/dense_probe.py CONFIG CKPT --probe-set ade20k \
        --data-root data/ade/ADEChallengeData2016   # also voc, cityscapes
    python tools/analysis/dense_probe.py CONFIG CKPT --train-img-dir ... \
        --train-label-dir ... --val-img-dir ... --val-label-dir ... --num-classes N

The probe sets, their size caps and image scaling are those of DenseProbeHook
(docs/probes.md): on the same checkpoint and set, both give the same numbers.
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
    p.add_argument('--probe-set', default='demo',
                   choices=['demo', 'ade20k', 'voc', 'cityscapes'],
                   help='layout of --data-root (docs/probes.md)')
    p.add_argument('--data-root', default='data/flsl_demo',
                   help='the probe set (default: the embedded demo data)')
    for split in ('train', 'val'):
        p.add_argument(f'--{split}-img-dir')
        p.add_argument(f'--{split}-label-dir')
    p.add_argument('--num-classes', type=int, help='with explicit folders')
    p.add_argument('--reduce-zero-label', action='store_true',
                   help='with explicit folders: label 0 is ignored, 1..N are the '
                   'classes')
    p.add_argument('--max-train', type=int,
                   help='at most this many train images (seeded subset; default: '
                   'all for demo, 500 otherwise)')
    p.add_argument('--max-val', type=int,
                   help='at most this many val images (default: all for demo, 200)')
    p.add_argument('--short-side', type=int,
                   help='scale images to this short side (default: as they are for '
                   'demo, 224 otherwise; 0: as they are)')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--device', default='cpu',
                   help='token extraction, k-NN and linear probe here (cpu, cuda, '
                   'cuda:1, ...); clustering runs on the CPU')
    p.add_argument('--out', help='write the results as JSON here')
    from flsl_mm.checkpoints.safe_load import add_trust_argument
    add_trust_argument(p)
    return p.parse_args(argv)


def format_table(results: dict) -> str:
    lines = ['| probe | value |', '|---|---|']
    lines += [f'| {k} | {v:.4f} |' for k, v in results.items()]
    return '\n'.join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    from flsl_mm.checkpoints.safe_load import UnsafeCheckpointError, apply_trust
    apply_trust(args.trust_checkpoint)
    import flsl_mm  # noqa: F401
    from flsl_mm.analysis import load_backbone
    from flsl_mm.analysis.probe_runner import run_probes
    from flsl_mm.analysis.probe_sets import ProbeSetError, build_probe_set
    if args.device.startswith('cuda'):
        import torch
        if not torch.cuda.is_available():
            print(f'error: --device {args.device}: torch sees no GPU here',
                  file=sys.stderr)
            return 2
    if args.checkpoint is None and not args.random_init:
        print('error: give a CHECKPOINT or --random-init', file=sys.stderr)
        return 2
    sizes = {k: v for k, v in (('max_train', args.max_train),
                               ('max_val', args.max_val)) if v is not None}
    if args.short_side is not None:
        sizes['short_side'] = args.short_side or None
    if args.train_img_dir:
        if args.num_classes is None:
            print('error: --num-classes is needed with explicit folders',
                  file=sys.stderr)
            return 2
        spec = dict(type='folder', train_img_dir=args.train_img_dir,
                    train_label_dir=args.train_label_dir,
                    val_img_dir=args.val_img_dir, val_label_dir=args.val_label_dir,
                    num_classes=args.num_classes,
                    reduce_zero_label=args.reduce_zero_label)
    else:
        spec = dict(type=args.probe_set, data_root=args.data_root)
    try:
        probe_set = build_probe_set(dict(spec, **sizes), seed=args.seed)
    except ProbeSetError as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 2
    try:
        backbone = load_backbone(args.config, args.checkpoint, student=args.student,
                                 random_init=args.random_init, seed=args.seed)
    except UnsafeCheckpointError as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 2
    print(probe_set.describe())
    try:
        train, val = probe_set.load(backbone.patch_size)
    except ProbeSetError as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 2
    results = run_probes(backbone, train, val, probe_set.num_classes,
                         block=args.block, seed=args.seed, device=args.device)
    print(format_table(results))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == '__main__':
    sys.exit(main())
