#!/usr/bin/env python
"""Curves of one or several pretraining runs against iterations, as a PNG: the dense
probes DenseProbeHook logged (probe/knn_miou, ...; docs/probes.md) and the loss, or
any logged keys. A run resumed after preemption is read across its restarts.

    python tools/analysis/plot_curves.py work_dirs/flsl_demo --out curves.png
    # several runs, labelled, chosen keys
    python tools/analysis/plot_curves.py work_dirs/flsl=FLSL work_dirs/dino=DINO \
        --keys probe/knn_miou probe/cluster_miou loss --out flsl_vs_dino.png
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('runs', nargs='+',
                   help='work dirs, each optionally WORK_DIR=LABEL (default label: '
                   'the folder name)')
    p.add_argument('--keys', nargs='+',
                   help='logged keys to draw (default: every probe mIoU / top-1 '
                   'key any run logged, then loss)')
    p.add_argument('--out', required=True, help='PNG to write')
    p.add_argument('--title')
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from flsl_mm.analysis.training_log import plot_curves, probe_keys, read_rows
    runs = {}
    for spec in args.runs:
        path, _, label = spec.partition('=')
        if not Path(path).is_dir():
            print(f'error: {path}: no such work dir', file=sys.stderr)
            return 2
        runs[label or Path(path).name] = path
    try:
        keys = args.keys
        if not keys:
            keys = []
            for path in runs.values():
                keys += [k for k in probe_keys(read_rows(path)) if k not in keys]
            keys.append('loss')
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        drawn = plot_curves(runs, args.out, keys, args.title)
    except (FileNotFoundError, ValueError) as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 2
    print(f'wrote {args.out}: {", ".join(drawn)} of {len(runs)} run(s)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
