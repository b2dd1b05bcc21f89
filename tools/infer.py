#!/usr/bin/env python
"""Run a fine-tuned model on your own images, a folder or a video's frames, the
way OpenMMLab users do it: mmdet's ``DetInferencer`` (Mask R-CNN / Faster R-CNN
configs) or mmseg's ``MMSegInferencer`` (Semantic FPN configs), with a progress
bar, pictures (boxes, masks, segmentation overlays) and JSON predictions.

    python tools/infer.py CONFIG CHECKPOINT INPUT [INPUT ...] --out-dir DIR
        [--device cpu|cuda|cuda:N] [--score-thr 0.3] [--video-step 1]
        [--uavdt-root DIR]

``INPUT``: image files, folders (searched recursively) and videos (every
``--video-step``-th frame). Writes ``DIR/vis/<name>`` (the picture) and
``DIR/preds/<name>.json`` (the predictions: mmdet's format; for segmentation
mmseg's label map ``DIR/preds/<name>.png`` and the classes it holds), and
``DIR/infer.json`` (what was written for each input). For a
UAVDT config the ignore regions of the frames found in ``--uavdt-root``
(default: the config's test data root) are drawn too (grey boxes). An image
that cannot be read is named and skipped; the run goes on and ends with the
list (exit status 1). A checkpoint that does not fit the config, or a device
that is not there, stops it before the first image, saying why.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the flsl_mm of this checkout

IMAGE_EXTS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')
VIDEO_EXTS = ('.mp4', '.avi', '.mov', '.mkv', '.webm')


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('config')
    p.add_argument('checkpoint')
    p.add_argument('inputs', nargs='+', metavar='INPUT')
    p.add_argument('--out-dir', required=True)
    p.add_argument('--device', default='cpu')
    p.add_argument('--score-thr', type=float, default=0.3,
                   help='detections below this score are not drawn (detection)')
    p.add_argument('--video-step', type=int, default=1,
                   help='every N-th frame of a video')
    p.add_argument('--uavdt-root', help='UAVDT folder whose ignore regions are drawn '
                   '(default: the config\'s test data root, for UAVDT configs)')
    from flsl_mm.checkpoints.safe_load import add_trust_argument
    add_trust_argument(p)
    args = p.parse_args(argv)
    if args.video_step < 1:
        p.error('--video-step must be >= 1')
    return args


def check_device(device: str) -> None:
    import torch
    if device.startswith('cuda') and not torch.cuda.is_available():
        raise SystemExit(f'--device {device}: torch sees no CUDA GPU here (torch '
                         f'{torch.__version__}); use --device cpu')
    if device.startswith('cuda:'):
        index = int(device.split(':')[1])
        if index >= torch.cuda.device_count():
            raise SystemExit(f'--device {device}: only {torch.cuda.device_count()} '
                             'GPU(s) visible')


def collect_inputs(inputs, frames_dir: Path, step: int) -> tuple[list[Path], list]:
    """The images to run on (video frames written to ``frames_dir``), and the
    inputs that are not there or not images (path, reason)."""
    images, failed = [], []
    for text in inputs:
        path = Path(text)
        if path.is_dir():
            found = sorted(p for p in path.rglob('*') if p.suffix.lower() in IMAGE_EXTS)
            if not found:
                failed.append((str(path), 'a folder without images'))
            images += found
        elif not path.exists():
            failed.append((str(path), 'no such file'))
        elif path.suffix.lower() in VIDEO_EXTS:
            frames, error = video_frames(path, frames_dir / path.stem, step)
            images += frames
            if error:
                failed.append((str(path), error))
        else:
            images.append(path)
    return images, failed


def video_frames(video: Path, out: Path, step: int) -> tuple[list[Path], str | None]:
    """Every ``step``-th frame of ``video`` as a JPEG in ``out``."""
    import cv2
    capture = cv2.VideoCapture(str(video))
    if not capture.isOpened():
        return [], 'cannot be opened as a video'
    out.mkdir(parents=True, exist_ok=True)
    frames, index = [], 0
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        if index % step == 0:
            path = out / f'{video.stem}_{index:06d}.jpg'
            cv2.imwrite(str(path), frame)
            frames.append(path)
        index += 1
    capture.release()
    return frames, None if frames else 'no frame could be read'


def unreadable(path: Path) -> str | None:
    """Why ``path`` is not an image that can be read, or None."""
    import mmcv
    try:
        img = mmcv.imread(str(path))
    except Exception as exc:  # mmcv raises for some broken files
        return f'cannot be read as an image ({type(exc).__name__}: {exc})'
    if img is None:
        return 'cannot be read as an image (empty, truncated or not an image)'
    return None


def check_checkpoint(model, checkpoint: str, config: str) -> None:
    """Refuse a checkpoint whose weights are not the config's model's, naming
    the keys and the converter that makes the right file."""
    from flsl_mm.checkpoints import load_checkpoint_file
    state = load_checkpoint_file(checkpoint, map_location='cpu')
    state = state.get('state_dict', state) if isinstance(state, dict) else state
    ours = set(model.state_dict())
    theirs = set(state)
    if any(k.startswith(('teacher.', 'teacher_')) for k in theirs) or any(
            'last_layer.parametrizations' in k or k.startswith('loss_module.')
            for k in theirs):
        raise SystemExit(
            f'{checkpoint} is a pretraining checkpoint (student / teacher / heads), '
            f'not a {type(model).__name__} of {config}: fine-tune first, starting '
            'from its teacher backbone converted by tools/model_converters/'
            'flsl_to_mmdet.py (docs/checkpoints.md)')
    missing, unexpected = sorted(ours - theirs), sorted(theirs - ours)
    if missing or unexpected:
        def show(keys):
            return ', '.join(keys[:8]) + (f' (+{len(keys) - 8} more)' if len(keys) > 8
                                          else '')
        backbone_only = all(k.startswith('backbone.') for k in theirs)
        hint = ('it holds a backbone alone (what tools/model_converters/'
                'flsl_to_mmdet.py writes): it is an init_cfg for fine-tuning, not '
                'a fine-tuned model' if backbone_only else
                'a checkpoint of another config or architecture (a converted '
                'backbone comes from tools/model_converters/flsl_to_mmdet.py with '
                'its --arch)')
        raise SystemExit(
            f'{checkpoint} does not fit {config}: missing {len(missing)} keys '
            f'[{show(missing)}], unexpected {len(unexpected)} [{show(unexpected)}]; '
            f'{hint}')
    for key in sorted(ours & theirs):
        want, have = model.state_dict()[key].shape, state[key].shape
        if want != have:
            raise SystemExit(f'{checkpoint} does not fit {config}: {key} has shape '
                             f'{tuple(have)}, the model {tuple(want)} (another '
                             'architecture, patch size or number of classes)')


def uavdt_ignore_regions(cfg, root: str | None) -> dict:
    """Image file -> ignore boxes (x1, y1, x2, y2) of the UAVDT frames under
    ``root`` (default: the config's test data root); {} for other configs."""
    dataset = (cfg.get('test_dataloader') or {}).get('dataset', {})
    if 'UAVDT' not in str(dataset.get('type', '')) and root is None:
        return {}
    root = root or dataset.get('data_root')
    if not root or not Path(root).is_dir():
        return {}
    from flsl_mm.datasets.uavdt.format import load_index
    index, _ = load_index(root)
    regions = {}
    for seq in index.values():
        for frame, info in seq['frames'].items():
            path = os.path.realpath(os.path.join(seq['image_dir'], seq['files'][frame]))
            regions[path] = info['ignore']
    return regions


def draw_ignore(picture: Path, boxes) -> None:
    """Grey boxes, labelled, over the saved picture."""
    import cv2
    img = cv2.imread(str(picture))
    if img is None or not len(boxes):
        return
    for x1, y1, x2, y2 in boxes:
        p1, p2 = (int(x1), int(y1)), (int(x2), int(y2))
        cv2.rectangle(img, p1, p2, (160, 160, 160), 2)
        cv2.putText(img, 'ignore', (p1[0] + 2, p1[1] + 12), cv2.FONT_HERSHEY_SIMPLEX,
                    0.4, (160, 160, 160), 1)
    cv2.imwrite(str(picture), img)


def write_seg_json(path: Path, label_map, model) -> None:
    """The classes a segmentation map holds, with their share of the pixels
    (the map itself is mmseg's PNG next to it)."""
    import numpy as np
    labels = np.asarray(label_map)
    classes = (getattr(model, 'dataset_meta', None) or {}).get('classes')
    values, counts = np.unique(labels, return_counts=True)
    path.write_text(json.dumps(dict(
        height=int(labels.shape[0]), width=int(labels.shape[1]), classes=[
            dict(label=int(v), name=(classes[int(v)] if classes is not None
                                     and 0 <= v < len(classes) else None),
                 fraction=round(int(c) / labels.size, 6))
            for v, c in zip(values, counts)]), indent=1))


def build_inferencer(cfg, args):
    scope = cfg.get('default_scope')
    if scope == 'mmdet':
        from mmdet.apis import DetInferencer
        return DetInferencer(model=cfg, weights=args.checkpoint, device=args.device,
                             show_progress=False), 'det'
    if scope == 'mmseg':
        from mmseg.apis import MMSegInferencer
        inferencer = MMSegInferencer(model=cfg, weights=args.checkpoint,
                                     device=args.device)
        inferencer.show_progress = False  # ours instead (one image per call)
        return inferencer, 'seg'
    raise SystemExit(f'{args.config}: tools/infer.py runs detection (mmdet) and '
                     f'segmentation (mmseg) configs; this one is {scope!r} (a '
                     'pretraining config: tools/analysis/ has its tools)')


def main(argv=None) -> int:
    args = parse_args(argv)
    import flsl_mm  # noqa: F401  (registers components, applies compat fixes)
    from mmengine.config import Config
    from mmengine.utils import ProgressBar

    from flsl_mm.checkpoints.safe_load import apply_trust
    if not os.path.isfile(args.config):
        raise SystemExit(f'config file not found: {args.config}')
    if not os.path.isfile(args.checkpoint):
        raise SystemExit(f'checkpoint not found: {args.checkpoint}')
    check_device(args.device)
    apply_trust(args.trust_checkpoint)
    cfg = Config.fromfile(args.config)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    images, failed = collect_inputs(args.inputs, out / 'frames', args.video_step)
    inferencer, kind = build_inferencer(cfg, args)
    check_checkpoint(inferencer.model, args.checkpoint, args.config)
    ignore = uavdt_ignore_regions(cfg, args.uavdt_root) if kind == 'det' else {}
    print(f'[infer] {len(images)} image(s) -> {out} ({kind}, {args.device})', flush=True)
    bar = ProgressBar(len(images)) if images else None
    done, summary = 0, []
    for path in images:
        why = unreadable(path)
        if why is None:
            try:
                if kind == 'det':
                    inferencer(str(path), out_dir=str(out), no_save_pred=False,
                               pred_score_thr=args.score_thr)
                else:
                    result = inferencer(str(path), out_dir=str(out), img_out_dir='vis',
                                        pred_out_dir='preds')
                    write_seg_json(out / 'preds' / f'{path.stem}.json',
                                   result['predictions'], inferencer.model)
                done += 1
                boxes = ignore.get(os.path.realpath(path))
                if boxes is not None:
                    draw_ignore(out / 'vis' / path.name, boxes)
                summary.append(dict(input=str(path), picture=str(out / 'vis' / path.name),
                                    predictions=str(out / 'preds' / f'{path.stem}.json'),
                                    ignore_regions=0 if boxes is None else len(boxes)))
            except Exception as exc:  # a broken image the decoder let through
                why = f'inference failed ({type(exc).__name__}: {exc})'
        if why is not None:
            failed.append((str(path), why))
        bar.update()
    (out / 'infer.json').write_text(json.dumps(summary, indent=1))
    print(f'\n[infer] {done} picture(s) in {out / "vis"}, predictions in '
          f'{out / "preds"} (list: {out / "infer.json"})', flush=True)
    if failed:
        (out / 'failed.json').write_text(json.dumps(
            [dict(input=p, reason=r) for p, r in failed], indent=1))
        print(f'[infer] {len(failed)} input(s) not processed (also in '
              f'{out / "failed.json"}):', file=sys.stderr)
        for path, why in failed:
            print(f'  {path}: {why}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
