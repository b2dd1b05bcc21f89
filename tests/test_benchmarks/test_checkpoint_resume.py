"""benchmarks/checkpoint_resume.py at a toy size: the figures docs/pretraining.md
quotes are produced, and the mid-epoch skip loads no image."""
import json
import subprocess
import sys

import torch


def test_checkpoint_benchmark_reports_size_times_and_no_loads(repo_root, tmp_path):
    out = tmp_path / 'ckpt.json'
    proc = subprocess.run(
        [sys.executable, 'benchmarks/checkpoint_resume.py', '--arch', 'tiny',
         '--repeats', '1', '--images', '1000', '--world-size', '2', '--batch', '4',
         '--fraction', '0.5', '--out', str(out)], cwd=repo_root,
        capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    res = json.loads(out.read_text())
    ckpt, skip = res['checkpoint'], res['skip']
    # the file is the tensors (student, teacher, two AdamW moments) plus little
    assert ckpt['tensor_mib'] > 50 and \
        ckpt['tensor_mib'] <= ckpt['size_mib'] < 1.01 * ckpt['tensor_mib'], ckpt
    # the timed file loads back equal; the timed check refuses it cut in half
    assert ckpt['loads_back_equal'] is True
    assert ckpt['truncated_refused'].startswith('truncated or not a torch checkpoint')
    assert skip['batches_per_epoch'] == 125 and skip['start_batch'] == 62
    # rank 0 of 2 has 500 images, 125 batches: batch 63 is its images 248..251
    assert skip['images_loaded'] == 4
    g = torch.Generator().manual_seed(0 + 17)  # DefaultSampler: seed + epoch
    order = torch.randperm(1000, generator=g).tolist()[0::2]  # rank 0 of 2
    assert skip['first_batch'] == order[248:252]
    assert 'first batch in' in proc.stdout and '4 images loaded' in proc.stdout
