#!/usr/bin/env python
"""DAVIS-2017 video object segmentation by label propagation with a frozen FLSL
backbone, scored with the official J&F (see docs/davis.md).

    python tools/analysis/davis_label_propagation.py CONFIG CHECKPOINT \\
        --data-root data/DAVIS --split val --out-dir work_dirs/davis_flsl

writes one palette PNG per frame under OUT_DIR/<sequence>/ (the official results
layout), then global_results-<split>.csv and per-sequence_results-<split>.csv in
OUT_DIR, and prints the table. ``--eval-only RESULTS_DIR`` scores an existing
results folder (any method's). ``--demo`` generates a small DAVIS-layout set and runs
everything on it.
"""
import argparse
import sys
import time
from pathlib import Path

# Use the flsl_mm of this checkout even when another one is installed.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('config', nargs='?', help='FLSL pretraining config (the backbone: '
                   'arch, patch size, final norm)')
    p.add_argument('checkpoint', nargs='?',
                   help='flsl_mm pretraining or converted checkpoint, the authors\' '
                   'release, or a DINO / timm ViT (class token dropped)')
    p.add_argument('--data-root', default='data/DAVIS', help='the DAVIS folder')
    p.add_argument('--split', default='val')
    p.add_argument('--out-dir', default='work_dirs/davis')
    p.add_argument('--sequences', nargs='+', help='only these sequences')
    p.add_argument('--overwrite', action='store_true',
                   help='propagate sequences whose outputs are already complete')
    p.add_argument('--eval-only', metavar='RESULTS_DIR',
                   help='only score RESULTS_DIR/<sequence>/*.png')
    p.add_argument('--student', action='store_true',
                   help='the student backbone of an flsl_mm checkpoint')
    p.add_argument('--random-init', action='store_true',
                   help='the backbone at its initialisation (baseline)')
    p.add_argument('--device', default='cpu')
    from flsl_mm.checkpoints.safe_load import add_trust_argument
    add_trust_argument(p)
    p.add_argument('--demo', action='store_true',
                   help='generate a small DAVIS-layout set in --data-root '
                   '(default data/davis_demo) and run on it, short side 192')
    g = p.add_argument_group('protocol (defaults: the published one)')
    g.add_argument('--topk', type=int, default=5)
    g.add_argument('--n-last-frames', type=int, default=7)
    g.add_argument('--radius', type=int, default=12,
                   help='neighbourhood radius in tokens (size_mask_neighborhood)')
    g.add_argument('--temperature', type=float, default=0.1)
    g.add_argument('--short-side', type=int, default=480)
    g.add_argument('--multiple', type=int, default=64)
    g.add_argument('--mean', type=float, nargs=3, default=(0.485, 0.456, 0.406))
    g.add_argument('--std', type=float, nargs=3, default=(0.228, 0.224, 0.225))
    g.add_argument('--query-chunk', type=int, default=1024,
                   help='queries per affinity chunk (memory vs speed)')
    args = p.parse_args(argv)
    if args.demo and args.data_root == 'data/DAVIS':
        args.data_root = 'data/davis_demo'
    if args.demo and args.short_side == 480:
        args.short_side = 192
    if args.eval_only is None and (args.config is None or
                                   (args.checkpoint is None and not args.random_init)):
        p.error('CONFIG and CHECKPOINT are needed (or --random-init, or --eval-only)')
    return args


def score(results_dir, args, sequences) -> dict:
    from flsl_mm.evaluation.davis_metric import (evaluate_results_dir, format_table,
                                                 write_csvs)
    table, rows, _ = evaluate_results_dir(results_dir, args.data_root, sequences)
    out_dir = Path(args.out_dir if args.eval_only is None else results_dir)
    paths = write_csvs(out_dir, args.split, table, rows)
    print(f'DAVIS-2017 {args.split}, {len(rows)} objects in {len(sequences)} '
          f'sequences ({results_dir})')
    print(format_table(table))
    print('wrote ' + ', '.join(str(p) for p in paths))
    return table


def main(argv=None) -> int:
    args = parse_args(argv)
    from flsl_mm.checkpoints.safe_load import UnsafeCheckpointError, apply_trust
    apply_trust(args.trust_checkpoint)
    import cv2
    import torch
    from mmengine.utils import ProgressBar

    from flsl_mm.analysis.label_propagation import (PropagationConfig,
                                                    backbone_features,
                                                    propagate_video)
    from flsl_mm.datasets.davis import (DAVISFormatError, ensure_davis_demo,
                                        load_sequence, read_palette, read_split,
                                        write_index_png)
    from flsl_mm.evaluation.davis_metric import DAVISEvalError, read_index_png

    try:
        if args.demo:
            ensure_davis_demo(args.data_root)
        names = read_split(args.data_root, args.split)
        if args.sequences:
            unknown = sorted(set(args.sequences) - set(names))
            if unknown:
                raise DAVISFormatError(f'--sequences {unknown} not in the {args.split} '
                                       'split')
            names = [n for n in names if n in args.sequences]
        if args.eval_only is not None:
            score(args.eval_only, args, names)
            return 0

        from flsl_mm.analysis import load_backbone
        try:
            backbone = load_backbone(args.config, args.checkpoint,
                                     student=args.student,
                                     random_init=args.random_init).to(args.device)
        except UnsafeCheckpointError as exc:
            print(f'error: {exc}', file=sys.stderr)
            return 2
        features = backbone_features(backbone)
        cfg = PropagationConfig(topk=args.topk, n_last_frames=args.n_last_frames,
                                radius=args.radius, temperature=args.temperature,
                                short_side=args.short_side, multiple=args.multiple,
                                mean=tuple(args.mean), std=tuple(args.std),
                                query_chunk=args.query_chunk)
        sequences, skipped = [], []
        for name in names:
            seq = load_sequence(args.data_root, name)
            if seq is None:
                print(f'warning: {name}: no frames or no annotations under '
                      f'{args.data_root}; skipped', file=sys.stderr)
                skipped.append(name)
            else:
                sequences.append(seq)
        out_dir = Path(args.out_dir)
        todo = []
        for seq in sequences:
            done = all((out_dir / seq.name / f'{f.stem}.png').is_file()
                       for f in seq.frames)
            if done and not args.overwrite:
                print(f'{seq.name}: outputs complete, skipped (--overwrite to redo)')
            else:
                todo.append(seq)
        total = sum(len(s.frames) - 1 for s in todo)
        print(f'propagating {len(todo)} sequences, {total} frames, on {args.device} '
              f'(short side {cfg.short_side}, top-{cfg.topk}, {cfg.n_last_frames} '
              f'context frames, radius {cfg.radius}, T {cfg.temperature})')
        bar = ProgressBar(total) if total else None
        start = time.time()
        peak = 0
        for seq in todo:
            first = read_index_png(seq.first_annotation)
            palette = read_palette(seq.first_annotation)
            frames = []
            for f in seq.frames:
                img = cv2.imread(str(f), cv2.IMREAD_COLOR)
                if img is None:
                    raise DAVISFormatError(f'{f}: cannot be decoded as an image')
                frames.append(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
            if first.shape != frames[0].shape[:2]:
                raise DAVISFormatError(f'{seq.first_annotation}: {first.shape[1]}x'
                                       f'{first.shape[0]}, its frame '
                                       f'{frames[0].shape[1]}x{frames[0].shape[0]}')
            dst = out_dir / seq.name
            dst.mkdir(parents=True, exist_ok=True)
            write_index_png(dst / f'{seq.frames[0].stem}.png', first, palette)

            def save(t, ids, seq=seq, dst=dst, palette=palette):
                write_index_png(dst / f'{seq.frames[t].stem}.png', ids, palette)
                bar.update()

            propagate_video(frames, first, features, backbone.patch_size, cfg,
                            device=args.device, on_frame=save)
            if str(args.device).startswith('cuda'):
                peak = max(peak, torch.cuda.max_memory_allocated())
        if total:
            took = time.time() - start
            print(f'\n{total} frames in {took:.1f} s ({total / took:.2f} frames/s)'
                  + (f', peak GPU memory {peak / 2**30:.2f} GiB' if peak else ''))
        scored = [s.name for s in sequences]
        score(out_dir, args, scored)
        if skipped:
            print(f'skipped (no frames or annotations): {", ".join(skipped)}')
    except (DAVISFormatError, DAVISEvalError, ValueError, FileNotFoundError) as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
