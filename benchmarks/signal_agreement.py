#!/usr/bin/env python
"""What agreeing on stop signals costs per training iteration
(``FlagAgreement``, docs/pretraining.md "Preemption and resume"): 2 processes
(gloo, this machine), each iteration a stand-in for the step (``--step-ms`` of
busy work), then either a blocking all-reduce of the two flags (what
``ResumableCheckpointHook`` did before) or the asynchronous exchange it does now
(started at an iteration's end, read at the next). Prints the time per iteration
above the step alone, for each. The step keeps the CPU busy (a CPU step), or with
``--idle`` sleeps (a GPU step, where the CPU waits for the device).

    python benchmarks/signal_agreement.py [--iters 2000] [--step-ms 2] [--idle]
"""
import argparse
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

WORKER = r'''
import json, os, sys, time
sys.path.insert(0, os.environ['REPO'])
import torch.distributed as dist
from flsl_mm.engine.preemption import FlagAgreement
dist.init_process_group('gloo')
iters, step = int(os.environ['ITERS']), float(os.environ['STEP_MS']) / 1000
agreement = FlagAgreement()

def busy(seconds):
    if os.environ['IDLE'] == '1':  # a GPU step: the CPU waits for the device
        time.sleep(seconds)
        return
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass

def run(mode):
    dist.barrier()
    start = time.perf_counter()
    for i in range(iters):
        busy(step)
        if mode == 'blocking':
            agreement.max([0, 0])
        elif mode == 'async':
            agreement.exchange([0, 0])
    if mode == 'async':
        agreement.max([0])  # collect the last one
    return (time.perf_counter() - start) / iters

out = {m: run(m) for m in ('none', 'blocking', 'async', 'none', 'blocking', 'async')}
json.dump({m: min(v for k, v in out.items() if k == m) for m in out},
          open(os.environ['OUT'], 'w'))
dist.destroy_process_group()
'''


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--iters', type=int, default=2000)
    p.add_argument('--step-ms', type=float, default=2.0)
    p.add_argument('--idle', action='store_true',
                   help='the step sleeps (a GPU step) instead of computing')
    args = p.parse_args(argv)
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    out = Path(os.environ.get('TMPDIR', '/tmp')) / f'signal_agreement_{port}.json'
    procs = [subprocess.Popen(
        [sys.executable, '-c', WORKER],
        env=dict(os.environ, REPO=str(REPO), RANK=str(r), WORLD_SIZE='2',
                 MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port), ITERS=str(args.iters),
                 STEP_MS=str(args.step_ms), IDLE=str(int(args.idle)),
                 OUT=str(out) if r == 0 else os.devnull,
                 OMP_NUM_THREADS='1')) for r in range(2)]
    for proc in procs:
        if proc.wait() != 0:
            raise SystemExit('a worker failed')
    times = json.loads(out.read_text())
    out.unlink()
    result = dict(iters=args.iters, step_ms=args.step_ms, idle=args.idle,
                  blocking_us=round(1e6 * (times['blocking'] - times['none']), 1),
                  async_us=round(1e6 * (times['async'] - times['none']), 1))
    print(json.dumps(result))
    return result


if __name__ == '__main__':
    main()
