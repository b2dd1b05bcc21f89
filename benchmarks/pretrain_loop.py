#!/usr/bin/env python
"""The whole FLSL pretraining loop, end to end: ``runner.train()`` of the published
ViT-S/16 config (2 x 224 + 2 x 96 views, K 4096, every hook, logging each
iteration) with its real loader and augmentations on a generated image folder;
and the loader alone. Next to ``benchmarks/pretrain_step.py`` (the step alone) it
says what bounds an iteration: the step or the data.

    python benchmarks/pretrain_loop.py [--batch 8] [--iters 6] [--workers 2]
        [--device cpu|cuda] [--amp fp16|bf16] [--image-size 375 500]
        [--views cpu|device]

Reports images/s, the time split (data wait vs the rest of the iteration; each
iteration timed by ``HostSyncHook``), host syncs per iteration between logged ones
(``--log-interval`` > 1), peak memory (RSS on CPU; GPU allocated on CUDA), and the
loader's images/s (total and per worker). Speed of a real run depends on the images' format and size (JPEG
ImageNet photos decode differently from these generated PNGs).
"""
import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CONFIG = REPO / 'configs/pretrain/flsl_vit-small-p16_8xb64-300e_in1k.py'
BF16 = REPO / 'configs/pretrain/flsl_vit-small-p16_8xb64-300e_in1k-bf16.py'


def config_path(args) -> Path:
    """The published config (fp16 or bf16), its -gpuaug variant with
    ``--views device``."""
    path = BF16 if args.amp == 'bf16' else CONFIG
    return path.with_name(path.stem + '-gpuaug.py') if args.views == 'device' else path


def build_cfg(args, data_root: str, work_dir: str):
    from mmengine.config import Config
    cfg = Config.fromfile(config_path(args))
    pipeline = cfg.train_dataloader.dataset.pipeline
    per_epoch = max(1, args.images // args.batch)
    cfg.merge_from_dict({
        'train_dataloader.dataset': dict(_delete_=True, type='DemoImageDataset',
                                         data_root=data_root, split='train',
                                         pipeline=pipeline),
        'train_dataloader.batch_size': args.batch,
        'train_dataloader.num_workers': args.workers,
        'train_dataloader.persistent_workers': args.workers > 0,
        'train_cfg.max_epochs': -(-args.iters // per_epoch),
        'default_hooks.logger.interval': args.log_interval,
        'log_processor.window_size': 1,
        'default_hooks.checkpoint.interval': 10**6,
        'default_hooks.checkpoint.save_last': False,
        # no DenseProbeHook: the loop alone is timed; HostSyncHook times every
        # iteration and counts its host syncs (docs/pretraining.md)
        'custom_hooks': [dict(type='HostSyncHook')],
    })
    if args.device != 'cuda' or args.amp == 'none':
        # mmengine's AmpOptimWrapper needs CUDA: float32 on the CPU
        cfg.optim_wrapper.type = 'OptimWrapper'
        for key in ('loss_scale', 'dtype'):
            cfg.optim_wrapper.pop(key, None)
    cfg.work_dir = work_dir
    return cfg


def loader_speed(cfg, batches: int) -> dict:
    """The training loader alone: images/s over ``batches`` batches after the
    first (worker start-up)."""
    from mmengine.runner import Runner
    loader = Runner.build_dataloader(cfg.train_dataloader, seed=0)
    it = iter(loader)
    next(it)
    start, n = time.perf_counter(), 0
    for _ in range(batches):
        try:
            batch = next(it)
        except StopIteration:
            it = iter(loader)
            batch = next(it)
        n += len(batch['data_samples'])
    seconds = time.perf_counter() - start
    del it  # ends its workers
    workers = max(cfg.train_dataloader.num_workers, 1)
    return dict(images_per_s=round(n / seconds, 2),
                images_per_s_per_worker=round(n / seconds / workers, 2),
                batches=batches)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--batch', type=int, default=8)
    p.add_argument('--iters', type=int, default=6)
    p.add_argument('--workers', type=int, default=2)
    p.add_argument('--images', type=int, default=64, help='generated images')
    p.add_argument('--image-size', type=int, nargs=2, default=[375, 500],
                   metavar=('H', 'W'), help='(ImageNet\'s typical 375 x 500)')
    p.add_argument('--device', default='cpu', choices=['cpu', 'cuda'])
    p.add_argument('--amp', default='fp16', choices=['fp16', 'bf16', 'none'],
                   help='on CUDA: fp16 (published) or bf16 autocast, or float32')
    p.add_argument('--views', default='cpu', choices=['cpu', 'device'],
                   help='where the views are made: the loader workers (PIL, the '
                   'published configs) or the training device (the -gpuaug configs)')
    p.add_argument('--loader-batches', type=int, default=4)
    p.add_argument('--log-interval', type=int, default=1,
                   help='logger interval: iterations between logged ones are those '
                   'whose host syncs are counted (1: every iteration logged)')
    p.add_argument('--work-dir', default=None)
    p.add_argument('--out', help='write the results as JSON here')
    args = p.parse_args(argv)
    import torch
    if args.device == 'cuda' and not torch.cuda.is_available():
        raise SystemExit('--device cuda: torch sees no GPU here')
    if args.device == 'cpu':
        os.environ['CUDA_VISIBLE_DEVICES'] = ''  # mmengine picks CUDA when it can
    import flsl_mm  # noqa: F401
    from mmengine.runner import Runner

    from flsl_mm.analysis.training_log import read_scalars, timing_summary
    from flsl_mm.datasets.demo_data import ensure_demo_data
    work = Path(args.work_dir or tempfile.mkdtemp(prefix='flsl_loop_'))
    data = work / 'data'
    ensure_demo_data(data, num_train=args.images, num_val=2,
                     img_size=tuple(args.image_size))
    cfg = build_cfg(args, str(data), str(work / 'run'))
    runner = Runner.from_cfg(cfg)  # also sets the config's registry scope
    loader = loader_speed(cfg, args.loader_batches)
    if args.device == 'cuda':
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    runner.train()
    wall = time.perf_counter() - start
    rows = read_scalars(work / 'run')[:args.iters]
    t = timing_summary(rows)
    syncs = json.loads((work / 'run' / 'host_syncs.json').read_text())
    per_iter = syncs['per_iteration'][:args.iters]
    timed = per_iter[2:] if len(per_iter) > 3 else per_iter
    t['iters'] = len(per_iter)
    t['s_per_iter'] = round(sorted(r['iter_s'] + (r['data_s'] or 0) for r in timed)[
        len(timed) // 2], 4)
    t['data_wait_s'] = round(sorted(r['data_s'] or 0 for r in timed)[len(timed) // 2], 4)
    outside = [r for r in per_iter if not r['read_point']]
    t['host_syncs_per_iter'] = (round(sum(r['syncs'] for r in outside) / len(outside), 2)
                                if outside else None)
    t['host_syncs_counted_by'] = syncs['counted_by']
    result = dict(device=args.device, amp=args.amp if args.device == 'cuda' else
                  'none (float32 on CPU)', batch=args.batch, workers=args.workers,
                  views=args.views, config=config_path(args).name,
                  image_size=args.image_size, torch_threads=torch.get_num_threads(),
                  **t, images_per_s=round(args.batch / t['s_per_iter'], 2),
                  data_wait_fraction=round(t['data_wait_s'] / t['s_per_iter'], 3),
                  wall_s=round(wall, 1), loader=loader)
    if args.device == 'cuda':
        result['peak_gpu_mib'] = round(torch.cuda.max_memory_allocated() / 2**20)
    result['peak_rss_mib'] = round(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(f"ViT-S/16 FLSL loop on {args.device}, views on {args.views}, batch {args.batch}, "
          f"{args.workers} workers: {result['s_per_iter']:.2f} s/iter "
          f"({result['images_per_s']:.2f} img/s), data wait "
          f"{result['data_wait_s']:.3f} s ({100 * result['data_wait_fraction']:.0f} %)"
          f"; host syncs per non-logged iteration {result['host_syncs_per_iter']}"
          f"; loader alone {loader['images_per_s']:.2f} img/s "
          f"({loader['images_per_s_per_worker']:.2f} per worker); peak RSS "
          f"{result['peak_rss_mib']} MiB"
          + (f", GPU {result['peak_gpu_mib']} MiB" if 'peak_gpu_mib' in result
             else ''))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == '__main__':
    sys.exit(main())
