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


def test_step_benchmark_counts_syncs_breaks_and_recompiles(repo_root, tmp_path):
    """benchmarks/pretrain_step.py: the published step on both view paths has no
    host sync, no graph break and no recompilation; the reference-style step
    (per-parameter host reads, ...) has hundreds of syncs and graph breaks."""
    out = tmp_path / 'step.json'
    proc = subprocess.run(
        [sys.executable, 'benchmarks/pretrain_step.py', '--batch', '2', '--iters', '1',
         '--images', '4', '--compile-backend', 'aot_eager', '--out', str(out)],
        cwd=repo_root, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = {r['way']: r for r in json.loads(out.read_text())}
    for way, copies in (('loader views', 7), ('device views', 6)):
        r = rows[way]
        assert (r['syncs_per_step'], r['graph_breaks'], r['recompiles']) == (0, 0, 0)
        assert r['copies_per_step'] == copies and r['compiled_s_per_step'] > 0
    ref = rows['reference-style']
    assert ref['syncs_per_step'] > 300 and ref['graph_breaks'] > 0
    assert '| reference-style |' in proc.stdout


def test_step_model_counts_flops_and_memory(repo_root, tmp_path):
    """benchmarks/step_model.py on the published ViT-S/16: FLOPs per image the
    same at two batches (counted, not assumed), memory growing per image, the
    H100 images/s in proportion to the fraction of the peak."""
    out = tmp_path / 'model.json'
    runs = []
    for batches in (['1', '2'], ['2', '3']):
        proc = subprocess.run(
            [sys.executable, 'benchmarks/step_model.py', '--configs',
             'configs/pretrain/flsl_vit-small-p16_8xb64-300e_in1k.py', '--batches',
             *batches, '--out', str(out)], cwd=repo_root, capture_output=True,
            text=True, timeout=900)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        runs.append(json.loads(out.read_text())[0])
    a, b = runs
    assert a['queries'] == [16, 9, 9] and a['batch'] == 64
    assert 40 < a['gflops_per_image'] < 60
    assert b['gflops_per_image'] == pytest.approx(a['gflops_per_image'], rel=1e-3)
    assert a['memory_mib']['per_image'] > 10
    ips = a['images_per_s']
    assert ips['70%'] == pytest.approx(ips['30%'] * 7 / 3, rel=1e-3)
    assert '| ViT-S/16 |' in proc.stdout
