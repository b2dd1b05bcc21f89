#!/usr/bin/env python
"""From a stop signal to the process's exit (docs/pretraining.md, "Preemption and
resume"): ``tools/train.py`` in its own process group, SIGTERM to the whole group
when a line of its log appears, the time until it has exited (its checkpoint
written), against Slurm's default ``KillWait`` of 30 s.

    python benchmarks/stop_latency.py --case demo        # mid-epoch, demo pretraining
    python benchmarks/stop_latency.py --case probe-due   # published ViT-S/16 config,
        # a dense probe due at the epoch end the signal arrives at
    python benchmarks/stop_latency.py --case validation  # Mask R-CNN demo, during val
"""
import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def demo_data(root: Path) -> Path:
    from flsl_mm.datasets import make_demo_data
    return make_demo_data(root / 'flsl_demo', num_train=16, num_val=8,
                          img_size=(96, 128), seed=0)


def case_args(case: str, data: Path) -> tuple[str, list[str], str]:
    """(config, --cfg-options, the regex of the log line that triggers the
    signal)."""
    if case == 'demo':
        return ('configs/pretrain/flsl_vit-tiny-p16_demo.py',
                [f'train_dataloader.dataset.data_root={data}',
                 'train_dataloader.batch_size=2', 'train_dataloader.num_workers=2',
                 'default_hooks.logger.interval=1'], r'\[1\]\[3/8\]')
    if case == 'probe-due':  # the published config, its ADE20K probe on demo data
        child = data.parent / 'probe_due.py'
        child.write_text(
            f"_base_ = ['{REPO}/configs/pretrain/flsl_vit-small-p16_8xb64-300e_in1k.py']\n"
            "custom_hooks = [dict(type='DenseProbeHook', interval=1, at_start=False, "
            f"probe_set=dict(type='demo', data_root='{data}'), "
            "probes=['knn', 'cluster'])]\n"
            # fp32 on the CPU (the published AmpOptimWrapper needs a GPU)
            "optim_wrapper = dict(_delete_=True, type='OptimWrapper', "
            "optimizer=dict(type='AdamW', lr=1e-4, weight_decay=0.04))\n")
        return (str(child),
                [f'train_dataloader.dataset.data_root={data}',
                 'train_dataloader.batch_size=4', 'train_dataloader.num_workers=2',
                 'default_hooks.logger.interval=1'],
                r'Epoch\(train\)\s+\[1\]\[(\d+)/\1\]')  # epoch 1's last iteration
    return ('configs/det_coco/mask-rcnn_flsl-vit-tiny-p16_fpn_demo.py',
            [f'train_dataloader.dataset.data_root={data}',
             f'val_dataloader.dataset.data_root={data}',
             f'val_evaluator.ann_file={data}/annotations/instances_val.json',
             'model.backbone.init_cfg=None', 'train_dataloader.batch_size=2',
             'train_dataloader.num_workers=1', 'val_dataloader.num_workers=1',
             'train_dataloader.dataset.indices=4', 'val_dataloader.dataset.indices=8',
             'train_cfg.max_epochs=2', 'train_cfg.val_interval=1',
             'default_hooks.logger.interval=1'],
            r'Epoch\(val\)\s+\[1\]\[1/')


def measure(case: str, work: Path) -> dict:
    data = demo_data(work)
    config, options, trigger = case_args(case, data)
    log = work / 'train.log'
    with open(log, 'w') as out:
        proc = subprocess.Popen(
            [sys.executable, 'tools/train.py', config, '--work-dir', str(work / 'w'),
             '--cfg-options', *options], cwd=REPO, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True)
    while not re.search(trigger, log.read_text()):
        if proc.poll() is not None:
            raise SystemExit(f'the run ended before {trigger!r}:\n'
                             + log.read_text()[-3000:])
        time.sleep(0.01)
    sent = time.monotonic()
    os.killpg(proc.pid, signal.SIGTERM)
    rc = proc.wait()
    seconds = time.monotonic() - sent
    text = log.read_text()
    stop = next((ln.split('WARNING - ')[-1] for ln in text.splitlines()
                 if 'training stopped by' in ln), None)
    return dict(case=case, exit_status=rc, signal_to_exit_s=round(seconds, 2),
                stopped=stop, probe_skipped='a stop signal is pending: no probe' in text,
                kill_wait_s=30)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--case', choices=['demo', 'probe-due', 'validation'],
                   default='demo')
    p.add_argument('--out', help='also write the result as JSON here')
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        result = measure(args.case, Path(tmp))
    print(json.dumps(result, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))
    return 0 if result['exit_status'] == 75 else 1


if __name__ == '__main__':
    sys.exit(main())
