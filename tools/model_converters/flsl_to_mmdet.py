#!/usr/bin/env python
"""Convert an FLSL pretraining checkpoint into an mmdet backbone checkpoint.

Reads flsl_mm pretraining checkpoints (teacher by default, --student), the
authors' released format, or plain ViT state dicts with a class token (DINO, DeiT,
timm; ``.pth`` or ``.safetensors``, e.g. timm weights from the Hugging Face hub),
without running any pickle (``docs/checkpoints.md``; ``--trust-checkpoint SRC`` for
a file you trust that needs one). Prints the keys it kept and dropped, refuses a
checkpoint of another arch, and writes ``{'state_dict': {'backbone.*': ...}}``
(``.pth``) or the flat ``backbone.*`` tensors (``.safetensors``) for
``init_cfg=dict(type='Pretrained', checkpoint=OUT, prefix='backbone.')`` or
``load_from``.
"""
import argparse
import os
import sys
import tempfile
from pathlib import Path

# Use the flsl_mm of this checkout even when another one is installed.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('src', help='pretraining checkpoint')
    p.add_argument('dst', help='output .pth, or .safetensors')
    p.add_argument('--arch', default='small', choices=['tiny', 'small', 'base'])
    p.add_argument('--patch-size', type=int, default=16, choices=[8, 16])
    p.add_argument('--student', action='store_true',
                   help='take the student backbone instead of the teacher')
    p.add_argument('--keep-final-norm', action='store_true',
                   help='keep norm.* (for backbones built with final_norm=True)')
    from flsl_mm.checkpoints.safe_load import add_trust_argument
    add_trust_argument(p)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from flsl_mm.checkpoints.safe_load import (UnsafeCheckpointError, apply_trust,
                                               load_checkpoint_file)
    from flsl_mm.models.utils.convert import (CheckpointFormatError,
                                              convert_for_detection,
                                              summarise_dropped)
    if not os.path.isfile(args.src):
        print(f'error: {args.src}: no such file', file=sys.stderr)
        return 2
    apply_trust(args.trust_checkpoint)
    try:
        ckpt = load_checkpoint_file(args.src, map_location='cpu')
    except UnsafeCheckpointError as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 2
    except Exception as exc:  # corrupt or not a torch file
        print(f'error: {args.src}: cannot be read as a torch checkpoint ({exc})',
              file=sys.stderr)
        return 2
    try:
        out, conv = convert_for_detection(ckpt, args.arch, args.patch_size,
                                          student=args.student,
                                          keep_final_norm=args.keep_final_norm)
    except CheckpointFormatError as exc:
        print(f'error: {args.src}: {exc}', file=sys.stderr)
        return 2
    branch = 'student' if args.student else 'teacher'
    if conv.source_format == 'vit':
        branch = 'ViT'
    print(f'{args.src}: {conv.source_format} format')
    print(f'kept: {branch} backbone, {len(out["state_dict"])} tensors '
          f'(vit-{args.arch}/{args.patch_size}) -> backbone.*')
    if conv.dropped:
        groups = summarise_dropped(conv.dropped, conv.source_format, args.student)
        print('not needed for detection, left out: ' +
              ', '.join(f'{name} ({n})' for name, n in groups.items()))
    # write next to the target and rename: no half-written checkpoint on failure
    os.makedirs(os.path.dirname(os.path.abspath(args.dst)), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(args.dst)),
                               suffix='.partial')
    os.close(fd)
    try:
        if args.dst.endswith('.safetensors'):
            from safetensors.torch import save_file
            save_file(out['state_dict'], tmp,
                      metadata={k: str(v) for k, v in out['meta'].items()})
        else:
            torch.save(out, tmp)
        os.replace(tmp, args.dst)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    print(f'wrote {args.dst}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
