#!/usr/bin/env python
"""Write one PNG per image with panels: input | first three PCA components of the
tokens as RGB | k-means clusters of the tokens | the intra-view mean-shift
attention softmax(beta q z^T) of each query point (white dot).

    python tools/analysis/visualize_flsl.py CONFIG CHECKPOINT IMG [IMG ...] \
        --out-dir vis/ [--points 40,30 100,60] [--random-init] [--seed 0]
"""
import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('config', help='FLSL pretraining config')
    p.add_argument('checkpoint', nargs='?', help='pretraining checkpoint')
    p.add_argument('images', nargs='+', help='image files')
    p.add_argument('--out-dir', default='vis')
    p.add_argument('--points', nargs='*', default=None,
                   help='query pixels as x,y (default: a 2 x 2 grid)')
    p.add_argument('--num-clusters', type=int, default=5)
    p.add_argument('--beta', type=float, default=None,
                   help="mean-shift beta (default: the config's beta_sa)")
    p.add_argument('--random-init', action='store_true')
    p.add_argument('--student', action='store_true')
    p.add_argument('--seed', type=int, default=0)
    from flsl_mm.checkpoints.safe_load import add_trust_argument
    add_trust_argument(p)
    args = p.parse_args(argv)
    if args.random_init and args.checkpoint is not None:
        args.images.insert(0, args.checkpoint)
        args.checkpoint = None
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    from flsl_mm.checkpoints.safe_load import UnsafeCheckpointError, apply_trust
    apply_trust(args.trust_checkpoint)
    import cv2
    from mmengine.config import Config

    import flsl_mm  # noqa: F401
    from flsl_mm.analysis import load_backbone
    from flsl_mm.analysis.visualize import visualize_tokens
    if args.checkpoint is None and not args.random_init:
        print('error: give a CHECKPOINT or --random-init', file=sys.stderr)
        return 2
    points = None
    if args.points:
        try:
            points = [tuple(float(v) for v in p.split(',')) for p in args.points]
            assert all(len(p) == 2 for p in points)
        except (ValueError, AssertionError):
            print(f'error: --points must be x,y pairs, got {args.points}',
                  file=sys.stderr)
            return 2
    beta = args.beta if args.beta is not None else \
        Config.fromfile(args.config).model.get('beta_sa', 0.1 / 384**0.5)
    try:
        backbone = load_backbone(args.config, args.checkpoint, student=args.student,
                                 random_init=args.random_init, seed=args.seed)
    except UnsafeCheckpointError as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 2
    os.makedirs(args.out_dir, exist_ok=True)
    for path in args.images:
        img = cv2.imread(path, cv2.IMREAD_COLOR)
        if img is None:
            print(f'error: {path}: missing or not an image', file=sys.stderr)
            return 2
        canvas = visualize_tokens(backbone, img, points, args.num_clusters, beta,
                                  seed=args.seed)
        out = os.path.join(args.out_dir, Path(path).stem + '_flsl.png')
        cv2.imwrite(out, canvas)
        print(f'wrote {out} ({canvas.shape[1]} x {canvas.shape[0]})')
    return 0


if __name__ == '__main__':
    sys.exit(main())
