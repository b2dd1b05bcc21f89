#!/usr/bin/env python
"""Pre-flight scan of a config's dataset: decode and validate every sample the
way training loads it, in parallel, and write the bad ones in the format of a
run's ``bad_samples.jsonl`` (usable as ``train_cfg.skip_list``). Exits 1 when
any sample is bad (docs/pretraining.md, "Bad samples").

Checked: every image decoded by the pipeline's own loading transforms (those
before the first augmentation: ``Load*`` and ``CheckSegMapSize``, the latter
raising instead of skipping); the annotations the dataset itself refuses while
parsing (COCO: ``CheckedCocoDataset``; UAVDT: rows that cannot be objects).

A DAVIS-2017 folder in place of CONFIG (``check_dataset.py data/davis --split val``)
is scanned as ``tools/analysis/davis_label_propagation.py`` reads it: the split's
sequences, every frame decoded (a truncated JPEG is named), every annotation PNG
read as object ids and compared with its frame's size.
"""
import argparse
import json
import multiprocessing
import os
import os.path as osp
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

_STATE = {}  # the dataset and the loading transforms, shared with forked workers


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('config', help='a config, or a DAVIS-2017 folder')
    p.add_argument('--split', default='train', choices=('train', 'val', 'test'),
                   help='which dataloader\'s dataset (default: train)')
    p.add_argument('--workers', type=int, default=max(1, (os.cpu_count() or 1) // 2),
                   help='processes decoding in parallel (default: half the CPUs)')
    p.add_argument('--out', help='the bad list (default: work_dirs/<config>/'
                   'bad_samples_<split>.jsonl)')
    p.add_argument('--cfg-options', nargs='+', action=_dict_action(), default={},
                   help='override config settings, as in tools/train.py')
    return p.parse_args(argv)


def _dict_action():
    from mmengine.config import DictAction
    return DictAction


def loading_transforms(pipeline):
    """The transforms before the first augmentation (those that read files),
    with ``CheckSegMapSize`` raising: what decides whether a sample is usable."""
    from flsl_mm.datasets.transforms.check_seg_map import CheckSegMapSize
    prefix = []
    for transform in pipeline.transforms:
        if isinstance(transform, CheckSegMapSize):
            prefix.append(CheckSegMapSize(on_invalid='raise'))
        elif type(transform).__name__.startswith('Load'):
            prefix.append(transform)
        else:
            break
    return prefix


def check_davis_frame(index: int):
    """None, or the record of DAVIS frame ``index`` (and its annotation)."""
    from flsl_mm.datasets.bad_samples import BadSampleError
    from flsl_mm.datasets.transforms.loading import LoadImageLikeImageFolder
    from flsl_mm.evaluation.davis_metric import read_index_png
    frame, annotation = _STATE['davis'][index]
    try:
        shape = LoadImageLikeImageFolder()(dict(img_path=str(frame)))['img_shape']
    except BadSampleError as error:
        return dict(path=error.path, reason=error.reason, index=index)
    if annotation is None:
        return None
    try:
        ids = read_index_png(annotation)
    except ValueError as error:  # DAVISEvalError: names the file
        return dict(path=str(annotation), reason=str(error).split(': ', 1)[-1],
                    index=index)
    if ids.shape != tuple(shape):
        return dict(path=str(annotation), index=index,
                    reason=f'annotation is {ids.shape[1]}x{ids.shape[0]} px, its frame '
                    f'{frame.name} {shape[1]}x{shape[0]} px')
    return None


def davis_frames(root: str, split: str) -> tuple[list, list]:
    """(frame, annotation or None) of every frame of the split, and the records
    of sequences that cannot be read at all."""
    from flsl_mm.datasets.davis import (ANNOTATIONS, DAVISFormatError, load_sequence,
                                        read_split)
    pairs, bad = [], []
    for name in read_split(root, split):
        try:
            seq = load_sequence(root, name)
        except DAVISFormatError as error:
            path, _, reason = str(error).partition(': ')
            bad.append(dict(path=path, reason=reason))
            continue
        if seq is None:
            bad.append(dict(path=str(Path(root) / ANNOTATIONS / name),
                            reason='the sequence has no frames or no annotations'))
            continue
        anns = sorted((Path(root) / ANNOTATIONS / name).glob('*.png'))
        pairs += list(zip(seq.frames, anns))
    return pairs, bad


def check_sample(index: int):
    """None, or the record of sample ``index`` when it cannot be loaded."""
    if 'davis' in _STATE:
        return check_davis_frame(index)
    dataset, transforms = _STATE['dataset'], _STATE['transforms']
    info = dataset.get_data_info(index)
    path = info.get('img_path', f'<sample {index}>')
    try:
        results = info
        for transform in transforms:
            results = transform(results)
            if results is None:
                raise ValueError(f'{path}: {type(transform).__name__} left it out')
    except Exception as error:  # noqa: BLE001 -- every failure is a finding
        from flsl_mm.datasets.bad_samples import BadSampleError
        if isinstance(error, BadSampleError):
            return dict(path=error.path, reason=error.reason, index=index)
        text = str(error)
        prefix = f'{path}: '
        return dict(path=str(path), index=index,
                    reason=text[len(prefix):] if text.startswith(prefix) else
                    f'{type(error).__name__}: {text}')
    return None


def main(argv=None) -> int:
    args = parse_args(argv)
    import flsl_mm  # noqa: F401  (registers the components)
    from mmengine.config import Config
    from mmengine.registry import DATASETS, init_default_scope
    from mmengine.utils import ProgressBar

    from flsl_mm.datasets.bad_samples import write_records

    start = time.perf_counter()
    if osp.isdir(args.config):  # a DAVIS-2017 folder
        from flsl_mm.datasets.davis import DAVISFormatError
        try:
            pairs, bad = davis_frames(args.config, args.split)
        except DAVISFormatError as error:
            print(f'error: {error}', file=sys.stderr)
            return 2
        _STATE.update(davis=pairs)
        transforms, n = ['davis'], len(pairs)
    else:
        cfg = Config.fromfile(args.config)
        cfg.merge_from_dict(args.cfg_options)
        init_default_scope(cfg.get('default_scope', 'mmengine'))
        loader = cfg.get(f'{args.split}_dataloader')
        if not loader or not loader.get('dataset'):
            print(f'error: {args.config} has no {args.split}_dataloader.dataset',
                  file=sys.stderr)
            return 2
        dataset = DATASETS.build(loader['dataset'])
        if hasattr(dataset, 'full_init'):
            dataset.full_init()
        bad = [dict(r) for r in getattr(dataset, 'invalid_annotations', [])]
        transforms = loading_transforms(dataset.pipeline) if hasattr(
            dataset, 'pipeline') else []
        if not transforms:
            print(f'warning: the {args.split} pipeline has no loading transform; '
                  'only the annotations are checked', file=sys.stderr)
        _STATE.update(dataset=dataset, transforms=transforms)
        n = len(dataset)
    print(f'{args.config}: {n} samples ({args.split}), {len(bad)} invalid '
          f'annotation(s) found while parsing; decoding with {args.workers} '
          f'worker(s)', flush=True)
    scan_start = time.perf_counter()
    found = []
    progress = ProgressBar(n) if transforms else None
    if transforms:
        if args.workers > 1:
            context = multiprocessing.get_context('fork')
            with context.Pool(args.workers) as pool:
                for record in pool.imap(check_sample, range(n),
                                        chunksize=max(1, min(64, n // (4 * args.workers)))):
                    progress.update()
                    if record is not None:
                        found.append(record)
        else:
            for index in range(n):
                record = check_sample(index)
                progress.update()
                if record is not None:
                    found.append(record)
        print()
    scan_s = time.perf_counter() - scan_start
    bad += found
    stem = osp.splitext(osp.basename(osp.normpath(args.config)))[0]
    out = args.out or osp.join('work_dirs', stem, f'bad_samples_{args.split}.jsonl')
    write_records(out, bad)
    for record in bad:
        print(f'bad: {record["path"]}: {record["reason"]}')
    rate = n / scan_s if transforms and scan_s > 0 else 0.0
    print(json.dumps(dict(samples=n, bad=len(bad), bad_images=len(found),
                          invalid_annotations=len(bad) - len(found),
                          workers=args.workers, scan_s=round(scan_s, 3),
                          images_per_s=round(rate, 1),
                          images_per_s_per_worker=round(rate / args.workers, 1),
                          total_s=round(time.perf_counter() - start, 3), out=out)))
    print(f'{len(bad)} bad of {n} samples; list written to {out}' +
          (f' (train with train_cfg.skip_list={out} to leave them out)'
           if bad and 'davis' not in _STATE else ''))
    return 1 if bad else 0


if __name__ == '__main__':
    sys.exit(main())
