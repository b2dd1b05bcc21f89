#!/usr/bin/env python
"""Convert UAVDT (any on-disk layout) to COCO json, for users who prefer
mmdet's CocoDataset. Ignore regions become iscrowd=1 annotations (one per class).

    python tools/dataset_converters/uavdt_to_coco.py data/UAVDT data/UAVDT/annotations \
        [--splits train test] [--train-frame-stride 10]

Writes OUT/uavdt_<split>.json with image paths relative to DATA_ROOT.
"""
import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

# Use the flsl_mm of this checkout even when another one is installed.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('data_root', help='folder holding UAV-benchmark-M/')
    p.add_argument('out_dir', help='where uavdt_<split>.json go')
    p.add_argument('--splits', nargs='+', default=['train', 'test'],
                   choices=['train', 'test', 'all'])
    p.add_argument('--train-frame-stride', type=int, default=1,
                   help='keep every k-th training frame (test keeps all)')
    args = p.parse_args(argv)
    from mmengine.utils import track_iter_progress

    from flsl_mm.datasets.uavdt import UAVDTDataset, UAVDTFormatError, to_coco
    os.makedirs(args.out_dir, exist_ok=True)
    for split in args.splits:
        stride = args.train_frame_stride if split == 'train' else 1
        try:
            ds = UAVDTDataset(data_root=args.data_root, split=split,
                              frame_stride=stride, pipeline=[], test_mode=True)
        except (UAVDTFormatError, FileNotFoundError, KeyError) as exc:
            print(f'error: {exc}', file=sys.stderr)
            return 2
        items = [ds.get_data_info(i) for i in range(len(ds))]
        print(f'{split}: {len(items)} frames')
        coco = to_coco(items, relative_to=args.data_root,
                       progress=track_iter_progress if items else None)
        out = os.path.join(args.out_dir, f'uavdt_{split}.json')
        fd, tmp = tempfile.mkstemp(dir=args.out_dir, suffix='.partial')
        with os.fdopen(fd, 'w') as f:
            json.dump(coco, f)
        os.replace(tmp, out)
        print(f'\nwrote {out}: {len(coco["images"])} images, '
              f'{sum(1 - a["iscrowd"] for a in coco["annotations"])} objects, '
              f'{sum(a["iscrowd"] for a in coco["annotations"])} ignore boxes')
    return 0


if __name__ == '__main__':
    sys.exit(main())
