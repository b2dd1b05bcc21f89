#!/usr/bin/env python
"""Convert a checkpoint written before safe checkpoints (numpy objects and
``HistoryBuffer`` s pickled inside) into one that loads without running any
pickle (``docs/checkpoints.md``).

    python tools/misc/upgrade_checkpoint.py OLD.pth NEW.pth --trust

The old file is read with a full pickle load -- it can run code -- so ``--trust``
is required: only for files you trust (your own runs). The new file holds the
same values (numpy arrays / scalars and history buffers as plain data that
flsl_mm restores exactly on load), is written atomically, and is checked to load
with ``weights_only=True`` before the command succeeds. ``--resume NEW.pth`` then
continues bitwise as the old file would have.
"""
import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('src', help='the old checkpoint')
    p.add_argument('dst', help='the converted checkpoint (.pth)')
    p.add_argument('--trust', action='store_true',
                   help='required: SRC is read with a full pickle load')
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    from flsl_mm.checkpoints import load_checkpoint_file, plain_checkpoint
    if not os.path.isfile(args.src):
        print(f'error: {args.src}: no such file', file=sys.stderr)
        return 2
    if not args.trust:
        print(f'error: {args.src} is read with a full pickle load, which can run code: '
              'give --trust if you trust the file', file=sys.stderr)
        return 2
    if os.path.abspath(args.src) == os.path.abspath(args.dst):
        print('error: write the converted checkpoint to another file', file=sys.stderr)
        return 2
    ckpt = load_checkpoint_file(args.src, map_location='cpu', trust=True)
    if not isinstance(ckpt, dict):
        print(f'error: {args.src}: not a checkpoint dict', file=sys.stderr)
        return 2
    folder = os.path.dirname(os.path.abspath(args.dst))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, suffix='.partial')
    os.close(fd)
    try:
        torch.save(plain_checkpoint(ckpt), tmp)
        unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(tmp)
        if unsafe:
            print(f'error: {args.src} holds objects flsl_mm cannot write as plain '
                  f'data: {", ".join(unsafe)}; nothing written', file=sys.stderr)
            return 2
        load_checkpoint_file(tmp, map_location='cpu')  # loads safely
        os.replace(tmp, args.dst)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    print(f'wrote {args.dst}: loads without running pickles '
          f'({os.path.getsize(args.dst) / 2**20:.1f} MB)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
