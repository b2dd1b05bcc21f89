#!/usr/bin/env python
"""What the interpreter start-up hook (``flsl_mm_mmcv_ext.pth`` ->
``flsl_mm_startup``) adds to every Python start of the environment.

Interleaved runs of ``python -c pass`` (this interpreter) with the hook and
without it (``-X importtime``'s per-module times of the hook's modules, and the
wall time of the whole start with the ``.pth`` present vs. moved aside for the
moment of the run); median over ``--runs``.

    python benchmarks/startup_hook.py [--runs 30] [--out FILE]
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def hook_import_us() -> float:
    """``-X importtime``'s cumulative microseconds of ``flsl_mm_startup``."""
    proc = subprocess.run([sys.executable, '-X', 'importtime', '-c', 'pass'],
                          capture_output=True, text=True, cwd=tempfile.gettempdir())
    for line in proc.stderr.splitlines():
        if line.rstrip().endswith('flsl_mm_startup'):
            return float(line.split('|')[1])
    raise SystemExit('flsl_mm_startup is not imported at start-up: is the hook '
                     'installed (bash tools/install.sh)?')


def start_s() -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, '-c', 'pass'], check=True,
                   cwd=tempfile.gettempdir())
    return time.perf_counter() - start


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--runs', type=int, default=30)
    p.add_argument('--out')
    args = p.parse_args(argv)
    from importlib import metadata

    from tools.installer.startup_hook import PTH_NAME
    pth = Path(metadata.distribution('flsl_mm')._path).parent / PTH_NAME
    if not pth.is_file():
        raise SystemExit(f'{pth} is not there: run bash tools/install.sh')
    aside = pth.with_name(pth.name + '.aside')
    imports, with_hook, without = [], [], []
    try:
        for _ in range(args.runs):
            imports.append(hook_import_us())
            with_hook.append(start_s())
            pth.rename(aside)
            try:
                without.append(start_s())
            finally:
                aside.rename(pth)
    finally:
        if aside.exists() and not pth.exists():
            aside.rename(pth)
    result = dict(
        runs=args.runs, hook_import_ms=round(statistics.median(imports) / 1000, 3),
        start_with_hook_ms=round(1000 * statistics.median(with_hook), 2),
        start_without_hook_ms=round(1000 * statistics.median(without), 2))
    result['added_ms'] = round(result['start_with_hook_ms']
                               - result['start_without_hook_ms'], 2)
    print(f"start-up hook: flsl_mm_startup imports in {result['hook_import_ms']} ms "
          f"(-X importtime); python -c pass {result['start_with_hook_ms']} ms with the "
          f"hook, {result['start_without_hook_ms']} ms without (median of "
          f"{args.runs}): {result['added_ms']:+.2f} ms")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == '__main__':
    sys.exit(main())
