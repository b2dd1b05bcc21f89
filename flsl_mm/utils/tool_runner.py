"""Run this repository's tools as subprocesses (demo chain, learning study)."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path


def run_tool(cmd: list[str], log_path: Path, cwd: Path, cpu_only: bool = False
             ) -> tuple[str, float]:
    """Run ``python *cmd`` in ``cwd`` with this interpreter, output (stdout and
    stderr) to ``log_path``; returns (output, seconds). A failure stops the caller
    with the command, the log's path and its last lines. ``cpu_only`` hides every
    GPU from the tool (``CUDA_VISIBLE_DEVICES`` empty)."""
    env = dict(os.environ, CUDA_VISIBLE_DEVICES='') if cpu_only else None
    start = time.time()
    proc = subprocess.run([sys.executable, *cmd], cwd=cwd, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, env=env)
    Path(log_path).write_text(proc.stdout)
    if proc.returncode != 0:
        tail = '\n'.join(proc.stdout.splitlines()[-30:])
        raise SystemExit(f'failed ({proc.returncode}): {" ".join(cmd)}\n'
                         f'log: {log_path}\n{tail}')
    return proc.stdout, time.time() - start


def last_checkpoint(work_dir: Path) -> Path:
    """The checkpoint mmengine's ``last_checkpoint`` file in ``work_dir`` names."""
    marker = Path(work_dir) / 'last_checkpoint'
    if not marker.is_file():
        raise FileNotFoundError(f'{marker} not found: the run in {work_dir} saved no '
                                'checkpoint')
    return Path(marker.read_text().strip())
