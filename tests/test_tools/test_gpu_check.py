"""tools/misc/gpu_check.py at toy sizes on the CPU: the same path a GPU run takes
(published configs through tools/train.py, ops check, DAVIS benchmark), its table
and its JSON."""
import importlib.util
import json
import os
import subprocess
import sys

import pytest


def gpu_check(repo_root, out_dir, *args, env=None):
    proc = subprocess.run(
        [sys.executable, 'tools/misc/gpu_check.py', '--device', 'cpu', '--quick',
         '--out-dir', str(out_dir), *args], cwd=repo_root, capture_output=True,
        text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return proc.stdout, json.loads((out_dir / 'gpu_check.json').read_text())


def test_quick_cpu_run_covers_every_check(repo_root, tmp_path):
    out, report = gpu_check(repo_root, tmp_path / 'check', '--dist-on-cpu')
    res = report['results']
    assert report['device'] == 'cpu' and report['quick'] is True
    assert list(res) == ['ops', 'views', 'step', 'pretrain', 'mask_rcnn',
                         'semantic_fpn', 'davis', 'dist_resume']
    # the step: both view paths, bf16 / fp16, eager / compiled; no host sync
    # between logged iterations (flsl_mm's counter on the CPU)
    runs = res['step']['runs']
    assert sorted(runs) == sorted(['loader_bf16', 'loader_fp16', 'loader_bf16_compiled',
                                   'device_bf16', 'device_fp16', 'device_bf16_compiled'])
    for name, run in runs.items():
        assert run['status'] == 'ok', (name, run)
        assert run['syncs_per_iter'] == 0 and 'HostSyncCounter' in run['counted_by']
        assert run['images_per_s'] > 0 and run['iterations'] == 4
    assert '| device | bf16 -> float32 (CPU) | yes |' in out
    # the loader feed, views in the workers vs on the device (one worker here)
    views = res['views']
    assert views['status'] == 'ok' and views['workers'] >= 1
    assert views['pil_path_images_per_s'] > 0 and views['device_path_images_per_s'] > 0
    # the ratio of the rates, to its 2 decimals (and the rates' 0.1 images/s)
    assert views['ratio'] == pytest.approx(views['device_path_images_per_s']
                                           / views['pil_path_images_per_s'],
                                           rel=0.01, abs=0.006)
    from flsl_mm import compat_ops
    kind = compat_ops.mmcv_ops_kind()
    cpu_path = 'mmcv' if kind == 'compiled' else 'torchvision'
    assert res['ops']['status'] == 'ok' and res['ops']['backend'] == cpu_path
    assert res['ops']['mmcv_ops'] == kind
    # against the outputs recorded from compiled mmcv's CPU kernels
    assert res['ops']['nms_same_indices'] and res['ops']['batched_nms_same_indices']
    assert res['ops']['nms_cases'] == 16
    # 8 generated images / batch 2 x 2 epochs; 2 iterations of each downstream job
    assert res['pretrain']['iters'] == 8 and res['pretrain']['batch'] == 2
    assert res['mask_rcnn']['iters'] == 2 and res['semantic_fpn']['iters'] == 2
    for name in ('pretrain', 'mask_rcnn', 'semantic_fpn'):
        assert res[name]['status'] == 'ok' and res[name]['loss_finite'], res[name]
        assert res[name]['it_per_s'] > 0 and res[name]['amp'] is False
        assert f'cpu -> {cpu_path}' in res[name]['ops']  # tools/train.py's ops line
    # the published configs were used, with only sizes and data changed
    cfg = (tmp_path / 'check' / 'pretrain' / 'config.py').read_text()
    assert 'out_channels=4096' in cfg and "arch='small'" in cfg
    assert res['davis']['fps_overall'] > 0
    # 2 processes (gloo here, NCCL on GPUs) saved, then --resume went on
    assert res['dist_resume']['status'] == 'ok'
    assert res['dist_resume']['backend'] == 'gloo'
    assert (tmp_path / 'check' / 'dist_resume' / 'epoch_3.pth').is_file()
    for name in res:
        assert name in out  # the table


def test_dist_check_is_skipped_without_two_gpus(repo_root, tmp_path):
    spec = importlib.util.spec_from_file_location(
        'gpu_check', repo_root / 'tools' / 'misc' / 'gpu_check.py')
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    assert tool.check_dist_resume('cpu', True, tmp_path, tmp_path) == dict(
        status='skipped', why='needs 2 visible GPUs, 0 visible')


def test_forced_torchvision_ops_match_mmcv(repo_root, tmp_path):
    env = dict(os.environ, FLSL_MM_OPS='torchvision')
    out, report = gpu_check(repo_root, tmp_path / 'tv', '--only', 'ops', env=env)
    ops = report['results']['ops']
    assert ops['mode'] == 'torchvision' and ops['backend'] == 'torchvision'
    assert ops['nms_same_indices'] and ops['roi_align_max_abs_diff'] < 1e-5


def test_cuda_without_a_gpu_is_refused(repo_root, tmp_path):
    env = dict(os.environ, CUDA_VISIBLE_DEVICES='')
    proc = subprocess.run([sys.executable, 'tools/misc/gpu_check.py', '--out-dir',
                           str(tmp_path)], cwd=repo_root, capture_output=True,
                          text=True, timeout=300, env=env)
    assert proc.returncode == 1
    assert 'torch sees no GPU here; use --device cpu' in proc.stderr
