"""benchmarks/pretrain_loop.py runs the published config's real loop (or its
-gpuaug variant) at a toy size and reports what docs/benchmarks.md quotes (speed
is not asserted); benchmarks/view_loader.py the same for the two view paths."""
import json
import subprocess
import sys

import pytest


@pytest.mark.parametrize('views', ['cpu', 'device'])
def test_loop_benchmark_reports_its_figures(repo_root, tmp_path, views):
    out = tmp_path / 'loop.json'
    proc = subprocess.run(
        [sys.executable, 'benchmarks/pretrain_loop.py', '--batch', '2', '--iters', '2',
         '--workers', '0', '--images', '4', '--image-size', '96', '128',
         '--loader-batches', '1', '--work-dir', str(tmp_path / 'work'),
         '--views', views, '--out', str(out)], cwd=repo_root, capture_output=True,
        text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    res = json.loads(out.read_text())
    assert res['iters'] == 2 and res['batch'] == 2 and res['loss_finite']
    assert res['s_per_iter'] > 0 and 0 <= res['data_wait_fraction'] < 1
    assert res['loader']['images_per_s'] > 0 and res['peak_rss_mib'] > 0
    assert res['config'].endswith('-gpuaug.py') == (views == 'device')
    assert f'ViT-S/16 FLSL loop on cpu, views on {views}, batch 2' in proc.stdout


def test_view_loader_benchmark_reports_both_paths(repo_root, tmp_path):
    out = tmp_path / 'views.json'
    proc = subprocess.run(
        [sys.executable, 'benchmarks/view_loader.py', '--images', '4', '--batch', '4',
         '--image-size', '96', '128', '--loader-batches', '1', '--feed-workers', '1',
         '--out', str(out)], cwd=repo_root, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    res = json.loads(out.read_text())
    for key in ('decode_tensor', 'cpu_path', 'device_path'):
        assert res[f'{key}_images_per_s'] > 0
    assert res['ratio_per_core'] == round(res['device_path_images_per_s']
                                          / res['cpu_path_images_per_s'], 2)
    assert res['device_path_one_worker_images_per_s'] > 0
    assert res['cpu_path_feed_images_per_s'] > 0 and res['device_path_feed_images_per_s'] > 0
    assert res['views'] == [[4, 3, 224, 224]] * 2 + [[4, 3, 96, 96]] * 2
    assert 'device path (worker part)' in proc.stdout
