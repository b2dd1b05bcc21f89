#!/usr/bin/env python
"""Write the embedded demo data set ("things and stuff" images, COCO instances,
semantic maps, train/val). Deterministic given the arguments."""
import argparse
import sys
import time
from pathlib import Path

# Use the flsl_mm of this checkout even when another one is installed.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument('root', nargs='?', default='data/flsl_demo',
                   help='output folder (default: data/flsl_demo)')
    p.add_argument('--num-train', type=int, default=64)
    p.add_argument('--num-val', type=int, default=16)
    p.add_argument('--height', type=int, default=128)
    p.add_argument('--width', type=int, default=160)
    p.add_argument('--max-things', type=int, default=4)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--overwrite', action='store_true', help='replace ROOT')
    p.add_argument('--random-colours', action='store_true',
                   help='random colour per region / thing: classes differ only by '
                   'shape and texture')
    args = p.parse_args(argv)
    from flsl_mm.datasets.demo_data import make_demo_data
    start = time.time()
    try:
        root = make_demo_data(args.root, num_train=args.num_train,
                              num_val=args.num_val, img_size=(args.height, args.width),
                              max_things=args.max_things, seed=args.seed,
                              overwrite=args.overwrite,
                              random_colours=args.random_colours)
    except FileExistsError as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 2
    print(f'wrote {args.num_train} train + {args.num_val} val images to {root} '
          f'in {time.time() - start:.1f} s')
    return 0


if __name__ == '__main__':
    sys.exit(main())
