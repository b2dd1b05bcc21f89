#!/usr/bin/env python
"""Check flsl_mm on a GPU machine in one command (under 8 minutes on one GPU):
which ops path each detection op takes, and that every job runs, how fast and in
how much memory.

    python tools/misc/gpu_check.py                      # on the GPU
    python tools/misc/gpu_check.py --device cpu --quick # same path, toy sizes

Checks (each one's real entry point: ``tools/train.py`` on a written config, in a
subprocess of its own, on generated data in ``--out-dir``):

1. ``ops``: nms / batched_nms / RoIAlign / roi_align: compiled mmcv or flsl_mm's
   stand-in, mmcv or torchvision kernels on the device (``FLSL_MM_OPS``), and the
   device's results against those recorded from compiled mmcv's CPU kernels.
2. ``views``: the loader feed of one GPU with the node's cores (CPU count / GPU
   count workers): normalised FLSL view batches per second, views made by the
   workers with PIL (the published configs) vs on the GPU (the ``-gpuaug``
   configs), on generated 375 x 500 JPEGs (``benchmarks/view_loader.py``).
2b. ``step``: the published ViT-S/16 pretraining at batch 64, both view paths,
   bf16 and fp16, eager and compiled (bf16): time per iteration, images/s, data
   wait, peak memory, host syncs per iteration (``torch.cuda.set_sync_debug_mode``
   via ``HostSyncHook``); a table of its own.
3. ``pretrain``: the published ViT-S/16 FLSL config (K 4096, 2 x 224 + 2 x 96
   views, AMP fp16 on CUDA, batch 64): ``runner.train()`` with its hooks and
   loader; iterations/s, data wait, peak GPU memory.
4. ``mask_rcnn``: the published Mask R-CNN ViT-S/16 config, 20 iterations at
   1024 x 1024 on generated COCO-format data (loss finite, time, memory).
5. ``semantic_fpn``: the published ADE20K Semantic FPN config, 20 iterations on
   generated semantic maps.
6. ``davis``: label propagation at the published protocol, frames/s.
7. ``dist_resume``: with 2 visible GPUs, 2-process NCCL pretraining that saves,
   then ``--resume`` continues (skipped otherwise).

Prints a table and writes ``<out-dir>/gpu_check.json``. ``--quick`` shrinks sizes
and iterations (what the test suite runs on CPU); the numbers of a ``--quick`` run
say the path works, not how fast it is.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))  # the flsl_mm of this checkout

PRETRAIN_CFG = 'configs/pretrain/flsl_vit-small-p16_8xb64-300e_in1k.py'
MASK_RCNN_CFG = 'configs/det_coco/mask-rcnn_flsl-vit-small-p16_fpn_1x_coco.py'
SEMFPN_CFG = 'configs/seg_ade20k/semfpn_flsl-vit-small-p16_8xb4-40k_ade20k-512x512.py'
PRETRAIN_GPUAUG_CFG = 'configs/pretrain/flsl_vit-small-p16_8xb64-300e_in1k-gpuaug.py'
CHECKS = ('ops', 'views', 'step', 'pretrain', 'mask_rcnn', 'semantic_fpn', 'davis',
          'dist_resume')
# the step check's runs: (view path, precision, compiled)
STEP_RUNS = [(views, dtype, compiled) for views in ('loader', 'device')
             for dtype, compiled in (('bf16', False), ('fp16', False), ('bf16', True))]

# full size (GPU) / --quick (toy) settings of each check
SIZES = {
    False: dict(pretrain_batch=64, pretrain_images=512, pretrain_epochs=4,
                det_size=1024, det_iters=20, seg_batch=4, seg_iters=20,
                davis_frames=12, data_hw=(256, 320), dist_batch=16,
                views_images=128, views_hw=(375, 500), views_batches=8,
                step_images=256, step_epochs=4),
    True: dict(pretrain_batch=2, pretrain_images=8, pretrain_epochs=2,
               det_size=128, det_iters=2, seg_batch=1, seg_iters=2,
               davis_frames=3, data_hw=(64, 80), dist_batch=2,
               views_images=8, views_hw=(120, 160), views_batches=2,
               step_images=4, step_epochs=2),
}


def log(msg: str) -> None:
    print(f'[gpu_check] {msg}', flush=True)


# ------------------------------------------------------------------ running a job
def run_train(name: str, config: str, options: dict, out_dir: Path,
              device: str) -> dict:
    """Write ``config`` merged with ``options`` to ``out_dir/name/config.py``, run
    ``tools/train.py`` on it, and summarise its per-iteration log. The published
    configs' fp16 ``AmpOptimWrapper`` is kept on CUDA; mmengine refuses it on the
    CPU, where the job runs in float32."""
    cfg_file, amp = write_config(name, config, options, out_dir, device)
    output = run_logged(['tools/train.py', str(cfg_file)],
                        cfg_file.parent / 'train.log', device)
    return dict(summarise_log(cfg_file.parent, output), amp=amp)


def write_config(name: str, config: str, options: dict, out_dir: Path,
                 device: str) -> tuple[Path, bool]:
    """``config`` merged with ``options``, work dir ``out_dir/name``, written to
    ``out_dir/name/config.py``; returns the file and whether AMP stays on."""
    from mmengine.config import Config
    work = out_dir / name
    work.mkdir(parents=True, exist_ok=True)
    cfg = Config.fromfile(REPO / config)
    cfg.merge_from_dict(options)
    amp = cfg.optim_wrapper.get('type') == 'AmpOptimWrapper'
    if amp and device != 'cuda':
        cfg.optim_wrapper.type = 'OptimWrapper'
        for key in ('loss_scale', 'dtype'):
            cfg.optim_wrapper.pop(key, None)
        amp = False
    cfg.work_dir = str(work)
    cfg_file = work / 'config.py'
    cfg.dump(str(cfg_file))
    return cfg_file, amp


def run_logged(cmd: list[str], log_path: Path, device: str,
               python_args: bool = True, env: dict | None = None) -> str:
    """Run ``python *cmd`` (or ``cmd``) in the repo, output to ``log_path``; a
    failure raises RuntimeError with the last lines."""
    env = dict(os.environ if env is None else env, PYTHONUNBUFFERED='1')
    if device == 'cpu':
        env['CUDA_VISIBLE_DEVICES'] = ''
    full = [sys.executable, *cmd] if python_args else cmd
    proc = subprocess.run(full, cwd=REPO, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, env=env)
    log_path.write_text(proc.stdout)
    if proc.returncode != 0:
        tail = '\n'.join(proc.stdout.splitlines()[-25:])
        raise RuntimeError(f'exit {proc.returncode}: {" ".join(cmd)} (log: '
                           f'{log_path})\n{tail}')
    return proc.stdout


def summarise_log(work: Path, output: str) -> dict:
    """Iterations/s, data wait, peak memory and loss of the run in ``work``
    (:func:`~flsl_mm.analysis.training_log.timing_summary`), and the ops line
    ``tools/train.py`` printed."""
    from flsl_mm.analysis.training_log import read_scalars, timing_summary
    try:
        result = timing_summary(read_scalars(work))
    except ValueError:
        raise RuntimeError(f'{work}: the run logged no training iteration')
    ops = re.search(r'^flsl_mm ops .*$', output, re.M)
    if ops:
        result['ops'] = ops.group(0)
    if not result['loss_finite']:
        raise RuntimeError(f'non-finite loss in {work}: {result}')
    return result


# ------------------------------------------------------------------ the checks
MMCV_RECORD_DIR = Path(__file__).resolve().parents[2] / 'tests' / 'data' / 'mmcv_kernels'


def check_ops(device: str, quick: bool) -> dict:
    """Who runs each op on ``device`` (compiled mmcv or flsl_mm's stand-in, mmcv
    or torchvision kernels), and its results against those recorded from mmcv
    2.1.0's compiled CPU kernels (``tests/data/mmcv_kernels``)."""
    import importlib

    import torch
    from mmcv import ops

    from flsl_mm import compat_ops
    result = dict(mode=compat_ops.ops_mode(), mmcv_ops=compat_ops.mmcv_ops_kind(),
                  mmcv_cuda=compat_ops.mmcv_compiled_cuda(),
                  backend=compat_ops.ops_backend(device))
    result['paths'] = {op: result['backend'] for op in
                       ('nms', 'batched_nms', 'RoIAlign', 'roi_align')}
    sys.path.insert(0, str(MMCV_RECORD_DIR))
    from record_mmcv_kernels import load_record  # a numpy archive, no pickle
    record = load_record()
    cases = record['nms'][::4] if quick else record['nms']
    result['nms_cases'] = len(cases)
    result['nms_same_indices'] = all(
        torch.equal(ops.nms(c['boxes'].to(device), c['scores'].to(device), c['iou'],
                            offset=c['offset'])[1].cpu(), c['keep']) for c in cases)
    w = record['nms_wrappers']
    bkeep = ops.batched_nms(w['boxes'].to(device), w['scores'].to(device),
                            w['labels'].to(device),
                            dict(type='nms', iou_threshold=0.5))[1].cpu()
    result['batched_nms_same_indices'] = bool(torch.equal(bkeep, w['batched'][1]))
    diff = grad_diff = 0.0
    for c in record['roi_align']:
        x = c['feats'].to(device).requires_grad_(True)
        y = ops.roi_align(x, c['rois'].to(device), (7, 7), 1.0 / c['stride'],
                          c['sampling_ratio'], 'avg', c['aligned'])
        (y * c['grad_out'].to(device)).sum().backward()
        diff = max(diff, float((y.detach().cpu() - c['out']).abs().max()))
        grad_diff = max(grad_diff, float((x.grad.cpu() - c['grad']).abs().max()))
    result['roi_align_max_abs_diff'] = diff
    result['roi_align_grad_max_abs_diff'] = grad_diff
    nms_module = importlib.import_module('mmcv.ops.nms')
    assert isinstance(nms_module.ext_module, compat_ops.OpsDispatcher)
    ok = (result['nms_same_indices'] and result['batched_nms_same_indices']
          and diff < 1e-4 and grad_diff < 1e-3)
    if not ok:
        raise RuntimeError(f'ops on {device} differ from compiled mmcv\'s CPU '
                           f'kernels (recorded): {result}')
    return result


def no_eval(options: dict) -> dict:
    """Training only: no validation loop, a log line per iteration, no
    checkpoints (timing the step, not the disk)."""
    options.update({'val_dataloader': None, 'val_cfg': None, 'val_evaluator': None,
                    'default_hooks.logger.interval': 1,
                    'log_processor.window_size': 1,
                    'default_hooks.checkpoint.interval': 10**6,
                    'default_hooks.checkpoint.save_last': False})
    return options


def loader(num_workers: int, batch: int) -> dict:
    return {'batch_size': batch, 'num_workers': num_workers,
            'persistent_workers': num_workers > 0}


def check_views(device, quick, out_dir, workers) -> dict:
    from mmengine.registry import DefaultScope

    from benchmarks import view_loader
    size = SIZES[quick]
    paths = view_loader.make_jpegs_once(out_dir / 'jpegs', size['views_images'],
                                        size['views_hw'])
    batch = size['pretrain_batch']
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        rates = {name: view_loader.feed_rate('flsl', on_device, paths, workers, batch,
                                             size['views_batches'], device)
                 for name, on_device in (('pil_path', False), ('device_path', True))}
    return dict(workers=workers, batch=batch, image_hw=list(size['views_hw']),
                pil_path_images_per_s=round(rates['pil_path'], 1),
                device_path_images_per_s=round(rates['device_path'], 1),
                ratio=round(rates['device_path'] / rates['pil_path'], 2))


def check_step(device, quick, out_dir, workers) -> dict:
    """The published ViT-S/16 pretraining at batch 64 through ``tools/train.py``
    on generated 375 x 500 JPEGs (an image folder, as ImageNet): per view path
    (loader / device) x precision (bf16 / fp16 AMP) x eager / compiled
    (``--compile``; bf16), from :class:`HostSyncHook`'s record: time per
    iteration (median after the first two), images/s, the wait for data, peak
    GPU memory, and host syncs per iteration outside the logged ones
    (``torch.cuda.set_sync_debug_mode`` on a GPU; flsl_mm's counter on the
    CPU, where the compiled runs use the ``aot_eager`` backend with
    ``--quick``: no C++ build)."""
    from benchmarks import view_loader
    size = SIZES[quick]
    batch = size['pretrain_batch']
    jpegs = out_dir / 'step_jpegs'
    view_loader.make_jpegs_once(jpegs / 'train', size['step_images'],
                                size['views_hw'])
    runs = {}
    for views, dtype, compiled in STEP_RUNS:
        name = f'{views}_{dtype}' + ('_compiled' if compiled else '')
        config = PRETRAIN_GPUAUG_CFG if views == 'device' else PRETRAIN_CFG
        options = no_eval({
            'train_dataloader.dataset.data_root': str(jpegs),
            'train_cfg.max_epochs': size['step_epochs'],
            'custom_hooks': [dict(type='HostSyncHook')],
            'default_hooks.logger.interval': 5,  # most iterations are not logged
        })
        options.update({f'train_dataloader.{k}': v for k, v in
                        loader(workers, batch).items()})
        if dtype == 'bf16':
            options['optim_wrapper.dtype'] = 'bfloat16'
            options['optim_wrapper.loss_scale'] = dict(_delete_=True, enabled=False)
        if compiled:
            options['model.compile'] = dict(backend='inductor') if device == 'cuda' \
                or not quick else dict(backend='aot_eager')
        try:
            cfg_file, amp = write_config(f'step_{name}', config, options, out_dir,
                                         device)
            start = time.time()
            run_logged(['tools/train.py', str(cfg_file)], cfg_file.parent / 'train.log',
                       device)
            record = json.loads((cfg_file.parent / 'host_syncs.json').read_text())
        except Exception as exc:  # report the run and go on with the next
            runs[name] = dict(status='failed', error=str(exc).splitlines()[0][:200])
            continue
        outside = [r for r in record['per_iteration'] if not r['read_point']]
        it_s = record['median_iter_s']
        runs[name] = dict(
            status='ok', amp=dtype if amp else f'{dtype} -> float32 (CPU)',
            iterations=record['iterations'],
            ms_per_iter=round(1000 * it_s, 1) if it_s else None,
            images_per_s=round(batch / it_s, 1) if it_s else None,
            data_wait_ms=round(1000 * (record['median_data_s'] or 0), 1),
            peak_mem_mib=record.get('peak_gpu_mib'),
            syncs_per_iter=round(record['syncs_outside_read_points']
                                 / max(1, len(outside)), 2),
            counted_by=record['counted_by'], seconds=round(time.time() - start, 1))
    failed = [n for n, r in runs.items() if r['status'] != 'ok']
    if failed and len(failed) == len(runs):
        raise RuntimeError(f'every step run failed: {runs[failed[0]]["error"]}')
    return dict(batch=batch, workers=workers, image_hw=list(size['views_hw']),
                runs=runs)


def check_pretrain(device, quick, data, out_dir, workers) -> dict:
    from mmengine.config import Config
    size = SIZES[quick]
    pipeline = Config.fromfile(REPO / PRETRAIN_CFG).train_dataloader.dataset.pipeline
    options = no_eval({
        'train_dataloader.dataset': dict(
            _delete_=True, type='DemoImageDataset', data_root=str(data),
            split='train', pipeline=pipeline),
        'train_cfg.max_epochs': size['pretrain_epochs'],
    })
    options.update({f'train_dataloader.{k}': v for k, v in
                    loader(workers, size['pretrain_batch']).items()})
    result = run_train('pretrain', PRETRAIN_CFG, options, out_dir, device)
    result['batch'] = size['pretrain_batch']
    result['images_per_s'] = (round(result['it_per_s'] * size['pretrain_batch'], 1)
                              if result['it_per_s'] else None)
    return result


def check_mask_rcnn(device, quick, data, out_dir, workers) -> dict:
    size = SIZES[quick]
    side = size['det_size']
    pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
        dict(type='Resize', scale=(side, side), keep_ratio=False),
        dict(type='RandomFlip', prob=0.5),
        dict(type='PackDetInputs'),
    ]
    options = no_eval({
        'model.backbone.init_cfg': None,  # random weights: speed does not care
        'train_dataloader.dataset': dict(
            _delete_=True, type='DemoCocoDataset', data_root=str(data),
            ann_file='annotations/instances_train.json',
            data_prefix=dict(img='train/images/'),
            filter_cfg=dict(filter_empty_gt=True, min_size=4), pipeline=pipeline),
        'train_cfg': dict(_delete_=True, type='IterBasedTrainLoop',
                          max_iters=size['det_iters'], val_interval=10**6),
        'param_scheduler': [dict(type='LinearLR', start_factor=0.01, by_epoch=False,
                                 begin=0, end=size['det_iters'])],
        'train_dataloader.sampler': dict(_delete_=True, type='InfiniteSampler',
                                         shuffle=True),
        'train_dataloader.batch_sampler': None,
        'default_hooks.checkpoint.by_epoch': False,
        'log_processor.by_epoch': False,
    })
    options.update({f'train_dataloader.{k}': v for k, v in
                    loader(workers, 2 if not quick else 1).items()})
    result = run_train('mask_rcnn', MASK_RCNN_CFG, options, out_dir, device)
    result['size'] = f'{side}x{side}'
    return result


def check_semantic_fpn(device, quick, data, out_dir, workers) -> dict:
    size = SIZES[quick]
    from mmengine.config import Config
    pipeline = Config.fromfile(REPO / SEMFPN_CFG).train_pipeline
    options = no_eval({
        'model.backbone.init_cfg': None,
        # the published pipeline reduces label 0 (ADE20K's "other") to 255
        'train_dataloader.dataset': dict(_delete_=True, type='DemoSegDataset',
                                         data_root=str(data), split='train',
                                         reduce_zero_label=True,
                                         pipeline=pipeline),
        'train_cfg.max_iters': size['seg_iters'],
        'train_cfg.val_interval': 10**6,
        'param_scheduler': [dict(type='LinearLR', start_factor=0.01, by_epoch=False,
                                 begin=0, end=size['seg_iters'])],
    })
    options.update({f'train_dataloader.{k}': v for k, v in
                    loader(workers, size['seg_batch']).items()})
    result = run_train('semantic_fpn', SEMFPN_CFG, options, out_dir, device)
    result['crop'] = '512x512'
    return result


def check_davis(device, quick, out_dir) -> dict:
    frames = SIZES[quick]['davis_frames']
    out = run_logged(['benchmarks/davis_propagation.py', '--frames', str(frames),
                      '--device', device], out_dir / 'davis.log', device)
    match = re.search(r'([\d.]+) frames/s overall, ([\d.]+) frames/s with a full',
                      out)
    if not match:
        raise RuntimeError(f'no frames/s in the DAVIS benchmark output:\n{out}')
    result = dict(frames=frames, fps_overall=float(match.group(1)),
                  fps_full_context=float(match.group(2)), resolution='480x854')
    mem = re.search(r'peak GPU memory ([\d.]+) MiB', out)
    if mem:
        result['peak_mem_mib'] = float(mem.group(1))
    return result


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def check_dist_resume(device, quick, data, out_dir, on_cpu: bool = False) -> dict:
    """2 processes (NCCL on 2 GPUs; gloo with ``on_cpu``, what the tests run): 2
    epochs with a checkpoint each, then ``--resume`` runs the third epoch from
    the second's checkpoint."""
    import torch
    gpus = torch.cuda.device_count() if device == 'cuda' else 0
    if gpus < 2 and not on_cpu:
        return dict(status='skipped', why=f'needs 2 visible GPUs, {gpus} visible')
    from mmengine.config import Config
    size = SIZES[quick]
    pipeline = Config.fromfile(REPO / PRETRAIN_CFG).train_dataloader.dataset.pipeline
    cfg_file, _ = write_config('dist_resume', PRETRAIN_CFG, {
        'train_dataloader.dataset': dict(
            _delete_=True, type='DemoImageDataset', data_root=str(data),
            split='train', pipeline=pipeline),
        'train_dataloader.batch_size': size['dist_batch'],
        'train_dataloader.num_workers': 2,
        'train_cfg.max_epochs': 2,
        'default_hooks.checkpoint.interval': 1,
    }, out_dir, device)
    work = cfg_file.parent
    env = dict(os.environ, PYTHON=sys.executable, PORT=str(free_port()))
    start = time.time()
    run_logged(['bash', 'tools/dist_train.sh', str(cfg_file), '2'],
               work / 'train.log', device, python_args=False, env=env)
    out = run_logged(['bash', 'tools/dist_train.sh', str(cfg_file), '2',
                      '--resume', '--cfg-options', 'train_cfg.max_epochs=3'],
                     work / 'resume.log', device, python_args=False,
                     env=dict(env, PORT=str(free_port())))
    if not (work / 'epoch_3.pth').is_file() or 'resumed epoch: 2' not in out:
        raise RuntimeError(f'the resumed run did not continue from epoch 2 (logs in '
                           f'{work})')
    return dict(processes=2, seconds=round(time.time() - start, 1),
                resumed_from='epoch_2.pth',
                backend='gloo' if device == 'cpu' else 'nccl')


# ------------------------------------------------------------------ report
def table(results: dict) -> str:
    rows = [('check', 'status', 'result')]
    for name, res in results.items():
        status = res.get('status', 'ok')
        if status == 'failed':
            text = res['error'].splitlines()[0][:90]
        elif status == 'skipped':
            text = res['why']
        elif name == 'ops':
            text = (f"{res['backend']} (FLSL_MM_OPS={res['mode']}, mmcv CUDA "
                    f"{res['mmcv_cuda'] or 'none'}); nms same: "
                    f"{res['nms_same_indices']}, roi_align diff "
                    f"{res['roi_align_max_abs_diff']:.1e}")
        elif name == 'davis':
            text = (f"{res['fps_full_context']:.2f} frames/s "
                    f"({res['resolution']}, {res['frames']} frames)")
        elif name == 'views':
            text = (f"{res['workers']} workers: PIL path {res['pil_path_images_per_s']} "
                    f"img/s, device path {res['device_path_images_per_s']} img/s "
                    f"({res['ratio']}x)")
        elif name == 'step':
            text = f"batch {res['batch']}, {res['workers']} workers (table below)"
        elif name == 'dist_resume':
            text = f"2 processes saved and resumed, {res['seconds']} s"
        else:
            text = f"{res['it_per_s']:.2f} it/s, data wait {res['data_wait_s']:.3f} s"
            if 'images_per_s' in res:
                text += f", {res['images_per_s']} img/s"
            if 'peak_mem_mib' in res:
                text += f", peak {res['peak_mem_mib']:.0f} MiB"
            text += f", loss {res['loss_first']:.3f} -> {res['loss_last']:.3f}"
        rows.append((name, status, text))
    widths = [max(len(r[i]) for r in rows) for i in range(2)]
    out = '\n'.join(f'{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]}'
                    for r in rows)
    step = results.get('step', {})
    if step.get('runs'):
        out += '\n\n' + step_table(step)
    return out


def step_table(step: dict) -> str:
    """The step check's runs as a markdown table (docs/benchmarks.md)."""
    lines = ['| views | precision | compiled | ms / iter | img/s | data wait ms | '
             'peak MiB | host syncs / iter |', '|---|---|---|---|---|---|---|---|']
    for name, r in step['runs'].items():
        views, dtype = name.split('_')[:2]
        if r['status'] != 'ok':
            lines.append(f"| {views} | {dtype} | {'compiled' in name} | failed: "
                         f"{r['error'][:60]} | | | | |")
            continue
        lines.append(f"| {views} | {r['amp']} | {'yes' if 'compiled' in name else 'no'} "
                     f"| {r['ms_per_iter']} | {r['images_per_s']} | {r['data_wait_ms']} | "
                     f"{r['peak_mem_mib'] if r['peak_mem_mib'] is not None else '-'} | "
                     f"{r['syncs_per_iter']} |")
    return '\n'.join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--device', default='cuda', choices=['cuda', 'cpu'])
    p.add_argument('--quick', action='store_true',
                   help='toy sizes and 2 iterations per job (what the tests run)')
    p.add_argument('--out-dir', default='work_dirs/gpu_check')
    p.add_argument('--only', nargs='+', choices=CHECKS, default=list(CHECKS),
                   help='run these checks only')
    p.add_argument('--dist-on-cpu', action='store_true',
                   help='run dist_resume with 2 CPU processes (gloo) too')
    p.add_argument('--workers', type=int, default=None,
                   help='loader workers per job (default: the published 10 for '
                   'pretraining capped by the CPU count; 0 with --quick)')
    args = p.parse_args(argv)
    import torch
    if args.device == 'cuda' and not torch.cuda.is_available():
        raise SystemExit('--device cuda: torch sees no GPU here; use --device cpu '
                         '(with --quick for a toy-size run)')
    import flsl_mm  # noqa: F401  (applies compat_ops before any op is used)
    from flsl_mm.datasets.demo_data import ensure_demo_data
    out_dir = Path(args.out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    workers = args.workers if args.workers is not None else (
        0 if args.quick else min(10, os.cpu_count() or 1))
    size = SIZES[args.quick]
    start = time.time()
    data = out_dir / 'data'
    ensure_demo_data(data, num_train=size['pretrain_images'], num_val=2,
                     img_size=size['data_hw'])
    info = dict(device=args.device, quick=args.quick, torch=torch.__version__,
                workers=workers)
    if args.device == 'cuda':
        info['gpu'] = torch.cuda.get_device_name(0)
        info['visible_gpus'] = torch.cuda.device_count()
    log(f'{info}; data in {data}')
    jobs = {
        'ops': lambda: check_ops(args.device, args.quick),
        'views': lambda: check_views(args.device, args.quick, out_dir, max(1, (
            os.cpu_count() or 1) // info.get('visible_gpus', 1)) if args.workers is None
            else max(1, args.workers)),
        'step': lambda: check_step(args.device, args.quick, out_dir, max(1, (
            os.cpu_count() or 1) // info.get('visible_gpus', 1) - 2)
            if args.workers is None else args.workers),
        'pretrain': lambda: check_pretrain(args.device, args.quick, data, out_dir,
                                           workers),
        'mask_rcnn': lambda: check_mask_rcnn(args.device, args.quick, data,
                                             out_dir, min(workers, 4)),
        'semantic_fpn': lambda: check_semantic_fpn(args.device, args.quick, data,
                                                   out_dir, min(workers, 4)),
        'davis': lambda: check_davis(args.device, args.quick, out_dir),
        'dist_resume': lambda: check_dist_resume(
            args.device, args.quick, data, out_dir,
            on_cpu=args.dist_on_cpu and args.device == 'cpu'),
    }
    results = {}
    for name in args.only:
        t0 = time.time()
        log(f'{name} ...')
        try:
            res = jobs[name]()
        except Exception as exc:  # report it and go on with the next check
            res = dict(status='failed', error=str(exc))
        res.setdefault('status', 'ok')
        res['check_seconds'] = round(time.time() - t0, 1)
        results[name] = res
        log(f'{name}: {res["status"]} in {res["check_seconds"]} s')
    report = dict(info, total_seconds=round(time.time() - start, 1),
                  results=results)
    (out_dir / 'gpu_check.json').write_text(json.dumps(report, indent=2))
    print(table(results))
    print(f'[gpu_check] {report["total_seconds"]} s; written '
          f'{out_dir / "gpu_check.json"}')
    return 1 if any(r['status'] == 'failed' for r in results.values()) else 0


if __name__ == '__main__':
    sys.exit(main())
