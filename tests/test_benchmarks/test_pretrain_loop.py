"""benchmarks/pretrain_loop.py runs the published config's real loop at a toy
size and reports what docs/benchmarks.md quotes (speed is not asserted)."""
import json
import subprocess
import sys


def test_loop_benchmark_reports_its_figures(repo_root, tmp_path):
    out = tmp_path / 'loop.json'
    proc = subprocess.run(
        [sys.executable, 'benchmarks/pretrain_loop.py', '--batch', '2', '--iters', '2',
         '--workers', '0', '--images', '4', '--image-size', '96', '128',
         '--loader-batches', '1', '--work-dir', str(tmp_path / 'work'),
         '--out', str(out)], cwd=repo_root, capture_output=True, text=True,
        timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    res = json.loads(out.read_text())
    assert res['iters'] == 2 and res['batch'] == 2 and res['loss_finite']
    assert res['s_per_iter'] > 0 and 0 <= res['data_wait_fraction'] < 1
    assert res['loader']['images_per_s'] > 0 and res['peak_rss_mib'] > 0
    assert 'ViT-S/16 FLSL loop on cpu, batch 2' in proc.stdout
